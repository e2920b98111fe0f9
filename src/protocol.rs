//! The Concourse resource protocol: request and response shapes, strict parsing, the step directory.
//!
//! This is the only module that knows the JSON shapes Concourse exchanges with `check`, `in` and
//! `out` (see docs/facts/concourse.md): one JSON object on stdin, one JSON document on stdout.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A version is a flat map of string to string; Concourse rejects anything else.
pub type Version = BTreeMap<String, String>;

/// Which of the three scripts is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Check,
    In,
    Out,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Check => "check",
            Step::In => "in",
            Step::Out => "out",
        }
    }

    /// The step a program name stands for (`/opt/resource/in` → `In`), for the multi-call binary.
    pub fn from_program(path: &str) -> Option<Step> {
        match path.rsplit('/').next()? {
            "check" => Some(Step::Check),
            "in" => Some(Step::In),
            "out" => Some(Step::Out),
            _ => None,
        }
    }

    /// The top-level keys Concourse sends for this step.
    fn allowed_keys(self) -> &'static [&'static str] {
        match self {
            Step::Check => &["source", "version"],
            Step::In => &["source", "params", "version"],
            Step::Out => &["source", "params"],
        }
    }
}

/// A parsed request; `source` and `params` stay untyped here and are typed per kind in `config`.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Map<String, Value>,
    pub params: Map<String, Value>,
    pub version: Option<Version>,
}

/// One `{name, value}` pair shown in the Concourse UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MetadataField {
    pub name: String,
    pub value: String,
}

impl MetadataField {
    pub(crate) fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        MetadataField { name: name.into(), value: value.into() }
    }
}

/// The answer of `in` and `out`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepResponse {
    pub version: Version,
    pub metadata: Vec<MetadataField>,
}

/// Parses stdin into JSON. Kept separate from [`parse_request`] so secrets can be registered from the
/// raw document before any typed parsing error could quote them.
pub fn parse_json(input: &[u8]) -> Result<Value> {
    if input.iter().all(u8::is_ascii_whitespace) {
        bail!("empty request on stdin: expected one JSON object such as {{\"source\":{{\"kind\":\"stemcell\",…}}}}");
    }
    serde_json::from_slice(input).context("request on stdin is not valid JSON")
}

/// Checks the request's top-level shape for `step`.
pub fn parse_request(step: Step, json: Value) -> Result<Request> {
    let Value::Object(mut top) = json else {
        bail!("request on stdin must be a JSON object, got {}", type_name(&json));
    };
    if let Some(key) = top.keys().find(|k| !step.allowed_keys().contains(&k.as_str())) {
        bail!(
            "unexpected top-level key `{key}` in the {} request (expected only {})",
            step.name(),
            step.allowed_keys().iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        );
    }
    let source = object_or_empty(top.remove("source"), "source")?;
    let params = object_or_empty(top.remove("params"), "params")?;
    let version = match top.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_version(&v).context("invalid `version` in the request")?),
    };
    if step == Step::In && version.is_none() {
        bail!("the in request has no `version`: Concourse always sends the version to fetch");
    }
    Ok(Request { source, params, version })
}

/// A version must be an object whose values are all strings.
pub(crate) fn parse_version(value: &Value) -> Result<Version> {
    let Value::Object(map) = value else {
        bail!("expected an object of string values, got {}", type_name(value));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => bail!(
                "version.{k} is {}, but version values must be strings (Concourse versions map strings to strings)",
                type_name(other)
            ),
        })
        .collect()
}

fn object_or_empty(value: Option<Value>, field: &str) -> Result<Map<String, Value>> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => bail!("`{field}` must be an object, got {}", type_name(&other)),
    }
}

/// A short description of a JSON value's type for error messages (never its content).
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `in` and `out` get their working directory as the only argument; it must exist.
pub(crate) fn step_dir(step: Step, args: &[String]) -> Result<PathBuf> {
    let Some(dir) = args.get(1) else {
        bail!(
            "missing directory argument: Concourse runs `/opt/resource/{} DIR` (usage: {} DIR < request.json)",
            step.name(),
            step.name()
        );
    };
    let path = Path::new(dir);
    if !path.is_dir() {
        bail!("directory argument `{dir}` is not an existing directory");
    }
    Ok(path.to_path_buf())
}

/// Renders a check answer: versions oldest first.
pub(crate) fn render_check(versions: &[Version]) -> Result<String> {
    Ok(serde_json::to_string(versions)?)
}

/// Renders an in/out answer.
pub(crate) fn render_step(response: &StepResponse) -> Result<String> {
    Ok(serde_json::to_string(response)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn program_names() {
        assert_eq!(Step::from_program("/opt/resource/in"), Some(Step::In));
        assert_eq!(Step::from_program("check"), Some(Step::Check));
        assert_eq!(Step::from_program("/usr/bin/repave"), None);
    }

    #[test]
    fn version_values_must_be_strings() {
        let err = parse_version(&json!({"version": 12})).unwrap_err();
        assert!(err.to_string().contains("version.version is a number"), "{err}");
        assert_eq!(parse_version(&json!({"v": "1"})).unwrap()["v"], "1");
    }

    #[test]
    fn top_level_keys_are_strict_per_step() {
        let err = parse_request(Step::Out, json!({"source": {}, "version": {}})).unwrap_err();
        assert!(err.to_string().contains("`version`"), "{err}");
        assert!(parse_request(Step::In, json!({"source": null})).is_err());
        let req = parse_request(Step::Check, json!({"source": null})).unwrap();
        assert!(req.source.is_empty() && req.version.is_none());
    }

    #[test]
    fn empty_and_malformed_json() {
        assert!(parse_json(b"  \n").unwrap_err().to_string().contains("empty request"));
        assert!(parse_json(b"{").unwrap_err().to_string().contains("not valid JSON"));
    }
}
