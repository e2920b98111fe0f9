//! Step shapes (after Concourse's step validator, docs/facts/concourse.md): which step a mapping is, the fields
//! each step and modifier allows, and the per-step rules. Gets and puts are recorded for the cross-cutting rules.

use super::{Expect, Sink, Use, kind_of, task};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeSet;

/// Step types, in the order Concourse tries them.
const STEP_TYPES: &[&str] = &["get", "put", "task", "set_pipeline", "load_var", "in_parallel", "do", "try"];
/// Hooks: each holds one step.
pub const HOOKS: &[&str] = &["on_success", "on_failure", "on_abort", "on_error", "ensure"];
/// Modifiers every step accepts.
const MODIFIERS: &[&str] = &["timeout", "attempts", "tags", "across"];

fn own_fields(step: &str) -> &'static [&'static str] {
    match step {
        "get" => &["resource", "passed", "params", "trigger", "version"],
        "put" => &["resource", "inputs", "params", "get_params", "no_get"],
        "task" => &["config", "file", "image", "privileged", "vars", "params", "input_mapping", "output_mapping"],
        "set_pipeline" => &["file", "vars", "var_files", "team", "instance_vars"],
        "load_var" => &["file", "format", "reveal"],
        _ => &[],
    }
}

/// Walks one job's steps, reporting into `sink` and collecting gets and puts.
pub(crate) struct Walker<'s> {
    pub sink: &'s mut Sink,
    pub uses: Vec<super::Use>,
    get_names: BTreeSet<String>,
}

impl<'s> Walker<'s> {
    pub fn new(sink: &'s mut Sink) -> Walker<'s> {
        Walker { sink, uses: Vec::new(), get_names: BTreeSet::new() }
    }

    pub fn step(&mut self, at: &str, value: &Value) {
        let Some(map) = self.sink.mapping(at, "a step", value) else { return };
        let types: Vec<&str> = STEP_TYPES.iter().copied().filter(|t| map.contains_key(*t)).collect();
        let step = match types.as_slice() {
            [one] => *one,
            [] => {
                let keys: Vec<String> = map.keys().map(super::key_text).collect();
                self.sink.err(
                    at,
                    "unknown-step",
                    format!(
                        "no step type among the keys [{}]: expected one of {}",
                        keys.join(", "),
                        STEP_TYPES.join(", ")
                    ),
                );
                return;
            }
            many => {
                self.sink.err(
                    at,
                    "ambiguous-step",
                    format!("a step has exactly one type, found {}", many.join(" and ")),
                );
                return;
            }
        };
        let label = match map.get(step) {
            Some(Value::String(name)) => format!("{at} ({step} `{name}`)"),
            _ => format!("{at} ({step})"),
        };
        let at = label.as_str();

        let mut allowed: Vec<&str> = vec![step];
        allowed.extend(own_fields(step));
        allowed.extend(MODIFIERS);
        allowed.extend(HOOKS);
        // `fail_fast` is a modifier of `across` (and a field of `in_parallel`'s long form).
        if map.contains_key("across") {
            allowed.push("fail_fast");
        }
        self.sink.known_keys(at, map, &allowed);
        self.modifiers(at, map);

        match step {
            "get" | "put" => self.resource_step(at, step, map),
            "task" => self.task(at, map),
            "set_pipeline" => self.set_pipeline(at, map),
            "load_var" => self.load_var(at, map),
            "in_parallel" => self.in_parallel(at, map),
            "do" => self.steps(at, "do", &map["do"]),
            "try" => self.step(&format!("{at}, try"), &map["try"]),
            _ => unreachable!("every step type is handled"),
        }
        for hook in HOOKS {
            if let Some(inner) = map.get(*hook) {
                self.step(&format!("{at}, {hook}"), inner);
            }
        }
    }

    fn steps(&mut self, at: &str, key: &str, value: &Value) {
        match value.as_sequence() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.step(&format!("{at}, {key}[{i}]"), item);
                }
            }
            None => self.sink.err(at, "type", format!("`{key}` must be a list of steps, got {}", kind_of(value))),
        }
    }

    fn modifiers(&mut self, at: &str, map: &Mapping) {
        self.sink.field(at, map, "timeout", Expect::Duration);
        self.sink.field(at, map, "tags", Expect::StrList);
        self.sink.field(at, map, "fail_fast", Expect::Bool);
        if let Some(attempts) = map.get("attempts") {
            match attempts.as_i64() {
                Some(n) if n > 0 => {}
                Some(n) => self.sink.err(at, "attempts", format!("attempts must be greater than 0, got {n}")),
                None => self.sink.err(at, "type", format!("`attempts` must be an integer, got {}", kind_of(attempts))),
            }
        }
        if let Some(across) = map.get("across") {
            self.across(at, across);
        }
    }

    fn across(&mut self, at: &str, across: &Value) {
        let Some(vars) = across.as_sequence() else {
            self.sink.err(at, "type", format!("`across` must be a list of vars, got {}", kind_of(across)));
            return;
        };
        if vars.is_empty() {
            self.sink.err(at, "across", "across must have at least one var");
        }
        for (i, var) in vars.iter().enumerate() {
            let at = format!("{at}, across[{i}]");
            let Some(var) = self.sink.mapping(&at, "an across var", var) else { continue };
            self.sink.known_keys(&at, var, &["var", "values", "max_in_flight"]);
            if let Some(name) = self.sink.required_str(&at, var, "var") {
                self.sink.identifier(&at, "across var", name);
            }
            match var.get("values") {
                // A string is a `((var))` holding the list, resolved at run time.
                Some(Value::Sequence(_)) | Some(Value::String(_)) => {}
                None => self.sink.err(&at, "missing-field", "`values` is required"),
                Some(other) => self.sink.err(&at, "type", format!("`values` must be a list, got {}", kind_of(other))),
            }
            match var.get("max_in_flight") {
                None => {}
                Some(Value::String(s)) if s == "all" => {}
                Some(v) if v.as_i64().is_some_and(|n| n > 0) => {}
                Some(v) => self.sink.err(
                    &at,
                    "across",
                    format!("max_in_flight must be `all` or greater than 0, got {}", super::key_text(v)),
                ),
            }
        }
    }

    fn resource_step(&mut self, at: &str, step: &str, map: &Mapping) {
        let Some(name) = self.sink.required_str(at, map, step) else { return };
        self.sink.identifier(at, &format!("{step} name"), name);
        self.sink.field(at, map, "resource", Expect::Str);
        self.sink.field(at, map, "params", Expect::Map);
        let resource = map.get("resource").and_then(Value::as_str).unwrap_or(name).to_string();
        let params = map.get("params").and_then(Value::as_mapping).cloned().unwrap_or_default();
        if step == "get" {
            self.sink.field(at, map, "passed", Expect::StrList);
            self.sink.field(at, map, "trigger", Expect::Bool);
            match map.get("version") {
                None | Some(Value::Mapping(_)) => {}
                Some(Value::String(s)) if s == "latest" || s == "every" => {}
                Some(other) => self.sink.err(
                    at,
                    "type",
                    format!("`version` must be `latest`, `every` or a version mapping, got {}", super::key_text(other)),
                ),
            }
            if !self.get_names.insert(name.to_string()) {
                self.sink.err(at, "duplicate-get", format!("the plan already has a get named `{name}`"));
            }
            let passed = map
                .get("passed")
                .and_then(Value::as_sequence)
                .map(|s| s.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            self.uses.push(Use { at: at.to_string(), resource, put: false, params, get_params: None, passed });
        } else {
            self.sink.field(at, map, "get_params", Expect::Map);
            self.sink.field(at, map, "no_get", Expect::Bool);
            match map.get("inputs") {
                None => {}
                Some(Value::String(s)) if s == "all" || s == "detect" => {}
                Some(v) if v.as_sequence().is_some_and(|s| s.iter().all(Value::is_string)) => {}
                Some(other) => self.sink.err(
                    at,
                    "type",
                    format!("`inputs` must be `all`, `detect` or a list of names, got {}", super::key_text(other)),
                ),
            }
            let no_get = map.get("no_get").and_then(Value::as_bool).unwrap_or(false);
            let get_params =
                (!no_get).then(|| map.get("get_params").and_then(Value::as_mapping).cloned().unwrap_or_default());
            self.uses.push(Use { at: at.to_string(), resource, put: true, params, get_params, passed: Vec::new() });
        }
    }

    fn task(&mut self, at: &str, map: &Mapping) {
        if let Some(name) = self.sink.required_str(at, map, "task") {
            self.sink.identifier(at, "task name", name);
        }
        match (map.get("file"), map.get("config")) {
            (Some(_), Some(_)) => self.sink.err(at, "task-file-config", "task has both `file` and `config`: use one"),
            (None, None) => self.sink.err(at, "task-file-config", "task needs `file` or `config`"),
            (Some(file), None) => {
                if !file.is_string() {
                    self.sink.err(at, "type", format!("`file` must be a string, got {}", kind_of(file)));
                }
            }
            (None, Some(config)) => task::config(self.sink, at, config),
        }
        for (key, expect) in [
            ("image", Expect::Str),
            ("privileged", Expect::Bool),
            ("vars", Expect::Map),
            ("params", Expect::Map),
            ("input_mapping", Expect::StrMap),
            ("output_mapping", Expect::StrMap),
        ] {
            self.sink.field(at, map, key, expect);
        }
    }

    fn set_pipeline(&mut self, at: &str, map: &Mapping) {
        if let Some(name) = self.sink.required_str(at, map, "set_pipeline")
            && name != "self"
        {
            self.sink.identifier(at, "pipeline name", name);
        }
        if !map.contains_key("file") {
            self.sink.err(at, "missing-field", "set_pipeline needs `file`");
        }
        for (key, expect) in [
            ("file", Expect::Str),
            ("vars", Expect::Map),
            ("var_files", Expect::StrList),
            ("team", Expect::Str),
            ("instance_vars", Expect::Map),
        ] {
            self.sink.field(at, map, key, expect);
        }
    }

    fn load_var(&mut self, at: &str, map: &Mapping) {
        if let Some(name) = self.sink.required_str(at, map, "load_var") {
            self.sink.identifier(at, "local var name", name);
        }
        if !map.contains_key("file") {
            self.sink.err(at, "missing-field", "load_var needs `file`");
        }
        self.sink.field(at, map, "file", Expect::Str);
        self.sink.field(at, map, "reveal", Expect::Bool);
        if let Some(format) = map.get("format")
            && !matches!(format.as_str(), Some("json" | "yaml" | "yml" | "trim" | "raw"))
        {
            self.sink.err(
                at,
                "load-var-format",
                format!("format must be one of json, yaml, yml, trim, raw, got {}", super::key_text(format)),
            );
        }
    }

    fn in_parallel(&mut self, at: &str, map: &Mapping) {
        let value = &map["in_parallel"];
        match value {
            Value::Sequence(_) => self.steps(at, "in_parallel", value),
            Value::Mapping(long) => {
                self.sink.known_keys(at, long, &["steps", "limit", "fail_fast"]);
                self.sink.field(at, long, "fail_fast", Expect::Bool);
                if let Some(limit) = long.get("limit")
                    && limit.as_i64().is_none_or(|n| n < 0)
                {
                    self.sink.err(at, "type", "in_parallel.limit must be a non-negative integer");
                }
                match long.get("steps") {
                    Some(steps) => self.steps(at, "in_parallel.steps", steps),
                    None => self.sink.err(at, "missing-field", "in_parallel needs `steps`"),
                }
            }
            other => {
                self.sink.err(at, "type", format!("`in_parallel` must be a list or mapping, got {}", kind_of(other)))
            }
        }
    }
}
