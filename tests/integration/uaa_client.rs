//! The UAA token client against repave-sim's UAA over TLS: grants, caching, refresh before expiry,
//! one retry with a fresh token after a 401, clear credential errors, no credentials over http.

use repave::Env;
use repave::clients::uaa::{Grant, Uaa};
use repave::http::{HttpClient, HttpConfig, Retry};
use repave::redact::Log;
use repave_sim::testing::RunningSim;
use std::time::Duration;

const SCENARIO: &str = r#"
uaa:
  clients: [{id: ci, secret: ci-secret-value, scopes: [pks.clusters.admin]}]
  users: [{username: alice, password: alice-password, scopes: [pks.clusters.manage]}]
  token_ttl_secs: 1
"#;

fn http(sim: &RunningSim) -> HttpClient {
    let config = HttpConfig {
        ca_cert: Some(std::fs::read_to_string(sim.ca_cert_path()).unwrap()),
        system_ca_dir: "/nonexistent".into(),
        initial_backoff: Duration::from_millis(10),
        ..HttpConfig::default()
    };
    HttpClient::new(config, &Env::new(), &Log::sink()).unwrap()
}

fn client_grant(secret: &str) -> Grant {
    Grant::ClientCredentials { client_id: "ci".into(), client_secret: secret.into() }
}

fn token_requests(sim: &RunningSim) -> usize {
    sim.requests().iter().filter(|r| r.path == "/oauth/token").count()
}

#[tokio::test]
async fn client_credentials_token_is_cached_then_refreshed_before_expiry() {
    let sim = RunningSim::start(SCENARIO);
    let uaa = Uaa::new(http(&sim), sim.url(), client_grant("ci-secret-value"));
    let first = uaa.token().await.unwrap();
    assert_eq!(uaa.token().await.unwrap(), first, "second call is served from the cache");
    assert_eq!(token_requests(&sim), 1);
    // TTL 1 s: the client refreshes once half the lifetime is gone, before the server would reject it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_ne!(uaa.token().await.unwrap(), first);
    assert_eq!(token_requests(&sim), 2);
    assert!(
        sim.requests().iter().filter(|r| r.path == "/oauth/token").all(|r| r.auth_scheme.as_deref() == Some("Basic"))
    );
}

#[tokio::test]
async fn password_grant_uses_the_public_cli_client() {
    let sim = RunningSim::start(SCENARIO);
    let grant =
        Grant::Password { client_id: "pks_cli".into(), username: "alice".into(), password: "alice-password".into() };
    let uaa = Uaa::new(http(&sim), sim.url(), grant);
    assert!(uaa.token().await.unwrap().starts_with("sim-token-"));
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once() {
    let sim = RunningSim::start(SCENARIO.replace("token_ttl_secs: 1", "token_ttl_secs: 3600").as_str());
    let uaa = Uaa::new(http(&sim), sim.url(), client_grant("ci-secret-value"));
    let url = format!("{}/_sim/uaa/whoami", sim.url());
    assert_eq!(uaa.send(Retry::Idempotent, |c| c.get(&url)).await.unwrap().status(), 200);
    // Revoke behind the client's back: its cached token is now rejected.
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(sim.ca_cert_path()).unwrap()).unwrap())
        .build()
        .unwrap()
        .post(format!("{}/_sim/uaa/revoke", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(uaa.send(Retry::Idempotent, |c| c.get(&url)).await.unwrap().status(), 200);
    assert_eq!(token_requests(&sim), 2);
    let whoami: Vec<u16> = sim.requests().iter().filter(|r| r.path == "/_sim/uaa/whoami").map(|r| r.status).collect();
    assert_eq!(whoami, [200, 401, 200]);
}

#[tokio::test]
async fn wrong_secret_is_a_clear_error_without_the_secret() {
    let sim = RunningSim::start(SCENARIO);
    let uaa = Uaa::new(http(&sim), sim.url(), client_grant("wrong-secret-value"));
    let err = format!("{:#}", uaa.token().await.unwrap_err());
    assert!(err.contains("401") && err.contains("invalid_client") && err.contains("client `ci`"), "{err}");
    assert!(!err.contains("wrong-secret-value"), "{err}");
    assert_eq!(token_requests(&sim), 1, "bad credentials are not retried");
}

#[tokio::test]
async fn credentials_are_never_sent_over_plain_http() {
    let sim = RunningSim::start(SCENARIO);
    let uaa = Uaa::new(http(&sim), "http://127.0.0.1:1", client_grant("ci-secret-value"));
    let err = uaa.token().await.unwrap_err().to_string();
    assert!(err.contains("refusing to send credentials") && err.contains("plain http"), "{err}");
}
