//! The request log middleware: one [`RequestRecord`] per request, with the status the client got and the body
//! bytes actually handed to the connection. The control endpoints are not logged, so reading the log does not
//! change it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::shared::faults::{AppliedFault, is_control_path};
use crate::shared::shaping::count_body;
use crate::state::{RequestRecord, SimState};

pub async fn middleware(State(state): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    if is_control_path(req.uri().path()) {
        return next.run(req).await;
    }
    let mut record = RequestRecord {
        id: 0,
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        status: 0,
        range: header_str(req.headers(), header::RANGE.as_str()),
        auth_scheme: auth_scheme(req.headers()),
        bytes_sent: 0,
        fault: None,
        at_ms: state.elapsed_ms(),
    };
    let response = next.run(req).await;
    record.status = response.status().as_u16();
    record.fault = response.extensions().get::<AppliedFault>().map(|f| f.0.to_owned());
    let sent = state.log_request(record);
    count_body(response, sent)
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The scheme of the `authorization` header (`Basic`, `Bearer`, …); the credentials are never read.
fn auth_scheme(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    let scheme = value.as_bytes().split(|b| b.is_ascii_whitespace()).next().unwrap_or_default();
    Some(String::from_utf8_lossy(scheme).into_owned())
}
