//! Secrets registry and the redacting log.
//!
//! Every value that came from a secret-like field of the request (and every credential learned later,
//! such as an access token) is registered here. All stderr output goes through [`Log`], which replaces
//! each registered value with `***` — so a secret cannot leak through an error message that happens to
//! echo it (serde, for example, quotes the offending value in "invalid type" errors).
//!
//! A secret is registered in every form it takes on the wire or in an echo of it, because a server's
//! error page may quote the request it got: URL-encoded (a password grant's form, a URL's userinfo),
//! base64 (inside `Authorization: Basic base64(user:secret)`, where it starts at any byte offset, so
//! the part of its encoding that does not depend on its neighbours is registered for each of the
//! three alignments), JSON-escaped, and as Rust's debug quoting prints it. What counts as a secret is
//! wider than strings under secret keys: numbers there too (an unquoted vars-file value), every
//! secret inside a string that holds a JSON document (a `((credential))` handed over as text), and the
//! password of any URL in the request.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Field names whose string values are secret wherever they appear in `source` or `params`.
const SECRET_KEYS: &[&str] = &["password", "token", "private_key", "client_secret", "secret_key"];

/// True when a key names a secret: the well-known names, or anything mentioning "secret".
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret") || SECRET_KEYS.iter().any(|k| key == *k || key.ends_with(&format!("_{k}")))
}

/// The set of known secret values, shared by every clone of a [`Log`].
#[derive(Clone, Default)]
pub struct Secrets(Arc<Mutex<Vec<String>>>);

impl Secrets {
    /// Registers one secret value in every encoded form ([`forms`]); empty strings are ignored (they
    /// would match everywhere).
    pub fn add(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut values = self.0.lock().expect("secrets lock");
        for form in forms(value) {
            if !values.contains(&form) {
                values.push(form);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Registers the password of `url`, if it is a URL with one (as written and decoded).
    pub fn add_url_password(&self, url: &str) {
        let Ok(parsed) = reqwest::Url::parse(url.trim()) else { return };
        if let Some(password) = parsed.password() {
            let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
            self.add(&decoded);
            self.add(password);
        }
    }

    /// Registers every value under a secret-like key anywhere in `value` (objects nested under a
    /// secret key count as secret as a whole, numbers as their text), the secrets inside strings that
    /// hold a JSON document, and the password of every URL.
    pub fn collect(&self, value: &Value) {
        self.collect_inner(value, false, 0);
    }

    fn collect_inner(&self, value: &Value, secret: bool, depth: usize) {
        match value {
            Value::String(s) => {
                if secret {
                    self.add(s);
                }
                self.add_url_password(s);
                // A credential handed over as text holding JSON (`((director))` from a string credential).
                if depth < MAX_NESTING
                    && s.trim_start().starts_with(['{', '['])
                    && let Ok(inner) = serde_json::from_str::<Value>(s)
                {
                    self.collect_inner(&inner, secret, depth + 1);
                }
            }
            Value::Number(n) if secret => self.add(&n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| self.collect_inner(v, secret, depth)),
            Value::Object(map) => {
                for (k, v) in map {
                    self.collect_inner(v, secret || is_secret_key(k), depth);
                }
            }
            _ => {}
        }
    }

    /// Replaces every registered secret in every string of `value` (keys are left alone).
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    /// Replaces every registered secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let values = self.0.lock().expect("secrets lock");
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }
}

/// How deep strings holding JSON are looked into (a string in a string in a string…).
const MAX_NESTING: usize = 4;

/// A registered form shorter than this is not registered on its own (except the raw secret): a
/// fragment of a few characters would hide unrelated text all over the log.
const MIN_FORM: usize = 6;

/// RFC 3986's unreserved characters stay; everything else is `%XX` (the encoding of URL paths and
/// of AWS signing).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// `application/x-www-form-urlencoded` keeps `*-._` (and writes a space as `+`).
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

/// `secret` as it may appear in an echo or an error message: raw; percent-encoded (form, URL
/// userinfo, path and strict encodings, with upper- and lower-case hex); base64 and base64url at each
/// alignment; JSON-escaped (as serde writes it, ASCII-only, and HTML-safe as Go writes it); and
/// quoted by Rust's `Debug`.
pub(crate) fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let mut percent = vec![
        utf8_percent_encode(secret, FORM).to_string().replace("%20", "+"),
        utf8_percent_encode(secret, UNRESERVED).to_string(),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
    ];
    if let Ok(mut url) = reqwest::Url::parse("https://host/") {
        if url.set_password(Some(secret)).is_ok() {
            percent.extend(url.password().map(str::to_string));
        }
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(secret);
        }
        percent.push(url.path().trim_start_matches('/').to_string());
    }
    for encoded in percent {
        out.push(lower_hex(&encoded));
        out.push(encoded);
    }
    out.extend(base64_cores(secret.as_bytes()));
    let json = serde_json::to_string(secret).unwrap_or_default();
    out.push(json.trim_matches('"').to_string());
    out.push(json_ascii(&json));
    out.push(json_html_safe(&json));
    out.push(format!("{secret:?}").trim_matches('"').to_string());
    let mut kept: Vec<String> = Vec::new();
    for form in out {
        if (form == secret || form.len() >= MIN_FORM) && !kept.contains(&form) {
            kept.push(form);
        }
    }
    kept
}

/// `%2F` → `%2f`, leaving everything else alone.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

/// The base64 (and base64url) characters that encode `secret` alone, wherever it sits in a longer
/// encoded string: for each offset `r` (0, 1, 2) within a 3-byte group, the encoding of
/// `[0; r] ++ secret` without the characters that also depend on the bytes before and after it.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for r in 0..3usize {
        let mut padded = vec![0u8; r];
        padded.extend_from_slice(secret);
        let skip = if r == 0 { 0 } else { r + 1 };
        let trim = usize::from(padded.len() % 3 != 0);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&padded);
            if let Some(core) = encoded.get(skip..encoded.len().saturating_sub(trim)).filter(|c| !c.is_empty()) {
                cores.push(core.to_string());
            }
        }
    }
    cores
}

/// `json` (a serialized string) with every non-ASCII character as `\uXXXX` (UTF-16, surrogate pairs included).
fn json_ascii(json: &str) -> String {
    let mut out = String::new();
    for c in json.trim_matches('"').chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// serde's JSON content with `<`, `>`, `&`, U+2028 and U+2029 escaped as Go's encoder writes them.
fn json_html_safe(json: &str) -> String {
    let mut out = String::new();
    for c in json.trim_matches('"').chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The only way repave writes to stderr: line-oriented, redacted, safe to share between tasks.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    secrets: Secrets,
}

impl Log {
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        Log { sink: Arc::new(Mutex::new(sink)), secrets: Secrets::default() }
    }

    /// A log that discards everything (for library callers and tests that do not care).
    pub fn sink() -> Self {
        Log::new(Box::new(std::io::sink()))
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Writes one message (which may span lines) after redaction. Write errors are ignored: a closed
    /// stderr must not turn a successful put into a failure.
    pub fn line(&self, message: impl AsRef<str>) {
        let text = self.secrets.redact(message.as_ref());
        let mut sink = self.sink.lock().expect("log lock");
        let _ = writeln!(sink, "{text}");
        let _ = sink.flush();
    }

    pub fn warn(&self, message: impl AsRef<str>) {
        self.line(format!("warning: {}", message.as_ref()))
    }

    /// Writes an error with its whole cause chain, one cause per line.
    pub fn error(&self, err: &anyhow::Error) {
        let mut text = format!("error: {err}");
        for cause in err.chain().skip(1) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        self.line(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys() {
        for k in ["password", "client_secret", "token", "private_key", "secret_key", "my_secret", "SECRET", "api_token"]
        {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["name", "client", "username", "ca_cert", "tokens_url_x"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn encoded_forms_are_redacted_too() {
        let s = Secrets::default();
        let secret = "p@ss w+rd/\"é\"&=";
        s.add(secret);
        let basic = STANDARD_NO_PAD.encode(format!("repave:{secret}"));
        for text in [
            "grant_type=password&password=p%40ss+w%2Brd%2F%22%C3%A9%22%26%3D".to_string(),
            "p%40ss%20w%2brd%2f%22%c3%a9%22%26%3d".to_string(),
            format!("Authorization: Basic {basic}=="),
            format!("Authorization: Basic {}", STANDARD_NO_PAD.encode(format!("ci:{secret}"))),
            format!("Authorization: Basic {}", STANDARD_NO_PAD.encode(format!("c:{secret}"))),
            "{\"password\":\"p@ss w+rd/\\\"é\\\"&=\"}".to_string(),
            // Python's ensure_ascii, Go's HTML-safe escaping.
            "p@ss w+rd/\\\"\\u00e9\\\"&=".to_string(),
            "p@ss w+rd/\\\"é\\\"\\u0026=".to_string(),
        ] {
            let redacted = s.redact(&text);
            assert!(redacted.contains("***"), "{text} → {redacted}");
        }
    }

    #[test]
    fn numbers_json_documents_and_url_passwords_are_secrets() {
        let s = Secrets::default();
        let director = json!({"url": "https://d", "client": "c", "client_secret": "inner-secret-1"}).to_string();
        s.collect(&json!({"client_secret": 73194628501u64, "director": director,
                          "api_url": "https://user:url%20pass@host:9021"}));
        assert_eq!(s.redact("expected a string, got 73194628501"), "expected a string, got ***");
        assert_eq!(s.redact("x inner-secret-1 y"), "x *** y");
        assert_eq!(s.redact("https://user:url%20pass@host:9021/ and url pass"), "https://user:***@host:9021/ and ***");
    }

    #[test]
    fn collects_nested_and_redacts_longest_first() {
        let s = Secrets::default();
        s.collect(&json!({"director": {"client_secret": "abc"}, "secret": {"deep": ["abcdef"]}, "name": "abc-public"}));
        assert_eq!(s.redact("x abcdef abc y"), "x *** *** y");
        // A non-secret field's value is only hidden where it equals a secret.
        assert_eq!(s.redact("name"), "name");
    }
}
