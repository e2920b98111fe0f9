//! The tarball download engine: parallel HTTP ranges (or one stream), one-pass hashing overlapped
//! with the transfer, resume after a dropped connection, progress lines, and a verified rename.
//!
//! The first request is a GET for the first piece (the whole file when one stream is enough): its
//! answer both starts the transfer and says whether ranges work (206 and the total length) or not
//! (200, the whole body, which then becomes the one stream). No HEAD, so the first byte comes one
//! round trip after the stemcell list, and the other connections start as soon as that answer is in.
//!
//! Layout of a ranged download: the file is cut into pieces of a few MiB; `parallel` workers take
//! pieces in file order and write each received chunk at its offset (positioned writes into one
//! temp file). A hasher thread hashes the contiguous prefix of finished bytes where they lie: it maps
//! a small window of the file read-only and hashes the page cache in place. Before, it read every
//! byte back into a buffer: one more copy per byte, about 0.1 CPU-s per GiB, a fifth of `in`'s
//! system time. A handover in memory (keeping each received chunk, a reference to the HTTP client's
//! buffer, until the hasher reached it) was built and measured first: it saved the copy, but the
//! client then had to allocate fresh buffers (page faults), and peak RSS rose by 7–21 MiB, for no
//! net CPU gain. The mapped window costs at most [`VIEW`] of resident memory and nothing on the
//! workers' side.
//!
//! Why the hasher is not fed through a channel in file order: that would either buffer out-of-order
//! chunks without bound or make later pieces wait for earlier ones (one slow connection stalls all).
//! The file is the buffer; the hasher only needs to know how far it is finished.
//!
//! Pieces are small and taken in order, and a worker only starts a piece within [`LOOKAHEAD`]
//! pieces of the hashed prefix, so the unhashed backlog stays bounded and the hash finishes
//! moments after the last byte arrives. Without that bound one slow connection holds the prefix
//! back while the others race ahead: measured on loopback (1 GiB, 8 connections, 16 MiB pieces),
//! the prefix stood still at 38 MiB for half the transfer and 860 MiB were left to hash after the
//! last byte, on one core, doubling the wall time.
//!
//! Bounds (a hostile or broken server must not hold a step for ever or fill the disk): the whole
//! transfer runs under a deadline derived from its size and `http.min_transfer_rate`, since a server
//! trickling a byte a second never trips the stall timeout; and no more bytes are taken than the
//! size the list publishes (a server's larger `Content-Range`/`Content-Length` is refused at once, a
//! body without a length is cut off at the limit). The verified file is world-readable (0644): a
//! later task may run as another user.

use crate::clients::boshio::Variant;
use crate::http::{Failure, HttpClient, Retry, classify, is_retryable_status, parse_retry_after, status_error};
use crate::redact::Log;
use crate::sigv4;
use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderMap, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::Digest;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A digest bosh.io publishes, the strongest one available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checksum {
    pub algo: Algo,
    pub hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algo {
    Sha256,
    Sha1,
    Md5,
}

impl Algo {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha1 => "sha1",
            Algo::Md5 => "md5",
        }
    }
}

impl Checksum {
    /// sha256 when published, else sha1, else md5 (bosh.io always has md5; older versions lack
    /// sha256). `None` only for a mirror that publishes no digest at all.
    pub(crate) fn for_variant(variant: &Variant) -> Option<Checksum> {
        let non_empty =
            |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
        [(Algo::Sha256, &variant.sha256), (Algo::Sha1, &variant.sha1), (Algo::Md5, &variant.md5)]
            .into_iter()
            .find_map(|(algo, value)| non_empty(value).map(|hex| Checksum { algo, hex }))
    }
}

/// One running digest of the selected algorithm.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl Hasher {
    fn new(algo: Algo) -> Self {
        match algo {
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("{:x}", h.finalize()),
            Hasher::Sha1(h) => format!("{:x}", h.finalize()),
            Hasher::Md5(h) => format!("{:x}", h.finalize()),
        }
    }
}

/// Tuning of one download.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Parallel range requests (1 = one resumable stream).
    pub parallel: u32,
    /// How often a progress line is logged.
    pub progress_every: Duration,
    /// Sign every tarball request with these keys (a private S3-compatible bucket).
    pub auth: Option<sigv4::Keys>,
    /// The size the mirror publishes, if any. It sizes the first request only: the server's
    /// `Content-Range` is the truth the pieces are planned from.
    pub published_size: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options { parallel: 8, progress_every: Duration::from_secs(5), auth: None, published_size: None }
    }
}

/// Pieces are small so the hashed prefix follows the download closely, and large enough that one
/// request per piece costs nothing measurable (connections are kept alive).
const MIN_PIECE: u64 = 256 << 10;
const MAX_PIECE: u64 = 4 << 20;
/// Below this size a file comes in one stream whatever `parallel` says: at most four pieces, which
/// take under 50 ms even through a 20 MiB/s per-connection limit, so more connections (a TCP and
/// TLS handshake each) cannot gain much. Above it they do: measured through ci/shaper at 20 MiB/s
/// per connection, 4 MiB took 194 ms in one stream and 25 ms over 8 ranges. On loopback, where
/// nothing limits a connection, one stream was at most a few ms faster up to 16 MiB.
const ONE_STREAM_BELOW: u64 = 1 << 20;
/// How many pieces past the hashed prefix a worker may start, at least: the bound on what is left
/// to hash when the last byte arrives (128 MiB with 4 MiB pieces, ~70 ms of sha256). Twice the
/// connection count when that is more, so equal connections never wait on each other. Measured by
/// ci/bench (1 GiB, 8 connections, 2 cores): 16 pieces left workers waiting for room, 1.32× curl;
/// 32 pieces, 0.99× curl, with peak RSS unchanged (the window lives in the page cache, not in us).
const LOOKAHEAD: usize = 32;
/// The hasher's mapped window onto the file: the resident memory hashing in place costs.
const VIEW: u64 = 2 << 20;
/// The read-back buffer, used only where the file cannot be mapped.
const HASH_BUF: usize = 256 << 10;
/// How long the hasher sleeps when it has caught up and no writer woke it.
const HASHER_NAP: Duration = Duration::from_millis(20);
/// Total length unknown (a server without Content-Length), or an open-ended range.
const UNKNOWN: u64 = u64::MAX;
/// The most bytes taken from a mirror that publishes no size: far beyond any stemcell.
const UNPUBLISHED_LIMIT: u64 = 16 << 30;

/// The piece length for a file of `len` bytes: about 8 pieces per connection, within bounds.
fn piece_size(len: u64, parallel: u32) -> u64 {
    (len / (u64::from(parallel.max(1)) * 8)).clamp(MIN_PIECE, MAX_PIECE)
}

/// Cuts `total` bytes into contiguous pieces in file order: `0..first` (what the first request
/// asked for), then pieces of [`piece_size`].
pub(crate) fn plan_pieces(first: u64, total: u64, parallel: u32) -> Vec<Range<u64>> {
    let first = first.min(total);
    let piece = piece_size(total, parallel);
    let rest = (first..total).step_by(piece as usize).map(|start| start..(start + piece).min(total));
    std::iter::once(0..first).filter(|p| !p.is_empty()).chain(rest).collect()
}

/// The end of the first request: the whole file when one stream is enough (or its size is
/// unknown and one connection was asked for), else the first piece.
fn first_end(published: Option<u64>, parallel: u32) -> u64 {
    match published {
        _ if parallel <= 1 => UNKNOWN,
        Some(len) if len < ONE_STREAM_BELOW => len,
        Some(len) => piece_size(len, parallel),
        None => MAX_PIECE,
    }
}

/// A `Range` header value for `from..end` (`end` may be [`UNKNOWN`]: to the end of the file).
fn range_header(from: u64, end: u64) -> String {
    if end == UNKNOWN { format!("bytes={from}-") } else { format!("bytes={from}-{}", end - 1) }
}

const TEMP_PREFIX: &str = ".repave-download-";

/// A killed `in` (kill -9, an OOM kill, a lost worker) never drops its temp file; a rerun into the same
/// directory removes such leftovers so they cannot fill the disk. Failures to remove are only logged.
fn remove_stale_parts(dir: &Path, log: &crate::redact::Log) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(".part") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => log.line(format!("removed {name}, left behind by an interrupted download")),
                Err(e) => log.warn(format!("could not remove the stale partial download {name}: {e}")),
            }
        }
    }
}

/// Downloads `url` to `dest`, verifying `expected`. Nothing appears under `dest` unless the digest
/// matched: the bytes go to a temp file in the same directory, renamed at the end (and removed on
/// any failure when the temp file is dropped).
pub(crate) async fn download(
    http: &HttpClient,
    url: &str,
    dest: &Path,
    expected: &Checksum,
    opts: &Options,
) -> Result<()> {
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    remove_stale_parts(dir, http.log());
    let temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(".part")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let limit = opts.published_size.filter(|size| *size > 0).unwrap_or(UNPUBLISHED_LIMIT);
    let job = Job {
        http: http.clone(),
        url: url.to_string(),
        file: Arc::new(temp.as_file().try_clone()?),
        algo: expected.algo,
        auth: opts.auth.clone().map(Arc::new),
        limit,
    };
    let started = Instant::now();
    let deadline = http.config().transfer_deadline(limit);
    let (hex, bytes, connections) = tokio::time::timeout(deadline, job.transfer(opts)).await.map_err(|_| {
        let rate = http.config().min_transfer_rate;
        anyhow!(
            "downloading {url}: not finished after {}, the time {} takes at the slowest rate allowed \
             (http.min_transfer_rate, {rate} bytes/s, plus http.request_timeout); the server sends too slowly, \
             and the download was discarded",
            crate::rollout::human(deadline),
            mib(limit)
        )
    })??;
    if hex != expected.hex {
        // `temp` is dropped on return: the unverified bytes are removed.
        bail!(
            "{} of {url} does not match the published checksum: expected {}, computed {hex}; the download was discarded",
            expected.algo.name(),
            expected.hex
        );
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    http.log().line(format!(
        "downloaded {} in {elapsed:.1}s ({:.1} MiB/s) over {connections} connection(s), {} verified",
        mib(bytes),
        bytes as f64 / 1048576.0 / elapsed,
        expected.algo.name()
    ));
    // No fsync: Concourse volumes do not outlive a worker crash, and forcing 1 GiB to disk would
    // cost more than the whole transfer on a fast link. The mode is set before the rename, on the open
    // file (the umask does not apply), so the final name is never seen private.
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).context("making the download readable")?;
    temp.persist(dest).with_context(|| format!("renaming the verified download to {}", dest.display()))?;
    Ok(())
}

/// The answer to the first request, whose body is already the start of the file.
enum Opened {
    /// 206: ranges work. The body is bytes `0..first` of `total`.
    Ranged { response: Response, first: u64, total: u64 },
    /// 200: the server ignored the range. The body is the whole file, of `len` bytes if it said so.
    Whole { response: Response, len: Option<u64> },
}

/// Parses the first answer's `Content-Range: bytes 0-{last}/{total}` and checks it covers what was
/// asked for (`0..end`, shortened to the file). Returns `(first, total)`.
fn opening_range(headers: &HeaderMap, end: u64) -> Option<(u64, u64)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (last, total) = value.strip_prefix("bytes 0-")?.split_once('/')?;
    let (last, total): (u64, u64) = (last.trim().parse().ok()?, total.trim().parse().ok()?);
    (last.checked_add(1)? == end.min(total)).then_some((last + 1, total))
}

/// The failure for an answer with an unexpected status, with a hint for the usual causes; 429 and
/// 5xx are retryable.
async fn status_failure(response: Response, url: &str, signed: bool) -> Failure {
    let status = response.status();
    let retryable = is_retryable_status(status);
    let retry_after = parse_retry_after(response.headers());
    let hint = match status {
        StatusCode::OK => " (the server ignored the Range header)",
        // S3 answers a wrong region with 400 AuthorizationHeaderMalformed.
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if signed => {
            " (the bucket refused the request signed with source.auth: check its keys and region)"
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            " (access denied: if the tarballs sit in a private S3 or GCS bucket, set source.auth)"
        }
        _ => "",
    };
    let error = status_error(response, 1024).await.context(format!("GET {url}{hint}"));
    Failure { error, retryable, retry_after }
}

/// State shared by the workers, the hasher and the progress reporter of one transfer.
struct Shared {
    pieces: Vec<Range<u64>>,
    /// Bytes written so far from the start of each piece; only grows.
    done: Vec<AtomicU64>,
    next: AtomicUsize,
    received: AtomicU64,
    /// Set when the transfer failed, so the hasher stops waiting.
    failed: AtomicBool,
    /// The total length once known (the end of a stream of unknown size), else [`UNKNOWN`].
    total: AtomicU64,
    /// The first piece not wholly hashed yet (or `usize::MAX` once the hasher has stopped, so nobody
    /// waits for it any more).
    frontier: AtomicUsize,
    /// Signalled when `frontier` moves.
    moved: tokio::sync::Notify,
}

impl Shared {
    fn new(pieces: Vec<Range<u64>>, total: u64) -> Arc<Self> {
        let done = pieces.iter().map(|_| AtomicU64::new(0)).collect();
        Arc::new(Shared {
            pieces,
            done,
            next: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            total: AtomicU64::new(total),
            frontier: AtomicUsize::new(0),
            moved: tokio::sync::Notify::new(),
        })
    }

    /// Takes in a chunk received for piece `index` at `offset`: written to the file, then counted.
    /// In that order: once the count covers a byte, the hasher may read it.
    fn deliver(&self, file: &File, index: usize, offset: u64, chunk: &[u8]) -> std::io::Result<()> {
        // A positioned write into the page cache takes microseconds; moving each chunk to a
        // blocking thread would cost more than it saves.
        file.write_all_at(chunk, offset)?;
        self.done[index].fetch_add(chunk.len() as u64, Ordering::Release);
        self.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes the hasher's progress (the first piece not wholly hashed) and wakes waiting workers.
    fn advance_frontier(&self, to: usize) {
        if self.frontier.swap(to, Ordering::AcqRel) != to {
            self.moved.notify_waiters();
        }
    }

    /// Waits until piece `index` is within `lookahead` pieces of the frontier.
    async fn wait_for_room(&self, index: usize, lookahead: usize) {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            // Registered before the check, so a move between the check and the await is not missed.
            moved.as_mut().enable();
            if index < self.frontier.load(Ordering::Acquire).saturating_add(lookahead) {
                return;
            }
            moved.await;
        }
    }

    /// The end of the finished prefix, scanning from piece `from` (the hasher keeps its cursor).
    fn prefix(&self, from: &mut usize) -> u64 {
        while let Some(piece) = self.pieces.get(*from) {
            let done = self.done[*from].load(Ordering::Acquire);
            if done < piece.end - piece.start {
                return piece.start + done;
            }
            *from += 1;
        }
        self.pieces.last().map_or(0, |p| p.end)
    }
}

/// One download of one URL into one file.
struct Job {
    http: HttpClient,
    url: String,
    file: Arc<File>,
    algo: Algo,
    auth: Option<Arc<sigv4::Keys>>,
    /// The most bytes the file may have: the published size.
    limit: u64,
}

impl Job {
    /// Opens the transfer with its first request, then fetches the rest in ranged pieces, or the
    /// whole body as one stream when the server ignored the range. Returns the hex digest, the byte
    /// count and the connections used.
    async fn transfer(&self, opts: &Options) -> Result<(String, u64, usize)> {
        match self.open(first_end(opts.published_size, opts.parallel)).await? {
            Opened::Ranged { total, .. } | Opened::Whole { len: Some(total), .. } if total > self.limit => bail!(
                "{} says the tarball has {total} bytes, more than the {} the stemcell list publishes; refusing it",
                self.url,
                self.limit
            ),
            Opened::Ranged { response, first, total } => self.ranged(response, first, total, opts).await,
            Opened::Whole { response, len } => {
                self.http.log().line(format!(
                    "downloading {}: {} in one stream (the server does not support ranges)",
                    self.url,
                    len.map_or("unknown size".to_string(), mib)
                ));
                let (hex, bytes) = self.whole(response, len, opts).await?;
                Ok((hex, bytes, 1))
            }
        }
    }

    /// The first request: bytes `0..end`, retried like any GET until it is answered.
    async fn open(&self, end: u64) -> Result<Opened> {
        let what = format!("GET {}", self.url);
        self.http
            .retry(&what, || async {
                let request = self.request(Method::GET).header(RANGE, range_header(0, end));
                let response = request.send().await.map_err(|e| classify(e, Retry::Idempotent))?;
                self.judge_opening(response, end).await
            })
            .await
    }

    /// 206 for what was asked (ranges work), or 200 (the server ignored the range: the whole body).
    async fn judge_opening(&self, response: Response, end: u64) -> std::result::Result<Opened, Failure> {
        match response.status() {
            StatusCode::OK => Ok(Opened::Whole { len: content_length(&response), response }),
            StatusCode::PARTIAL_CONTENT => match opening_range(response.headers(), end) {
                Some((first, total)) => Ok(Opened::Ranged { response, first, total }),
                None => {
                    let range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let asked = range_header(0, end);
                    Err(Failure::fatal(anyhow!("GET {} answered Content-Range `{range}` for {asked}", self.url)))
                }
            },
            _ => Err(status_failure(response, &self.url, self.auth.is_some()).await),
        }
    }

    /// The rest of a ranged transfer whose first piece is streaming in `response`.
    async fn ranged(&self, response: Response, first: u64, total: u64, opts: &Options) -> Result<(String, u64, usize)> {
        let pieces = plan_pieces(first, total, opts.parallel);
        let connections = pieces.len().clamp(1, opts.parallel.max(1) as usize);
        let how = match pieces.len() {
            0 | 1 => "in one resumable stream".to_string(),
            n => format!("in {n} pieces over {connections} connection(s)"),
        };
        self.http.log().line(format!("downloading {}: {} {how}", self.url, mib(total)));
        let hex = self.run(pieces, connections, true, opts, Some(response)).await.map_err(|f| f.error)?;
        Ok((hex, total, connections))
    }

    /// One stream without ranges. A broken stream cannot resume, so a retry starts over from byte 0
    /// with a fresh hasher (and a fresh request: the first attempt reads the opening answer).
    async fn whole(&self, response: Response, len: Option<u64>, opts: &Options) -> Result<(String, u64)> {
        let what = format!("downloading {}", self.url);
        let end = len.unwrap_or(UNKNOWN);
        let mut opened = Some(response);
        self.http
            .retry(&what, || {
                let opened = opened.take();
                async move {
                    self.file.set_len(0).map_err(|e| Failure::fatal(anyhow!("truncating the temp file: {e}")))?;
                    let hex = self.run(vec![Range { start: 0, end }], 1, false, opts, opened).await?;
                    let bytes = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                    Ok((hex, bytes))
                }
            })
            .await
    }

    /// A request for the tarball, signed afresh (each retry gets a current `x-amz-date`).
    fn request(&self, method: Method) -> RequestBuilder {
        let request = self.http.client().request(method.clone(), &self.url);
        let Some(keys) = &self.auth else { return request };
        // An unparsable URL is left unsigned: sending it reports the real error.
        match reqwest::Url::parse(&self.url) {
            Ok(url) => request.headers(sigv4::sign(keys, &method, &url, jiff::Timestamp::now())),
            Err(_) => request,
        }
    }

    /// Fetches `pieces` with `connections` workers while the hasher follows; returns the hex digest.
    /// `opened`, the answer to the first request, is the body of piece 0.
    async fn run(
        &self,
        pieces: Vec<Range<u64>>,
        connections: usize,
        ranged: bool,
        opts: &Options,
        opened: Option<Response>,
    ) -> std::result::Result<String, Failure> {
        let total = pieces.last().map_or(0, |p| p.end);
        if total != UNKNOWN {
            self.file.set_len(total).map_err(|e| Failure::fatal(anyhow!("sizing the download's temp file: {e}")))?;
        }
        let shared = Shared::new(pieces, total);
        // Piece 0 belongs to the worker holding its answer.
        shared.next.store(usize::from(opened.is_some()), Ordering::Relaxed);
        let lookahead = LOOKAHEAD.max(2 * connections);
        let (hasher, digest) = spawn_hasher(Arc::clone(&shared), Arc::clone(&self.file), self.algo);
        let progress = tokio::spawn(report_progress(Arc::clone(&shared), self.http.log().clone(), opts.progress_every));
        let mut opened = opened;
        // Dropped early (the transfer's deadline passed), the hasher must stop too.
        let _stop_hasher = StopHasher(Arc::clone(&shared), hasher.clone());
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let worker = Worker {
                job: self.clone_parts(),
                shared: Arc::clone(&shared),
                hasher: hasher.clone(),
                ranged,
                lookahead,
            };
            workers.spawn(worker.run(opened.take()));
        }
        let outcome = join_workers(workers).await;
        progress.abort();
        if outcome.is_err() {
            shared.failed.store(true, Ordering::Release);
        }
        hasher.unpark();
        let hashed = digest.await.map_err(|_| Failure::fatal(anyhow!("the hashing thread ended without an answer")))?;
        outcome?;
        hashed.map_err(Failure::fatal)
    }

    fn clone_parts(&self) -> Job {
        Job {
            http: self.http.clone(),
            url: self.url.clone(),
            file: Arc::clone(&self.file),
            algo: self.algo,
            auth: self.auth.clone(),
            limit: self.limit,
        }
    }
}

/// Marks a transfer failed when dropped, so the hasher thread ends whether `run` finished or was
/// cancelled (after success the flag changes nothing: the hasher has already returned).
struct StopHasher(Arc<Shared>, Thread);

impl Drop for StopHasher {
    fn drop(&mut self) {
        self.0.failed.store(true, Ordering::Release);
        self.1.unpark();
    }
}

/// Waits for every worker; the first failure aborts the others and is returned.
async fn join_workers(
    mut workers: tokio::task::JoinSet<std::result::Result<(), Failure>>,
) -> std::result::Result<(), Failure> {
    while let Some(joined) = workers.join_next().await {
        let result = joined.map_err(|e| Failure::fatal(anyhow!("a download worker failed: {e}"))).and_then(|r| r);
        if let Err(e) = result {
            workers.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

fn content_length(response: &Response) -> Option<u64> {
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Starts the hasher thread. A plain thread, not a runtime task: hashing is CPU-bound and must not
/// take a runtime worker away from the connections.
fn spawn_hasher(
    shared: Arc<Shared>,
    file: Arc<File>,
    algo: Algo,
) -> (Thread, tokio::sync::oneshot::Receiver<Result<String>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = std::thread::spawn(move || {
        let result = hash_prefix(&shared, &file, algo);
        // Workers waiting for the prefix to move must not wait for a hasher that has stopped.
        shared.advance_frontier(usize::MAX);
        let _ = tx.send(result);
    });
    (handle.thread().clone(), rx)
}

/// Hashes the file as its finished prefix grows, until the whole length is hashed.
fn hash_prefix(shared: &Shared, file: &File, algo: Algo) -> Result<String> {
    let mut hasher = Hasher::new(algo);
    let mut reader = Reader { file, view: Some(view::View::default()), buf: Vec::new() };
    let (mut hashed, mut cursor) = (0u64, 0usize);
    // The first piece not wholly hashed: workers start pieces relative to it.
    let mut frontier = 0usize;
    loop {
        while shared.pieces.get(frontier).is_some_and(|p| p.end <= hashed) {
            frontier += 1;
        }
        shared.advance_frontier(frontier);
        let prefix = shared.prefix(&mut cursor);
        if prefix > hashed {
            hashed += reader.hash(&mut hasher, hashed, prefix)?;
            continue;
        }
        if hashed == shared.total.load(Ordering::Acquire) {
            return Ok(hasher.hex());
        }
        if shared.failed.load(Ordering::Acquire) {
            bail!("the download failed before it could be hashed");
        }
        std::thread::park_timeout(HASHER_NAP);
    }
}

/// Where the hasher gets finished bytes: the page cache in place, or copies read back where the
/// file cannot be mapped (a filesystem without mmap).
struct Reader<'f> {
    file: &'f File,
    view: Option<view::View>,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Hashes bytes from `from` on, short of `end`; returns how many.
    fn hash(&mut self, hasher: &mut Hasher, from: u64, end: u64) -> Result<u64> {
        if let Some(view) = &mut self.view {
            // SAFETY: `from..end` lies in the finished prefix: every byte of it was written before
            // a worker counted it (read with Acquire), and no byte is written twice. The file only
            // shrinks when a whole stream restarts, after this thread has ended.
            match unsafe { view.bytes(self.file, from, end) } {
                Ok(bytes) => {
                    hasher.update(bytes);
                    return Ok(bytes.len() as u64);
                }
                Err(_) => self.view = None,
            }
        }
        self.buf.resize(HASH_BUF, 0);
        let n = (end - from).min(HASH_BUF as u64) as usize;
        self.file.read_exact_at(&mut self.buf[..n], from).context("reading back the download for hashing")?;
        hasher.update(&self.buf[..n]);
        Ok(n as u64)
    }
}

/// A read-only mapping of one aligned [`VIEW`]-sized window of a file (memmap2): the only unsafe
/// code here.
mod view {
    use super::VIEW;
    use memmap2::{Mmap, MmapOptions};
    use std::fs::File;
    use std::io;

    #[derive(Default)]
    pub(super) struct View {
        /// The window's file offset and its mapping, once mapped.
        mapped: Option<(u64, Mmap)>,
    }

    impl View {
        /// The bytes of `file` from `from`, short of `end`, up to the end of the window holding `from`.
        ///
        /// # Safety
        /// No byte of `from..end` may change, and the file must not shrink below `end`, while the
        /// view is alive: a mapped page past the end of a file faults (SIGBUS).
        pub(super) unsafe fn bytes(&mut self, file: &File, from: u64, end: u64) -> io::Result<&[u8]> {
            let start = from / VIEW * VIEW;
            if self.mapped.as_ref().is_none_or(|(mapped, _)| *mapped != start) {
                self.mapped = None;
                // SAFETY: a new read-only mapping; the caller vouches that the bytes read through it
                // do not change and that the file does not shrink below them.
                let map = unsafe { MmapOptions::new().offset(start).len(VIEW as usize).map(file)? };
                self.mapped = Some((start, map));
            }
            let (_, map) = self.mapped.as_ref().expect("mapped above");
            let n = (end - from).min(start + VIEW - from) as usize;
            let at = (from - start) as usize;
            Ok(&map[at..at + n])
        }
    }
}

/// One connection's loop: take the next piece in file order, fetch it (resuming after breaks).
struct Worker {
    job: Job,
    shared: Arc<Shared>,
    hasher: Thread,
    ranged: bool,
    lookahead: usize,
}

impl Worker {
    /// `opened` is the answer to the first request: this worker then starts with piece 0.
    async fn run(self, opened: Option<Response>) -> std::result::Result<(), Failure> {
        if let Some(response) = opened {
            self.piece(0, Some(response)).await?;
        }
        loop {
            let index = self.shared.next.fetch_add(1, Ordering::Relaxed);
            if index >= self.shared.pieces.len() {
                return Ok(());
            }
            self.piece(index, None).await?;
        }
    }

    /// A whole stream is tried once here (its caller restarts it); a piece is retried from the
    /// last byte received.
    async fn piece(&self, index: usize, opened: Option<Response>) -> std::result::Result<(), Failure> {
        let piece = self.shared.pieces[index].clone();
        self.shared.wait_for_room(index, self.lookahead).await;
        if !self.ranged {
            return self.fetch(index, &piece, opened).await;
        }
        let what = format!("GET {} bytes {}-{}", self.job.url, piece.start, piece.end - 1);
        let mut opened = opened;
        self.job.http.retry(&what, || self.fetch(index, &piece, opened.take())).await.map_err(Failure::fatal)
    }

    /// One request for the rest of a piece, from the last byte received (or the first request's
    /// answer, already judged, when `opened` holds it).
    async fn fetch(
        &self,
        index: usize,
        piece: &Range<u64>,
        opened: Option<Response>,
    ) -> std::result::Result<(), Failure> {
        let from = piece.start + self.shared.done[index].load(Ordering::Acquire);
        if from >= piece.end {
            return Ok(());
        }
        let mut response = match opened {
            Some(response) => response,
            None => self.request(from, piece).await?,
        };
        let mut offset = from;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => return Err(classify(e, Retry::Idempotent)),
            };
            let len = chunk.len() as u64;
            if offset + len > self.job.limit {
                return Err(Failure::fatal(anyhow!(
                    "{} sent more than the {} bytes the stemcell list publishes; the download was discarded",
                    self.job.url,
                    self.job.limit
                )));
            }
            if offset + len > piece.end {
                return Err(Failure::fatal(anyhow!("{} sent more bytes than asked for", self.job.url)));
            }
            self.shared
                .deliver(&self.job.file, index, offset, &chunk)
                .map_err(|e| Failure::fatal(anyhow!("writing the download to disk: {e}")))?;
            offset += len;
            self.hasher.unpark();
        }
        self.finish(offset, piece)
    }

    /// Sends the request for `from..piece.end` and judges its answer.
    async fn request(&self, from: u64, piece: &Range<u64>) -> std::result::Result<Response, Failure> {
        let mut request = self.job.request(Method::GET);
        if self.ranged {
            request = request.header(RANGE, range_header(from, piece.end));
        }
        let response = request.send().await.map_err(|e| classify(e, Retry::Idempotent))?;
        self.judge(response, from, piece).await
    }

    /// Requires 206 for exactly the asked range (200 for a whole stream); 429/5xx are retried.
    async fn judge(&self, response: Response, from: u64, piece: &Range<u64>) -> std::result::Result<Response, Failure> {
        let expected = if self.ranged { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        if response.status() != expected {
            return Err(status_failure(response, &self.job.url, self.job.auth.is_some()).await);
        }
        if !self.ranged {
            return Ok(response);
        }
        let range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !range.starts_with(&format!("bytes {from}-{}/", piece.end - 1)) {
            return Err(Failure::fatal(anyhow!(
                "GET {} answered Content-Range `{range}` for bytes {from}-{}",
                self.job.url,
                piece.end - 1
            )));
        }
        Ok(response)
    }

    /// After the body ended: a short piece means the connection closed early; retry from `offset`.
    fn finish(&self, offset: u64, piece: &Range<u64>) -> std::result::Result<(), Failure> {
        if piece.end == UNKNOWN {
            self.shared.total.store(offset, Ordering::Release);
            return Ok(());
        }
        if offset < piece.end {
            return Err(Failure::transient(anyhow!(
                "the connection closed after byte {offset} of {}; resuming from there",
                piece.end
            )));
        }
        Ok(())
    }
}

/// Logs percent, MiB, MiB/s and ETA every `every` (plain lines: a Concourse build log is no TTY).
async fn report_progress(shared: Arc<Shared>, log: Log, every: Duration) {
    let started = Instant::now();
    let total = shared.total.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(every).await;
        let received = shared.received.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let rate = received as f64 / secs.max(1e-3);
        log.line(progress_line(received, total, rate));
    }
}

fn progress_line(received: u64, total: u64, rate: f64) -> String {
    let speed = format!("{:.1} MiB/s", rate / 1048576.0);
    if total == UNKNOWN || total == 0 {
        return format!("  {} received, {speed}", mib(received));
    }
    let percent = received as f64 * 100.0 / total as f64;
    let eta = if rate > 0.0 { format!("{:.0}s", total.saturating_sub(received) as f64 / rate) } else { "?".into() };
    format!("  {percent:.0}% {} of {}, {speed}, ETA {eta}", mib(received), mib(total))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn pieces_cover_the_file_in_order() {
        let cases =
            [(1u64, 1u64, 8u32), (MIN_PIECE, MIN_PIECE, 8), (MAX_PIECE, 10 << 20, 8), (MAX_PIECE, (1 << 30) + 7, 8)];
        for (first, len, parallel) in cases.into_iter().chain([(UNKNOWN, 5 << 20, 1), (100, 3 << 20, 4)]) {
            let pieces = plan_pieces(first, len, parallel);
            assert_eq!(pieces[0], 0..first.min(len));
            assert_eq!(pieces.last().unwrap().end, len);
            assert!(pieces.windows(2).all(|w| w[0].end == w[1].start && w[0].start < w[0].end));
            assert!(pieces[1..].iter().all(|p| p.end - p.start <= MAX_PIECE));
        }
        assert_eq!(plan_pieces(MAX_PIECE, 1 << 30, 8).len(), 256, "1 GiB over 8 connections: 4 MiB pieces");
        assert!(plan_pieces(MAX_PIECE, 0, 8).is_empty());
    }

    #[test]
    fn the_first_request_is_the_whole_file_below_the_threshold_or_on_one_connection() {
        assert_eq!(first_end(Some(ONE_STREAM_BELOW - 1), 8), ONE_STREAM_BELOW - 1);
        assert_eq!(first_end(Some(1 << 30), 8), MAX_PIECE);
        assert_eq!(first_end(Some(1 << 30), 1), UNKNOWN);
        assert_eq!(first_end(None, 8), MAX_PIECE);
        assert_eq!(range_header(0, UNKNOWN), "bytes=0-");
        assert_eq!(range_header(5, 10), "bytes=5-9");
    }

    #[test]
    fn the_opening_answer_must_cover_what_was_asked() {
        let headers = |value: &str| HeaderMap::from_iter([(CONTENT_RANGE, value.parse().unwrap())]);
        assert_eq!(opening_range(&headers("bytes 0-99/1000"), 100), Some((100, 1000)));
        assert_eq!(opening_range(&headers("bytes 0-999/1000"), UNKNOWN), Some((1000, 1000)));
        assert_eq!(opening_range(&headers("bytes 0-49/50"), 100), Some((50, 50)), "a file shorter than published");
        assert_eq!(opening_range(&headers("bytes 0-49/1000"), 100), None, "short of what was asked");
        assert_eq!(opening_range(&headers("bytes 10-109/1000"), 100), None);
        assert_eq!(opening_range(&headers("bytes 0-99/*"), 100), None);
        assert_eq!(opening_range(&HeaderMap::new(), 100), None);
    }

    /// `len` bytes that differ from offset to offset.
    fn sample(len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8).collect()
    }

    /// Delivers `data` piece by piece in `order`, in chunks of `chunk` bytes, while the hasher
    /// runs, as the workers would; returns the digest.
    fn hash_delivered(data: &[u8], piece: u64, chunk: u64, order: &[usize]) -> String {
        let len = data.len() as u64;
        let pieces = (0..len).step_by(piece as usize).map(|start| start..(start + piece).min(len)).collect();
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.set_len(len).unwrap();
        let shared = Shared::new(pieces, len);
        let (hasher, digest) = spawn_hasher(Arc::clone(&shared), Arc::clone(&file), Algo::Sha256);
        for &index in order {
            let piece = shared.pieces[index].clone();
            for start in (piece.start..piece.end).step_by(chunk as usize) {
                let end = (start + chunk).min(piece.end);
                shared.deliver(&file, index, start, &data[start as usize..end as usize]).unwrap();
                hasher.unpark();
            }
        }
        digest.blocking_recv().unwrap().unwrap()
    }

    #[test]
    fn pieces_finishing_out_of_order_are_hashed_in_file_order() {
        // Pieces and chunks that fit neither pages nor mapped windows, over three windows.
        let data = sample(2 * VIEW as usize + 300_007);
        let expected = format!("{:x}", sha2::Sha256::digest(&data));
        let count = data.len().div_ceil(700_001);
        let in_order: Vec<usize> = (0..count).collect();
        let reversed: Vec<usize> = (0..count).rev().collect();
        let shuffled: Vec<usize> = (0..count).map(|i| (i * 5 + 3) % count).collect();
        assert_eq!(count, 7);
        for order in [in_order, reversed, shuffled] {
            assert_eq!(hash_delivered(&data, 700_001, 65_519, &order), expected, "pieces delivered in order {order:?}");
        }
    }

    #[test]
    fn hashing_in_place_and_reading_back_agree_across_window_edges() {
        let data = sample(VIEW as usize + 10_000);
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&data, 0).unwrap();
        let ranges = [0..1, 1..VIEW - 3, VIEW - 3..VIEW + 5, VIEW + 5..VIEW + 10_000];
        for view in [Some(view::View::default()), None] {
            let mapped = view.is_some();
            let mut reader = Reader { file: &file, view, buf: Vec::new() };
            let mut hasher = Hasher::new(Algo::Sha256);
            for range in ranges.iter().cloned() {
                let mut at = range.start;
                while at < range.end {
                    at += reader.hash(&mut hasher, at, range.end).unwrap();
                }
            }
            assert_eq!(reader.view.is_some(), mapped, "the file maps");
            assert_eq!(hasher.hex(), format!("{:x}", sha2::Sha256::digest(&data)), "mapped: {mapped}");
        }
    }

    #[test]
    fn checksum_preference() {
        let mut v = Variant { md5: Some("AB".into()), sha1: Some("".into()), ..Default::default() };
        assert_eq!(Checksum::for_variant(&v), Some(Checksum { algo: Algo::Md5, hex: "ab".into() }));
        v.sha1 = Some("s1".into());
        assert_eq!(Checksum::for_variant(&v).unwrap().algo, Algo::Sha1);
        v.sha256 = Some("s256".into());
        assert_eq!(Checksum::for_variant(&v).unwrap(), Checksum { algo: Algo::Sha256, hex: "s256".into() });
        assert_eq!(Checksum::for_variant(&Variant::default()), None);
    }

    #[test]
    fn digests_are_the_well_known_ones() {
        let mut h = Hasher::new(Algo::Sha256);
        h.update(b"abc");
        assert_eq!(h.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut h = Hasher::new(Algo::Sha1);
        h.update(b"abc");
        assert_eq!(h.hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let mut h = Hasher::new(Algo::Md5);
        h.update(b"abc");
        assert_eq!(h.hex(), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn prefix_stops_at_the_first_unfinished_piece() {
        let shared = Shared::new(vec![0..10, 10..20, 20..30], 30);
        let mut cursor = 0;
        shared.done[1].store(10, Ordering::Relaxed);
        shared.done[0].store(4, Ordering::Relaxed);
        assert_eq!(shared.prefix(&mut cursor), 4);
        shared.done[0].store(10, Ordering::Relaxed);
        assert_eq!(shared.prefix(&mut cursor), 20);
        assert_eq!(cursor, 2);
        shared.done[2].store(10, Ordering::Relaxed);
        assert_eq!(shared.prefix(&mut cursor), 30);
    }

    #[tokio::test]
    async fn workers_wait_for_the_hashed_prefix_within_the_lookahead() {
        let shared = Shared::new((0..40).map(|i| i * 10..(i + 1) * 10).collect(), 400);
        tokio::time::timeout(Duration::from_secs(5), shared.wait_for_room(15, 16)).await.expect("within the lookahead");
        let far = shared.wait_for_room(20, 16);
        tokio::pin!(far);
        assert!(far.as_mut().now_or_never().is_none(), "20 pieces ahead of the hashed prefix");
        shared.advance_frontier(4);
        assert!(far.as_mut().now_or_never().is_none());
        shared.advance_frontier(5);
        tokio::time::timeout(Duration::from_secs(5), far).await.expect("woken when the prefix moved");
        // A stopped hasher releases everyone.
        shared.advance_frontier(usize::MAX);
        tokio::time::timeout(Duration::from_secs(5), shared.wait_for_room(39, 1)).await.unwrap();
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(512 << 20, 1 << 30, 64.0 * 1048576.0),
            "  50% 512.0 MiB of 1024.0 MiB, 64.0 MiB/s, ETA 8s"
        );
        assert_eq!(progress_line(1 << 20, UNKNOWN, 0.0), "  1.0 MiB received, 0.0 MiB/s");
    }
}
