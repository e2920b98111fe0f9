//! The protocol rules every step obeys, exercised on the built binaries.

use crate::common::{SENTINEL, run_step};

#[test]
fn malformed_json_fails_cleanly() {
    run_step("check", "{", None, &[]).assert_fails_with(&["not valid JSON", "line"]);
}

#[test]
fn empty_stdin_is_named() {
    run_step("check", "", None, &[]).assert_fails_with(&["empty request"]);
    run_step("check", "  \n", None, &[]).assert_fails_with(&["empty request"]);
}

#[test]
fn request_must_be_an_object() {
    run_step("check", "[]", None, &[]).assert_fails_with(&["must be a JSON object", "an array"]);
    run_step("check", r#"{"source": 3}"#, None, &[]).assert_fails_with(&["`source` must be an object"]);
}

#[test]
fn missing_kind_lists_the_kinds() {
    run_step("check", r#"{"source": {}}"#, None, &[]).assert_fails_with(&[
        "source.kind is required",
        "`stemcell`",
        "`fleet`",
    ]);
    run_step("check", r#"{"source": null}"#, None, &[]).assert_fails_with(&["source.kind is required"]);
    run_step("check", r#"{"source": {"kind": "flet"}}"#, None, &[]).assert_fails_with(&["did you mean `fleet`"]);
}

#[test]
fn unknown_key_is_named_with_a_suggestion() {
    let out = run_step("check", r#"{"source":{"kind":"stemcell","nmae":"x"}}"#, None, &[]);
    out.assert_fails_with(&["unknown field `nmae`", "did you mean `name`?"]);
    let out = run_step("check", r#"{"source":{"kind":"stemcell","name":"x","verison_family":"1.latest"}}"#, None, &[]);
    out.assert_fails_with(&["did you mean `version_family`?"]);
}

#[test]
fn unknown_nested_key_names_its_path() {
    let req = r#"{"source":{"kind":"stemcell","name":"x","director":{"url":"u","client":"c","client_secret":"long-enough-secret","clinet":1}}}"#;
    run_step("check", req, None, &[]).assert_fails_with(&["in source.director", "did you mean `client`?"]);
}

#[test]
fn wrong_type_names_path_and_expected_type() {
    let req = r#"{"source":{"kind":"stemcell","name":"x","force_regular":"yes"}}"#;
    run_step("check", req, None, &[])
        .assert_fails_with(&["source.force_regular", "expected true or false, got \"yes\""]);
    let req = r#"{"source":{"kind":"stemcell","name":"x","http":{"attempts":"many"}}}"#;
    run_step("check", req, None, &[])
        .assert_fails_with(&["source.http.attempts", "expected a whole number, at least 1, got \"many\""]);
}

#[test]
fn version_values_must_be_strings() {
    let req = r#"{"source":{"kind":"stemcell","name":"x"},"version":{"version":1.506}}"#;
    run_step("check", req, None, &[]).assert_fails_with(&["version.version is a number", "must be strings"]);
}

#[test]
fn unexpected_top_level_key() {
    let req = r#"{"source":{"kind":"stemcell","name":"x"},"params":{}}"#;
    run_step("check", req, None, &[]).assert_fails_with(&["unexpected top-level key `params`"]);
}

#[test]
fn in_and_out_need_a_directory() {
    let req = r#"{"source":{"kind":"stemcell","name":"x"},"version":{"version":"1.1"}}"#;
    run_step("in", req, None, &[]).assert_fails_with(&["missing directory argument", "/opt/resource/in DIR"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    run_step("in", req, Some(file.path()), &[]).assert_fails_with(&["is not an existing directory"]);
    let req = r#"{"source":{"kind":"stemcell","name":"x"},"params":{"from":"x"}}"#;
    run_step("out", req, None, &[]).assert_fails_with(&["/opt/resource/out DIR"]);
}

#[test]
fn in_requires_a_version() {
    let dir = tempfile::tempdir().unwrap();
    run_step("in", r#"{"source":{"kind":"stemcell","name":"x"}}"#, Some(dir.path()), &[])
        .assert_fails_with(&["has no `version`"]);
}

/// A sentinel secret fed through every error path built so far never reaches any output: not when a
/// secret is quoted by a type error, not in unknown-key errors, not in nested secret objects.
#[test]
fn secrets_are_never_echoed() {
    let s = SENTINEL;
    let requests = [
        format!(r#"{{"source":{{"kind":"stemcell","name":"x","force_regular":"{s}","password":"{s}"}}}}"#),
        format!(
            r#"{{"source":{{"kind":"stemcell","name":"x","director":{{"url":"u","client":"c","client_secret":"{s}","ca_cert":7}}}}}}"#
        ),
        format!(r#"{{"source":{{"kind":"stemcell","name":"{s}","token":"{s}","flavor":"{s}"}}}}"#),
        format!(r#"{{"source":{{"kind":"stemcell","{s}":1,"private_key":"{s}"}}}}"#),
        format!(r#"{{"source":{{"kind":"{s}","secret":{{"nested":["{s}"]}}}}}}"#),
        format!(
            r#"{{"source":{{"kind":"stemcell","name":"x","client_secret":"{s}"}},"version":{{"version":"{s}","n":2}}}}"#
        ),
    ];
    for request in &requests {
        let out = run_step("check", request, None, &[]);
        assert_eq!(out.status, 1, "{request}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}

/// Secrets quoted inside a key name can only be redacted when the key's value is itself secret, so
/// the unknown-key error must still read well with a redacted name.
#[test]
fn redaction_marks_the_spot() {
    let req = format!(
        r#"{{"source":{{"kind":"stemcell","name":"x","force_regular":"{SENTINEL}","password":"{SENTINEL}"}}}}"#
    );
    run_step("check", &req, None, &[]).assert_fails_with(&["source.force_regular", "\"***\""]);
}
