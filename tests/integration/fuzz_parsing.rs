//! Property-based fuzzing of everything that parses untrusted input, bounded so it runs in CI: request
//! JSON, typed configs, durations, redaction, request signing. Properties: never panic; errors are errors (no silent
//! defaults for garbage); a registered secret never survives redaction.

use proptest::prelude::*;
use repave::protocol::{self, Request, Step};
use repave::redact::Secrets;
use repave::versions::stemcell::{Constraint, Family, StemcellVersion, window};
use serde_json::{Map, Value, json};

/// Arbitrary JSON values, biased towards the keys repave knows so parsing reaches deep code paths.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("kind".to_string()),
        Just("name".to_string()),
        Just("source".to_string()),
        Just("params".to_string()),
        Just("version".to_string()),
        Just("director".to_string()),
        Just("http".to_string()),
        Just("flavor".to_string()),
        Just("client_secret".to_string()),
        "[a-z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        prop_oneof![Just("stemcell".to_string()), Just("fleet".to_string()), Just("30s".to_string()), ".{0,20}"]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn steps() -> impl Strategy<Value = Step> {
    prop_oneof![Just(Step::Check), Just(Step::In), Just(Step::Out)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(json) = protocol::parse_json(&bytes) {
            let _ = protocol::parse_request(Step::Check, json);
        }
    }

    #[test]
    fn arbitrary_requests_never_panic(step in steps(), value in json_value()) {
        if let Ok(request) = protocol::parse_request(step, value) {
            let _ = repave::validate_config(step, &request);
        }
    }

    #[test]
    fn arbitrary_stemcell_sources_never_panic(step in steps(), extra in prop::collection::vec(("[a-z_]{1,16}", json_value()), 0..5)) {
        let mut source: Map<String, Value> = extra.into_iter().collect();
        source.insert("kind".into(), json!("stemcell"));
        let request = Request { source, params: Map::new(), version: None };
        let _ = repave::validate_config(step, &request);
    }

    #[test]
    fn durations_never_panic(text in ".{0,24}") {
        let _ = repave::config::parse_duration(&text);
    }

    #[test]
    fn duration_round_trip(secs in 0u64..1_000_000) {
        let text = format!("{}h{}m{}s", secs / 3600, secs / 60 % 60, secs % 60);
        prop_assert_eq!(repave::config::parse_duration(&text).unwrap().as_secs(), secs);
    }

    #[test]
    fn suggestions_never_panic(bad in ".{0,30}", candidates in prop::collection::vec(".{0,30}", 0..8)) {
        let _ = repave::suggest::suggestion(&bad, candidates.iter().map(String::as_str));
    }

    #[test]
    fn a_registered_secret_never_survives_redaction(secret in "[^*]{1,24}", before in ".{0,40}", after in ".{0,40}") {
        let secrets = Secrets::default();
        secrets.collect(&json!({"client_secret": secret.clone()}));
        let redacted = secrets.redact(&format!("{before}{secret}{after}"));
        prop_assert!(!redacted.contains(&secret), "{redacted}");
    }
}

/// Dotted numbers compare as numbers with missing parts as 0 (`1.10` > `1.9`, `621` == `621.0`).
fn numeric_key(parts: &[u64]) -> Vec<u64> {
    let mut key = parts.to_vec();
    while key.last() == Some(&0) {
        key.pop();
    }
    key
}

fn dotted(parts: &[u64]) -> String {
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn stemcell_version_parsing_never_panics(text in ".{0,24}") {
        let _ = StemcellVersion::parse(&text);
        let _ = Family::parse(&text);
        let _ = Constraint::parse(&text);
    }

    #[test]
    fn stemcell_versions_order_numerically(a in prop::collection::vec(0u64..2000, 1..4), b in prop::collection::vec(0u64..2000, 1..4)) {
        let (va, vb) = (StemcellVersion::parse(&dotted(&a)).unwrap(), StemcellVersion::parse(&dotted(&b)).unwrap());
        prop_assert_eq!(va.cmp(&vb), numeric_key(&a).cmp(&numeric_key(&b)));
    }

    #[test]
    fn the_check_window_is_sorted_and_starts_at_the_current_version(
        all in prop::collection::vec(prop::collection::vec(0u64..50, 1..3), 1..12),
        pick in any::<prop::sample::Index>(),
        known in any::<bool>(),
    ) {
        let versions: Vec<StemcellVersion> = all.iter().map(|p| StemcellVersion::parse(&dotted(p)).unwrap()).collect();
        let current = known.then(|| versions[pick.index(versions.len())].raw.clone());
        let out = window(versions.clone(), current.as_deref());
        prop_assert!(out.windows(2).all(|w| w[0] <= w[1]), "not oldest first");
        let newest = versions.iter().max().unwrap();
        prop_assert!(out.last().is_some_and(|v| v == newest), "the newest version must be last");
        match current {
            Some(c) => prop_assert!(out.iter().any(|v| v.raw == c), "the current version must be included"),
            None => prop_assert_eq!(out.len(), 1),
        }
    }

    #[test]
    fn fleet_files_never_panic_and_errors_name_the_file(text in "(clusters:|waves:|canaries: -?[0-9]|clusters: \\[\\[a\\]\\]|  - name: [a-z]{1,5}|    plan: small|    workers: [0-9-]{1,3}|    wave: [a-z]{1,4}|hold: true|max_in_flight: [0-9]|window: .{0,12}|[ :\\-\\[\\]{}a-z0-9]{0,10}|\n){0,24}") {
        if let Err(e) = repave::fleet::desired::parse(&text, "repo/fleet.yml") {
            let message = format!("{e:#}");
            prop_assert!(message.contains("repo/fleet.yml"), "{}", message);
            for jargon in ["invalid type", "invalid value", "invalid length", "untagged", "usize", "u64"] {
                prop_assert!(!message.contains(jargon), "serde's words in: {}", message);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Tarball URLs come from a mirror's API: any path or query must sign without a panic, give
    /// ASCII headers, and presign to a URL that parses back with the signature last.
    #[test]
    fn any_tarball_url_signs_and_presigns(segments in prop::collection::vec(".{0,12}", 1..4), query in "[a-z=&%0-9+]{0,16}") {
        let mut url = reqwest::Url::parse("https://mirror.example:9000/").unwrap();
        url.path_segments_mut().unwrap().extend(&segments);
        url.set_query(Some(&query).filter(|q| !q.is_empty()).map(|q| q.as_str()));
        let keys = repave::sigv4::Keys { access_key: "AK".into(), secret_key: "SK".into(), region: "us-east-1".into() };
        let now = jiff::Timestamp::from_second(1_795_516_072).unwrap();
        let headers = repave::sigv4::sign(&keys, &reqwest::Method::GET, &url, now);
        prop_assert!(headers["authorization"].to_str().is_ok());
        let (presigned, signature) = repave::sigv4::presign(&keys, &url, now, std::time::Duration::from_secs(60));
        prop_assert!(reqwest::Url::parse(&presigned).is_ok(), "{presigned}");
        let tail = format!("&X-Amz-Signature={signature}");
        prop_assert!(presigned.ends_with(&tail) && signature.len() == 64, "{}", presigned);
    }
}

/// Regression inputs found by fuzzing or by hand are kept here so they run forever.
#[test]
fn regression_cases() {
    for input in
        [&b"\xff\xfe"[..], b"{\"source\":{\"kind\":\"stemcell\",\"name\":\"\\ud800\"}}", b"[[[[[[[[[[[[[[[[[[[[[[[[[["]
    {
        if let Ok(json) = protocol::parse_json(input) {
            let _ = protocol::parse_request(Step::Check, json);
        }
    }
    for text in ["1e308h", "99999999999999999999s", ".s", "1..5m", "0.0000000001ms"] {
        let _ = repave::config::parse_duration(text);
    }
}
