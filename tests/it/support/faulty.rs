//! A programmable HTTP/1.1 file server for fault-injection tests: serves files from a map on
//! `127.0.0.1:<ephemeral port>`, and answers chosen requests with a fault instead — an error
//! status, throttling with `Retry-After`, a connection reset mid-body, a stall mid-body, a body
//! shorter than its `Content-Length`, a 404.
//!
//! Which request gets which fault is decided by a [`Schedule`] from the file name and how many
//! times that name was requested before, so a run is deterministic whatever order concurrent
//! requests arrive in. The server counts requests and the faults it injected, by kind.
//!
//! Deliberately small (plain tokio sockets, one connection per request, `Connection: close`): it
//! has to misbehave in ways a real server library would not let it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do instead of serving a request normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An error status (500, 502, 503…) without `Retry-After`.
    Status(u16),
    /// `429 Too Many Requests` with `Retry-After: 1`.
    Throttle,
    /// Headers and half the body, then a TCP reset.
    Reset,
    /// Headers and half the body, then silence for [`Options::stall`], then a close.
    Stall,
    /// Silence for [`Options::stall`] before any response byte, then a close.
    StallBeforeHeaders,
    /// Full `Content-Length`, half the body, then a clean close.
    ShortBody,
    /// `404 Not Found`.
    NotFound,
    /// Like [`Fault::Reset`], and the file's bytes are replaced ([`changed`]) before the reset:
    /// the app writing the object again while it is being read.
    ResetAndChange,
}

/// What [`Fault::ResetAndChange`] replaces a file's bytes with: the same length, every byte
/// flipped.
pub fn changed(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| !b).collect()
}

impl Fault {
    /// A short label for counts and reports.
    pub fn kind(&self) -> String {
        match self {
            Fault::Status(s) => s.to_string(),
            Fault::Throttle => "429+retry-after".into(),
            Fault::Reset => "reset-mid-body".into(),
            Fault::Stall => "stall-mid-body".into(),
            Fault::StallBeforeHeaders => "stall-before-headers".into(),
            Fault::ShortBody => "short-body".into(),
            Fault::NotFound => "404".into(),
            Fault::ResetAndChange => "reset-and-change".into(),
        }
    }

    /// Faults that need at least one byte of body to happen in the middle of.
    fn mid_body(&self) -> bool {
        matches!(
            self,
            Fault::Reset | Fault::Stall | Fault::ShortBody | Fault::ResetAndChange
        )
    }
}

/// One request, as the schedule sees it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The file name (last path segment, percent-decoded).
    pub name: &'a str,
    /// How many times this name was requested before (0 on the first request).
    pub attempt: u32,
    /// Requests the server received before this one.
    pub n: u64,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: std::time::Instant,
    pub name: String,
    pub fault: Option<Fault>,
    /// The start of a `Range: bytes=N-` request (answered 206 with `Content-Range`).
    pub range: Option<usize>,
}

/// Chooses the fault for a request, or `None` to serve it normally.
pub type Schedule = Box<dyn Fn(&Request<'_>) -> Option<Fault> + Send + Sync>;

/// Server behaviour besides the schedule.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a [`Fault::Stall`] keeps the connection silent; make it longer than the
    /// client's idle timeout.
    pub stall: Duration,
    /// A pause before every answer, to make a run last (0 by default).
    pub delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stall: Duration::from_secs(4),
            delay: Duration::ZERO,
        }
    }
}

struct State {
    files: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    schedule: Schedule,
    opts: Options,
    requests: AtomicU64,
    /// Every request: when it arrived, the fault it was answered with, its `Range` start.
    log: Mutex<Vec<Logged>>,
    attempts: Mutex<HashMap<String, u32>>,
    faults: Mutex<BTreeMap<String, u64>>,
}

/// A running server; stops when dropped.
///
/// It runs on a thread and runtime of its own, so a test may block its own thread (waiting for
/// the binary under test, say) without starving the server.
pub struct FaultyServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FaultyServer {
    /// Start serving `files` (name → bytes) on an ephemeral loopback port.
    pub fn start(
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
        schedule: Schedule,
        opts: Options,
    ) -> FaultyServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            files: Mutex::new(files.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
            schedule,
            opts,
            requests: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            faults: Mutex::new(BTreeMap::new()),
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok((sock, _)) => {
                                tokio::spawn(serve(sock, st.clone()));
                            }
                            Err(_) => break,
                        },
                    }
                }
            });
            // Dropping the runtime here cancels connections still stalling.
            rt.shutdown_background();
        });
        FaultyServer {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A server that never injects a fault.
    pub fn healthy(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> FaultyServer {
        Self::start(files, Box::new(|_| None), Options::default())
    }

    /// A server that never injects a fault but pauses `delay` before every answer, to make a
    /// run last.
    pub fn slow(
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
        delay: Duration,
    ) -> FaultyServer {
        Self::start(
            files,
            Box::new(|_| None),
            Options {
                delay,
                ..Default::default()
            },
        )
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve `data` under `name` from now on.
    pub fn insert(&self, name: &str, data: Vec<u8>) {
        lock(&self.state.files).insert(name.to_string(), Arc::new(data));
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Faults injected so far, by [`Fault::kind`].
    pub fn faults(&self) -> BTreeMap<String, u64> {
        lock(&self.state.faults).clone()
    }

    /// Requests so far, by file name.
    pub fn attempts(&self) -> HashMap<String, u32> {
        lock(&self.state.attempts).clone()
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.state.log).clone()
    }

    /// Faults injected so far, all kinds.
    pub fn faults_total(&self) -> u64 {
        self.faults().values().sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read the request head (up to the blank line); `None` if the client went away or sent junk.
async fn read_head(
    sock: &mut TcpStream,
) -> Option<(String, String, Option<usize>, Option<String>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut parts = head.lines().next()?.split(' ');
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    // `Range: bytes=N-` (the only form the tool sends).
    let range = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("range") {
            return None;
        }
        v.trim()
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    });
    let if_range = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("if-range")
            .then(|| v.trim().to_string())
    });
    Some((method, target, range, if_range))
}

/// The strong `ETag` the server sends for `data` (its FNV-1a hash).
fn etag(data: &[u8]) -> String {
    format!("\"{:016x}\"", super::fnv1a(data))
}

async fn serve(mut sock: TcpStream, st: Arc<State>) {
    let Some((method, target, mut range, if_range)) = read_head(&mut sock).await else {
        return;
    };
    let n = st.requests.fetch_add(1, Ordering::SeqCst);
    let path = target.split('?').next().unwrap_or("");
    let segment = path.rsplit('/').next().unwrap_or("");
    let name = percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned();
    let attempt = {
        let mut a = lock(&st.attempts);
        let e = a.entry(name.clone()).or_insert(0);
        *e += 1;
        *e - 1
    };
    let data = lock(&st.files).get(&name).cloned();
    // `If-Range` naming another version: the whole object (RFC 9110 §13.1.5).
    if let (Some(v), Some(d)) = (&if_range, &data)
        && *v != etag(d)
    {
        range = None;
    }
    let mut fault = (st.schedule)(&Request {
        name: &name,
        attempt,
        n,
    });
    // A fault in the middle of a body needs a body; a missing file is a 404 anyway.
    if fault.is_some_and(|f| f.mid_body()) && data.as_ref().is_none_or(|d| d.len() < 2) {
        fault = None;
    }
    if let Some(f) = fault {
        *lock(&st.faults).entry(f.kind()).or_insert(0) += 1;
    }
    if let (Some(Fault::ResetAndChange), Some(d)) = (fault, &data) {
        lock(&st.files).insert(name.clone(), Arc::new(changed(d)));
    }
    lock(&st.log).push(Logged {
        at: std::time::Instant::now(),
        name: name.clone(),
        fault,
        range,
    });
    if !st.opts.delay.is_zero() {
        tokio::time::sleep(st.opts.delay).await;
    }
    let head_only = method == "HEAD";
    let _ = answer(
        &mut sock,
        fault,
        data.as_deref(),
        range,
        head_only,
        &st.opts,
    )
    .await;
}

fn status_line(code: u16) -> &'static str {
    match code {
        200 => "200 OK",
        404 => "404 Not Found",
        429 => "429 Too Many Requests",
        500 => "500 Internal Server Error",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        504 => "504 Gateway Timeout",
        400 => "400 Bad Request",
        _ => "599 Unknown",
    }
}

async fn simple(sock: &mut TcpStream, code: u16, extra: &str) -> std::io::Result<()> {
    let body = status_line(code);
    let head = format!(
        "HTTP/1.1 {body}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.shutdown().await
}

async fn answer(
    sock: &mut TcpStream,
    fault: Option<Fault>,
    data: Option<&Vec<u8>>,
    range: Option<usize>,
    head_only: bool,
    opts: &Options,
) -> std::io::Result<()> {
    let data = match (fault, data) {
        (Some(Fault::Status(code)), _) => return simple(sock, code, "").await,
        (Some(Fault::Throttle), _) => return simple(sock, 429, "Retry-After: 1\r\n").await,
        (Some(Fault::NotFound), _) | (_, None) => return simple(sock, 404, "").await,
        (Some(Fault::StallBeforeHeaders), _) => {
            tokio::time::sleep(opts.stall).await;
            return sock.shutdown().await;
        }
        (_, Some(d)) => d,
    };
    let total = data.len();
    let whole = &data[..];
    let (status, extra, data) = match range {
        Some(start) if start > 0 && start < total => (
            "206 Partial Content",
            format!("Content-Range: bytes {start}-{}/{total}\r\n", total - 1),
            &data[start..],
        ),
        _ => ("200 OK", String::new(), &data[..]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nETag: {}\r\n{extra}Connection: close\r\n\r\n",
        data.len(),
        etag(whole)
    );
    sock.write_all(head.as_bytes()).await?;
    if head_only {
        return sock.shutdown().await;
    }
    let half = &data[..data.len() / 2];
    match fault {
        Some(Fault::Reset | Fault::ResetAndChange) => {
            sock.write_all(half).await?;
            sock.flush().await?;
            // Let the bytes leave before the reset discards the send buffer.
            tokio::time::sleep(Duration::from_millis(20)).await;
            sock.set_zero_linger()?;
            Ok(()) // dropping the socket now sends RST
        }
        Some(Fault::Stall) => {
            sock.write_all(half).await?;
            sock.flush().await?;
            tokio::time::sleep(opts.stall).await;
            sock.shutdown().await
        }
        Some(Fault::ShortBody) => {
            sock.write_all(half).await?;
            sock.shutdown().await
        }
        _ => {
            sock.write_all(data).await?;
            sock.shutdown().await
        }
    }
}
