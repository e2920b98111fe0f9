//! A Concourse pipeline linter for the tests: what `fly validate-pipeline --strict` checks
//! (docs/facts/concourse.md, after Concourse's own pipeline and step validators),
//! plus the check fly cannot do — every `repave` resource's `source` and every get/put `params` are
//! parsed with [`repave::validate_config`], the strict types the binaries use.
//!
//! Neither Concourse nor `fly` can run on the CI machines and the public JSON schemas are stale, so the
//! rules are re-implemented here. `--strict` turns warnings into errors, so everything is an error.
//! Each [`Finding`] names the file, where in the pipeline (resource, job, step) and the rule.

mod steps;
pub mod task;
pub mod vars;

use repave::protocol::{Request, Step};
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    /// Where in the pipeline, e.g. ``job `deploy`, get `stemcell` ``.
    pub at: String,
    /// A short stable rule id, e.g. `unknown-resource`; tests match on it.
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: [{}] {}", self.file, self.at, self.rule, self.message)
    }
}

/// The outcome of linting one pipeline.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Every repave config that was parsed with `validate_config`: (where, kind, step).
    pub validated: Vec<(String, String, &'static str)>,
}

impl Report {
    pub fn rules(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.rule).collect()
    }
}

/// Collects findings for one file.
pub(crate) struct Sink {
    file: String,
    findings: Vec<Finding>,
}

impl Sink {
    pub(crate) fn new(file: &str) -> Sink {
        Sink { file: file.to_string(), findings: Vec::new() }
    }

    pub(crate) fn err(&mut self, at: &str, rule: &'static str, message: impl Into<String>) {
        self.findings.push(Finding { file: self.file.clone(), at: at.to_string(), rule, message: message.into() });
    }

    /// Reports keys of `map` outside `allowed` (strict unmarshal), suggesting the nearest one.
    pub(crate) fn known_keys(&mut self, at: &str, map: &Mapping, allowed: &[&str]) {
        for key in map.keys() {
            let name = key_text(key);
            if !allowed.contains(&name.as_str()) {
                let hint = repave::suggest::suggestion(&name, allowed.iter().copied());
                self.err(at, "unknown-field", format!("unknown field `{name}`{hint}"));
            }
        }
    }

    /// The mapping `value`, or a `type` finding.
    pub(crate) fn mapping<'a>(&mut self, at: &str, what: &str, value: &'a Value) -> Option<&'a Mapping> {
        let map = value.as_mapping();
        if map.is_none() {
            self.err(at, "type", format!("{what} must be a mapping, got {}", kind_of(value)));
        }
        map
    }

    /// Checks `map[key]` when present: `expect` says what it must be.
    pub(crate) fn field(&mut self, at: &str, map: &Mapping, key: &str, expect: Expect) {
        let Some(value) = map.get(key) else { return };
        let ok = match expect {
            Expect::Str => value.is_string(),
            Expect::Bool => value.is_bool(),
            Expect::Int => value.as_i64().is_some(),
            Expect::Map => value.is_mapping(),
            Expect::StrList => value.as_sequence().is_some_and(|s| s.iter().all(Value::is_string)),
            Expect::StrMap => value.as_mapping().is_some_and(|m| m.values().all(Value::is_string)),
            Expect::Duration => match value.as_str() {
                Some(text) => {
                    if let Err(e) = parse_go_duration(text) {
                        self.err(at, "duration", format!("`{key}`: {e}"));
                    }
                    true
                }
                None => false,
            },
        };
        if !ok {
            self.err(at, "type", format!("`{key}` must be {}, got {}", expect.describe(), kind_of(value)));
        }
    }

    /// A required string field; reports `missing-field` when absent.
    pub(crate) fn required_str<'a>(&mut self, at: &str, map: &'a Mapping, key: &str) -> Option<&'a str> {
        match map.get(key) {
            None | Some(Value::Null) => {
                self.err(at, "missing-field", format!("`{key}` is required"));
                None
            }
            Some(value) => {
                let text = value.as_str();
                if text.is_none() {
                    self.err(at, "type", format!("`{key}` must be a string, got {}", kind_of(value)));
                }
                text
            }
        }
    }

    /// Concourse's identifier style (a warning that `--strict` makes fatal).
    pub(crate) fn identifier(&mut self, at: &str, what: &str, name: &str) {
        // Names built from vars (e.g. in `across`) are only known at run time.
        if !name.contains("((") && !is_identifier(name) {
            self.err(
                at,
                "identifier",
                format!(
                    "{what} `{name}` is not a valid identifier: start with a lowercase letter or digit, then lowercase letters, digits, `-`, `_` or `.` (not all digits)"
                ),
            );
        }
    }
}

/// What a field must hold.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    Str,
    Bool,
    Int,
    Map,
    StrList,
    StrMap,
    Duration,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::Str => "a string",
            Expect::Bool => "a boolean",
            Expect::Int => "an integer",
            Expect::Map => "a mapping",
            Expect::StrList => "a list of strings",
            Expect::StrMap => "a mapping of strings",
            Expect::Duration => "a duration string such as `30m`",
        }
    }
}

pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `^[\p{Ll}\p{Lt}\p{Lm}\p{Lo}\d][\p{Ll}\p{Lt}\p{Lm}\p{Lo}\d\-_.]*$`, not all digits
/// (Concourse's identifier rule, docs/facts/concourse.md). Letters without case (Lo, Lm) count as lowercase.
pub fn is_identifier(name: &str) -> bool {
    let letter = |c: char| (c.is_alphabetic() && !c.is_uppercase()) || c.is_ascii_digit();
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    letter(first)
        && chars.all(|c| letter(c) || matches!(c, '-' | '_' | '.'))
        && !name.chars().all(|c| c.is_ascii_digit())
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units `ns us µs ms s m h`, optional
/// sign; `0` alone is allowed.
pub fn parse_go_duration(text: &str) -> Result<(), String> {
    let bad = || format!("`{text}` is not a duration (expected e.g. `90s`, `30m`, `1h30m`)");
    let rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut rest = rest;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len())
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

/// `*`/`?` globs, as `passed:` and group job lists accept.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    go(&p, &t)
}

/// Options for one lint run.
#[derive(Default)]
pub struct Options<'a> {
    /// The pipeline's vars example (YAML text), substituted like `fly -l`.
    pub vars: Option<&'a str>,
}

/// Parses YAML the way fly's loader does: duplicate keys are errors, `<<` merge keys are applied.
pub fn load_yaml(sink: &mut Sink, text: &str) -> Option<Value> {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(mut value) => {
            if let Err(e) = value.apply_merge() {
                sink.err("document", "yaml", format!("merge keys: {e}"));
                return None;
            }
            Some(value)
        }
        Err(e) => {
            let rule = if e.to_string().contains("duplicate entry") { "duplicate-key" } else { "yaml" };
            sink.err("document", rule, e.to_string());
            None
        }
    }
}

/// Lints one pipeline file.
pub fn lint_pipeline(file: &str, text: &str, options: &Options) -> Report {
    let mut sink = Sink::new(file);
    let mut report = Report::default();
    let Some(raw) = load_yaml(&mut sink, text) else {
        report.findings = sink.findings;
        return report;
    };
    let pipeline = match options.vars {
        None => raw,
        Some(vars_text) => {
            let mut vars_sink = Sink::new(&format!("{file} (vars)"));
            let vars = load_yaml(&mut vars_sink, vars_text);
            sink.findings.extend(vars_sink.findings);
            let vars = match vars {
                Some(Value::Mapping(m)) => m,
                Some(Value::Null) | None => Mapping::new(),
                Some(other) => {
                    sink.err("vars", "type", format!("the vars file must be a mapping, got {}", kind_of(&other)));
                    Mapping::new()
                }
            };
            let mut unresolved = Vec::new();
            let value = vars::interpolate(&raw, &vars, &mut unresolved);
            for name in unresolved {
                sink.err(
                    "vars",
                    "undefined-var",
                    format!("`(({name}))` is used but the vars example does not define it"),
                );
            }
            value
        }
    };
    let Some(top) = sink.mapping("pipeline", "the pipeline", &pipeline) else {
        report.findings = sink.findings;
        return report;
    };
    let model = structure(&mut sink, top);
    repave_configs(&mut sink, &model, &mut report);
    report.findings = sink.findings;
    report
}

/// One get or put of a resource somewhere in a job.
#[derive(Debug, Clone)]
pub(crate) struct Use {
    pub at: String,
    pub resource: String,
    pub put: bool,
    pub params: Mapping,
    /// For a put: the implicit get's `get_params`, unless `no_get`.
    pub get_params: Option<Mapping>,
    pub passed: Vec<String>,
}

/// What the later, cross-cutting rules need from the pipeline.
#[derive(Default)]
pub(crate) struct Model {
    resources: BTreeMap<String, (String, Mapping)>,
    resource_types: BTreeSet<String>,
    jobs: Vec<String>,
    uses: BTreeMap<String, Vec<Use>>,
}

const TOP: &[&str] = &["jobs", "resources", "resource_types", "groups", "var_sources", "display", "prototypes"];
const RESOURCE: &[&str] = &[
    "name",
    "old_name",
    "type",
    "source",
    "check_every",
    "check_timeout",
    "tags",
    "version",
    "icon",
    "public",
    "webhook_token",
    "expose_build_created_by",
];
const RESOURCE_TYPE: &[&str] = &["name", "type", "source", "defaults", "privileged", "check_every", "tags", "params"];
const JOB: &[&str] = &[
    "name",
    "old_name",
    "plan",
    "serial",
    "serial_groups",
    "max_in_flight",
    "public",
    "disable_manual_trigger",
    "interruptible",
    "build_log_retention",
    "on_success",
    "on_failure",
    "on_abort",
    "on_error",
    "ensure",
];
const GROUP: &[&str] = &["name", "jobs", "resources"];

fn list<'a>(sink: &mut Sink, top: &'a Mapping, key: &str) -> &'a [Value] {
    match top.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            sink.err(key, "type", format!("`{key}` must be a list, got {}", kind_of(other)));
            &[]
        }
    }
}

/// Checks shapes and names, and gathers the model for the cross-cutting rules.
fn structure(sink: &mut Sink, top: &Mapping) -> Model {
    sink.known_keys("pipeline", top, TOP);
    let mut model = Model::default();

    // resource_types and prototypes share one namespace in Concourse.
    let mut type_names = BTreeSet::new();
    for (i, item) in list(sink, top, "resource_types").iter().enumerate() {
        let at = format!("resource_types[{i}]");
        let Some(map) = sink.mapping(&at, "a resource type", item) else { continue };
        let name = sink.required_str(&at, map, "name").map(str::to_string);
        let at = name.as_ref().map_or(at, |n| format!("resource type `{n}`"));
        sink.known_keys(&at, map, RESOURCE_TYPE);
        sink.required_str(&at, map, "type");
        for (key, expect) in [
            ("source", Expect::Map),
            ("defaults", Expect::Map),
            ("params", Expect::Map),
            ("privileged", Expect::Bool),
            ("tags", Expect::StrList),
        ] {
            sink.field(&at, map, key, expect);
        }
        check_every(sink, &at, map);
        if let Some(name) = name {
            sink.identifier(&at, "resource type name", &name);
            if !type_names.insert(name.clone()) {
                sink.err(&at, "duplicate-name", format!("resource type `{name}` is declared more than once"));
            }
        }
    }
    for (i, item) in list(sink, top, "prototypes").iter().enumerate() {
        let at = format!("prototypes[{i}]");
        let Some(map) = sink.mapping(&at, "a prototype", item) else { continue };
        if let Some(name) = sink.required_str(&at, map, "name")
            && !type_names.insert(name.to_string())
        {
            sink.err(&at, "duplicate-name", format!("prototype `{name}` reuses a resource type or prototype name"));
        }
    }
    model.resource_types = type_names;

    for (i, item) in list(sink, top, "resources").iter().enumerate() {
        let at = format!("resources[{i}]");
        let Some(map) = sink.mapping(&at, "a resource", item) else { continue };
        let name = sink.required_str(&at, map, "name").map(str::to_string);
        let at = name.as_ref().map_or(at, |n| format!("resource `{n}`"));
        sink.known_keys(&at, map, RESOURCE);
        let kind = sink.required_str(&at, map, "type").unwrap_or_default().to_string();
        for (key, expect) in [
            ("source", Expect::Map),
            ("tags", Expect::StrList),
            ("public", Expect::Bool),
            ("expose_build_created_by", Expect::Bool),
            ("icon", Expect::Str),
            ("webhook_token", Expect::Str),
            ("version", Expect::StrMap),
            ("check_timeout", Expect::Duration),
        ] {
            sink.field(&at, map, key, expect);
        }
        check_every(sink, &at, map);
        if let Some(name) = name {
            sink.identifier(&at, "resource name", &name);
            let source = map.get("source").and_then(Value::as_mapping).cloned().unwrap_or_default();
            if model.resources.insert(name.clone(), (kind, source)).is_some() {
                sink.err(&at, "duplicate-name", format!("resource `{name}` is declared more than once"));
            }
        }
    }

    let jobs = list(sink, top, "jobs");
    if jobs.is_empty() {
        sink.err("pipeline", "no-jobs", "a pipeline needs at least one job");
    }
    let mut seen_jobs = BTreeSet::new();
    for (i, item) in jobs.iter().enumerate() {
        let at = format!("jobs[{i}]");
        let Some(map) = sink.mapping(&at, "a job", item) else { continue };
        let name = sink.required_str(&at, map, "name").map(str::to_string).unwrap_or_else(|| at.clone());
        let at = format!("job `{name}`");
        sink.known_keys(&at, map, JOB);
        sink.identifier(&at, "job name", &name);
        if !seen_jobs.insert(name.clone()) {
            sink.err(&at, "duplicate-name", format!("job `{name}` is declared more than once"));
        }
        for (key, expect) in [
            ("serial", Expect::Bool),
            ("serial_groups", Expect::StrList),
            ("max_in_flight", Expect::Int),
            ("public", Expect::Bool),
            ("disable_manual_trigger", Expect::Bool),
            ("interruptible", Expect::Bool),
            ("build_log_retention", Expect::Map),
        ] {
            sink.field(&at, map, key, expect);
        }
        if let Some(retention) = map.get("build_log_retention").and_then(Value::as_mapping) {
            sink.known_keys(&at, retention, &["builds", "days", "minimum_succeeded_builds"]);
            for (key, value) in retention {
                if value.as_i64().is_none_or(|n| n < 0) {
                    sink.err(
                        &at,
                        "build-log-retention",
                        format!("build_log_retention.{} must be a non-negative integer", key_text(key)),
                    );
                }
            }
        }
        let mut walker = steps::Walker::new(sink);
        match map.get("plan") {
            None | Some(Value::Null) => walker.sink.err(&at, "missing-field", "`plan` is required"),
            Some(Value::Sequence(plan)) => {
                for (n, step) in plan.iter().enumerate() {
                    walker.step(&format!("{at}, plan[{n}]"), step);
                }
            }
            Some(other) => walker.sink.err(&at, "type", format!("`plan` must be a list, got {}", kind_of(other))),
        }
        for hook in steps::HOOKS {
            if let Some(step) = map.get(*hook) {
                walker.step(&format!("{at}, {hook}"), step);
            }
        }
        model.uses.insert(name.clone(), walker.uses);
        model.jobs.push(name);
    }

    cross_rules(sink, top, &model);
    model
}

fn check_every(sink: &mut Sink, at: &str, map: &Mapping) {
    match map.get("check_every") {
        Some(Value::String(s)) if s == "never" => {}
        _ => sink.field(at, map, "check_every", Expect::Duration),
    }
}

/// Rules that need the whole pipeline: references, `passed`, cycles, unused resources, groups.
fn cross_rules(sink: &mut Sink, top: &Mapping, model: &Model) {
    let matching = |pattern: &str| model.jobs.iter().filter(|j| glob_match(pattern, j)).cloned().collect::<Vec<_>>();
    let interacts =
        |job: &str, resource: &str| model.uses.get(job).is_some_and(|u| u.iter().any(|u| u.resource == resource));

    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for job in &model.jobs {
        for u in &model.uses[job] {
            if !model.resources.contains_key(&u.resource) {
                let step = if u.put { "put" } else { "get" };
                sink.err(&u.at, "unknown-resource", format!("{step} of unknown resource `{}`", u.resource));
            }
            for pattern in &u.passed {
                let jobs = matching(pattern);
                if jobs.is_empty() {
                    sink.err(&u.at, "passed-unknown-job", format!("passed: `{pattern}` matches no job"));
                }
                for upstream in jobs {
                    if !interacts(&upstream, &u.resource) {
                        sink.err(
                            &u.at,
                            "passed-job-without-resource",
                            format!("passed: job `{upstream}` does not interact with resource `{}`", u.resource),
                        );
                    }
                    edges.entry(job).or_default().insert(upstream);
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&model.jobs, &edges) {
        sink.err(
            &format!("job `{}`", cycle[0]),
            "passed-cycle",
            format!("passed constraints form a cycle: {}", cycle.join(" → ")),
        );
    }

    for name in model.resources.keys() {
        if !model.uses.values().flatten().any(|u| &u.resource == name) {
            sink.err(&format!("resource `{name}`"), "unused-resource", format!("resource `{name}` is not used"));
        }
    }

    let groups = list(sink, top, "groups");
    let mut grouped = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, item) in groups.iter().enumerate() {
        let at = format!("groups[{i}]");
        let Some(map) = sink.mapping(&at, "a group", item) else { continue };
        let name = sink.required_str(&at, map, "name").map(str::to_string);
        let at = name.as_ref().map_or(at, |n| format!("group `{n}`"));
        sink.known_keys(&at, map, GROUP);
        sink.field(&at, map, "jobs", Expect::StrList);
        sink.field(&at, map, "resources", Expect::StrList);
        if let Some(name) = name {
            sink.identifier(&at, "group name", &name);
            if !names.insert(name.clone()) {
                sink.err(&at, "duplicate-name", format!("group `{name}` is declared more than once"));
            }
        }
        for pattern in map.get("jobs").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str) {
            let jobs = matching(pattern);
            if jobs.is_empty() {
                sink.err(&at, "group-unknown-job", format!("job `{pattern}` matches no job"));
            }
            grouped.extend(jobs);
        }
        for resource in
            map.get("resources").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str)
        {
            if !model.resources.contains_key(resource) {
                sink.err(&at, "group-unknown-resource", format!("unknown resource `{resource}`"));
            }
        }
    }
    if !groups.is_empty() {
        for job in model.jobs.iter().filter(|j| !grouped.contains(*j)) {
            sink.err(&format!("job `{job}`"), "job-in-no-group", format!("job `{job}` belongs to no group"));
        }
    }
}

/// A cycle in job → upstream-job edges, as the list of jobs on it (first repeated at the end).
fn find_cycle(jobs: &[String], edges: &BTreeMap<&str, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        job: &str,
        edges: &BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = path.iter().position(|p| p == job) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(job.to_string());
            return Some(cycle);
        }
        if done.contains(job) {
            return None;
        }
        path.push(job.to_string());
        for next in edges.get(job).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(job.to_string());
        None
    }
    let mut done = BTreeSet::new();
    jobs.iter().find_map(|job| visit(job, edges, &mut Vec::new(), &mut done))
}

/// Parses every `repave` resource's `source` (check), each get's `params` (in), each put's `params`
/// (out) and its implicit get's `get_params` (in) with the binaries' own types.
fn repave_configs(sink: &mut Sink, model: &Model, report: &mut Report) {
    if !model.resource_types.contains("repave") {
        return;
    }
    for (name, (kind, source)) in &model.resources {
        if kind != "repave" {
            continue;
        }
        let source_json = to_json_map(source);
        let mut requests = vec![(format!("resource `{name}`"), Step::Check, Mapping::new())];
        for u in model.uses.values().flatten().filter(|u| &u.resource == name) {
            if u.put {
                requests.push((u.at.clone(), Step::Out, u.params.clone()));
                if let Some(get_params) = &u.get_params {
                    requests.push((format!("{} (implicit get)", u.at), Step::In, get_params.clone()));
                }
            } else {
                requests.push((u.at.clone(), Step::In, u.params.clone()));
            }
        }
        for (at, step, params) in requests {
            let request = Request { source: source_json.clone(), params: to_json_map(&params), version: None };
            match repave::validate_config(step, &request) {
                Ok(kind) => report.validated.push((at, kind.name().to_string(), step.name())),
                Err(e) => sink.err(&at, "repave-config", format!("{} request rejected: {e:#}", step.name())),
            }
        }
    }
}

fn to_json_map(map: &Mapping) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(map) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod rules_tests;
