//! A TCP tap: forwards every connection to an upstream server unchanged and keeps the bytes the
//! clients sent, so a test can check what really went over the wire (the headers a client set,
//! or did not). Requests are forwarded byte for byte, so signatures (SigV4 signs `Host`) still
//! verify upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running tap; stops accepting when dropped.
pub struct Tap {
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tap {
    /// Listen on an ephemeral loopback port and forward to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (log, upstream) = (sent.clone(), upstream.to_string());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (log, upstream) = (log.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            log.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Tap { addr, sent, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every line the clients sent that starts with `prefix` (case-insensitive): header lines of
    /// requests, and trailers of chunked bodies.
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        let prefix = prefix.to_ascii_lowercase();
        sent.split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .collect()
    }

    /// Request lines (`PUT /bucket/key?… HTTP/1.1`) the clients sent, in order. A request line
    /// may follow the previous request's body on the same "line" (bodies end without a newline).
    pub fn requests(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
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
