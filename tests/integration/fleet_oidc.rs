//! repave's UAA client against a real OAuth2 server we did not write: npm `oidc-provider` (ci/oidc),
//! serving client_credentials with HTTP Basic client authentication at `/oauth/token` over TLS.
//! Needs `node` and `npm` (ci/test installs them); the npm package is installed here on first use.

use crate::common::{Killed, free_port, self_signed_cert};
use repave::Env;
use repave::clients::uaa::{Grant, Uaa};
use repave::http::{HttpClient, HttpConfig};
use repave::redact::Log;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CLIENT_SECRET: &str = "oidc-client-secret-4b1d";

/// The token server.
struct TokenServer {
    // Declared first, so it is killed before its certificate dir is removed.
    _process: Killed,
    url: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/oidc")
}

fn npm_install(dir: &Path) {
    if dir.join("node_modules/oidc-provider").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("running npm (install node and npm: ci/test does)");
    assert!(status.success(), "npm install in {} failed", dir.display());
}

fn start() -> TokenServer {
    let dir = oidc_dir();
    npm_install(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let ca_pem = self_signed_cert(tmp.path());
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let port = free_port();
    let mut child = Command::new("node")
        .arg(dir.join("token-server.mjs"))
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("CERT", &cert_path)
        .env("KEY", &key_path)
        .env("CLIENT_ID", "repave-ci")
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node (install node: ci/test does)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"ready\":true") {
                let _ = tx.send(());
            }
        }
    });
    let server = TokenServer { _process: Killed(child), url: format!("https://127.0.0.1:{port}"), ca_pem, _dir: tmp };
    rx.recv_timeout(Duration::from_secs(30)).expect("the token server did not print its ready line within 30s");
    server
}

fn uaa(server: &TokenServer, secret: &str) -> Uaa {
    let config = HttpConfig {
        ca_cert: Some(server.ca_pem.clone()),
        system_ca_dir: "/nonexistent".into(),
        initial_backoff: Duration::from_millis(10),
        ..HttpConfig::default()
    };
    let http = HttpClient::new(config, &Env::new(), &Log::sink()).unwrap();
    let grant = Grant::ClientCredentials { client_id: "repave-ci".into(), client_secret: secret.into() };
    // Unlike UAA, oidc-provider grants only scopes that are asked for.
    Uaa::new(http, &server.url, grant).with_scope(Some("pks.clusters.admin".into()))
}

#[tokio::test]
async fn the_uaa_client_gets_a_token_from_a_real_oauth2_server_and_names_a_wrong_secret() {
    let server = start();
    let token = uaa(&server, CLIENT_SECRET).token().await.expect("a token from oidc-provider");
    assert_eq!(token.split('.').count(), 3, "a JWT access token: {token}");

    let err = format!("{:#}", uaa(&server, "wrong-secret-value-77").token().await.unwrap_err());
    assert!(err.contains("401") && err.contains("invalid_client"), "{err}");
    assert!(err.contains("UAA rejected the credentials of client `repave-ci`"), "{err}");
    assert!(!err.contains("wrong-secret-value-77"), "{err}");
}
