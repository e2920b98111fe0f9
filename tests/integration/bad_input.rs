//! Bad input for every kind and step (issue 8): each request must exit 1 with nothing on stdout and
//! a message naming the field and what was expected. Every source points at a closed local port with
//! one HTTP attempt, so a validation that is missing shows up as a connection error, not a hang.

use crate::common::{SENTINEL, run_step};
use repave::protocol::Step;
use serde_json::{Value, json};

const CLOSED: &str = "https://127.0.0.1:9";

fn stemcell(extra: Value) -> Value {
    merge(json!({"kind": "stemcell", "name": "bosh-x", "api_url": CLOSED, "http": {"attempts": 1}}), extra)
}

fn fleet(extra: Value) -> Value {
    let base = json!({"kind": "fleet", "api_url": CLOSED, "client_id": "ci", "client_secret": SENTINEL,
                      "http": {"attempts": 1}});
    merge(base, extra)
}

fn opsman(extra: Value) -> Value {
    let base =
        json!({"kind": "opsman", "url": CLOSED, "client_id": "ci", "client_secret": SENTINEL, "http": {"attempts": 1}});
    merge(base, extra)
}

/// A director block for the fleet source, unreachable like everything here.
fn director() -> Value {
    json!({"director": {"url": CLOSED, "client": "ci", "client_secret": SENTINEL}})
}

fn kubernetes(extra: Value) -> Value {
    merge(json!({"kind": "kubernetes", "feed_url": CLOSED, "http": {"attempts": 1}}), extra)
}

fn merge(mut base: Value, extra: Value) -> Value {
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    base.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    base
}

/// (step, request, words the error must contain)
fn cases() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let v = json!({"version": "1.506"});
    let huge = "x".repeat(1 << 20);
    vec![
        ("check", json!({"source": stemcell(json!({"name": null}))}), vec!["source.name is required"]),
        ("check", json!({"source": stemcell(json!({"name": ""}))}), vec!["source.name", "empty"]),
        ("check", json!({"source": stemcell(json!({"name": huge}))}), vec!["source.name", "too long"]),
        ("check", json!({"source": stemcell(json!({"version_family": "abc"}))}), vec!["version_family"]),
        ("check", json!({"source": stemcell(json!({"constraint": ">=banana"}))}), vec!["constraint"]),
        ("check", json!({"source": stemcell(json!({"flavor": "lite"}))}), vec!["source.flavor", "light"]),
        ("check", json!({"source": stemcell(json!({"api_url": "bosh.io"}))}), vec!["api_url", "https://"]),
        ("check", json!({"source": stemcell(json!({"http": {"attempts": 0}}))}), vec!["http.attempts", "at least 1"]),
        ("check", json!({"source": stemcell(json!({"http": {"stall_timeout": "0s"}}))}), vec!["stall_timeout"]),
        (
            "in",
            json!({"source": stemcell(json!({})), "version": v, "params": {"parallel": 0}}),
            vec!["params.parallel"],
        ),
        (
            "in",
            json!({"source": stemcell(json!({})), "version": v, "params": {"parallel": 100000}}),
            vec!["params.parallel"],
        ),
        (
            "in",
            json!({"source": stemcell(json!({})), "version": v, "params": {"tarball": "yes"}}),
            vec!["params.tarball", "expected true or false", "got \"yes\""],
        ),
        ("in", json!({"source": stemcell(json!({})), "version": {"version": ""}}), vec!["version"]),
        ("out", json!({"source": stemcell(json!({})), "params": {}}), vec!["params.from is required"]),
        (
            "out",
            json!({"source": stemcell(json!({})), "params": {"from": "x"}}),
            vec!["source.director or source.opsman is required"],
        ),
        (
            "out",
            json!({"source": stemcell(json!({"opsman": {"client_id": "ci", "client_secret": SENTINEL}})), "params": {"from": "x"}}),
            vec!["source.opsman.url is required"],
        ),
        (
            "out",
            json!({"source": stemcell(json!({"opsman": {"url": CLOSED, "client_id": "ci", "client_secret": SENTINEL,
                   "username": "u", "password": SENTINEL}})), "params": {"from": "x"}}),
            vec!["source.opsman: set either", "not both"],
        ),
        (
            "out",
            json!({"source": stemcell(json!({"director": {"url": CLOSED, "client": "c", "client_secret": SENTINEL}})),
                   "params": {"from": "x", "products": ["cf"]}}),
            vec!["params.products", "need source.opsman"],
        ),
        (
            "out",
            json!({"source": stemcell(json!({"opsman": {"url": CLOSED, "password": SENTINEL}})), "params": {"from": "x"}}),
            vec!["source.opsman.username is required with source.opsman.password"],
        ),
        (
            "check",
            json!({"source": stemcell(json!({"auth": {"access_key": "", "secret_key": SENTINEL}}))}),
            vec!["source.auth.access_key", "empty"],
        ),
        (
            "check",
            json!({"source": stemcell(json!({"auth": {"access_key": "AK", "secret": SENTINEL}}))}),
            vec!["source.auth", "secret_key"],
        ),
        ("check", json!({"source": fleet(json!({"api_url": null}))}), vec!["source.api_url is required"]),
        ("check", json!({"source": fleet(json!({"client_secret": null}))}), vec!["client_secret"]),
        ("check", json!({"source": fleet(json!({"api_url": ""}))}), vec!["api_url"]),
        // Valid but unreachable: the derived UAA URL names the setting that changes it.
        ("check", json!({"source": fleet(json!({}))}), vec!["127.0.0.1:8443/oauth/token", "source.uaa_url"]),
        // Tokens never travel over plain http, even when the token endpoint itself is https.
        (
            "check",
            json!({"source": fleet(json!({"api_url": "http://127.0.0.1:9", "uaa_url": CLOSED}))}),
            vec!["plain http"],
        ),
        ("out", json!({"source": fleet(json!({})), "params": {"max_in_flight": 0}}), vec!["max_in_flight"]),
        ("out", json!({"source": fleet(json!({})), "params": {"max_in_flight": -1}}), vec!["max_in_flight"]),
        ("out", json!({"source": fleet(json!({})), "params": {"canaries": -2}}), vec!["canaries"]),
        (
            "out",
            json!({"source": fleet(json!({})), "params": {"canaries": -1}}),
            vec!["params.canaries: expected a number of clusters (0 or more) or a list of cluster names, got -1"],
        ),
        (
            "check",
            json!({"source": {"knid": "stemcell", "name": "bosh-x"}}),
            vec!["source.kind is required", "found the unknown field `knid`, did you mean `kind`?"],
        ),
        (
            "check",
            json!({"source": fleet(json!({"director": json!({"url": "https://d", "client_secret": SENTINEL}).to_string()}))}),
            vec!["source.director: expected an object, got a string", "stored as an object"],
        ),
        (
            "check",
            json!({"source": fleet(json!({"client_secret": 12345}))}),
            vec!["source.client_secret: expected a string, got a number"],
        ),
        ("out", json!({"source": fleet(json!({})), "params": {"on_failure": "explode"}}), vec!["on_failure", "stop"]),
        ("out", json!({"source": fleet(json!({})), "params": {"cluster_timeout": "forever"}}), vec!["cluster_timeout"]),
        ("out", json!({"source": fleet(json!({})), "params": {"window": "Sat 25:00-26:00 UTC"}}), vec!["window"]),
        (
            "out",
            json!({"source": fleet(json!({})), "params": {"window": "Sat 02:00-06:00 Mars/Olympus"}}),
            vec!["window", "zone"],
        ),
        ("out", json!({"source": fleet(json!({})), "params": {"prune": true}}), vec!["prune", "desired"]),
        (
            "out",
            json!({"source": fleet(json!({})), "params": {"desired": "missing/fleet.yml"}}),
            vec!["missing/fleet.yml"],
        ),
        ("out", json!({"source": fleet(json!({})), "params": {"clusters": ["[bad"]}}), vec!["clusters"]),
        (
            "out",
            json!({"source": fleet(json!({})), "params": {"clusters": [" "]}}),
            vec!["params.clusters", "is empty"],
        ),
        ("check", json!({"source": fleet(json!({"clusters": ["!"]}))}), vec!["source.clusters", "`!` is empty"]),
        (
            "check",
            json!({"source": fleet(json!({"opsman_product": "x"}))}),
            vec!["source.opsman_product", "need source.opsman"],
        ),
        (
            "check",
            json!({"source": fleet(json!({"opsman": {"url": "http://127.0.0.1:9", "client_id": "c", "client_secret": SENTINEL}}))}),
            vec!["source.opsman.url", "plain http"],
        ),
        (
            "check",
            json!({"source": opsman(json!({"client_id": null, "client_secret": null}))}),
            vec!["source needs credentials", "client_id", "username"],
        ),
        (
            "check",
            json!({"source": opsman(json!({"username": "admin", "password": SENTINEL}))}),
            vec!["source: set either", "not both"],
        ),
        (
            "check",
            json!({"source": opsman(json!({"client_id": null}))}),
            vec!["source.client_id is required with source.client_secret"],
        ),
        ("check", json!({"source": opsman(json!({"url": null}))}), vec!["source.url is required"]),
        ("check", json!({"source": opsman(json!({"url": "http://127.0.0.1:9"}))}), vec!["source.url", "plain http"]),
        ("check", json!({"source": opsman(json!({"url": "opsman"}))}), vec!["source.url", "not a URL"]),
        ("check", json!({"source": opsman(json!({"products": []}))}), vec!["source.products is empty"]),
        ("check", json!({"source": opsman(json!({"prodcts": ["x"]}))}), vec!["prodcts", "did you mean `products`"]),
        ("check", json!({"source": opsman(json!({"products": "cf"}))}), vec!["source.products", "expected a list"]),
        (
            "in",
            json!({"source": opsman(json!({})), "version": {"x": "1"}, "params": {"expires_within": "3 months"}}),
            vec!["params.expires_within", "d, w, m or y"],
        ),
        (
            "out",
            json!({"source": opsman(json!({})), "params": {"errands": {"cf": {"smoke-tests": true}}}}),
            vec!["params.errands.cf", "not one of source.products"],
        ),
        (
            "out",
            json!({"source": opsman(json!({})), "params": {"errands": {"pivotal-container-service": {"upgrade-all-service-instances": "yes"}}}}),
            vec!["params.errands", "true, false or \"default\""],
        ),
        ("out", json!({"source": opsman(json!({})), "params": {"timeout": "0s"}}), vec!["params.timeout", "zero"]),
        (
            "out",
            json!({"source": opsman(json!({})), "params": {"ignore_warning": true}}),
            vec!["did you mean `ignore_warnings`"],
        ),
        // Day-2 operations: refused before any change (no director is reachable at all).
        (
            "out",
            json!({"source": fleet(director()), "params": {"operation": "repave", "max_vm_age": "two weeks"}}),
            vec!["params.max_vm_age", "`two weeks` is not a duration", "14d"],
        ),
        (
            "out",
            json!({"source": fleet(director()), "params": {"operation": "repaev"}}),
            vec!["params.operation", "did you mean `repave`"],
        ),
        (
            "check",
            json!({"source": fleet(merge(director(), json!({"rotate": {"method": "POST", "path": "/v1/rotate"}})))}),
            vec!["source.rotate.path", "{name}"],
        ),
        (
            "out",
            json!({"source": fleet(director()), "params": {"operation": "rotate"}}),
            vec!["source.rotate", "does not publish", "no default"],
        ),
        (
            "out",
            json!({"source": fleet(director()), "params": {"operation": "repave", "recreate": {"max_in_flight": "lots"}}}),
            vec!["params.recreate.max_in_flight", "percentage"],
        ),
        ("out", json!({"source": fleet(json!({})), "params": {"operation": "repave"}}), vec!["source.director"]),
        ("check", json!({"source": fleet(json!({"max_vm_age": "14d"}))}), vec!["source.max_vm_age", "director"]),
        (
            "out",
            json!({"source": fleet(director()), "params": {"pre_check": "skp"}}),
            vec!["params.pre_check", "did you mean `skip`"],
        ),
        (
            "out",
            json!({"source": fleet(director()), "params": {"require_backup": {"dir": " "}}}),
            vec!["params.require_backup.dir"],
        ),
        (
            "out",
            json!({"source": fleet(director()), "params": {"operation": "repave", "warn_within": "30d"}}),
            vec!["params.warn_within", "rotate"],
        ),
        ("check", json!({"source": kubernetes(json!({"channel": "stable-x"}))}), vec!["channel"]),
        (
            "check",
            json!({"source": kubernetes(json!({"channel": "stable", "minor_min": "1.28"}))}),
            vec!["channel", "minor_min"],
        ),
        (
            "in",
            json!({"source": kubernetes(json!({})), "version": {"version": "1.30.1"}, "params": {"from_version": "banana"}}),
            vec!["from_version"],
        ),
        ("out", json!({"source": kubernetes(json!({})), "params": {}}), vec!["read-only"]),
    ]
}

#[test]
fn every_bad_request_fails_naming_the_field() {
    let mut problems = Vec::new();
    let cases = cases();
    for (step, request, needles) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let dir_arg = (*step != "check").then_some(dir.path());
        let out = run_step(step, &request.to_string(), dir_arg, &[]);
        let missing: Vec<_> = needles.iter().filter(|n| !out.stderr.contains(**n)).collect();
        if out.status != 1 || !out.stdout.is_empty() || !missing.is_empty() {
            let shown: String = request.to_string().chars().take(200).collect();
            let stderr: String = out.stderr.trim().chars().take(600).collect();
            problems.push(format!("{step} {shown}\n  exit {} missing {missing:?}\n  {stderr}", out.status));
        }
    }
    eprintln!("bad input: {} requests tried", cases.len());
    assert!(
        problems.is_empty(),
        "{} of {} bad requests were not refused properly:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

/// serde's own vocabulary, which users must never have to decode.
const JARGON: &[&str] = &[
    "invalid type",
    "invalid value",
    "invalid length",
    "untagged",
    "variant",
    "struct ",
    "usize",
    "u64",
    "u32",
    "i64",
    "nonzero",
    "sequence",
    "string or map",
    "map with a single key",
    "floating point",
    "unit value",
    "data did not match",
];

/// The fields `validate_config` lists for the object at `path` (e.g. `["director"]`) of `root`.
fn fields_at(step: Step, request: &Value, root: &str, path: &[String]) -> Vec<String> {
    let mut probe = request.clone();
    let mut at = &mut probe[root];
    for key in path {
        at = &mut at[key.as_str()];
    }
    if !at.is_object() {
        *at = json!({});
    }
    at["zzz_unknown"] = json!(1);
    let Err(err) = validate(step, &probe) else { return Vec::new() };
    let shown = std::iter::once(root.to_string()).chain(path.iter().cloned()).collect::<Vec<_>>().join(".");
    if !err.contains(&format!("unknown field `zzz_unknown` in {shown} ")) {
        return Vec::new();
    }
    let list = err.rsplit("(valid fields: ").next().unwrap_or("").trim_end_matches(')');
    list.split(", ").filter(|f| !f.is_empty()).map(str::to_string).collect()
}

fn validate(step: Step, request: &Value) -> Result<(), String> {
    let parsed = repave::protocol::parse_request(step, request.clone()).map_err(|e| format!("{e:#}"))?;
    repave::validate_config(step, &parsed).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// Every field of every kind and step, nested objects included (found by asking the parser for its
/// valid fields), fed a value of every JSON type: each refusal names the field and what it expected,
/// in the project's words — never serde's ("expected usize", "untagged enum", "invalid type").
#[test]
fn every_field_refuses_every_wrong_type_in_our_words() {
    let bases = [
        (Step::Check, json!({"source": stemcell(json!({}))})),
        (Step::In, json!({"source": stemcell(json!({})), "version": {"version": "1.506"}, "params": {}})),
        (
            Step::Out,
            json!({"source": stemcell(json!({"director": {"url": CLOSED, "client": "c", "client_secret": "s"}})), "params": {"from": "x"}}),
        ),
        (Step::Check, json!({"source": fleet(json!({}))})),
        (Step::In, json!({"source": fleet(json!({})), "version": {"digest": "x"}, "params": {}})),
        (Step::Out, json!({"source": fleet(json!({})), "params": {}})),
        (Step::Check, json!({"source": kubernetes(json!({}))})),
        (Step::In, json!({"source": kubernetes(json!({})), "version": {"version": "1.30.1"}, "params": {}})),
    ];
    let wrong = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!("x"),
        json!([]),
        json!(["x"]),
        json!({}),
        json!({"a": 1}),
    ];
    let (mut problems, mut tried) = (Vec::new(), 0);
    for (step, base) in &bases {
        for root in ["source", "params"] {
            if base.get(root).is_none() {
                continue;
            }
            let mut paths: Vec<Vec<String>> = fields_at(*step, base, root, &[]).into_iter().map(|f| vec![f]).collect();
            let nested: Vec<Vec<String>> = paths
                .iter()
                .flat_map(|p| fields_at(*step, base, root, p).into_iter().map(move |f| [p.clone(), vec![f]].concat()))
                .collect();
            paths.extend(nested);
            for path in &paths {
                for value in &wrong {
                    let mut request = base.clone();
                    let mut at = &mut request[root];
                    for key in &path[..path.len() - 1] {
                        at = &mut at[key.as_str()];
                    }
                    at[path.last().unwrap().as_str()] = value.clone();
                    tried += 1;
                    let Err(err) = validate(*step, &request) else { continue };
                    let jargon: Vec<_> = JARGON.iter().filter(|j| err.contains(**j)).collect();
                    if !jargon.is_empty() || !err.contains(path[0].as_str()) {
                        problems.push(format!("{} {root}.{} = {value}: {err}", step.name(), path.join(".")));
                    }
                }
            }
        }
    }
    eprintln!("wrong types: {tried} requests tried");
    assert!(tried > 500, "the field discovery found too little: {tried}");
    assert!(
        problems.is_empty(),
        "{} errors not in our words or not naming the field:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
