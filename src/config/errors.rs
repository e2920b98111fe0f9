//! serde's errors in the project's words: every message names the field by its full path and says
//! what was expected and what was found, never in serde's own terms ("invalid type: sequence,
//! expected usize", "did not match any variant of untagged enum"), and never quoting a secret.
//!
//! serde reports what it knows at the point of failure, which is sometimes too little: for an enum
//! fed a number it says "expected string or map", and for a struct fed a list it walks into the
//! list. In those cases the request is deserialized once more with a probe value put at the failing
//! path, and the second error supplies what the first lacked (the enum's values, or that an object
//! was expected).

use crate::redact::is_secret_key;
use crate::suggest::suggestion;
use serde::de::DeserializeOwned;
use serde_json::Map;
use serde_json::Value;

/// Deserializes `map` (named `root` in messages) into `T`, rewriting serde's error; `extra` are
/// top-level fields parsed elsewhere that still count as valid in unknown-field errors.
pub(super) fn parse_with<T: DeserializeOwned>(
    map: &Map<String, Value>,
    root: &str,
    extra: &[&str],
) -> anyhow::Result<T> {
    let value = Value::Object(map.clone());
    deserialize::<T>(&value).map_err(|(path, message)| {
        let rewritten = probe_enum::<T>(root, &value, &path, &message)
            .or_else(|| probe_struct::<T>(root, &value, &path))
            .unwrap_or_else(|| friendly(root, &path, &message, extra, value_at(&value, &path)));
        anyhow::anyhow!(rewritten)
    })
}

/// serde's verdict: the value, or the failing path and serde's message.
fn deserialize<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(value.clone()).map_err(|err| {
        let path = err.path().to_string();
        (path, err.into_inner().to_string())
    })
}

/// An enum fed something other than a string: serde says "expected string or map". A probe string
/// that names no value makes serde list the values.
fn probe_enum<T: DeserializeOwned>(root: &str, value: &Value, path: &str, message: &str) -> Option<String> {
    if !(message.ends_with("expected string or map") || message.ends_with("expected map with a single key")) {
        return None;
    }
    let found = describe(value_at(value, path)?, hides(path));
    let mut probe = value.clone();
    *value_at_mut(&mut probe, path)? = Value::String("\u{1}".into());
    let (_, second) = deserialize::<T>(&probe).err()?;
    let (_, valid) = parse_unknown(&second, "unknown variant `")?;
    Some(format!("{}: expected one of {}, got {found}", rooted(root, path), valid.join(", ")))
}

/// A struct fed a list: serde reads the list's items as the struct's fields and complains about an
/// item. A probe `true` in place of the list makes serde name the struct.
fn probe_struct<T: DeserializeOwned>(root: &str, value: &Value, path: &str) -> Option<String> {
    let (parent, _) = path.rsplit_once('[')?;
    if !value_at(value, parent).is_some_and(Value::is_array) {
        return None;
    }
    let mut probe = value.clone();
    *value_at_mut(&mut probe, parent)? = Value::Bool(true);
    let (_, second) = deserialize::<T>(&probe).err()?;
    second.contains("expected struct ").then(|| format!("{}: expected an object, got a list", rooted(root, parent)))
}

/// Rewrites one serde error. serde reports unknown keys with the path of the enclosing object and the
/// valid names listed in the message; we add a "did you mean".
pub(super) fn friendly(root: &str, path: &str, message: &str, extra: &[&str], value: Option<&Value>) -> String {
    let at = |p: &str| rooted(root, p);
    if let Some((bad, mut valid)) = parse_unknown(message, "unknown field `") {
        let parent = path.rsplit_once('.').map(|(p, _)| p).unwrap_or(".");
        let parent = if path == bad { "." } else { parent };
        if parent == "." {
            valid.extend(extra.iter().map(|f| f.to_string()));
        }
        let hint = suggestion(&bad, valid.iter().map(String::as_str));
        return format!("unknown field `{bad}` in {}{hint} (valid fields: {})", at(parent), valid.join(", "));
    }
    if let Some((bad, valid)) = parse_unknown(message, "unknown variant `") {
        let hint = suggestion(&bad, valid.iter().map(String::as_str));
        return format!("{}: `{bad}` is not a valid value{hint} (expected one of: {})", at(path), valid.join(", "));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("{}.{field} is required", at(path).trim_end_matches(".?"));
    }
    if let Some(expected) = type_mismatch(message) {
        let found = value.map_or_else(|| "something else".to_string(), |v| describe(v, hides(path)));
        let hint = match (expected.starts_with("an object"), value) {
            (true, Some(Value::String(text))) if text.trim_start().starts_with(['{', '[']) => {
                "; a credential that holds a JSON document must be stored as an object (a map), not as text"
            }
            _ => "",
        };
        return format!("{}: expected {expected}, got {found}{hint}", at(path));
    }
    format!("{}: {message}", at(path))
}

/// A serde type error inside a longer message (a fleet file's `clusters[0].workers: invalid type:
/// string "three", expected u64`) in our words; what was found is kept as serde quoted it, since a
/// fleet file holds no secrets.
pub(crate) fn in_our_words(message: &str) -> String {
    let start = ["invalid type: ", "invalid value: ", "invalid length "].iter().find_map(|m| message.find(m));
    let Some(start) = start else { return message.to_string() };
    let (head, tail) = message.split_at(start);
    let found = match tail.strip_prefix("invalid length ") {
        Some(_) => "sequence",
        None => tail.split_once(": ").and_then(|(_, rest)| rest.rsplit_once(", expected ")).map_or("", |(f, _)| f),
    };
    match type_mismatch(tail) {
        Some(expected) if !found.is_empty() => format!("{head}expected {expected}, got {}", found_words(found)),
        _ => message.to_string(),
    }
}

/// serde's description of what it found (`string "x"`, ``integer `5` ``, `sequence`) as we write it.
fn found_words(found: &str) -> String {
    let quoted = |prefix: &str| found.strip_prefix(prefix).map(|v| v.trim_matches('`').to_string());
    let words = match found {
        "sequence" => "a list",
        "map" => "an object",
        "unit value" | "null" => "null",
        _ => {
            return quoted("string ")
                .or_else(|| quoted("integer "))
                .or_else(|| quoted("floating point "))
                .or_else(|| quoted("boolean "))
                .unwrap_or_else(|| found.to_string());
        }
    };
    words.to_string()
}

/// What serde expected, in our words, when `message` is a type or length mismatch.
fn type_mismatch(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("invalid length ") {
        return rest.contains("expected struct ").then(|| "an object".to_string());
    }
    let rest = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))?;
    let (_, expected) = rest.rsplit_once(", expected ")?;
    Some(expected_words(expected))
}

fn expected_words(expected: &str) -> String {
    let words = match expected {
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "a map" => "an object",
        "f32" | "f64" => "a number",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        e if e.starts_with("a nonzero ") => "a whole number, at least 1",
        e if e.starts_with("struct ") => "an object",
        other => return other.to_string(),
    };
    words.to_string()
}

/// A JSON value for a message: short scalars as written, the rest (and anything at a secret path)
/// by its kind only.
fn describe(value: &Value, hide: bool) -> String {
    let kind = crate::protocol::type_name(value);
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) if !hide => b.to_string(),
        Value::Number(n) if !hide => n.to_string(),
        Value::String(s) if !hide && s.len() <= 64 && !s.contains(['\n', '{', '[']) => format!("{s:?}"),
        Value::Array(items) if items.is_empty() => "an empty list".into(),
        Value::Array(_) => "a list".into(),
        _ => kind.into(),
    }
}

/// Whether the value at `path` must not be quoted: any part of the path names a secret.
fn hides(path: &str) -> bool {
    path.split(['.', '[']).any(is_secret_key)
}

/// `source.director.url` from the root name and a serde_path_to_error path (`.` is the root itself).
fn rooted(root: &str, path: &str) -> String {
    if path == "." || path.is_empty() { root.to_string() } else { format!("{root}.{path}") }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into ("x", ["a", "b"]).
fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (bad, tail) = rest.split_once('`')?;
    let valid = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((bad.to_string(), valid))
}

/// The value at a serde_path_to_error path (`director.url`, `clusters[0]`, `.` for the root).
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    steps(path)?.into_iter().try_fold(root, |value, step| match step {
        Step::Key(key) => value.get(key),
        Step::Index(index) => value.get(index),
    })
}

fn value_at_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    steps(path)?.into_iter().try_fold(root, |value, step| match step {
        Step::Key(key) => value.get_mut(key),
        Step::Index(index) => value.get_mut(index),
    })
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        let key = pieces.next()?;
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        for index in pieces {
            out.push(Step::Index(index.strip_suffix(']')?.parse().ok()?));
        }
    }
    Some(out)
}
