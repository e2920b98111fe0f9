//! Secrets registry and the redacting log.
//!
//! Every value that came from a secret-like field of the request (and every credential learned later,
//! such as an access token) is registered here. All stderr output goes through [`Log`], which replaces
//! each registered value with `***` — so a secret cannot leak through an error message that happens to
//! echo it (serde, for example, quotes the offending value in "invalid type" errors).

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
    /// Registers one secret value; empty strings are ignored (they would match everywhere).
    pub fn add(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut values = self.0.lock().expect("secrets lock");
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
            // Longest first, so a secret that contains another is replaced whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Registers every string under a secret-like key anywhere in `value` (objects nested under a
    /// secret key count as secret as a whole).
    pub fn collect(&self, value: &Value) {
        self.collect_inner(value, false);
    }

    fn collect_inner(&self, value: &Value, secret: bool) {
        match value {
            Value::String(s) if secret => self.add(s),
            Value::Array(items) => items.iter().for_each(|v| self.collect_inner(v, secret)),
            Value::Object(map) => {
                for (k, v) in map {
                    self.collect_inner(v, secret || is_secret_key(k));
                }
            }
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
    fn collects_nested_and_redacts_longest_first() {
        let s = Secrets::default();
        s.collect(&json!({"director": {"client_secret": "abc"}, "secret": {"deep": ["abcdef"]}, "name": "abc-public"}));
        assert_eq!(s.redact("x abcdef abc y"), "x *** *** y");
        // A non-secret field's value is only hidden where it equals a secret.
        assert_eq!(s.redact("name"), "name");
    }
}
