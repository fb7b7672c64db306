//! `serve`: a read-through HTTP gateway in front of Parse Server, for a zero-downtime cut-over.
//! Parse Server runs with the new files adapter (the destination); the gateway passes every
//! request to it, and when a file read comes back `404`, copies the file from the old store into
//! the destination (one verified, recorded copy, as `migrate` makes) and asks Parse Server again,
//! so its file triggers, headers and Range handling answer the client. `migrate` drains the
//! files nobody asks for meanwhile.
//!
//! This module owns the listener, the per-request decisions and a graceful stop; [`proxy`] the
//! forwarding, [`route`] which paths are files, [`readthrough`] the copies on a miss,
//! [`flight`] one copy per name, [`metrics`] the counters and their listener. It decides nothing
//! about how a file is copied or recorded (the engine's [`Effects`](crate::engine::Effects)),
//! and prints nothing but log lines.
//!
//! Bounded: each request streams one chunk at a time in each direction (a file's size never
//! decides memory); copies at once are capped (`max_copies`, 503 beyond); a request waits for
//! its copy at most `wait` (504, the copy goes on).

pub mod flight;
pub mod metrics;
pub mod proxy;
pub mod readthrough;
pub mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use metrics::Metrics;
use proxy::{Body, BoxError, Head, Upstream, text};
use readthrough::{Miss, ReadThrough};

/// Largest 404 body kept to answer with when a file is absent everywhere: Parse Server's is
/// `File not found.`; anything larger is not a missing file of Parse's and is passed on.
const KEPT_404: u64 = 64 * 1024;

/// How long a client may take to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the gateway needs besides its stores and gate.
pub struct Config {
    /// Parse Server's mount path (`/parse`: the path of `publicServerURL`), when known; else the
    /// first `/files/` of a path is taken as the files route's.
    pub mount: Option<String>,
    /// Only files of this app are read through (any app's when `None`).
    pub app_id: Option<String>,
    /// See `--stream-above`.
    pub stream_above: Option<u64>,
    /// How long requests in flight get to finish once a stop is asked for.
    pub drain: Duration,
}

/// The gateway: shared by every connection.
pub struct Gateway {
    pub config: Config,
    pub upstream: Upstream,
    pub reads: Arc<ReadThrough>,
    pub metrics: Arc<Metrics>,
}

impl Gateway {
    /// Answer one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let head = Head::of(&parts, peer);
        let (m, path) = (&parts.method, parts.uri.path());
        let read = (m == Method::GET || m == Method::HEAD) && bodyless(&parts.headers);
        let (mount, app) = (self.config.mount.as_deref(), self.config.app_id.as_deref());
        let file = read.then(|| route::file_of(path, mount, app)).flatten();
        let deleted = (m == Method::DELETE)
            .then(|| route::deleted_of(path, mount))
            .flatten();
        match (file, deleted) {
            (Some(f), _) => self.read(head, f.name).await,
            (_, Some(name)) => {
                let answer = self.pass(&head, reqwest::Body::wrap(body)).await;
                if answer.status().is_success() {
                    self.deleted(&name).await;
                }
                answer
            }
            _ => {
                Metrics::add(&self.metrics.passed, 1);
                self.pass(&head, reqwest::Body::wrap(body)).await
            }
        }
    }

    /// Pass the request on, and its answer back (502 when the upstream cannot be reached).
    async fn pass(&self, head: &Head, body: reqwest::Body) -> Response<Body> {
        match self.upstream.send(head, body).await {
            Ok(r) => proxy::answer(r),
            Err(e) => self.unreachable(e),
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> Response<Body> {
        Metrics::add(&self.metrics.upstream_errors, 1);
        // Without the URL: the upstream's may carry credentials.
        tracing::warn!(
            "the upstream could not be reached: {}",
            crate::storage::error_chain(&e.without_url())
        );
        text(
            StatusCode::BAD_GATEWAY,
            "the upstream (Parse Server) could not be reached",
        )
    }

    /// A GET or HEAD of a file: the upstream first; on its 404, the read-through.
    async fn read(&self, head: Head, name: String) -> Response<Body> {
        let first = match self
            .upstream
            .send(&head, reqwest::Body::from(Bytes::new()))
            .await
        {
            Ok(r) => r,
            Err(e) => return self.unreachable(e),
        };
        let small = first.content_length().is_none_or(|n| n <= KEPT_404);
        if first.status() != StatusCode::NOT_FOUND || !small {
            Metrics::add(&self.metrics.hits, 1);
            return proxy::answer(first);
        }
        let not_found = match Kept::read(first).await {
            Ok(Ok(k)) => k,
            Ok(Err(large)) => {
                Metrics::add(&self.metrics.hits, 1);
                return large;
            }
            Err(e) => return self.unreachable(e),
        };
        let reads = &self.reads;
        let m = &self.metrics;
        if head.method == Method::HEAD {
            // Never copies: a HEAD is answered from the old store's metadata.
            return match reads.stat(&name).await {
                Ok(meta) => {
                    Metrics::add(&m.from_source, 1);
                    let mut r = Response::new(proxy::full(Bytes::new()));
                    describe(&mut r, &name, meta.content_type, Some(meta.size));
                    r
                }
                Err(miss) => self.missed(miss, not_found),
            };
        }
        if reads.dry_run {
            return self.answer_from_source(&name, not_found).await;
        }
        if let Some(limit) = self.config.stream_above {
            match reads.stat(&name).await {
                Ok(meta) if meta.size > limit => {
                    // The copy runs beside the answer (and is waited for by no one here).
                    let (me, owned) = (reads.clone(), name.clone());
                    tokio::spawn(async move { me.copy(&owned).await });
                    return self.answer_from_source(&name, not_found).await;
                }
                Ok(_) => {}
                Err(miss) => return self.missed(miss, not_found),
            }
        }
        match reads.copy(&name).await {
            done @ (Miss::Copied | Miss::Present) => {
                Metrics::add(
                    if matches!(done, Miss::Copied) {
                        &m.copied
                    } else {
                        &m.hits
                    },
                    1,
                );
                match self
                    .upstream
                    .send(&head, reqwest::Body::from(Bytes::new()))
                    .await
                {
                    Ok(r) => proxy::answer(r),
                    Err(e) => self.unreachable(e),
                }
            }
            miss => self.missed(miss, not_found),
        }
    }

    /// Answer a GET from the old store itself (`--dry-run`, `stream_above`).
    async fn answer_from_source(&self, name: &str, not_found: Kept) -> Response<Body> {
        match self.reads.open(name).await {
            Ok(got) => {
                Metrics::add(&self.metrics.from_source, 1);
                let stream = got
                    .stream
                    .map(|chunk| chunk.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
                let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
                describe(&mut r, name, got.content_type, got.size);
                r
            }
            Err(miss) => self.missed(miss, not_found),
        }
    }

    /// The answer to a miss that was not copied.
    fn missed(&self, miss: Miss, not_found: Kept) -> Response<Body> {
        let m = &self.metrics;
        match miss {
            Miss::Absent => {
                Metrics::add(&m.absent, 1);
                not_found.response()
            }
            Miss::Busy => {
                Metrics::add(&m.busy, 1);
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many files are being copied from the old store; try again shortly",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Miss::Failed { status, reason } => {
                // The details (store addresses, server messages) go to the log, not to clients.
                Metrics::add(&m.failed, 1);
                tracing::warn!("answered {status}: {reason}");
                let short = match status {
                    StatusCode::GATEWAY_TIMEOUT => {
                        "the file is being copied from the old store and is not ready yet, or the \
                         old store did not answer in time; try again later"
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        "the gateway cannot copy from the old store now; try again later"
                    }
                    _ => "the file could not be read from the old store; try again later",
                };
                text(status, short)
            }
            // Only a copy says so, and a copy is answered by the upstream.
            Miss::Copied | Miss::Present => text(StatusCode::BAD_GATEWAY, "unexpected state"),
        }
    }

    /// A DELETE of `name` succeeded upstream: tombstone it.
    async fn deleted(&self, name: &str) {
        Metrics::add(&self.metrics.deleted, 1);
        if let Err(e) = self.reads.tombstone(name).await {
            tracing::error!(file = %name, "recording a delete: {e:#}");
        } else if self.reads.dry_run {
            tracing::info!(file = %name, "deleted through the gateway; not recorded (--dry-run)");
        } else {
            tracing::info!(file = %name, "deleted through the gateway; recorded");
        }
    }
}

/// Whether a request has no body (a GET that carries one is passed through untouched: it
/// could not be sent twice).
fn bodyless(headers: &http::HeaderMap) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// Headers of an answer from the old store: its type (or the one Parse Server would give the
/// name), its length, and `nosniff` as Parse Server sets on file answers.
fn describe(r: &mut Response<Body>, name: &str, content_type: Option<String>, size: Option<u64>) {
    let h = r.headers_mut();
    let ct = content_type
        .or_else(|| crate::storage::content_type_for(name))
        .unwrap_or_else(|| "application/octet-stream".into());
    if let Ok(v) = HeaderValue::from_str(&ct) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(n) = size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The upstream's 404, kept to answer with if the file is absent everywhere.
struct Kept {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Kept {
    /// Read the upstream's 404; one whose body passes [`KEPT_404`] (without a length up front)
    /// is no missing file of Parse's: `Err` with it passed on whole.
    async fn read(
        mut r: reqwest::Response,
    ) -> Result<Result<Kept, Response<Body>>, reqwest::Error> {
        let (status, headers) = (r.status(), r.headers().clone());
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = r.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > KEPT_404 {
                let head = futures::stream::once(async move { Ok(body.freeze()) });
                let rest = head.chain(r.bytes_stream());
                let stream = rest.map(|c| c.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
                let mut large = Response::new(StreamBody::new(stream).boxed_unsync());
                *large.status_mut() = status;
                *large.headers_mut() = headers;
                large.headers_mut().remove(header::TRANSFER_ENCODING);
                large.headers_mut().remove(header::CONNECTION);
                return Ok(Err(large));
            }
        }
        Ok(Ok(Kept {
            status,
            headers,
            body: body.freeze(),
        }))
    }

    fn response(self) -> Response<Body> {
        let mut r = Response::new(proxy::full(self.body));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        r.headers_mut().remove(header::TRANSFER_ENCODING);
        r.headers_mut().remove(header::CONNECTION);
        r
    }
}

/// Serve `gateway` on `listener` (and its metrics on `metrics`) until `stop` resolves; then
/// stop accepting, give connections in flight up to [`Config::drain`] to finish, and wait for
/// the copies in flight (they are never cut halfway: an unfinished copy is invisible anyway,
/// but a finished one should be recorded).
pub async fn run(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    stop: impl Future<Output = ()>,
    max_copies: usize,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client that sends its request head slower than this is dropped (slowloris).
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let metrics_task = metrics.map(|l| tokio::spawn(serve_metrics(l, gateway.metrics.clone())));
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, never spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req, peer).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    gateway
        .metrics
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
    tracing::info!("stopping: no new connections; finishing the requests in flight");
    let drain = gateway.config.drain;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still open after {} s are cut off",
            drain.as_secs()
        );
    }
    // Every copy holds a permit until its outcome is recorded.
    let copies = gateway.reads.copies.clone();
    let all = u32::try_from(max_copies).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(drain, copies.acquire_many(all)).await;
    // No copy starts from now on (a late miss gets 503): the lease is given back next.
    copies.close();
    if drained.is_err() {
        tracing::warn!(
            "copies still running after {} s are abandoned (nothing half-written is visible: \
             each copy is written whole or not at all)",
            drain.as_secs()
        );
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
}

/// The metrics listener: `/metrics` and `/healthz`, nothing else.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    let http = hyper::server::conn::http1::Builder::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let m = metrics.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let m = m.clone();
            async move {
                let r = match req.uri().path() {
                    "/metrics" => {
                        let mut r = Response::new(proxy::full(Bytes::from(m.render())));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        );
                        r
                    }
                    "/healthz" if m.draining.load(std::sync::atomic::Ordering::Relaxed) => {
                        text(StatusCode::SERVICE_UNAVAILABLE, "draining")
                    }
                    "/healthz" => text(StatusCode::OK, "ok"),
                    _ => text(StatusCode::NOT_FOUND, "not found"),
                };
                Ok::<_, Infallible>(r)
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
