//! The simulated Ops Manager seen from a client: its answers have the shapes of `om`'s recorded fixtures, and it
//! behaves as the platform does where repave depends on it — a stemcell reaches the TKGI clusters only through the
//! tile and Apply Changes, the "Upgrade all clusters" errand upgrades every cluster one after another when on and
//! none when off, and a second Apply Changes is refused while one runs.

use std::time::{Duration, Instant};

use repave_sim::services::opsman::{OpsMan, TKGI, UPGRADE_ALL};
use repave_sim::testing::RunningSim;
use reqwest::StatusCode;
use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};

const JAMMY: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";

/// Three clusters on stemcell 1.505, a TKGI tile deployed on it, and a second tile left incomplete (so the
/// pre-deploy check has something to say).
fn scenario(extra: &str) -> String {
    format!(
        r#"
time_scale: 0.001
uaa:
  clients: [{{id: om, secret: om-secret, scopes: [opsman.admin, pks.clusters.admin]}}]
  users: [{{username: admin, password: admin-password, scopes: [opsman.admin, pks.clusters.admin]}}]
tkgi:
  platform_version: 1.19.2-build.10
  stemcell_name: {JAMMY}
  stemcell_version: "1.505"
  upgrade_secs: 200
  clusters:
    - {{name: c-1, pks_version: 1.19.2-build.10, stemcell: "1.505"}}
    - {{name: c-2, pks_version: 1.19.2-build.10, stemcell: "1.505"}}
    - {{name: c-3, pks_version: 1.19.2-build.10, stemcell: "1.505"}}
opsman:
  install_secs: 200
  products:
    - {{type: cf, version: 6.0.1-build.2, stemcells: ["{JAMMY}/1.505"], incomplete: true}}
  certificates:
    - {{issuer: /CN=opsmgr-bosh-dns-tls-ca, expires_in_days: 20, location: credhub, variable_path: /opsmgr/bosh_dns/tls_ca}}
    - {{issuer: /CN=later, expires_in_days: 400, product_type: {TKGI}, property_reference: .pivotal-container-service.pks_tls}}
{extra}
"#
    )
}

struct Api {
    sim: RunningSim,
    client: Client,
    token: String,
}

impl Api {
    fn start(extra: &str) -> Api {
        let sim = RunningSim::start(&scenario(extra));
        let client = crate::common::client(sim.ca_cert_path());
        let answer: Value = client
            .post(format!("{}/uaa/oauth/token", sim.url()))
            .basic_auth("opsman", Some(""))
            .form(&[("grant_type", "password"), ("username", "admin"), ("password", "admin-password")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let token = answer["access_token"].as_str().expect("a token").to_owned();
        Api { sim, client, token }
    }

    fn get(&self, path: &str) -> Value {
        let response = self.client.get(format!("{}{path}", self.sim.url())).bearer_auth(&self.token).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().unwrap()
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.sim.url());
        let response = self.client.request(method, url).bearer_auth(&self.token).json(&body).send().unwrap();
        (response.status(), response.json().unwrap_or(Value::Null))
    }

    fn import(&self, file: &str, floating: bool) -> (StatusCode, Value) {
        let part = multipart::Part::bytes(vec![7u8; 4096]).file_name(file.to_owned());
        let form = multipart::Form::new().part("stemcell[file]", part).text("stemcell[floating]", floating.to_string());
        let url = format!("{}/api/v0/stemcells", self.sim.url());
        let response = self.client.post(url).bearer_auth(&self.token).multipart(form).send().unwrap();
        (response.status(), response.json().unwrap())
    }

    fn ops(&self) -> &OpsMan {
        &self.sim.state().opsman
    }

    /// Polls the installation until it ends (bounded), as a client would.
    fn wait(&self, id: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.get(&format!("/api/v0/installations/{id}"))["status"].as_str().unwrap().to_owned();
            if status != "running" || Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stemcells(&self) -> Vec<String> {
        self.sim.state().fleet.views().into_iter().map(|c| c.stemcell).collect()
    }
}

/// `om`'s fixtures, as shapes: every key a fixture has, the sim's answer has, with the same JSON type (`null` in a
/// fixture means "any type": om's fixtures write errand states as text, the API doc as booleans). Arrays are
/// compared by their first elements when both have one. Values are om's or invented; only the shapes matter.
mod fixtures {
    /// om `api/info_service.go`.
    pub const INFO: &str = r#"{"info": {"version": "2.6.3"}}"#;
    /// om `network/oauth_client_test.go`.
    pub const TOKEN: &str = r#"{"access_token": "x", "token_type": "bearer", "expires_in": 3600}"#;
    /// om `api/diagnostic_service_test.go` (`post2_6Report`).
    pub const DIAGNOSTIC_REPORT: &str = r#"{"infrastructure_type": "azure",
        "available_stemcells": [{"filename": "f.tgz", "os": "ubuntu-trusty", "version": "3263.8"}],
        "added_products": {"deployed": [{"name": "p-bosh", "version": "1.8.8.0", "stemcells": []}],
                           "staged": [{"name": "p-bosh", "version": "1.8.8.0"}]}}"#;
    /// om `api/diagnostic_service_test.go` (`pre2_6Report`).
    pub const DIAGNOSTIC_REPORT_BEFORE_2_6: &str = r#"{"infrastructure_type": "azure", "stemcells": ["f.tgz"],
        "added_products": {"deployed": [{"name": "cf", "version": "1.8.8.0", "stemcell": "f.tgz"}], "staged": []}}"#;
    /// om `api/mutli_stemcell_service_test.go`.
    pub const ASSOCIATIONS: &str = r#"{"products": [{"guid": "g", "staged_stemcells": [{"os": "o", "version": "1"}],
        "identifier": "p", "available_stemcells": [{"os": "o", "version": "1"}],
        "required_stemcells": [{"os": "o", "version": "1"}]}]}"#;
    /// om `api/stemcell_service_test.go`.
    pub const ASSIGNMENTS: &str = r#"{"products": [{"guid": "g", "staged_stemcell_version": "1234.5",
        "identifier": "p", "available_stemcell_versions": ["1234.5", "1234.6"]}]}"#;
    /// om `api/helpers_test.go`.
    pub const STAGED_PRODUCTS: &str =
        r#"[{"installation_name": "cf-1", "guid": "cf-1", "type": "cf", "product_version": "1.10.0-build.177"}]"#;
    /// om `api/installations_service_test.go` (the running one).
    pub const INSTALLATIONS: &str = r#"{"installations": [{"user_name": "admin", "finished_at": null,
        "started_at": "2017-05-24T23:38:37.316Z", "status": "running", "id": 3}]}"#;
    /// om `api/installations_service_test.go`.
    pub const LOGS: &str = r#"{"logs": "some logs"}"#;
    /// om `api/installations_service.go` (`{"install": {"id": N}}`).
    pub const STARTED: &str = r#"{"install": {"id": 42}}"#;
    /// om `api/pending_changes_service_test.go`.
    pub const PENDING: &str = r#"{"product_changes": [{"guid": "product-123", "errands": [{"name": "e", "post_deploy": null}],
        "action": "install", "completeness_checks": {"configuration_complete": true, "stemcell_present": false,
        "configurable_properties_valid": true}}]}"#;
    /// om `api/errands_service_test.go`.
    pub const ERRANDS: &str = r#"{"errands": [{"post_deploy": null, "name": "first-errand"}]}"#;
    /// om `api/pre_deploy_check_service_test.go`.
    pub const PRE_DEPLOY_CHECK: &str = r#"{"pre_deploy_check": {"identifier": "p-bosh-guid", "complete": false,
        "network": {"assigned": true}, "availability_zone": {"assigned": false},
        "stemcells": [{"assigned": false, "required_stemcell_version": "250.2", "required_stemcell_os": "ubuntu-xenial"}],
        "properties": [{"name": ".properties.iaas_configuration.project", "type": null, "errors": ["can't be blank"]}],
        "resources": {"jobs": []}, "verifiers": []}}"#;
    /// om `api/expiring_certificates_service_test.go`.
    pub const CERTIFICATES: &str = r#"{"certificates": [{"issuer": "/CN=opsmgr-bosh-dns-tls-ca",
        "valid_from": "2018-08-10T21:07:37Z", "valid_until": "2022-08-09T21:07:37Z", "configurable": false,
        "property_reference": null, "property_type": null, "product_guid": null, "location": "credhub",
        "variable_path": "/opsmgr/bosh_dns/tls_ca"}]}"#;
}

/// Every way `answer` differs in shape from `fixture`, as `path: …` lines.
fn shape_differences(fixture: &Value, answer: &Value, path: &str) -> Vec<String> {
    match (fixture, answer) {
        (Value::Null, _) => Vec::new(),
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .flat_map(|(key, w)| match got.get(key) {
                Some(g) => shape_differences(w, g, &format!("{path}.{key}")),
                None => vec![format!("{path}.{key}: missing")],
            })
            .collect(),
        (Value::Array(want), Value::Array(got)) => match (want.first(), got.first()) {
            (Some(w), Some(g)) => shape_differences(w, g, &format!("{path}[0]")),
            _ => Vec::new(),
        },
        (w, g) if std::mem::discriminant(w) == std::mem::discriminant(g) => Vec::new(),
        (w, g) => vec![format!("{path}: {g} where om's fixture has {w}")],
    }
}

fn assert_shape(fixture: &str, answer: &Value, what: &str) {
    let fixture: Value = serde_json::from_str(fixture).unwrap();
    let differences = shape_differences(&fixture, answer, what);
    assert!(differences.is_empty(), "{what} differs from om's fixture:\n{}\n{answer:#}", differences.join("\n"));
}

#[test]
fn answers_have_the_shapes_of_om_fixtures() {
    let api = Api::start("");
    let tkgi = OpsMan::guid(TKGI);
    let cf = OpsMan::guid("cf");
    let info: Value = api.client.get(format!("{}/api/v0/info", api.sim.url())).send().unwrap().json().unwrap();
    assert_shape(fixtures::INFO, &info, "info (no token)");
    let token: Value = api
        .client
        .post(format!("{}/uaa/oauth/token", api.sim.url()))
        .basic_auth("om", Some("om-secret"))
        .form(&[("grant_type", "client_credentials"), ("token_format", "jwt")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_shape(fixtures::TOKEN, &token, "token");
    assert_shape(fixtures::DIAGNOSTIC_REPORT, &api.get("/api/v0/diagnostic_report"), "diagnostic_report");
    assert_shape(fixtures::ASSOCIATIONS, &api.get("/api/v0/stemcell_associations"), "stemcell_associations");
    assert_shape(fixtures::ASSIGNMENTS, &api.get("/api/v0/stemcell_assignments"), "stemcell_assignments");
    assert_shape(fixtures::STAGED_PRODUCTS, &api.get("/api/v0/staged/products"), "staged/products");
    assert_shape(fixtures::STAGED_PRODUCTS, &api.get("/api/v0/deployed/products"), "deployed/products");
    assert_shape(fixtures::PENDING, &api.get("/api/v0/staged/pending_changes"), "pending_changes");
    assert_shape(fixtures::ERRANDS, &api.get(&format!("/api/v0/staged/products/{tkgi}/errands")), "errands");
    let check = api.get(&format!("/api/v0/staged/products/{cf}/pre_deploy_check"));
    assert_shape(fixtures::PRE_DEPLOY_CHECK, &check, "pre_deploy_check");
    assert_eq!(check["pre_deploy_check"]["complete"], false, "the incomplete tile says so");
    assert_shape(fixtures::PRE_DEPLOY_CHECK, &api.get("/api/v0/staged/director/pre_deploy_check"), "director check");
    let certificates = api.get("/api/v0/deployed/certificates?expires_within=3m");
    assert_shape(fixtures::CERTIFICATES, &certificates, "certificates");
    assert_eq!(certificates["certificates"].as_array().unwrap().len(), 1, "only the one expiring within 3 months");

    let (status, started) =
        api.send(reqwest::Method::POST, "/api/v0/installations", json!({"deploy_products": [tkgi]}));
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_shape(fixtures::STARTED, &started, "installations POST");
    assert_shape(fixtures::INSTALLATIONS, &api.get("/api/v0/installations"), "installations");
    assert_shape(fixtures::LOGS, &api.get("/api/v0/installations/1/logs"), "logs");
}

#[test]
fn before_2_6_the_report_lists_files_and_there_are_no_associations() {
    let api = Api::start("  version: 2.5.9-build.3");
    assert_shape(fixtures::DIAGNOSTIC_REPORT_BEFORE_2_6, &api.get("/api/v0/diagnostic_report"), "old report");
    let response = api
        .client
        .get(format!("{}/api/v0/stemcell_associations", api.sim.url()))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_shape(fixtures::ASSIGNMENTS, &api.get("/api/v0/stemcell_assignments"), "assignments");
}

#[test]
fn imports_are_identified_by_file_name_and_deduplicated() {
    let api = Api::start("");
    let file = format!("bosh-stemcell-1.506-{}.tgz", JAMMY.trim_start_matches("bosh-"));
    let (status, first) = api.import(&file, false);
    assert_eq!(
        (status, &first["existing"], &first["stemcell"]["os"]),
        (StatusCode::OK, &json!(false), &json!("ubuntu-jammy"))
    );
    assert_eq!(api.import(&file, false).1["existing"], true);
    assert_eq!(api.sim.state().counter("opsman.stemcell_imports"), 1);
    assert_eq!(api.ops().staged_stemcells(TKGI), ["ubuntu-jammy/1.505"], "not floating: nothing assigned");
    let (status, refused) = api.import("stemcell.tgz", false);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused["errors"][0].as_str().unwrap().contains("not a valid stemcell"), "{refused}");
    let floating = format!("bosh-stemcell-1.507-{}.tgz", JAMMY.trim_start_matches("bosh-"));
    api.import(&floating, true);
    assert_eq!(api.ops().staged_stemcells(TKGI), ["ubuntu-jammy/1.507"], "floating: onto every tile of its OS");
}

/// Upload to the director alone: TKGI keeps building clusters on the tile's stemcell. Assign to the tile and
/// apply: now an upgrade lands on it.
#[test]
fn clusters_get_the_tiles_stemcell_never_one_only_uploaded_to_the_director() {
    let api = Api::start("");
    api.sim.state().director.add_stemcell(JAMMY, "1.506", "ubuntu-jammy");
    let upgrade = |name: &str| {
        let url = format!("/v1/clusters/{name}");
        let (status, _) = api.send(reqwest::Method::PATCH, &url, json!({"upgrade": true}));
        assert_eq!(status, StatusCode::ACCEPTED);
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.get(&url)["last_action_state"] == "in progress" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    upgrade("c-1");
    assert_eq!(api.stemcells()[0], "1.505", "the director's newer stemcell is not used");

    api.import(&format!("bosh-stemcell-1.506-{}.tgz", JAMMY.trim_start_matches("bosh-")), false);
    let tkgi = OpsMan::guid(TKGI);
    let assign =
        json!({"products": [{"guid": tkgi, "staged_stemcells": [{"os": "ubuntu-jammy", "version": "1.506"}]}]});
    assert_eq!(api.send(reqwest::Method::PATCH, "/api/v0/stemcell_associations", assign).0, StatusCode::OK);
    upgrade("c-1");
    assert_eq!(api.stemcells()[0], "1.505", "staged is not deployed: the broker has not changed yet");

    let off = json!({"deploy_products": [tkgi], "errands": {tkgi.clone(): {"run_post_deploy": {UPGRADE_ALL: false}}}});
    let (_, started) = api.send(reqwest::Method::POST, "/api/v0/installations", off);
    assert_eq!(api.wait(started["install"]["id"].as_u64().unwrap()), "succeeded");
    assert_eq!(api.stemcells(), ["1.505"; 3], "errand off: no cluster touched");
    assert_eq!(api.ops().deployed_stemcells(TKGI), ["ubuntu-jammy/1.506"]);
    upgrade("c-1");
    assert_eq!(api.stemcells()[0], "1.506", "now the broker deploys the tile's stemcell");
}

#[test]
fn the_errand_on_upgrades_every_cluster_serially_and_a_second_apply_is_refused() {
    let api = Api::start("");
    let tkgi = OpsMan::guid(TKGI);
    api.import(&format!("bosh-stemcell-1.506-{}.tgz", JAMMY.trim_start_matches("bosh-")), true);
    let (status, started) =
        api.send(reqwest::Method::POST, "/api/v0/installations", json!({"deploy_products": [tkgi]}));
    assert_eq!(status, StatusCode::OK, "{started}");
    let (busy, refusal) = api.send(reqwest::Method::POST, "/api/v0/installations", json!({}));
    assert_eq!(busy, StatusCode::CONFLICT, "ASSUMED status while one runs: {refusal}");
    assert!(refusal["errors"][0].as_str().unwrap().contains("already in progress"));
    assert_eq!(api.wait(started["install"]["id"].as_u64().unwrap()), "succeeded");
    assert_eq!(api.stemcells(), ["1.506"; 3], "the tile's errand setting (on) upgraded every cluster");
    let state = api.sim.state();
    assert_eq!((state.counter("opsman.errand_upgrades"), state.high_water("tkgi.upgrades_in_flight")), (3, 1));
    let log = api.get("/api/v0/installations/1/logs")["logs"].as_str().unwrap().to_owned();
    assert!(log.contains(&format!("Running errand {UPGRADE_ALL}")) && log.contains("c-3 upgraded"), "{log}");
    assert!(log.contains(&tkgi), "{log}");
}

#[test]
fn refusals_carry_ops_managers_errors() {
    let api = Api::start("  verifier_errors: [\"pks_api_hostname is not resolvable\"]\n  fail_installations: 1");
    let tkgi = OpsMan::guid(TKGI);
    let (status, body) = api.send(reqwest::Method::POST, "/api/v0/installations", json!({"deploy_products": [tkgi]}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0], "pks_api_hostname is not resolvable");
    let unknown = json!({"deploy_products": "none", "errands": {tkgi: {"run_post_deploy": {"no-such-errand": true}}}});
    let (status, body) = api.send(reqwest::Method::POST, "/api/v0/installations", unknown);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["errors"][0].as_str().unwrap().contains("no-such-errand"), "{body}");
    let (status, started) =
        api.send(reqwest::Method::POST, "/api/v0/installations", json!({"deploy_products": "none"}));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.wait(started["install"]["id"].as_u64().unwrap()), "failed", "the scripted failure");
    let log = api.get("/api/v0/installations/1/logs")["logs"].as_str().unwrap().to_owned();
    assert!(log.contains("Exited with 1."), "{log}");
}
