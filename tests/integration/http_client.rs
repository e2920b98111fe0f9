//! The shared HTTP client against repave-sim's faults over real TLS: retries and their bounds,
//! Retry-After, stall timeouts, resets, body caps, TLS trust, proxies and the User-Agent.

use repave::Env;
use repave::http::{HttpClient, HttpConfig, Retry};
use repave::redact::Log;
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use reqwest::header::HeaderMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Captures what the client logs, as stderr would receive it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Fast, isolated settings: trust only the sim's CA, short backoff.
fn config(sim: &RunningSim) -> HttpConfig {
    HttpConfig {
        ca_cert: Some(std::fs::read_to_string(sim.ca_cert_path()).unwrap()),
        system_ca_dir: "/nonexistent".into(),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        attempts: 5,
        ..HttpConfig::default()
    }
}

fn client(config: HttpConfig, env: &Env) -> (HttpClient, Captured) {
    let captured = Captured::default();
    let client = HttpClient::new(config, env, &Log::new(Box::new(captured.clone()))).unwrap();
    (client, captured)
}

fn hits(sim: &RunningSim, path: &str) -> usize {
    sim.requests().iter().filter(|r| r.path == path).count()
}

fn status(code: u16) -> FaultAction {
    FaultAction::Status { code, retry_after: None, body: None }
}

#[tokio::test]
async fn two_503s_then_success_takes_three_requests() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/json", status(503)).count(2));
    let (http, log) = client(config(&sim), &Env::new());
    let value: serde_json::Value = http.get_json(&format!("{}/_sim/json", sim.url()), HeaderMap::new()).await.unwrap();
    assert!(value.is_object());
    assert_eq!(hits(&sim, "/_sim/json"), 3);
    let log = log.text();
    assert!(log.contains("503") && log.contains("attempt 2 of 5") && log.contains("attempt 3 of 5"), "{log}");
}

#[tokio::test]
async fn persistent_503_gives_up_after_the_configured_attempts() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/json", status(503)));
    let (http, _) = client(HttpConfig { attempts: 3, ..config(&sim) }, &Env::new());
    let err = http.get_bytes(&format!("{}/_sim/json", sim.url()), HeaderMap::new()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("gave up after 3 attempts") && text.contains("503"), "{text}");
    assert_eq!(hits(&sim, "/_sim/json"), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = RunningSim::start("");
    sim.add_fault(
        FaultRule::new("/_sim/json", FaultAction::Status { code: 429, retry_after: Some(1), body: None }).count(1),
    );
    let (http, log) = client(HttpConfig { max_backoff: Duration::from_secs(5), ..config(&sim) }, &Env::new());
    let started = Instant::now();
    http.get_bytes(&format!("{}/_sim/json", sim.url()), HeaderMap::new()).await.unwrap();
    // A lower bound only: the client must have waited at least what the server asked for.
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    assert!(log.text().contains("retrying in 1.0s"), "{}", log.text());
}

#[tokio::test]
async fn a_stalled_body_times_out_and_is_retried() {
    let sim = RunningSim::start("");
    let stall = FaultAction::Stall { after_bytes: Some(100), ms: 20_000 };
    sim.add_fault(FaultRule::new("/_sim/big-json/*", stall).count(1));
    // 5 s, not less: the retry, which is not under test, reads under the same timeout on a busy machine.
    let config = HttpConfig { stall_timeout: Duration::from_secs(5), ..config(&sim) };
    let (http, log) = client(config, &Env::new());
    let body = http.get_bytes(&format!("{}/_sim/big-json/50000", sim.url()), HeaderMap::new()).await.unwrap();
    assert_eq!(body.len(), 50000);
    assert_eq!(hits(&sim, "/_sim/big-json/50000"), 2);
    assert!(log.text().contains("timed out"), "{}", log.text());
}

#[tokio::test]
async fn a_stall_with_no_retries_fails_instead_of_waiting() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/json", FaultAction::Stall { after_bytes: None, ms: 20_000 }));
    let config = HttpConfig { request_timeout: Duration::from_millis(300), attempts: 1, ..config(&sim) };
    let (http, _) = client(config, &Env::new());
    let err = http.get_bytes(&format!("{}/_sim/json", sim.url()), HeaderMap::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
}

#[tokio::test]
async fn a_reset_mid_body_is_retried() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/big-json/*", FaultAction::ResetAfterBytes { bytes: 1000 }).count(1));
    let (http, _) = client(config(&sim), &Env::new());
    let body = http.get_bytes(&format!("{}/_sim/big-json/20000", sim.url()), HeaderMap::new()).await.unwrap();
    assert_eq!(body.len(), 20000);
    assert_eq!(hits(&sim, "/_sim/big-json/20000"), 2);
}

#[tokio::test]
async fn a_truncated_body_is_retried() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/big-json/*", FaultAction::Truncate { bytes: 500 }).count(1));
    let (http, _) = client(config(&sim), &Env::new());
    let body = http.get_bytes(&format!("{}/_sim/big-json/20000", sim.url()), HeaderMap::new()).await.unwrap();
    assert_eq!(body.len(), 20000);
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let sim = RunningSim::start("");
    let (http, _) = client(HttpConfig { max_body_bytes: 4096, ..config(&sim) }, &Env::new());
    let err = http.get_bytes(&format!("{}/_sim/big-json/100000", sim.url()), HeaderMap::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("larger than the 4 KiB limit"), "{err:#}");
    assert_eq!(hits(&sim, "/_sim/big-json/100000"), 1, "a too-large answer is not worth retrying");
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried_on_5xx() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/json", status(503)).method("POST"));
    let (http, _) = client(config(&sim), &Env::new());
    let url = format!("{}/_sim/json", sim.url());
    let response = http.send(Retry::NotIdempotent, |c| c.post(&url)).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(hits(&sim, "/_sim/json"), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sim = RunningSim::start("");
    let (http, log) = client(HttpConfig { attempts: 2, ..config(&sim) }, &Env::new());
    let err = http.get_bytes(&format!("https://127.0.0.1:{port}/x"), HeaderMap::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("gave up after 2 attempts"), "{err:#}");
    assert!(log.text().contains("attempt 2 of 2"));
}

#[tokio::test]
async fn untrusted_certificates_are_rejected_with_a_hint() {
    let sim = RunningSim::start("");
    let (http, _) = client(HttpConfig { ca_cert: None, ..config(&sim) }, &Env::new());
    let err = http.get_bytes(&format!("{}/_sim/json", sim.url()), HeaderMap::new()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("not trusted") && text.contains("`ca_cert`"), "{text}");
    assert!(!text.contains("gave up"), "trust errors are not retried: {text}");
}

/// Concourse bind-mounts the worker's /etc/ssl/certs; a corporate CA dropped there as a loose `*.pem`
/// (no bundle, no `openssl rehash` link) must be trusted, and `SSL_CERT_FILE`/`SSL_CERT_DIR` come from
/// the injected environment.
#[tokio::test]
async fn the_system_store_trusts_loose_pem_files_and_ssl_cert_settings() {
    let sim = RunningSim::start("");
    let url = format!("{}/_sim/json", sim.url());
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(sim.ca_cert_path(), certs.path().join("corporate-ca.pem")).unwrap();
    let store = certs.path().to_str().unwrap().to_string();
    let (http, _) = client(HttpConfig { ca_cert: None, system_ca_dir: store.clone(), ..config(&sim) }, &Env::new());
    http.get_bytes(&url, HeaderMap::new()).await.unwrap();

    let file = certs.path().join("corporate-ca.pem").to_str().unwrap().to_string();
    for (name, value) in [("SSL_CERT_FILE", file), ("SSL_CERT_DIR", format!("/nonexistent:{store}"))] {
        let env: Env = [(name.to_string(), value)].into();
        let (http, _) = client(HttpConfig { ca_cert: None, ..config(&sim) }, &env);
        http.get_bytes(&url, HeaderMap::new()).await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[tokio::test]
async fn insecure_skip_tls_verify_works_and_warns() {
    let sim = RunningSim::start("");
    let config = HttpConfig { ca_cert: None, insecure_skip_tls_verify: true, ..config(&sim) };
    let (http, log) = client(config, &Env::new());
    http.get_bytes(&format!("{}/_sim/json", sim.url()), HeaderMap::new()).await.unwrap();
    assert!(log.text().contains("warning: insecure_skip_tls_verify"), "{}", log.text());
}

/// A minimal CONNECT proxy that records each CONNECT target and tunnels bytes both ways.
fn start_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(16).flatten() {
            let record = record.clone();
            std::thread::spawn(move || tunnel(client, record));
        }
    });
    (url, seen)
}

fn tunnel(client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let target = line.split_whitespace().nth(1).unwrap_or_default().to_string();
    seen.lock().unwrap().push(target.clone());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    let upstream = TcpStream::connect(&target).unwrap();
    let mut client_w = client;
    client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
    let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
    let mut client_r = reader;
    let t = std::thread::spawn(move || std::io::copy(&mut client_r, &mut up_w));
    let _ = std::io::copy(&mut up_r, &mut client_w);
    let _ = t.join();
}

#[tokio::test]
async fn https_proxy_is_used_unless_no_proxy_matches() {
    let sim = RunningSim::start("");
    let (proxy, seen) = start_proxy();
    let url = format!("{}/_sim/json", sim.url());
    let env: Env = [("https_proxy".to_string(), proxy.clone())].into();
    let (http, _) = client(config(&sim), &env);
    http.get_bytes(&url, HeaderMap::new()).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "request went through the proxy");

    let env: Env = [("HTTPS_PROXY".to_string(), proxy), ("NO_PROXY".to_string(), "127.0.0.1".to_string())].into();
    let (http, _) = client(config(&sim), &env);
    http.get_bytes(&url, HeaderMap::new()).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "no_proxy bypasses the proxy");
}

#[tokio::test]
async fn user_agent_names_repave() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 2048];
        let n = stream.read(&mut head).unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}").unwrap();
        String::from_utf8_lossy(&head[..n]).to_lowercase()
    });
    let http = HttpClient::new(HttpConfig::default(), &Env::new(), &Log::sink()).unwrap();
    http.get_bytes(&url, HeaderMap::new()).await.unwrap();
    let head = server.join().unwrap();
    assert!(head.contains(&format!("user-agent: repave/{}", env!("CARGO_PKG_VERSION"))), "{head}");
}

/// A slowloris-style trickle resets any per-read stall timer, so the overall request deadline must
/// end it.
#[tokio::test]
async fn a_trickling_server_is_cut_off_by_the_request_deadline() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/_sim/big-json/*", FaultAction::RateLimit { bytes_per_sec: 200 }));
    let config = HttpConfig { request_timeout: Duration::from_millis(800), attempts: 1, ..config(&sim) };
    let (http, _) = client(config, &Env::new());
    let err = http.get_bytes(&format!("{}/_sim/big-json/100000", sim.url()), HeaderMap::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("timed out"), "{err:#}");
}

/// A server that never stops sending headers must not make the client buffer without bound.
#[tokio::test]
async fn endless_headers_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
        // Bounded: 64 MiB at most, or until the client hangs up.
        for i in 0..1_000_000u32 {
            if stream.write_all(format!("x-filler-{i}: {}\r\n", "a".repeat(48)).as_bytes()).is_err() {
                break;
            }
        }
    });
    let config = HttpConfig { attempts: 1, ..HttpConfig::default() };
    let http = HttpClient::new(config, &Env::new(), &Log::sink()).unwrap();
    assert!(http.get_bytes(&url, HeaderMap::new()).await.is_err());
}
