//! Deterministic blobs: content that is a pure function of (seed, offset), so any byte range of a file of any
//! size can be served without storing it. The basis of the bosh.io tarball routes; also served directly under
//! `/_sim/blob/{seed}/{size}` for client tests (through the fault layer).
//!
//! Byte `i` is byte `i % 8` (little-endian) of `splitmix64(seed + (i / 8) * GAMMA)`: the splitmix64 sequence
//! started at `seed`, which is fast, well mixed and random-access.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, stream};
use md5::Md5;
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::task::JoinError;

use super::util::lock;

/// Bytes generated per stream item.
pub(crate) const CHUNK: usize = 64 * 1024;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn word(seed: u64, index: u64) -> [u8; 8] {
    splitmix64(seed.wrapping_add(index.wrapping_mul(GAMMA))).to_le_bytes()
}

/// Fills `buf` with the blob's bytes starting at `offset`.
pub(crate) fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    // Unaligned head: the tail end of one word.
    let skip = (offset % 8) as usize;
    let head = if skip == 0 { 0 } else { (8 - skip).min(buf.len()) };
    if head > 0 {
        buf[..head].copy_from_slice(&word(seed, offset / 8)[skip..skip + head]);
    }
    let mut index = (offset + head as u64) / 8;
    let mut words = buf[head..].chunks_exact_mut(8);
    for out in &mut words {
        out.copy_from_slice(&word(seed, index));
        index += 1;
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(seed, index)[..n]);
}

/// `len` bytes of the blob from `offset`, in [`CHUNK`]-sized pieces, generated as they are polled.
pub(crate) fn blob_bytes(seed: u64, offset: u64, len: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let end = offset.saturating_add(len);
    stream::iter((offset..end).step_by(CHUNK).map(move |at| {
        let mut buf = vec![0; (end - at).min(CHUNK as u64) as usize];
        fill(seed, at, &mut buf);
        Ok(Bytes::from(buf))
    }))
}

/// Hex digests of a whole blob, as bosh.io publishes them for stemcells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobDigests {
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
}

/// Digests of the blob (seed, size). About a few seconds per GiB: cache it ([`DigestCache`]) and run it off the
/// async workers.
pub(crate) fn blob_digests(seed: u64, size: u64) -> BlobDigests {
    let (mut md5, mut sha1, mut sha256) = (Md5::new(), Sha1::new(), Sha256::new());
    let mut buf = vec![0; CHUNK];
    for at in (0..size).step_by(CHUNK) {
        let piece = &mut buf[..(size - at).min(CHUNK as u64) as usize];
        fill(seed, at, piece);
        md5.update(&piece[..]);
        sha1.update(&piece[..]);
        sha256.update(&piece[..]);
    }
    BlobDigests {
        md5: hex::encode(md5.finalize()),
        sha1: hex::encode(sha1.finalize()),
        sha256: hex::encode(sha256.finalize()),
    }
}

/// Digests by (seed, size): bosh.io's list, the director and `/_sim/blob/…/digests` all publish the same values,
/// and each blob is hashed once.
#[derive(Default)]
pub(crate) struct DigestCache(Mutex<HashMap<(u64, u64), Arc<Hashed>>>);

/// A blob's digests once the first caller has hashed it; later callers wait on the same cell.
type Hashed = OnceLock<BlobDigests>;

impl DigestCache {
    /// md5/sha1/sha256 of a blob, computed once per (seed, size). CPU-bound: from async code use
    /// [`DigestCache::off_thread`].
    pub(crate) fn get(&self, seed: u64, size: u64) -> BlobDigests {
        let cell = Arc::clone(lock(&self.0).entry((seed, size)).or_default());
        // Hashed outside the map's lock (1 GiB takes seconds and must not hold up other blobs). A caller that
        // arrives while the blob is being hashed waits for that result instead of hashing it again: a client that
        // timed out and retried must find its first request's work done, not start over beside it.
        cell.get_or_init(|| blob_digests(seed, size)).clone()
    }

    /// [`DigestCache::get`] on the blocking pool, so hashing a large blob never holds up the async workers.
    pub(crate) async fn off_thread(self: &Arc<Self>, seed: u64, size: u64) -> Result<BlobDigests, JoinError> {
        let cache = Arc::clone(self);
        tokio::task::spawn_blocking(move || cache.get(seed, size)).await
    }
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    Full,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parses a single `bytes=` range. Multiple ranges and malformed headers are ignored (a full 200 is a valid
/// answer to them); a well-formed range outside the body is unsatisfiable.
fn parse_range(value: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Full;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let (first, last) = (first.trim(), last.trim());
    let bounds = match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(a), Some(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Some(a), None) if last.is_empty() => (a, size.saturating_sub(1)),
        (None, Some(n)) if first.is_empty() && n > 0 => (size.saturating_sub(n), size.saturating_sub(1)),
        (None, Some(0)) if first.is_empty() => return RangeAsk::Unsatisfiable,
        _ => return RangeAsk::Full,
    };
    if bounds.0 >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part { start: bounds.0, end: bounds.1 }
}

/// A complete response for the blob (seed, size): 200, 206 with `Content-Range`, or 416; HEAD gets headers only.
pub(crate) fn blob_response(seed: u64, size: u64, headers: &HeaderMap, method: &Method) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match parse_range(range, size) {
        RangeAsk::Full => (StatusCode::OK, 0, size),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAsk::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            insert(&mut response, header::CONTENT_RANGE, format!("bytes */{size}"));
            return response;
        }
    };
    let body = if method == Method::HEAD { Body::empty() } else { Body::from_stream(blob_bytes(seed, start, len)) };
    let mut response = (status, body).into_response();
    insert(&mut response, header::CONTENT_LENGTH, len.to_string());
    insert(&mut response, header::CONTENT_TYPE, "application/octet-stream".to_owned());
    insert(&mut response, header::ACCEPT_RANGES, "bytes".to_owned());
    if status == StatusCode::PARTIAL_CONTENT {
        insert(&mut response, header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", start + len - 1));
    }
    response
}

fn insert(response: &mut Response, name: header::HeaderName, value: String) {
    let value = HeaderValue::try_from(value).expect("header values built from numbers are valid");
    response.headers_mut().insert(name, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        fill(seed, offset, &mut buf);
        buf
    }

    #[test]
    fn any_window_agrees_with_the_whole() {
        let whole = bytes(7, 0, 200);
        for (offset, len) in [(0, 200), (3, 1), (5, 2), (1, 17), (8, 8), (13, 100), (199, 1)] {
            assert_eq!(bytes(7, offset, len), whole[offset as usize..offset as usize + len], "{offset}+{len}");
        }
        assert_ne!(bytes(8, 0, 64), whole[..64]);
    }

    #[test]
    fn ranges() {
        use RangeAsk::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Part { start: 2, end: 4 });
        assert_eq!(parse_range(Some("bytes=2-"), 10), Part { start: 2, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part { start: 0, end: 9 });
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Part { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
    }

    #[test]
    fn digests_of_empty_blob_are_the_well_known_ones() {
        let d = blob_digests(1, 0);
        assert_eq!(d.md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(d.sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
