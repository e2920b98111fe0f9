//! Hostile servers against the built binaries (issue 15): redirects that lead credentials or
//! downloads away from https. Every client of every kind goes through one redirect rule
//! (`src/http.rs`), so each test points a different client at it: the UAA token request (both
//! grants, every redirect status), bearer-token API calls, the bosh.io list, a tarball, and the
//! director. A plain-http [`Trap`] stands where the redirects point; nothing may ever reach it.

use crate::common::fleet::{names, world};
use crate::common::{SENTINEL, StepOutput, Trap, run_step};
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};

const NAME: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";

fn redirect(code: u16, location: String) -> FaultAction {
    FaultAction::Redirect { code, location }
}

fn ca(sim: &RunningSim) -> String {
    std::fs::read_to_string(sim.ca_cert_path()).unwrap()
}

/// A fleet with a client and a user whose secrets are the sentinel.
fn fleet_sim() -> RunningSim {
    let base = world(&names("c", 2).iter().map(String::as_str).collect::<Vec<_>>(), 100, "");
    let users = format!("  users: [{{username: ops, password: {SENTINEL}, scopes: [pks.clusters.admin]}}]\n");
    RunningSim::start(&base.replace("  token_ttl_secs:", &format!("{users}  token_ttl_secs:")))
}

fn fleet_check(sim: &RunningSim, login: Value) -> StepOutput {
    let mut source = json!({"kind": "fleet", "api_url": sim.url(), "uaa_url": sim.url(), "ca_cert": ca(sim),
                            "http": {"attempts": 1}});
    source.as_object_mut().unwrap().extend(login.as_object().unwrap().clone());
    run_step("check", &json!({"source": source}).to_string(), None, &[])
}

fn logins() -> [Value; 2] {
    [json!({"client_id": "repave", "client_secret": SENTINEL}), json!({"username": "ops", "password": SENTINEL})]
}

#[test]
fn a_token_request_redirected_to_plain_http_never_leaves_https() {
    let trap = Trap::start();
    for (code, login) in [301, 302, 303, 307, 308].into_iter().zip(logins().into_iter().cycle()) {
        let sim = fleet_sim();
        sim.add_fault(FaultRule::new("/oauth/token", redirect(code, trap.url("/oauth/token"))));
        let out = fleet_check(&sim, login.clone());
        out.assert_fails_with(&["refusing to follow a redirect", "/oauth/token", "leaves https"]);
        assert!(
            trap.hits().is_empty(),
            "{code} with {login}: the password grant reached plain http: {:?}",
            trap.hits()
        );
    }
}

#[test]
fn credentials_follow_no_redirect_to_another_https_server() {
    let elsewhere = RunningSim::start("");
    for login in logins() {
        let sim = fleet_sim();
        let location = format!("{}/oauth/token", elsewhere.url());
        sim.add_fault(FaultRule::new("/oauth/token", redirect(307, location)));
        let out = fleet_check(&sim, login);
        out.assert_fails_with(&["refusing to follow a redirect", "carries credentials"]);
    }
    assert!(elsewhere.requests().is_empty(), "the other server was reached: {:?}", elsewhere.requests());
}

#[test]
fn api_calls_with_a_token_are_not_redirected_anywhere() {
    let trap = Trap::start();
    let elsewhere = RunningSim::start("");
    for location in [trap.url("/v1/clusters"), format!("{}/v1/clusters", elsewhere.url())] {
        let sim = fleet_sim();
        sim.add_fault(FaultRule::new("/v1/clusters", redirect(307, location)).method("GET"));
        let out = fleet_check(&sim, logins()[0].clone());
        out.assert_fails_with(&["refusing to follow a redirect", "/v1/clusters"]);
    }
    assert!(trap.hits().is_empty(), "a bearer token reached plain http: {:?}", trap.hits());
    assert!(elsewhere.requests().is_empty(), "a bearer token reached another server: {:?}", elsewhere.requests());
}

fn stemcell_scenario() -> String {
    format!(
        "uaa:\n  clients: [{{id: repave, secret: {SENTINEL}, scopes: [bosh.admin]}}]\nboshio:\n  stemcells:\n    - name: {NAME}\n      versions:\n        - {{version: \"1.506\", regular: {{size: 300000}}}}\n"
    )
}

fn stemcell_source(sim: &RunningSim, ca_cert: String) -> Value {
    json!({"kind": "stemcell", "name": NAME, "api_url": sim.url(), "flavor": "regular", "ca_cert": ca_cert,
           "http": {"attempts": 1},
           "director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}})
}

#[test]
fn the_stemcell_list_is_never_followed_down_to_http() {
    let trap = Trap::start();
    let sim = RunningSim::start(&stemcell_scenario());
    sim.add_fault(FaultRule::new("/api/v1/stemcells/*", redirect(302, trap.url("/api/v1/stemcells/x"))));
    let request = json!({"source": stemcell_source(&sim, ca(&sim))});
    let out = run_step("check", &request.to_string(), None, &[]);
    out.assert_fails_with(&["refusing to follow a redirect", "leaves https"]);
    assert!(trap.hits().is_empty(), "{:?}", trap.hits());
}

#[test]
fn a_tarball_is_never_followed_down_to_http_but_may_move_to_another_https_server() {
    let trap = Trap::start();
    let sim = RunningSim::start(&stemcell_scenario());
    sim.add_fault(FaultRule::new("/stemcells/*", redirect(302, trap.url("/stemcell.tgz"))));
    let get = |ca_cert: String| {
        let dir = tempfile::tempdir().unwrap();
        let request = json!({"source": stemcell_source(&sim, ca_cert), "version": {"version": "1.506"}});
        (run_step("in", &request.to_string(), Some(dir.path()), &[]), dir)
    };
    let (out, dir) = get(ca(&sim));
    out.assert_fails_with(&["refusing to follow a redirect", "leaves https"]);
    assert!(trap.hits().is_empty(), "{:?}", trap.hits());
    assert!(!dir.path().join("stemcell.tgz").exists());

    // A mirror that hands the bytes to a CDN over https is fine: the checksum still comes from the list.
    let cdn = RunningSim::start(&stemcell_scenario());
    let path = format!("/stemcells/{NAME}/1.506/regular/bosh-stemcell-1.506-{NAME}.tgz");
    sim.clear_faults();
    sim.add_fault(FaultRule::new("/stemcells/*", redirect(302, format!("{}{path}", cdn.url()))));
    let (out, dir) = get(format!("{}{}", ca(&sim), ca(&cdn)));
    out.json();
    assert!(dir.path().join("stemcell.tgz").exists());
    assert!(cdn.requests().iter().any(|r| r.path == path), "the CDN served it");
}

#[test]
fn the_director_follows_no_redirect_at_all() {
    let trap = Trap::start();
    let sim = RunningSim::start(&stemcell_scenario());
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("stemcell")).unwrap();
    for (file, text) in [("version", "1.506"), ("url", "https://bosh.io/x.tgz")] {
        std::fs::write(work.path().join("stemcell").join(file), text).unwrap();
    }
    for path in ["/info", "/stemcells"] {
        sim.clear_faults();
        sim.add_fault(FaultRule::new(path, redirect(307, trap.url(path))).method("GET"));
        let request = json!({"source": stemcell_source(&sim, ca(&sim)), "params": {"from": "stemcell"}});
        let out = run_step("out", &request.to_string(), Some(work.path()), &[]);
        out.assert_fails_with(&["307"]);
    }
    assert!(trap.hits().is_empty(), "{:?}", trap.hits());
}

/// `http.request_timeout` bounds every API call, not only some: a TKGI call and a director call made
/// after login, each stalled longer than the deadline (and shorter than the stall timeout, which
/// alone would let them through), time out. Only the stalled request has the short deadline's effect.
#[test]
fn request_timeout_bounds_tkgi_and_director_calls_too() {
    let stall = || FaultAction::Stall { after_bytes: None, ms: 20_000 };
    let sim = fleet_sim();
    sim.add_fault(FaultRule::new("/v1/clusters", stall()).method("GET"));
    let mut source = json!({"kind": "fleet", "api_url": sim.url(), "uaa_url": sim.url(), "ca_cert": ca(&sim),
                            "client_id": "repave", "client_secret": SENTINEL,
                            "http": {"attempts": 1, "request_timeout": "1s"}});
    let out = run_step("check", &json!({"source": source.take()}).to_string(), None, &[]);
    out.assert_fails_with(&["GET", "/v1/clusters", "timed out"]);

    let sim = RunningSim::start(&stemcell_scenario());
    sim.add_fault(FaultRule::new("/stemcells", stall()).method("GET"));
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("stemcell")).unwrap();
    for (file, text) in [("version", "1.506"), ("url", "https://bosh.io/x.tgz")] {
        std::fs::write(work.path().join("stemcell").join(file), text).unwrap();
    }
    let mut source = stemcell_source(&sim, ca(&sim));
    source["http"] = json!({"attempts": 1, "request_timeout": "1s"});
    let request = json!({"source": source, "params": {"from": "stemcell"}});
    let out = run_step("out", &request.to_string(), Some(work.path()), &[]);
    out.assert_fails_with(&["GET", "/stemcells", "timed out"]);
}
