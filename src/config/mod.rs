//! Typed `source` and `params` for every kind, and the friendly errors users see when they are wrong.
//!
//! Parsing is strict: an unknown key is an error that names the key and suggests the nearest valid
//! one ("unknown field `nmae` in source, did you mean `name`?"); a wrong type names the field path and
//! the expected type. Per-kind types live in the submodules; the shared pieces (kinds, HTTP tuning,
//! durations, the director block) live here.

pub(crate) mod errors;
pub(crate) mod fleet;
pub(crate) mod kubernetes;
pub(crate) mod stemcell;

use crate::clients::director;
use crate::http::HttpConfig;
use crate::protocol::Version;
use crate::suggest::suggestion;
use anyhow::{Result, anyhow, bail};
use errors::parse_with;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::num::NonZeroUsize;
use std::time::Duration;

/// The kinds one resource can track (`source.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stemcell,
    Kubernetes,
    Fleet,
}

const KINDS: &[(&str, Kind)] =
    &[("stemcell", Kind::Stemcell), ("kubernetes", Kind::Kubernetes), ("fleet", Kind::Fleet)];

impl Kind {
    pub fn name(self) -> &'static str {
        KINDS.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).expect("every kind is listed")
    }

    /// Reads `source.kind`, listing the valid kinds when it is missing or wrong.
    pub(crate) fn from_source(source: &Map<String, Value>) -> Result<Kind> {
        let valid = KINDS.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        match source.get("kind") {
            None | Some(Value::Null) => {
                // A misspelt key (`knid`) is the likely reason, and serde never gets to report it.
                let typo = source.keys().find(|k| !suggestion(k, ["kind"].into_iter()).is_empty());
                let hint = typo.map(|k| format!(" (found the unknown field `{k}`, did you mean `kind`?)"));
                bail!("source.kind is required: one of {valid}{}", hint.unwrap_or_default())
            }
            Some(Value::String(s)) => KINDS.iter().find(|(n, _)| n == s).map(|(_, k)| *k).ok_or_else(|| {
                let hint = suggestion(s, KINDS.iter().map(|(n, _)| *n));
                anyhow!("source.kind `{s}` is not a kind repave knows{hint}: expected one of {valid}")
            }),
            Some(other) => {
                bail!("source.kind must be a string (one of {valid}), got {}", crate::protocol::type_name(other))
            }
        }
    }
}

/// A request with its `source` and `params` typed and checked for one step: what a kind's `validate`
/// returns and its `run` takes, so each request is parsed exactly once. `S`, `G` and `P` are the
/// kind's source, `in` params and `out` params.
#[derive(Debug)]
pub(crate) enum Typed<S, G, P> {
    Check {
        source: S,
        version: Option<Version>,
    },
    /// `version` is `None` only when a pipeline check validates a config without running it.
    In {
        source: S,
        params: G,
        version: Option<Version>,
    },
    Out {
        source: S,
        params: P,
    },
}

/// Deserializes `map` (the request's `source` or `params`, named `root` in errors) into `T`, turning
/// serde's messages into ones that name the full field path and suggest fixes.
pub(crate) fn parse<T: DeserializeOwned>(map: &Map<String, Value>, root: &str) -> Result<T> {
    parse_with(map, root, &[])
}

/// A kind's `source`: its own fields into `T`, and the [`Connection`] fields every kind shares into
/// `T`'s connection. serde's `flatten` would lose `deny_unknown_fields`, so the map is split by
/// [`Connection::FIELDS`] first; an unknown key is still named with the nearest valid field of both
/// parts, listed in the order the fields are documented (the kind's own, then the shared ones).
pub(crate) fn parse_source<T: DeserializeOwned + HasConnection>(map: &Map<String, Value>) -> Result<T> {
    let (shared, own): (Map<String, Value>, Map<String, Value>) =
        map.clone().into_iter().partition(|(key, _)| Connection::FIELDS.contains(&key.as_str()));
    let mut source: T = parse_with(&own, "source", Connection::FIELDS)?;
    *source.connection_mut() = parse(&shared, "source")?;
    Ok(source)
}

/// A duration written as Go/Concourse users write them: `300ms`, `30s`, `5m`, `1h30m`, `1.5h` — plus days
/// (`14d`), which VM ages and certificate lifetimes are counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = d.deserialize_str(Text("a duration such as `30s`, `5m` or `1h30m`"))?;
        match parse_duration(&text).map_err(serde::de::Error::custom)? {
            // Every duration repave takes is a timeout, interval or wait: zero would mean "fail at once"
            // or "spin", never what a user wants.
            d if d.is_zero() => Err(serde::de::Error::custom(format!(
                "`{text}` is zero: expected a duration longer than zero (omit the field for the default)"
            ))),
            d => Ok(DurationStr(d)),
        }
    }
}

/// A transfer rate as people write it: `256KiB/s`, `1MiB/s`, `2MB/s`, `500B/s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStr(pub u64);

impl<'de> Deserialize<'de> for RateStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = d.deserialize_str(Text("a transfer rate such as `256KiB/s`"))?;
        parse_rate(&text).map(RateStr).map_err(serde::de::Error::custom)
    }
}

/// Parses a rate in bytes per second; zero is refused (it would mean "no deadline", which is what the
/// setting exists to prevent).
pub fn parse_rate(text: &str) -> std::result::Result<u64, String> {
    let bad = || {
        format!("`{text}` is not a transfer rate: expected a number of bytes per second such as `256KiB/s` or `1MB/s`")
    };
    let body = text.trim().strip_suffix("/s").ok_or_else(bad)?;
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, unit) = (&body[..split], body[split..].trim());
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit {
        "B" => 1.0,
        "KB" | "kB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1048576.0,
        "GB" => 1e9,
        "GiB" => 1073741824.0,
        _ => return Err(bad()),
    };
    let rate = value * scale;
    if !(1.0..=1e15).contains(&rate) {
        return Err(format!("`{text}` is out of range: expected at least `1B/s`"));
    }
    Ok(rate as u64)
}

/// For counts that must be at least 1 (`max_in_flight`): serde's own messages ("expected a nonzero
/// usize", "expected usize" for -1) say less than this one, which covers 0 and negatives alike.
pub(crate) fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<NonZeroUsize>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(value) => {
            value.as_u64().and_then(|n| usize::try_from(n).ok()).and_then(NonZeroUsize::new).map(Some).ok_or_else(
                || {
                    let got =
                        if value.is_number() { value.to_string() } else { crate::protocol::type_name(&value).into() };
                    serde::de::Error::custom(format!("expected a whole number, at least 1, got {got}"))
                },
            )
        }
    }
}

/// A string whose kind `expecting` names, so that a number or a list where a duration belongs is
/// reported as "expected a duration such as `30s`…", not as "expected a string".
struct Text(&'static str);

impl serde::de::Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<String, E> {
        Ok(text.to_string())
    }
}

/// Parses a Go-style duration; the error says what a valid one looks like.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad =
        || format!("`{text}` is not a duration: expected a number with a unit, such as `30s`, `5m`, `1h30m` or `14d`");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// How every kind reaches its APIs: `ca_cert`, `insecure_skip_tls_verify` and the `http` tuning, the
/// same three fields in every kind's `source`. Parsed by [`parse_source`] beside the kind's own fields.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Extra trusted CA certificates (PEM), on top of the system store.
    #[serde(default)]
    pub ca_cert: Option<String>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    #[serde(default)]
    pub http: HttpOptions,
}

impl Connection {
    /// The field names above, as they appear in `source`.
    pub(crate) const FIELDS: &[&str] = &["ca_cert", "insecure_skip_tls_verify", "http"];
}

/// A kind's `source` type, which holds the shared [`Connection`] (skipped by its own serde derive).
pub(crate) trait HasConnection {
    fn connection_mut(&mut self) -> &mut Connection;
}

/// The transport settings of a source: its trust and its `http` tuning.
impl From<&Connection> for HttpConfig {
    fn from(connection: &Connection) -> Self {
        HttpConfig {
            ca_cert: connection.ca_cert.clone(),
            insecure_skip_tls_verify: connection.insecure_skip_tls_verify,
            ..HttpConfig::from(&connection.http)
        }
    }
}

/// Optional `source.http` tuning shared by every kind. Unset fields take the defaults of
/// [`crate::http::HttpConfig`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// Time allowed to open a TCP+TLS connection.
    pub connect_timeout: Option<DurationStr>,
    /// Longest pause allowed between two reads of a response before it counts as stalled.
    pub stall_timeout: Option<DurationStr>,
    /// Deadline for one API request, headers and body (not for tarball transfers).
    pub request_timeout: Option<DurationStr>,
    /// The slowest average rate a tarball transfer (download, or upload to a director) may keep up;
    /// with the tarball's size it sets the transfer's deadline.
    pub min_transfer_rate: Option<RateStr>,
    /// Total tries of a retryable request (1 = no retries).
    pub attempts: Option<std::num::NonZeroU32>,
    /// Longest wait between two tries (also caps a server's `Retry-After`).
    pub max_backoff: Option<DurationStr>,
}

/// The transport settings a source's `http` block asks for; unset fields keep [`HttpConfig`]'s
/// defaults. Lives here, not in `http`, so the transport never depends on the user-facing config.
impl From<&HttpOptions> for HttpConfig {
    fn from(opts: &HttpOptions) -> Self {
        let d = HttpConfig::default();
        HttpConfig {
            connect_timeout: opts.connect_timeout.map_or(d.connect_timeout, |x| x.0),
            stall_timeout: opts.stall_timeout.map_or(d.stall_timeout, |x| x.0),
            request_timeout: opts.request_timeout.map_or(d.request_timeout, |x| x.0),
            min_transfer_rate: opts.min_transfer_rate.map_or(d.min_transfer_rate, |x| x.0),
            attempts: opts.attempts.map_or(d.attempts, std::num::NonZeroU32::get),
            max_backoff: opts.max_backoff.map_or(d.max_backoff, |x| x.0),
            ..d
        }
    }
}

/// A BOSH director to upload stemcells to or read deployments from (`source.director`); the client
/// takes it as a [`director::Login`]. The UAA URL comes from the director's `/info`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorSource {
    /// e.g. `https://10.0.0.6:25555`
    pub url: String,
    /// UAA client with `bosh.admin`, or `bosh.stemcells.upload` with `bosh.read` (docs/stemcell.md).
    pub client: String,
    pub client_secret: String,
    /// PEM of the CA that signed the director's and its UAA's certificates.
    pub ca_cert: Option<String>,
}

impl From<&DirectorSource> for director::Login {
    fn from(source: &DirectorSource) -> Self {
        director::Login {
            url: source.url.clone(),
            client: source.client.clone(),
            client_secret: source.client_secret.clone(),
            ca_cert: source.ca_cert.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("14d").unwrap(), Duration::from_secs(14 * 86_400));
        for bad in ["", "30", "5 minutes", "m", "1x", "-1s", "2w", "14days"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("256KiB/s").unwrap(), 256 << 10);
        assert_eq!(parse_rate("1.5MB/s").unwrap(), 1_500_000);
        assert_eq!(parse_rate("1B/s").unwrap(), 1);
        for bad in ["", "256KiB", "0B/s", "fast/s", "1TB/s", "-1B/s", "0.5B/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_fields_are_listed_as_serde_sees_them() {
        let unknown = Map::from_iter([("nope".to_string(), Value::Null)]);
        let err = parse::<Connection>(&unknown, "source").unwrap_err().to_string();
        assert!(err.ends_with(&format!("(valid fields: {})", Connection::FIELDS.join(", "))), "{err}");
    }

    #[test]
    fn kind_errors() {
        let mut m = Map::new();
        assert!(Kind::from_source(&m).unwrap_err().to_string().contains("`stemcell`, `kubernetes`, `fleet`"));
        m.insert("knid".into(), Value::String("stemcell".into()));
        let err = Kind::from_source(&m).unwrap_err().to_string();
        assert!(err.contains("source.kind is required") && err.contains("`knid`, did you mean `kind`?"), "{err}");
        m.insert("kind".into(), Value::String("stemcel".into()));
        assert!(Kind::from_source(&m).unwrap_err().to_string().contains("did you mean `stemcell`"));
    }
}
