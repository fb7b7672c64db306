//! A TCP tap: forwards every connection to an upstream server and keeps the bytes the clients
//! sent, so a test can check what really went over the wire (the headers a client set, or did
//! not). Requests are forwarded byte for byte, so signatures (SigV4 signs `Host`) still verify
//! upstream.
//!
//! It is also a network fault injector between the tool and a real server: [`Tap::cut`] resets
//! every open connection (TCP RST, as a crashed peer or a NAT timeout does), [`Tap::stall`] holds
//! every byte in both directions until released (a hung link), and [`Tap::refuse`] resets new
//! connections as soon as they are accepted (a server that is down).
//!
//! And a loaded server: [`Tap::load_latency`] holds every request a client sends for a delay
//! that grows with the load — a base plus a cost per request already in flight (sent, not yet
//! answered, on any connection) — so a client that sends more at once meets a slower server,
//! as a database at capacity does (a queue).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    sent: Mutex<Vec<u8>>,
    /// Tasks of the open connections (aborted by `cut`).
    conns: Mutex<Vec<tokio::task::AbortHandle>>,
    refuse: AtomicBool,
    accepted: AtomicU64,
    resets: AtomicU64,
    /// Whether to keep what clients send (off for long runs through a database proxy).
    record: AtomicBool,
    /// `(base, per request in flight)` of [`Tap::load_latency`].
    load: Mutex<Option<(Duration, Duration)>>,
    /// Requests sent and not yet answered (connections waiting for their answer).
    in_flight: AtomicU64,
    /// Bytes clients sent, and the delays added (count, total µs).
    forwarded: AtomicU64,
    delays: AtomicU64,
    delayed_us: AtomicU64,
}

impl State {
    /// A client sent `n` bytes on a connection: the delay they meet (see [`Tap::load_latency`]).
    /// Only the first chunk of a request waits (`busy`: the connection awaits an answer).
    fn sent(&self, n: usize, busy: &AtomicBool) -> Duration {
        self.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        if busy.swap(true, Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let others = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let Some((base, per_request)) = *self.load.lock().unwrap() else {
            return Duration::ZERO;
        };
        let d = base + per_request * others as u32;
        self.delays.fetch_add(1, Ordering::SeqCst);
        self.delayed_us
            .fetch_add(d.as_micros() as u64, Ordering::SeqCst);
        d
    }

    /// The server answered on a connection.
    fn answered(&self, busy: &AtomicBool) {
        if busy.swap(false, Ordering::SeqCst) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Which way a pump copies, and the connection's state.
struct Side {
    state: Arc<State>,
    /// From the client (else from the server).
    client: bool,
    busy: Arc<AtomicBool>,
}

/// A running tap; stops accepting when dropped.
pub struct Tap {
    pub addr: SocketAddr,
    state: Arc<State>,
    stalled: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
        for c in self.state.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// Copy `from` to `to` unless stalled; keep a copy of the bytes when `log` is given.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut stalled: watch::Receiver<bool>,
    log: Option<Arc<State>>,
    side: Side,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        // A stall holds the bytes already read until it is released.
        if stalled.wait_for(|s| !*s).await.is_err() {
            break;
        }
        if side.client {
            let delay = side.state.sent(n, &side.busy);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        } else {
            side.state.answered(&side.busy);
        }
        if let Some(s) = log.as_ref().filter(|s| s.record.load(Ordering::SeqCst)) {
            s.sent.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Tap {
    /// Listen on an ephemeral loopback port and forward to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.record.store(true, Ordering::SeqCst);
        let (stalled, stall_rx) = watch::channel(false);
        let (st, upstream) = (state.clone(), upstream.to_string());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::SeqCst);
                // Every close is a reset: what a crashed peer or a dropped NAT entry looks like.
                let _ = client.set_zero_linger();
                if st.refuse.load(Ordering::SeqCst) {
                    st.resets.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let (log, upstream, rx) = (st.clone(), upstream.clone(), stall_rx.clone());
                let conn = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let busy = Arc::new(AtomicBool::new(false));
                    let (up, down) = (
                        Side {
                            state: log.clone(),
                            client: true,
                            busy: busy.clone(),
                        },
                        Side {
                            state: log.clone(),
                            client: false,
                            busy,
                        },
                    );
                    tokio::join!(
                        pump(cr, sw, rx.clone(), Some(log), up),
                        pump(sr, cw, rx, None, down)
                    );
                });
                let mut conns = st.conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn.abort_handle());
            }
        });
        Tap {
            addr,
            state,
            stalled,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Stop keeping what clients send (a long run through the tap).
    pub fn stop_recording(&self) {
        self.state.record.store(false, Ordering::SeqCst);
    }

    /// Reset every open connection now; returns how many there were.
    pub fn cut(&self) -> usize {
        let conns: Vec<_> = self.state.conns.lock().unwrap().drain(..).collect();
        let open = conns.iter().filter(|c| !c.is_finished()).count();
        for c in conns {
            c.abort();
        }
        self.state.resets.fetch_add(open as u64, Ordering::SeqCst);
        open
    }

    /// Hold every byte in both directions (`true`) or let them flow again (`false`).
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Reset new connections as soon as they are accepted (`true`), as a server that is down.
    pub fn refuse(&self, on: bool) {
        self.state.refuse.store(on, Ordering::SeqCst);
    }

    /// Make the upstream a loaded server: every request a client sends waits `base` plus
    /// `per_request` for each other request in flight before it is forwarded (`None`: off).
    pub fn load_latency(&self, load: Option<(Duration, Duration)>) {
        *self.state.load.lock().unwrap() = load;
    }

    /// Bytes the clients sent so far.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Delays added by [`Tap::load_latency`] so far: how many, and their mean.
    pub fn delays(&self) -> (u64, Duration) {
        let n = self.state.delays.load(Ordering::SeqCst);
        let us = self.state.delayed_us.load(Ordering::SeqCst);
        (n, Duration::from_micros(us.checked_div(n).unwrap_or(0)))
    }

    /// Connections accepted so far, and connections reset by `cut`/`refuse`.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.accepted.load(Ordering::SeqCst),
            self.state.resets.load(Ordering::SeqCst),
        )
    }

    /// Every line the clients sent that starts with `prefix` (case-insensitive): header lines of
    /// requests, and trailers of chunked bodies.
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        let sent = self.state.sent.lock().unwrap();
        let prefix = prefix.to_ascii_lowercase();
        sent.split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .collect()
    }

    /// Request lines (`PUT /bucket/key?… HTTP/1.1`) the clients sent, in order. A request line
    /// may follow the previous request's body on the same "line" (bodies end without a newline).
    pub fn requests(&self) -> Vec<String> {
        let sent = self.state.sent.lock().unwrap();
        sent.split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
            .filter(|l| l.ends_with(" HTTP/1.1"))
            .filter_map(|l| {
                ["GET /", "PUT /", "POST /", "HEAD /", "DELETE /"]
                    .iter()
                    .filter_map(|m| l.rfind(m))
                    .max()
                    .map(|i| l[i..].to_string())
            })
            .collect()
    }
}
