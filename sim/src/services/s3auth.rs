//! A private S3-compatible bucket in front of a tarball: requests must carry an AWS Signature
//! Version 4 `Authorization` header, checked as S3 checks it — from the server's side, over the
//! headers the client says it signed, with S3's error codes and XML bodies.
//!
//! Written from the AWS documentation separately from repave's signer (which is tested against
//! botocore), so the two do not share a mistake.

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// `s3_auth` of a tarball in a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3AuthConfig {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// S3 refuses a request whose `x-amz-date` is further than this from its clock.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Ok when the request is signed by `config`'s keys; otherwise S3's answer.
pub(crate) fn verify(config: &S3AuthConfig, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let Some(authorization) = text("authorization") else {
        return Err(refuse(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied"));
    };
    let parsed = parse(authorization)
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "AuthorizationHeaderMalformed", "malformed Authorization"))?;
    if parsed.access_key != config.access_key {
        let message = "The AWS Access Key Id you provided does not exist in our records.";
        return Err(refuse(StatusCode::FORBIDDEN, "InvalidAccessKeyId", message));
    }
    if parsed.region != config.region {
        let message = format!("the region '{}' is wrong; expecting '{}'", parsed.region, config.region);
        return Err(refuse(StatusCode::BAD_REQUEST, "AuthorizationHeaderMalformed", &message));
    }
    let amz_date = text("x-amz-date").unwrap_or_default();
    match epoch_of(amz_date) {
        Some(at) if amz_date.starts_with(&parsed.date) && (now() - at).abs() <= MAX_SKEW_SECS => {}
        Some(_) => {
            let message = "The difference between the request time and the current time is too large.";
            return Err(refuse(StatusCode::FORBIDDEN, "RequestTimeTooSkewed", message));
        }
        None => return Err(refuse(StatusCode::FORBIDDEN, "AccessDenied", "missing or malformed x-amz-date")),
    }
    let header_lines: String = parsed
        .signed_headers
        .iter()
        .map(|name| {
            let value = headers.get(name.as_str()).and_then(|v| v.to_str().ok()).unwrap_or_default();
            format!("{name}:{}\n", value.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    let payload = text("x-amz-content-sha256").unwrap_or_default();
    let signed = parsed.signed_headers.join(";");
    let canonical =
        canonical_request(method, uri.path(), uri.query().unwrap_or_default(), &header_lines, &signed, payload);
    check_signature(config, &parsed.date, amz_date, &canonical, &parsed.signature)
}

/// A presigned URL (`X-Amz-Signature` and friends in the query) as a GET would present it: what a
/// BOSH director fetching `location` sends. Checked like S3 does, expiry included.
pub(crate) fn verify_presigned(config: &S3AuthConfig, location: &str) -> Result<(), Refusal> {
    let uri: Uri = location.parse().map_err(|_| refuse(StatusCode::BAD_REQUEST, "InvalidURI", "bad URL"))?;
    let pairs: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(n, v)| (decode(n), decode(v))))
        .collect();
    let get = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let denied = |message: &str| refuse(StatusCode::FORBIDDEN, "AccessDenied", message);
    let (Some(credential), Some(amz_date), Some(expires), Some(signature)) =
        (get("X-Amz-Credential"), get("X-Amz-Date"), get("X-Amz-Expires"), get("X-Amz-Signature"))
    else {
        return Err(denied("Access Denied"));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, "s3", "aws4_request"] = parts[..] else {
        return Err(refuse(StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError", "bad X-Amz-Credential"));
    };
    if access_key != config.access_key {
        return Err(refuse(StatusCode::FORBIDDEN, "InvalidAccessKeyId", "unknown access key"));
    }
    if region != config.region {
        let message = format!("the region '{region}' is wrong; expecting '{}'", config.region);
        return Err(refuse(StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError", &message));
    }
    let (Some(at), Ok(valid)) = (epoch_of(amz_date), expires.parse::<i64>()) else {
        return Err(denied("malformed X-Amz-Date or X-Amz-Expires"));
    };
    if now() > at + valid {
        return Err(denied("Request has expired"));
    }
    let query = uri.query().unwrap_or_default().split('&').filter(|p| !p.starts_with("X-Amz-Signature="));
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let header_lines = format!("host:{host}\n");
    let query = query.collect::<Vec<_>>().join("&");
    let canonical = canonical_request(&Method::GET, uri.path(), &query, &header_lines, "host", "UNSIGNED-PAYLOAD");
    check_signature(config, date, amz_date, &canonical, signature)
}

fn check_signature(
    config: &S3AuthConfig,
    date: &str,
    amz_date: &str,
    canonical: &str,
    presented: &str,
) -> Result<(), Refusal> {
    let scope = format!("{date}/{}/s3/aws4_request", config.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{:x}", Sha256::digest(canonical.as_bytes()));
    let mut key = format!("AWS4{}", config.secret_key).into_bytes();
    for part in [date, &config.region, "s3", "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    let expected: String = mac(&key, to_sign.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    if expected != presented {
        let message = "The request signature we calculated does not match the signature you provided. \
                       Check your key and signing method.";
        return Err(refuse(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", message));
    }
    Ok(())
}

struct Authorization {
    access_key: String,
    date: String,
    region: String,
    signed_headers: Vec<String>,
    signature: String,
}

/// `AWS4-HMAC-SHA256 Credential=AK/20261124/us-east-1/s3/aws4_request, SignedHeaders=a;b, Signature=hex`
fn parse(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let field = |name: &str| {
        rest.split(',').map(str::trim).find_map(|part| part.strip_prefix(name)?.strip_prefix('=')).map(str::to_string)
    };
    let credential = field("Credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, "s3", "aws4_request"] = parts[..] else { return None };
    Some(Authorization {
        access_key: access_key.into(),
        date: date.into(),
        region: region.into(),
        signed_headers: field("SignedHeaders")?.split(';').map(str::to_string).collect(),
        signature: field("Signature")?,
    })
}

/// Path segments and query parameters are decoded, then encoded by AWS's rules; parameters sorted.
fn canonical_request(
    method: &Method,
    path: &str,
    query: &str,
    header_lines: &str,
    signed: &str,
    payload: &str,
) -> String {
    let path: Vec<String> = path.split('/').map(|segment| encode(&decode(segment))).collect();
    let mut query: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            format!("{}={}", encode(&decode(name)), encode(&decode(value)))
        })
        .collect();
    query.sort();
    format!("{method}\n{}\n{}\n{header_lines}\n{signed}\n{payload}", path.join("/"), query.join("&"))
}

/// AWS URI encoding: everything but unreserved characters as `%XX`.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let pair: Vec<u8> = bytes.clone().take(2).collect();
            if let Some(v) = std::str::from_utf8(&pair).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                bytes.nth(1);
                continue;
            }
        }
        out.push(b);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `20261124T102752Z` as Unix seconds (proleptic Gregorian, UTC).
fn epoch_of(amz_date: &str) -> Option<i64> {
    if amz_date.len() != 16 || &amz_date[8..9] != "T" || !amz_date.ends_with('Z') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| amz_date.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from 1970-01-01 to y-m-d (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// S3's answer to a request it will not serve: a status, an error code and an XML body.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal { status, code, message: message.to_string() }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            self.code, self.message
        );
        (self.status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_to_epoch() {
        assert_eq!(epoch_of("19700101T000000Z"), Some(0));
        assert_eq!(epoch_of("20261124T102752Z"), Some(1_795_516_072));
        assert_eq!(epoch_of("2026-11-24"), None);
    }

    #[test]
    fn presigned_urls_expire_and_need_their_parameters() {
        let config = S3AuthConfig { access_key: "AK".into(), secret_key: "SK".into(), region: "us-east-1".into() };
        let old = "https://h/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20200101%2Fus-east-1%2Fs3%2Faws4_request\
                   &X-Amz-Date=20200101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
        let expired = verify_presigned(&config, old).unwrap_err();
        assert_eq!((expired.code, expired.message.as_str()), ("AccessDenied", "Request has expired"));
        assert_eq!(verify_presigned(&config, "https://h/b/k").unwrap_err().code, "AccessDenied");
        let other_key = old.replace("Credential=AK%2F", "Credential=XX%2F");
        assert_eq!(verify_presigned(&config, &other_key).unwrap_err().code, "InvalidAccessKeyId");
    }

    #[test]
    fn authorization_header_parts() {
        let a = parse(
            "AWS4-HMAC-SHA256 Credential=AK/20261124/eu-west-2/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab",
        )
        .unwrap();
        assert_eq!((a.access_key.as_str(), a.date.as_str(), a.region.as_str()), ("AK", "20261124", "eu-west-2"));
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(a.signature, "ab");
        assert!(parse("AWS AK:sig").is_none());
    }
}
