//! Property-based fuzzing of everything that parses untrusted input, bounded so it runs in CI: request
//! JSON, typed configs, durations, redaction. Properties: never panic; errors are errors (no silent
//! defaults for garbage); a registered secret never survives redaction.

use proptest::prelude::*;
use repave::protocol::{self, Request, Step};
use repave::redact::Secrets;
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
        let _ = repave::config::suggestion(&bad, candidates.iter().map(String::as_str));
    }

    #[test]
    fn a_registered_secret_never_survives_redaction(secret in "[^*]{1,24}", before in ".{0,40}", after in ".{0,40}") {
        let secrets = Secrets::default();
        secrets.collect(&json!({"client_secret": secret.clone()}));
        let redacted = secrets.redact(&format!("{before}{secret}{after}"));
        prop_assert!(!redacted.contains(&secret), "{redacted}");
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
