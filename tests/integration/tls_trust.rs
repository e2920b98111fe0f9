//! TLS trust against small in-test TLS servers on 127.0.0.1 (issue 15): a self-signed server
//! certificate that is its own CA (`openssl req -x509`'s default, `basicConstraints CA:TRUE`) is
//! accepted when it is exactly `ca_cert`, with its host name and validity still checked, and every
//! refused handshake says what is actually wrong: an unknown issuer, a CA posing as a server, a wrong
//! name, an expired certificate, plain HTTP on an https URL, a server that demands a client
//! certificate. One test runs the built `check` binary against such a server, as a user would.

use crate::common::run_step;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd};
use repave::Env;
use repave::http::{HttpClient, HttpConfig};
use repave::redact::Log;
use reqwest::header::HeaderMap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// A server certificate (PEM, DER) and its key.
struct ServerCert {
    pem: String,
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A self-signed certificate for `names`; `ca` makes it its own CA, `expired` dates it in 2020.
fn self_signed(names: &[&str], ca: bool, expired: bool) -> ServerCert {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    // Each its own subject, as two real CAs would have: not rcgen's one default name.
    params.distinguished_name.push(DnType::CommonName, format!("{} {}", names[0], fastrand::u64(..)));
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    if expired {
        (params.not_before, params.not_after) = (date_time_ymd(2019, 1, 1), date_time_ymd(2020, 1, 1));
    }
    let cert = params.self_signed(&key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    ServerCert { pem: cert.pem(), der: cert.der().clone(), key }
}

/// Serves `body` over TLS with `cert` (optionally demanding a client certificate signed by
/// `client_ca`) on 127.0.0.1; returns the https URL. The thread ends with the test process.
fn tls_server(cert: ServerCert, client_ca: Option<CertificateDer<'static>>, body: &'static str) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions();
    let builder = builder.unwrap();
    let config = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier).with_single_cert(vec![cert.der], cert.key).unwrap()
        }
        None => builder.with_no_client_auth().with_single_cert(vec![cert.der], cert.key).unwrap(),
    };
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(32).flatten() {
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), tcp);
            let mut head = [0u8; 4096];
            if tls.read(&mut head).is_ok() {
                let answer =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = tls.write_all(answer.as_bytes());
                let _ = tls.flush();
            }
        }
    });
    url
}

fn client(ca_cert: &str) -> HttpClient {
    let config = HttpConfig {
        ca_cert: Some(ca_cert.to_string()),
        system_ca_dir: "/nonexistent".into(),
        attempts: 1,
        ..HttpConfig::default()
    };
    HttpClient::new(config, &Env::new(), &Log::sink()).unwrap()
}

async fn get(ca_cert: &str, url: &str) -> Result<Vec<u8>, String> {
    client(ca_cert).get_bytes(&format!("{url}/x"), HeaderMap::new()).await.map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn a_self_signed_server_that_is_its_own_ca_is_trusted_when_it_is_ca_cert() {
    let cert = self_signed(&["127.0.0.1", "localhost"], true, false);
    let pem = cert.pem.clone();
    let url = tls_server(cert, None, "{}");
    assert_eq!(get(&pem, &url).await.unwrap(), b"{}");
    // Among other certificates in `ca_cert`, too.
    let other = self_signed(&["127.0.0.1"], true, false).pem;
    assert_eq!(get(&format!("{other}{pem}"), &url).await.unwrap(), b"{}");
}

#[tokio::test]
async fn a_ca_posing_as_a_server_is_refused_unless_it_is_exactly_ca_cert() {
    let url = tls_server(self_signed(&["127.0.0.1"], true, false), None, "{}");
    let other = self_signed(&["127.0.0.1"], true, false).pem;
    let err = get(&other, &url).await.unwrap_err();
    assert!(err.contains("CA:TRUE") && err.contains("set `ca_cert` to the server's own certificate"), "{err}");
}

#[tokio::test]
async fn a_pinned_certificate_still_needs_the_right_name_and_dates() {
    let localhost_only = self_signed(&["localhost"], true, false);
    let pem = localhost_only.pem.clone();
    let url = tls_server(localhost_only, None, "{}");
    let err = get(&pem, &url).await.unwrap_err();
    assert!(err.contains("not valid for `127.0.0.1`") && err.contains("it names localhost"), "{err}");

    let expired = self_signed(&["127.0.0.1"], true, true);
    let pem = expired.pem.clone();
    let url = tls_server(expired, None, "{}");
    let err = get(&pem, &url).await.unwrap_err();
    assert!(err.contains("expired at 2020-01-01") && err.contains("this machine's clock says"), "{err}");
}

#[tokio::test]
async fn a_server_signed_by_an_unknown_ca_names_ca_cert() {
    let url = tls_server(self_signed(&["127.0.0.1"], false, false), None, "{}");
    let unrelated = self_signed(&["example.com"], true, false).pem;
    let err = get(&unrelated, &url).await.unwrap_err();
    assert!(err.contains("not trusted") && err.contains("set `ca_cert`"), "{err}");
    assert!(!err.contains("gave up"), "trust errors are not retried: {err}");
}

#[tokio::test]
async fn a_certificate_for_another_name_lists_the_names_it_has() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["api.example.com".to_string()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let url = tls_server(ServerCert { pem: leaf.pem(), der: leaf.der().clone(), key }, None, "{}");
    let err = get(&ca.pem(), &url).await.unwrap_err();
    assert!(err.contains("not valid for `127.0.0.1`: it names api.example.com"), "{err}");
}

#[tokio::test]
async fn plain_http_on_an_https_url_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().take(4).flatten() {
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head);
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let err = get(&self_signed(&["127.0.0.1"], true, false).pem, &url).await.unwrap_err();
    assert!(err.contains("did not answer in TLS") && err.contains("plain HTTP"), "{err}");
}

#[tokio::test]
async fn a_server_that_demands_a_client_certificate_is_named() {
    let cert = self_signed(&["127.0.0.1"], true, false);
    let pem = cert.pem.clone();
    let client_ca = self_signed(&["clients"], true, false).der;
    let url = tls_server(cert, Some(client_ca), "{}");
    let err = get(&pem, &url).await.unwrap_err();
    assert!(err.contains("ended the TLS handshake with the alert") && err.contains("client certificate"), "{err}");
}

/// The built `check` against a bosh.io mirror whose certificate `openssl req -x509` could have made.
#[test]
fn check_trusts_a_self_signed_ca_mirror_given_as_ca_cert() {
    let cert = self_signed(&["127.0.0.1"], true, false);
    let pem = cert.pem.clone();
    let list = r#"[{"name":"n","version":"1.506","regular":{"url":"https://127.0.0.1/x.tgz","size":1,"md5":"00"}}]"#;
    let url = tls_server(cert, None, list);
    let request = json!({"source": {"kind": "stemcell", "name": "n", "api_url": url, "ca_cert": pem}});
    let out = run_step("check", &request.to_string(), None, &[]);
    assert_eq!(out.json(), json!([{"version": "1.506"}]));
}
