//! `((var))` interpolation as `fly validate-pipeline -l vars.yml` does it: a string that is exactly one
//! `((var))` becomes the var's value with its YAML type; a var inside a longer string is spliced in as
//! text; vars the file does not define stay as they are. Credential-manager vars (`((source:path))`)
//! and local vars (`((.:name))`) are resolved only at run time, so they stay too.

use serde_yaml_ng::{Mapping, Value};

/// Substitutes `vars` into every string of `value` (keys are left alone, as fly does). Names of vars
/// the pipeline uses but `vars` lacks are pushed to `unresolved`.
pub fn interpolate(value: &Value, vars: &Mapping, unresolved: &mut Vec<String>) -> Value {
    match value {
        Value::String(text) => interpolate_str(text, vars, unresolved),
        Value::Sequence(items) => Value::Sequence(items.iter().map(|v| interpolate(v, vars, unresolved)).collect()),
        Value::Mapping(map) => {
            Value::Mapping(map.iter().map(|(k, v)| (k.clone(), interpolate(v, vars, unresolved))).collect())
        }
        Value::Tagged(tagged) => interpolate(&tagged.value, vars, unresolved),
        other => other.clone(),
    }
}

/// The `((…))` references in `text`, as (byte range, inner name).
pub fn references(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find("((").map(|i| i + from) {
        let Some(len) = text[start + 2..].find("))") else { break };
        let end = start + 2 + len + 2;
        found.push((start..end, text[start + 2..start + 2 + len].trim()));
        from = end;
    }
    found
}

/// True for vars resolved only when a build runs (credential managers, local vars).
pub fn is_runtime_var(name: &str) -> bool {
    name.contains(':')
}

fn interpolate_str(text: &str, vars: &Mapping, unresolved: &mut Vec<String>) -> Value {
    let refs = references(text);
    if let [(range, name)] = refs.as_slice()
        && range.start == 0
        && range.end == text.len()
    {
        return match lookup(name, vars) {
            Some(value) => value.clone(),
            None => {
                note(name, unresolved);
                Value::String(text.to_string())
            }
        };
    }
    let mut out = String::new();
    let mut last = 0;
    for (range, name) in refs {
        out.push_str(&text[last..range.start]);
        match lookup(name, vars).and_then(scalar_text) {
            Some(value) => out.push_str(&value),
            None => {
                note(name, unresolved);
                out.push_str(&text[range.clone()]);
            }
        }
        last = range.end;
    }
    out.push_str(&text[last..]);
    Value::String(out)
}

fn note(name: &str, unresolved: &mut Vec<String>) {
    if !is_runtime_var(name) && !unresolved.iter().any(|n| n == name) {
        unresolved.push(name.to_string());
    }
}

/// `name` or `name.field.sub` (fly's path syntax) looked up in the vars file.
fn lookup<'a>(name: &str, vars: &'a Mapping) -> Option<&'a Value> {
    if is_runtime_var(name) {
        return None;
    }
    let mut parts = name.split('.');
    let mut value = vars.get(parts.next()?)?;
    for part in parts {
        value = value.as_mapping()?.get(part)?;
    }
    Some(value)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Mapping {
        serde_yaml_ng::from_str("name: jammy\ncount: 3\nlist: [a, b]\nnested: {url: https://x}\n").unwrap()
    }

    #[test]
    fn whole_values_keep_their_type_and_splices_become_text() {
        let mut missing = Vec::new();
        let v: Value = serde_yaml_ng::from_str(
            "a: ((list))\nb: ((count))\nc: os-((name))-((count))\nd: ((nested.url))/api\ne: ((nope))\nf: ((vault:x))\ng: ((.:v))",
        )
        .unwrap();
        let out = interpolate(&v, &vars(), &mut missing);
        let expected: Value = serde_yaml_ng::from_str(
            "a: [a, b]\nb: 3\nc: os-jammy-3\nd: https://x/api\ne: ((nope))\nf: ((vault:x))\ng: ((.:v))",
        )
        .unwrap();
        assert_eq!(out, expected);
        assert_eq!(missing, ["nope"]);
    }
}
