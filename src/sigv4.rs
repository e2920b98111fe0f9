//! AWS Signature Version 4 for reading objects from S3-compatible stores: S3, MinIO, and GCS in
//! interoperability mode. bosh-io-stemcell-resource calls this `source.auth` (HMAC keys for a
//! mirror whose tarballs sit in a private bucket); repave accepts the same field.
//!
//! Only what a download needs is here: GET and HEAD with an empty body, signed in headers, with
//! `x-amz-content-sha256` set to the digest of that empty body (as botocore and minio-go send it;
//! every S3-compatible store accepts it, unlike `UNSIGNED-PAYLOAD` over plain http). The
//! known-answer tests below were computed with botocore, an independent implementation.

use crate::http::UNRESERVED;
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

/// HMAC keys and the region they sign for.
#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

/// Without the secret, so a stray `{:?}` cannot print it.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("access_key", &self.access_key).field("region", &self.region).finish()
    }
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";
/// SHA-256 of the empty body.
const PAYLOAD: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The longest validity S3 accepts for a presigned URL: 7 days.
pub(crate) const MAX_PRESIGN: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The headers that sign `method url` at `now`: `x-amz-date`, `x-amz-content-sha256` and
/// `authorization`. Other headers (such as `Range`) may be added unsigned.
pub fn sign(keys: &Keys, method: &Method, url: &reqwest::Url, now: jiff::Timestamp) -> HeaderMap {
    let amz_date = amz_date(now);
    let scope = scope(keys, &amz_date);
    let headers = [("host", host(url)), ("x-amz-content-sha256", PAYLOAD.into()), ("x-amz-date", amz_date.clone())];
    let request = canonical_request(method, url, "", &headers, PAYLOAD);
    let signature = signature(keys, &amz_date, &scope, &request);
    let signed: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        keys.access_key,
        signed.join(";")
    );
    // reqwest sets `host` itself; the other signed headers and the signature go with the request.
    let mut map = HeaderMap::new();
    for (name, value) in headers.into_iter().skip(1).chain([("authorization", authorization)]) {
        let value = HeaderValue::from_str(&value).expect("signature headers are ASCII");
        map.insert(HeaderName::from_static(name), value);
    }
    map
}

/// `url` with a signature in its query, valid for `expires` from `now` (at most [`MAX_PRESIGN`]):
/// a GET anyone holding it can make, such as a BOSH director fetching a tarball. Returns the URL
/// and the signature (a credential while it is valid: callers register it as a secret).
pub fn presign(
    keys: &Keys,
    url: &reqwest::Url,
    now: jiff::Timestamp,
    expires: std::time::Duration,
) -> (String, String) {
    let amz_date = amz_date(now);
    let scope = scope(keys, &amz_date);
    let credential = format!("{}/{scope}", keys.access_key);
    let expires = expires.min(MAX_PRESIGN).as_secs().max(1).to_string();
    let added: String = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", amz_date.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={}", aws_encode(value)))
    .collect::<Vec<_>>()
    .join("&");
    let request = canonical_request(&Method::GET, url, &added, &[("host", host(url))], "UNSIGNED-PAYLOAD");
    let signature = signature(keys, &amz_date, &scope, &request);
    let mut base = url.clone();
    base.set_query(None);
    let query = match url.query().filter(|q| !q.is_empty()) {
        Some(existing) => format!("{existing}&{added}"),
        None => added,
    };
    (format!("{base}?{query}&X-Amz-Signature={signature}"), signature)
}

fn amz_date(now: jiff::Timestamp) -> String {
    now.strftime("%Y%m%dT%H%M%SZ").to_string()
}

fn scope(keys: &Keys, amz_date: &str) -> String {
    format!("{}/{}/{SERVICE}/aws4_request", &amz_date[..8], keys.region)
}

fn signature(keys: &Keys, amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request)));
    hex(&hmac(&signing_key(keys, &amz_date[..8]), to_sign.as_bytes()))
}

/// The Host header as reqwest sends it: the port only when it is not the scheme's default.
fn host(url: &reqwest::Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// `extra_query` (already encoded) joins the URL's own parameters; `headers` are sorted by name.
fn canonical_request(
    method: &Method,
    url: &reqwest::Url,
    extra_query: &str,
    headers: &[(&str, String)],
    payload: &str,
) -> String {
    let parts = [url.query().unwrap_or_default(), extra_query];
    let query: Vec<&str> = parts.into_iter().filter(|q| !q.is_empty()).collect();
    let header_lines: String = headers.iter().map(|(name, value)| format!("{name}:{value}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    format!(
        "{method}\n{}\n{}\n{header_lines}\n{}\n{payload}",
        canonical_path(url.path()),
        canonical_query(&query.join("&")),
        signed.join(";"),
    )
}

/// S3 signs the path with each segment encoded once, by AWS's rules (only unreserved characters
/// stay). The URL holds it percent-encoded by the URL standard's looser rules, so decode first.
fn canonical_path(path: &str) -> String {
    let segments: Vec<String> = path.split('/').map(aws_reencode).collect();
    let joined = segments.join("/");
    if joined.is_empty() { "/".to_string() } else { joined }
}

/// Parameters sorted by name then value, each encoded by AWS's rules; `a` alone becomes `a=`.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (aws_reencode(name), aws_reencode(value))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// Decodes `%XX` escapes to bytes, then encodes by AWS's rules (a malformed escape decodes as its
/// literal bytes, so its `%` is encoded).
fn aws_reencode(text: &str) -> String {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(text).collect();
    percent_encoding::percent_encode(&bytes, UNRESERVED).to_string()
}

fn aws_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

fn signing_key(keys: &Keys, date: &str) -> Vec<u8> {
    let date_key = hmac(format!("AWS4{}", keys.secret_key).as_bytes(), date.as_bytes());
    let region_key = hmac(&date_key, keys.region.as_bytes());
    let service_key = hmac(&region_key, SERVICE.as_bytes());
    hmac(&service_key, b"aws4_request")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(region: &str) -> Keys {
        Keys {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: region.into(),
        }
    }

    fn authorization(method: Method, url: &str, region: &str) -> String {
        let now: jiff::Timestamp = "2026-11-24T10:27:52Z".parse().unwrap();
        let headers = sign(&keys(region), &method, &url.parse().unwrap(), now);
        assert_eq!(headers["x-amz-date"], "20261124T102752Z");
        assert_eq!(headers["x-amz-content-sha256"], PAYLOAD);
        headers["authorization"].to_str().unwrap().to_string()
    }

    fn signature(authorization: &str) -> &str {
        authorization.rsplit("Signature=").next().unwrap()
    }

    #[test]
    fn header_layout() {
        let auth = authorization(Method::GET, "https://bucket.s3.amazonaws.com/a.tgz", "us-east-1");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{auth}"
        );
    }

    // Expected signatures: botocore 1.44 `S3SigV4Auth(credentials, "s3", region).add_auth(request)`
    // over the same method and URL, with its clock fixed at the same instant.
    #[test]
    fn known_answers_from_botocore() {
        let cases = [
            (
                Method::GET,
                "https://bosh-core-stemcells.s3.amazonaws.com/1.951/bosh-stemcell-1.951-aws-xen-hvm-ubuntu-jammy-go_agent.tgz",
                "us-east-1",
                "e798d9aac5723685718b3b0d66d8b5afaf83194fd8e5e52fea5edf46dfac653a",
            ),
            (
                Method::HEAD,
                "https://127.0.0.1:9000/mirror/stemcells/light%20bosh%2Bstemcell%281%29.tgz?versionId=3&acl",
                "eu-west-2",
                "d3ef511aaf8ebf7b1705727f0e341bb211f420d80ffe9721604f014eb020f07c",
            ),
            (
                Method::GET,
                "https://storage.googleapis.com/bucket/a~b/c%24d.tgz",
                "auto",
                "5d92e72211c709a506534b08895937bf2ecac5d14b33abe1b2a7d012f5cbde97",
            ),
        ];
        for (method, url, region, expected) in cases {
            assert_eq!(signature(&authorization(method.clone(), url, region)), expected, "{method} {url}");
        }
    }

    // Expected URLs: botocore 1.44 `S3SigV4QueryAuth(credentials, "s3", region, expires=N)`.
    #[test]
    fn presigned_urls_match_botocore() {
        let now: jiff::Timestamp = "2026-11-24T10:27:52Z".parse().unwrap();
        let cases = [
            (
                "https://bosh-core-stemcells.s3.amazonaws.com/1.951/bosh-stemcell-1.951-aws-xen-hvm-ubuntu-jammy-go_agent.tgz",
                "us-east-1",
                3600,
                "https://bosh-core-stemcells.s3.amazonaws.com/1.951/bosh-stemcell-1.951-aws-xen-hvm-ubuntu-jammy-go_agent.tgz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261124%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261124T102752Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=4231c2cf3953f145832eaa2e7b1c5ca80c944a28e59f4728906a61176418f991",
            ),
            (
                "https://127.0.0.1:9000/mirror/stemcells/light%20bosh%2Bstemcell%281%29.tgz?versionId=3",
                "eu-west-2",
                604800,
                "https://127.0.0.1:9000/mirror/stemcells/light%20bosh%2Bstemcell%281%29.tgz?versionId=3&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261124%2Feu-west-2%2Fs3%2Faws4_request&X-Amz-Date=20261124T102752Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=85a44c3c770de6063908dc7e8d77554e6022b9f09b2452976eacce004a983393",
            ),
        ];
        for (url, region, secs, expected) in cases {
            let (presigned, signature) =
                presign(&keys(region), &url.parse().unwrap(), now, std::time::Duration::from_secs(secs));
            assert_eq!(presigned, expected);
            assert!(expected.ends_with(&signature));
        }
        let (capped, _) = presign(&keys("auto"), &"https://h/b/k".parse().unwrap(), now, MAX_PRESIGN * 2);
        assert!(capped.contains("X-Amz-Expires=604800&"), "{capped}");
    }

    #[test]
    fn paths_and_queries_are_canonicalised_by_aws_rules() {
        assert_eq!(canonical_path("/b/light%20x+y(1).tgz"), "/b/light%20x%2By%281%29.tgz");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_query("versionId=3&acl&a=%2f"), "a=%2F&acl=&versionId=3");
        assert_eq!(aws_reencode("%zz%41"), "%25zzA");
    }
}
