//! The `/_sim` routes: the control endpoints tests use to observe and steer the simulator (request log, faults,
//! stats), and generic content for client tests (blobs, a small JSON document, a JSON array of any size).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream;
use serde_json::json;

use crate::shared::Shared;
use crate::shared::blob::{self, CHUNK};
use crate::shared::faults::FaultRule;

pub(crate) fn routes(shared: Shared) -> Router {
    Router::new()
        .route("/_sim/requests", get(list_requests).delete(clear_requests))
        .route("/_sim/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_sim/stats", get(stats))
        .route("/_sim/blob/{seed}/{size}", get(blob))
        .route("/_sim/blob/{seed}/{size}/digests", get(blob_digests))
        .route("/_sim/json", get(small_json))
        .route("/_sim/big-json/{bytes}", get(big_json))
        .with_state(shared)
}

async fn list_requests(State(shared): State<Shared>) -> Response {
    Json(shared.log.records()).into_response()
}

async fn clear_requests(State(shared): State<Shared>) -> StatusCode {
    shared.log.clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(shared): State<Shared>) -> Response {
    Json(shared.faults.list()).into_response()
}

async fn add_fault(State(shared): State<Shared>, Json(rule): Json<FaultRule>) -> Response {
    if let Err(e) = rule.validate() {
        return (StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")).into_response();
    }
    shared.faults.add(rule.clone());
    (StatusCode::CREATED, Json(rule)).into_response()
}

async fn clear_faults(State(shared): State<Shared>) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Shared>) -> Response {
    Json(shared.stats()).into_response()
}

async fn blob(Path((seed, size)): Path<(u64, u64)>, method: Method, headers: HeaderMap) -> Response {
    blob::blob_response(seed, size, &headers, &method)
}

async fn blob_digests(State(shared): State<Shared>, Path((seed, size)): Path<(u64, u64)>) -> Response {
    // Hashing a large blob takes seconds of CPU: keep it off the async workers.
    match shared.digests.off_thread(seed, size).await {
        Ok(digests) => Json(digests).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn small_json() -> Json<serde_json::Value> {
    Json(json!({
        "name": "repave-sim",
        "version": 1,
        "items": [{"id": 1, "ok": true}, {"id": 2, "ok": false}],
        "note": null
    }))
}

/// A valid JSON array of exactly `bytes` bytes (at least 2), streamed, to test a client's body cap.
async fn big_json(Path(bytes): Path<u64>) -> Response {
    if bytes < 2 {
        return (StatusCode::BAD_REQUEST, "big-json needs at least 2 bytes").into_response();
    }
    let chunks = (0..bytes).step_by(CHUNK).map(move |at| {
        let piece: Vec<u8> = (at..bytes.min(at + CHUNK as u64)).map(|i| big_json_byte(i, bytes)).collect();
        Ok::<_, Infallible>(Bytes::from(piece))
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream::iter(chunks))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    response
}

/// Byte `i` of `[0,0,…,0]` padded with one trailing space when needed to hit the exact size.
fn big_json_byte(i: u64, total: u64) -> u8 {
    let inner_len = total - 2;
    match i {
        0 => b'[',
        _ if i == total - 1 => b']',
        _ => {
            let j = i - 1;
            match (j % 2, j == inner_len - 1) {
                (1, true) => b' ',
                (1, false) => b',',
                _ => b'0',
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_json_is_valid_at_every_size() {
        for total in 2..40u64 {
            let text: Vec<u8> = (0..total).map(|i| big_json_byte(i, total)).collect();
            let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
            assert!(value.is_array(), "{total}");
        }
    }
}
