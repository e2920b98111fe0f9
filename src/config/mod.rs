//! Typed `source` and `params` for every kind, and the friendly errors users see when they are wrong.
//!
//! Parsing is strict: an unknown key is an error that names the key and suggests the nearest valid
//! one ("unknown field `nmae` in source, did you mean `name`?"); a wrong type names the field path and
//! the expected type. Per-kind types live in the submodules; the shared pieces (kinds, HTTP tuning,
//! durations, logins, the director and Ops Manager blocks) live here.

pub(crate) mod errors;
pub(crate) mod fleet;
pub(crate) mod kubernetes;
pub(crate) mod opsman;
pub(crate) mod stemcell;

use crate::clients::director;
use crate::clients::opsman as opsman_api;
use crate::clients::uaa::Grant;
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
    Opsman,
}

const KINDS: &[(&str, Kind)] =
    &[("stemcell", Kind::Stemcell), ("kubernetes", Kind::Kubernetes), ("fleet", Kind::Fleet), ("opsman", Kind::Opsman)];

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

impl<S, G: DeserializeOwned, P: DeserializeOwned> Typed<S, G, P> {
    /// The request of `step` around an already checked `source`: `in`'s params parsed, `out`'s parsed and
    /// then checked against the source by `check_put`.
    pub(crate) fn for_step(
        step: crate::protocol::Step,
        request: &crate::protocol::Request,
        source: S,
        check_put: impl FnOnce(&P, &S) -> Result<()>,
    ) -> Result<Self> {
        use crate::protocol::Step;
        let version = request.version.clone();
        Ok(match step {
            Step::Check => Typed::Check { source, version },
            Step::In => Typed::In { source, params: parse(&request.params, "params")?, version },
            Step::Out => {
                let params: P = parse(&request.params, "params")?;
                check_put(&params, &source)?;
                Typed::Out { source, params }
            }
        })
    }
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
    parse_source_beside(map, &[])
}

/// [`parse_source`] for a kind whose `source` also holds the fields `beside` at its top level, parsed
/// into another type by the caller (the Ops Manager login of `kind: opsman`): they are left out here
/// but count as valid names in unknown-field errors.
pub(crate) fn parse_source_beside<T: DeserializeOwned + HasConnection>(
    map: &Map<String, Value>,
    beside: &[&str],
) -> Result<T> {
    let (shared, own): (Map<String, Value>, Map<String, Value>) =
        map.clone().into_iter().partition(|(key, _)| Connection::FIELDS.contains(&key.as_str()));
    let own: Map<String, Value> = own.into_iter().filter(|(key, _)| !beside.contains(&key.as_str())).collect();
    let valid: Vec<&str> = beside.iter().chain(Connection::FIELDS).copied().collect();
    let mut source: T = parse_with(&own, "source", &valid)?;
    *source.connection_mut() = parse(&shared, "source")?;
    Ok(source)
}

/// The entries of `map` whose keys are in `fields`.
pub(crate) fn only(map: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    map.iter().filter(|(key, _)| fields.contains(&key.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
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

/// Which identity logs in to a UAA: exactly one of the two credential pairs a `source` may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    Client { id: String, secret: String },
    User { username: String, password: String },
}

impl Login {
    /// Exactly one of `client_id`/`client_secret` or `username`/`password`; errors name the fields
    /// under `at` (`source`, `source.opsman`).
    pub(crate) fn one_of(
        at: &str,
        client_id: &Option<String>,
        client_secret: &Option<String>,
        username: &Option<String>,
        password: &Option<String>,
    ) -> Result<Login> {
        match (client_id, client_secret, username, password) {
            (Some(id), Some(secret), None, None) => Ok(Login::Client { id: id.clone(), secret: secret.clone() }),
            (None, None, Some(u), Some(p)) => Ok(Login::User { username: u.clone(), password: p.clone() }),
            (Some(_), None, None, None) => bail!("{at}.client_secret is required with {at}.client_id"),
            (None, Some(_), None, None) => bail!("{at}.client_id is required with {at}.client_secret"),
            (None, None, Some(_), None) => bail!("{at}.password is required with {at}.username"),
            (None, None, None, Some(_)) => bail!("{at}.username is required with {at}.password"),
            (None, None, None, None) => bail!(
                "{at} needs credentials: `client_id` and `client_secret` (client_credentials), or `username` and `password`"
            ),
            _ => bail!("{at}: set either `client_id`/`client_secret` or `username`/`password`, not both"),
        }
    }

    /// The UAA grant: client credentials, or a password grant through `public_client` (empty secret).
    pub(crate) fn grant(self, public_client: &str) -> Grant {
        match self {
            Login::Client { id, secret } => Grant::ClientCredentials { client_id: id, client_secret: secret },
            Login::User { username, password } => {
                Grant::Password { client_id: public_client.to_string(), username, password }
            }
        }
    }
}

/// The TKGI tile's product type in Ops Manager (docs/facts/opsman.md).
pub(crate) const TKGI_PRODUCT: &str = "pivotal-container-service";

/// An Ops Manager (`source.opsman` of `kind: stemcell` and `kind: fleet`; the top-level login fields of
/// `kind: opsman`); the client takes it as an [`opsman_api::Login`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsmanSource {
    /// e.g. `https://opsman.example.com`
    pub url: String,
    /// Its UAA; default: `url` with the path `/uaa`, where Ops Manager runs it.
    #[serde(default)]
    pub uaa_url: Option<String>,
    /// client_credentials login (a UAA client with the `opsman.admin` authority).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// password login through the public client `opsman`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// PEM of the CA that signed Ops Manager's certificate (`kind: opsman` uses the source's `ca_cert`).
    #[serde(default)]
    pub ca_cert: Option<String>,
}

impl OpsmanSource {
    /// The fields `kind: opsman` takes at the top level of its `source` (its `ca_cert` is the connection's).
    pub(crate) const LOGIN_FIELDS: &[&str] = &["url", "uaa_url", "client_id", "client_secret", "username", "password"];

    /// Checks the block (`at` names it in errors) and turns it into the client's login.
    pub(crate) fn login(&self, at: &str) -> Result<opsman_api::Login> {
        check_https(&format!("{at}.url"), &self.url)?;
        if let Some(uaa) = &self.uaa_url {
            check_https(&format!("{at}.uaa_url"), uaa)?;
        }
        let login = Login::one_of(at, &self.client_id, &self.client_secret, &self.username, &self.password)?;
        let url = self.url.trim_end_matches('/').to_string();
        let (uaa_url, uaa_origin) = match &self.uaa_url {
            Some(uaa) => (uaa.trim_end_matches('/').to_string(), None),
            None => (
                format!("{url}/uaa"),
                Some(format!(
                    "{at}.url with the path /uaa, where Ops Manager runs its UAA; set {at}.uaa_url if yours differs"
                )),
            ),
        };
        let grant = login.grant(opsman_api::PUBLIC_CLIENT);
        Ok(opsman_api::Login { url, uaa_url, uaa_origin, grant, ca_cert: self.ca_cert.clone() })
    }
}

/// An https URL with a host: credentials and tokens never travel over plain http.
fn check_https(field: &str, url: &str) -> Result<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(()),
        Ok(u) if u.scheme() == "http" => {
            bail!("{field} `{url}` is plain http: use https (credentials and tokens never travel unencrypted)")
        }
        _ => bail!("{field} `{url}` is not a URL: expected https://HOST, e.g. https://opsman.example.com"),
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
        assert!(Kind::from_source(&m).unwrap_err().to_string().contains("`stemcell`, `kubernetes`, `fleet`, `opsman`"));
        m.insert("knid".into(), Value::String("stemcell".into()));
        let err = Kind::from_source(&m).unwrap_err().to_string();
        assert!(err.contains("source.kind is required") && err.contains("`knid`, did you mean `kind`?"), "{err}");
        m.insert("kind".into(), Value::String("stemcel".into()));
        assert!(Kind::from_source(&m).unwrap_err().to_string().contains("did you mean `stemcell`"));
    }

    #[test]
    fn opsman_logins() {
        let block = |v: serde_json::Value| -> Result<opsman_api::Login> {
            parse::<OpsmanSource>(v.as_object().unwrap(), "source.opsman")?.login("source.opsman")
        };
        let login =
            block(serde_json::json!({"url": "https://om.example.com/", "username": "u", "password": "p"})).unwrap();
        assert_eq!(
            (login.url.as_str(), login.uaa_url.as_str()),
            ("https://om.example.com", "https://om.example.com/uaa")
        );
        assert!(matches!(login.grant, Grant::Password { ref client_id, .. } if client_id == "opsman"));
        let own_uaa = serde_json::json!({"url": "https://om", "uaa_url": "https://uaa:8443", "client_id": "c", "client_secret": "s"});
        assert_eq!(block(own_uaa).unwrap().uaa_url, "https://uaa:8443");
        let err = block(serde_json::json!({"url": "http://om", "client_id": "c", "client_secret": "s"})).unwrap_err();
        assert!(err.to_string().contains("source.opsman.url") && err.to_string().contains("plain http"), "{err}");
        let both = serde_json::json!({"url": "https://om", "client_id": "c", "client_secret": "s", "username": "u", "password": "p"});
        assert!(block(both).unwrap_err().to_string().contains("source.opsman: set either"));
        let err = block(serde_json::json!({"url": "https://om"})).unwrap_err().to_string();
        assert!(err.contains("source.opsman needs credentials"), "{err}");
        let err = block(serde_json::json!({"client_id": "c", "client_secret": "s"})).unwrap_err().to_string();
        assert_eq!(err, "source.opsman.url is required");
    }
}
