//! The simulator seen from a client: TLS, the request log, fault injection and the deterministic blob.

use std::time::{Duration, Instant};

use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use reqwest::StatusCode;
use reqwest::blocking::Client;

fn sim() -> (RunningSim, Client) {
    let sim = RunningSim::start("");
    let client = crate::common::client(sim.ca_cert_path());
    (sim, client)
}

fn status(code: u16) -> FaultAction {
    FaultAction::Status { code, retry_after: Some(1), body: None }
}

#[test]
fn answers_over_tls_with_its_own_ca_only() {
    let (sim, client) = sim();
    let response = client.get(format!("{}/_sim/json", sim.url())).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value = response.json().unwrap();
    assert_eq!(doc["name"], "repave-sim");

    let untrusting = Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(untrusting.get(format!("{}/_sim/json", sim.url())).send().is_err(), "no CA, no connection");
}

#[test]
fn request_log_records_a_call_without_credentials() {
    let (sim, client) = sim();
    let url = format!("{}/_sim/json?page=2", sim.url());
    client.get(url).bearer_auth("s3cret-token").send().unwrap().bytes().unwrap();

    let log = sim.requests();
    assert_eq!(log.len(), 1, "{log:?}");
    let record = &log[0];
    assert_eq!((record.method.as_str(), record.path.as_str()), ("GET", "/_sim/json"));
    assert_eq!(record.query.as_deref(), Some("page=2"));
    assert_eq!(record.status, 200);
    assert_eq!(record.auth_scheme.as_deref(), Some("Bearer"));
    assert!(record.bytes_sent > 0);

    let over_http: serde_json::Value =
        client.get(format!("{}/requests", sim.control_url())).send().unwrap().json().unwrap();
    assert_eq!(over_http.as_array().map(Vec::len), Some(1), "reading the log is not logged");
    assert!(!over_http.to_string().contains("s3cret"));
    let cleared = client.delete(format!("{}/requests", sim.control_url())).send().unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(sim.requests().is_empty());
}

#[test]
fn status_burst_then_success() {
    let (sim, client) = sim();
    sim.add_fault(FaultRule::new("/_sim/*", status(503)).method("GET").count(2));
    let url = format!("{}/_sim/json", sim.url());
    let codes: Vec<u16> = (0..3).map(|_| client.get(&url).send().unwrap().status().as_u16()).collect();
    assert_eq!(codes, [503, 503, 200]);

    let faults = sim.faults();
    assert_eq!((faults[0].matched, faults[0].fired), (3, 2));
    let logged: Vec<Option<String>> = sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(logged, [Some("status".into()), Some("status".into()), None]);
}

#[test]
fn faults_from_the_scenario_and_the_control_api() {
    let sim = RunningSim::start(
        "faults:\n  - path: /_sim/json\n    skip: 1\n    count: 1\n    action: {status: {code: 429, retry_after: 7}}\n",
    );
    let client = crate::common::client(sim.ca_cert_path());
    let url = format!("{}/_sim/json", sim.url());
    assert_eq!(client.get(&url).send().unwrap().status(), StatusCode::OK);
    let limited = client.get(&url).send().unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");

    let faults = format!("{}/faults", sim.control_url());
    assert_eq!(client.delete(&faults).send().unwrap().status(), StatusCode::NO_CONTENT);
    let rule = r#"{"method": "GET", "path": "/_sim/json", "action": {"status": {"code": 500, "body": "boom"}}}"#;
    let added = client.post(&faults).header("content-type", "application/json").body(rule).send().unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let failed = client.get(&url).send().unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.text().unwrap(), "boom");

    let listed: serde_json::Value = client.get(&faults).send().unwrap().json().unwrap();
    assert_eq!(listed[0]["fired"], 1);
    assert_eq!(listed[0]["action"]["status"]["code"], 500);
}

#[test]
fn reset_after_bytes_is_an_error_not_a_short_body() {
    let (sim, client) = sim();
    sim.add_fault(FaultRule::new("/_sim/blob/*", FaultAction::ResetAfterBytes { bytes: 1000 }));
    let response = client.get(format!("{}/_sim/blob/1/1000000", sim.url())).send().unwrap();
    assert_eq!(response.content_length(), Some(1_000_000));
    assert!(response.bytes().is_err(), "the client must see the cut");
    assert_eq!(sim.requests()[0].bytes_sent, 1000);
}

#[test]
fn truncate_keeps_the_length_and_sends_less() {
    let (sim, client) = sim();
    sim.add_fault(FaultRule::new("/_sim/json", FaultAction::Truncate { bytes: 10 }));
    let response = client.get(format!("{}/_sim/json", sim.url())).send().unwrap();
    assert!(response.content_length().unwrap() > 10);
    assert!(response.bytes().is_err());
}

#[test]
fn range_returns_the_same_bytes_as_the_full_body() {
    let (sim, client) = sim();
    let url = format!("{}/_sim/blob/42/300000", sim.url());
    let full = client.get(&url).send().unwrap();
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let full = full.bytes().unwrap();
    assert_eq!(full.len(), 300_000);

    let part = client.get(&url).header("range", "bytes=1000-70000").send().unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 1000-70000/300000");
    assert_eq!(part.bytes().unwrap(), full[1000..=70000]);

    let suffix = client.get(&url).header("range", "bytes=-7").send().unwrap().bytes().unwrap();
    assert_eq!(suffix, full[300_000 - 7..]);
    let beyond = client.get(&url).header("range", "bytes=300000-").send().unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.headers()["content-range"], "bytes */300000");

    let head = client.head(&url).send().unwrap();
    assert_eq!(head.headers()["content-length"], "300000");
    assert_eq!(sim.requests().last().unwrap().range, None);
}

#[test]
fn stalls_delay_headers_or_body() {
    let (sim, client) = sim();
    let url = format!("{}/_sim/json", sim.url());
    sim.add_fault(FaultRule::new("/_sim/json", FaultAction::Stall { after_bytes: None, ms: 300 }).count(1));
    let started = Instant::now();
    assert_eq!(client.get(&url).send().unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // After 5 body bytes: the headers come at once (told apart by an order, not a timing: the stall
    // is far longer than the client's timeout, so it gets the headers, then times out on the body).
    sim.clear_faults();
    sim.add_fault(FaultRule::new("/_sim/json", FaultAction::Stall { after_bytes: Some(5), ms: 60_000 }));
    let patient = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(sim.ca_cert_path()).unwrap()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = patient.get(&url).send().expect("the headers arrive before the stall");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().is_err(), "the body stalls after its first bytes");
}

#[test]
fn rate_limit_throttles_the_body() {
    let (sim, client) = sim();
    sim.add_fault(FaultRule::new("/_sim/blob/*", FaultAction::RateLimit { bytes_per_sec: 100_000 }));
    let started = Instant::now();
    let body = client.get(format!("{}/_sim/blob/3/30000", sim.url())).send().unwrap().bytes().unwrap();
    assert_eq!(body.len(), 30_000);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
}

#[test]
fn big_json_has_the_exact_size_and_parses() {
    let (sim, client) = sim();
    let body = client.get(format!("{}/_sim/big-json/200001", sim.url())).send().unwrap().bytes().unwrap();
    assert_eq!(body.len(), 200_001);
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(value.is_array());
}

#[test]
fn counters_keep_their_high_water_mark() {
    let (sim, client) = sim();
    let state = sim.state();
    {
        let _a = state.track("upgrades");
        let _b = state.track("upgrades");
        assert_eq!(state.counter("upgrades"), 2);
    }
    assert_eq!((state.counter("upgrades"), state.high_water("upgrades")), (0, 2));
    let stats: serde_json::Value = client.get(format!("{}/stats", sim.control_url())).send().unwrap().json().unwrap();
    assert_eq!(stats["counters"]["upgrades"]["high_water"], 2);
}

#[test]
fn blob_digests_are_served_and_cached() {
    let (sim, client) = sim();
    let url = format!("{}/_sim/blob/9/0/digests", sim.url());
    let digests: serde_json::Value = client.get(url).send().unwrap().json().unwrap();
    assert_eq!(digests["sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sim.state().blob_digests(9, 0).md5, "d41d8cd98f00b204e9800998ecf8427e");
}

#[test]
fn boshio_variant_overrides_publish_a_foreign_url_and_digests() {
    let sim = RunningSim::start(
        r#"
boshio:
  stemcells:
    - name: s
      versions:
        # A 1 TiB blob: hashing it would take far longer than the client's timeout, so this also proves
        # that fully overridden digests are never computed.
        - version: "2"
          regular: {size: 1099511627776, checksums: [sha256], url: "http://127.0.0.1:1/t.tgz", sha256: "AB12", md5: "cd"}
        - version: "1"
          regular: {size: 1000}
"#,
    );
    let client = crate::common::client(sim.ca_cert_path());
    let list: serde_json::Value =
        client.get(format!("{}/api/v1/stemcells/s", sim.url())).send().unwrap().json().unwrap();
    let overridden = &list[0]["regular"];
    assert_eq!(overridden["url"], "http://127.0.0.1:1/t.tgz");
    assert_eq!((&overridden["sha256"], &overridden["md5"]), (&"AB12".into(), &"cd".into()));
    assert!(overridden.get("sha1").is_none(), "neither listed nor overridden: {overridden}");
    assert_eq!(overridden["size"], 1099511627776u64);

    let default = &list[1]["regular"];
    let digests = sim.state().tarball_digests("s", "1", "regular", 1000);
    assert_eq!(default["url"], format!("{}/stemcells/s/1/regular/bosh-stemcell-1-s.tgz", sim.url()));
    assert_eq!((&default["md5"], &default["sha1"]), (&digests.md5.into(), &digests.sha1.into()));
    assert_eq!(default["sha256"], digests.sha256);
}
