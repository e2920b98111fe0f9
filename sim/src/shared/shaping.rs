//! Reshaping a response body in flight: cutting it, pausing it, throttling it, counting what was sent.
//!
//! Wrapping a body in a stream loses its exact size hint, so [`keep_length`] pins the original length in a
//! `Content-Length` header first: clients then see a short body as an error, not as a complete response.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures_util::{Stream, StreamExt, stream};
use tokio::time::Instant;

/// A fault applied to the bytes of a body, counted from its first byte.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyFault {
    /// Yield an error after `after` bytes so hyper aborts the connection mid-body.
    Reset { after: u64 },
    /// End cleanly after `after` bytes; with the original `Content-Length` the client sees a truncated body.
    Truncate { after: u64 },
    /// Pause once for `ms` when `after` bytes have been sent.
    Stall { after: u64, ms: u64 },
    /// Never get ahead of `bytes_per_sec` since the first byte.
    Rate { bytes_per_sec: u64 },
}

/// Pins the body's exact length, if known, as `Content-Length` before the body is wrapped.
pub(crate) fn keep_length(response: &mut Response) {
    let exact = response.body().size_hint().exact();
    if let (Some(len), false) = (exact, response.headers().contains_key(header::CONTENT_LENGTH)) {
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// Replaces the body of `response` with `f(body stream)`, keeping its length header.
fn map_body<S>(mut response: Response, f: impl FnOnce(BodyDataStream) -> S) -> Response
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    keep_length(&mut response);
    response.map(|body| Body::from_stream(f(body.into_data_stream())))
}

/// Applies a body fault to a response.
pub(crate) fn shape_body(response: Response, fault: BodyFault) -> Response {
    map_body(response, |inner| {
        let shaper = Shaper { inner, pending: Bytes::new(), sent: 0, fault, stalled: false, first: None, done: false };
        stream::unfold(shaper, Shaper::next_piece)
    })
}

/// Counts the body bytes handed to the connection into `sent` (read by the request log).
pub(crate) fn count_body(response: Response, sent: Arc<AtomicU64>) -> Response {
    map_body(response, move |inner| {
        inner.map(move |chunk| {
            let chunk = chunk.map_err(io::Error::other)?;
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Ok(chunk)
        })
    })
}

/// hyper drops whatever it still buffers when a body fails or ends short, headers included, so the
/// client would see a failed request instead of a cut body. Returning `Pending` for a moment makes
/// hyper flush what it has; the pause also lets a slow reader drain a full socket (best effort:
/// bytes still unflushed after it are lost).
async fn let_hyper_flush() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

struct Shaper {
    inner: BodyDataStream,
    /// Bytes read from `inner` but not yet yielded.
    pending: Bytes,
    sent: u64,
    fault: BodyFault,
    stalled: bool,
    first: Option<Instant>,
    done: bool,
}

impl Shaper {
    async fn next_piece(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        match self.fill().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                self.done = true;
                let_hyper_flush().await;
                return Some((Err(e), self));
            }
        }
        let piece = match self.fault {
            BodyFault::Reset { after } if self.sent >= after => {
                self.done = true;
                let_hyper_flush().await;
                return Some((Err(io::Error::new(io::ErrorKind::ConnectionReset, "injected reset")), self));
            }
            BodyFault::Truncate { after } if self.sent >= after => {
                let_hyper_flush().await;
                return None;
            }
            BodyFault::Reset { after } | BodyFault::Truncate { after } => self.take(after - self.sent),
            BodyFault::Stall { after, ms } => self.stall_piece(after, ms).await,
            BodyFault::Rate { bytes_per_sec } => self.rate_piece(bytes_per_sec).await,
        };
        self.sent += piece.len() as u64;
        Some((Ok(piece), self))
    }

    /// Makes sure `pending` holds data; `Ok(false)` at the end of the body. Upstream errors pass through so
    /// a failing handler still aborts the connection.
    async fn fill(&mut self) -> io::Result<bool> {
        while self.pending.is_empty() {
            match self.inner.next().await {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    fn take(&mut self, max: u64) -> Bytes {
        let n = usize::try_from(max).unwrap_or(usize::MAX).min(self.pending.len());
        self.pending.split_to(n)
    }

    async fn stall_piece(&mut self, after: u64, ms: u64) -> Bytes {
        if self.stalled {
            return self.take(u64::MAX);
        }
        if self.sent >= after {
            self.stalled = true;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return self.take(u64::MAX);
        }
        self.take(after - self.sent)
    }

    async fn rate_piece(&mut self, bytes_per_sec: u64) -> Bytes {
        // Small pieces (a tenth of a second's worth) keep the throttle smooth rather than bursty.
        let piece = self.take((bytes_per_sec / 10).max(1));
        let first = *self.first.get_or_insert_with(Instant::now);
        let due = Duration::from_secs_f64((self.sent + piece.len() as u64) as f64 / bytes_per_sec as f64);
        tokio::time::sleep_until(first + due).await;
        piece
    }
}
