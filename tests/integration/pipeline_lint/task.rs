//! Task configs (`atc.TaskConfig`), inline under `config:` or in a file run with `file:`: strict
//! fields, a `platform`, a `run.path`, a well-formed `image_resource`, named inputs and outputs.

use super::{Expect, Finding, Sink, kind_of, load_yaml};
use serde_yaml_ng::Value;

const CONFIG: &[&str] =
    &["platform", "image_resource", "rootfs_uri", "inputs", "outputs", "caches", "params", "run", "container_limits"];
const IMAGE_RESOURCE: &[&str] = &["type", "source", "params", "version", "name"];
const RUN: &[&str] = &["path", "args", "dir", "user"];

/// Lints a task config file such as `ci/tasks/test.yml`.
pub fn lint_task_file(file: &str, text: &str) -> Vec<Finding> {
    let mut sink = Sink::new(file);
    if let Some(value) = load_yaml(&mut sink, text) {
        config(&mut sink, "task config", &value);
    }
    sink.findings
}

/// Checks one task config.
pub(crate) fn config(sink: &mut Sink, at: &str, value: &Value) {
    let Some(map) = sink.mapping(at, "a task config", value) else { return };
    sink.known_keys(at, map, CONFIG);
    sink.required_str(at, map, "platform");
    sink.field(at, map, "rootfs_uri", Expect::Str);
    sink.field(at, map, "params", Expect::Map);
    if let Some(image) = map.get("image_resource") {
        let at = format!("{at}, image_resource");
        if let Some(image) = sink.mapping(&at, "image_resource", image) {
            sink.known_keys(&at, image, IMAGE_RESOURCE);
            sink.required_str(&at, image, "type");
            if !image.contains_key("source") {
                sink.err(&at, "missing-field", "`source` is required");
            }
            for (key, expect) in [("source", Expect::Map), ("params", Expect::Map), ("version", Expect::StrMap)] {
                sink.field(&at, image, key, expect);
            }
        }
    }
    match map.get("run") {
        None => sink.err(at, "missing-field", "`run` is required"),
        Some(run) => {
            let at = format!("{at}, run");
            if let Some(run) = sink.mapping(&at, "run", run) {
                sink.known_keys(&at, run, RUN);
                sink.required_str(&at, run, "path");
                sink.field(&at, run, "args", Expect::StrList);
                sink.field(&at, run, "dir", Expect::Str);
                sink.field(&at, run, "user", Expect::Str);
            }
        }
    }
    for (key, allowed) in
        [("inputs", &["name", "path", "optional"][..]), ("outputs", &["name", "path"][..]), ("caches", &["path"][..])]
    {
        let Some(items) = map.get(key) else { continue };
        let Some(items) = items.as_sequence() else {
            sink.err(at, "type", format!("`{key}` must be a list, got {}", kind_of(items)));
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{at}, {key}[{i}]");
            let Some(item) = sink.mapping(&at, key, item) else { continue };
            sink.known_keys(&at, item, allowed);
            sink.required_str(&at, item, if key == "caches" { "path" } else { "name" });
            sink.field(&at, item, "optional", Expect::Bool);
        }
    }
    if let Some(limits) = map.get("container_limits").and_then(Value::as_mapping) {
        sink.known_keys(at, limits, &["cpu", "memory"]);
    }
}
