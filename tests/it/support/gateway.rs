//! For `serve`'s tests: a programmable stand-in for Parse Server ([`FakeParse`]: its files
//! route answers from a real store as stock Parse Server does — the file, or `404 File not
//! found.` — and every other request is echoed and kept), and the gateway itself run as a child
//! process ([`Gateway`]), stopped with SIGTERM when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parse_files_migrate::storage::{ObjectStore, PutOptions};

use super::conformance::{body, read_all};

/// The app id the fake serves files of.
pub const APP: &str = super::app::APP_ID;

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Parse Server's files route over `store` (the new adapter), under `/parse`.
pub struct FakeParse {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeParse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeParse {
    pub async fn start(store: Arc<dyn ObjectStore>) -> FakeParse {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let kept = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (store, kept) = (store.clone(), kept.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (store, kept) = (store.clone(), kept.clone());
                    async move { Ok::<_, std::convert::Infallible>(answer(req, &*store, &kept).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeParse { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received for paths starting with `prefix`.
    pub fn seen(&self, prefix: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn answer(
    req: Request<Incoming>,
    store: &dyn ObjectStore,
    kept: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let (parts, incoming) = req.into_parts();
    let body = incoming.collect().await.unwrap().to_bytes().to_vec();
    let path = parts.uri.path().to_string();
    kept.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        path: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    // Parse Server's delete route has no app id: `DELETE /files/<name>`.
    let prefix = if parts.method == Method::DELETE {
        "/parse/files/".to_string()
    } else {
        format!("/parse/files/{APP}/")
    };
    let Some(encoded) = path.strip_prefix(&prefix) else {
        // Any other route: echo the body, with a header of its own.
        let mut r = respond(StatusCode::CREATED, body);
        r.headers_mut()
            .insert("x-upstream", "fake".parse().unwrap());
        return r;
    };
    let name = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .unwrap()
        .to_string();
    let not_found = || {
        let mut r = respond(StatusCode::NOT_FOUND, "File not found.");
        r.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        r
    };
    match parts.method {
        Method::DELETE => match store.delete(&name).await {
            Ok(()) => respond(StatusCode::OK, "{}"),
            Err(_) => not_found(),
        },
        Method::HEAD => match store.stat(&name).await {
            Ok(meta) => {
                let mut r = respond(StatusCode::OK, Bytes::new());
                r.headers_mut()
                    .insert("content-length", meta.size.to_string().parse().unwrap());
                r
            }
            Err(_) => not_found(),
        },
        _ => match read_all(store, &name).await {
            Ok(bytes) => {
                let mut r = respond(StatusCode::OK, bytes);
                r.headers_mut()
                    .insert("x-served-by", "fake-parse".parse().unwrap());
                r
            }
            Err(_) => not_found(),
        },
    }
}

/// Put `data` under `name` in `store`.
pub async fn put(store: &dyn ObjectStore, name: &str, data: &[u8]) {
    store
        .put(name, body(data, 64 * 1024), &PutOptions::default())
        .await
        .unwrap();
}

/// `serve` running as a child process; SIGTERM when dropped.
pub struct Gateway {
    pub child: Option<std::process::Child>,
    pub port: u16,
    pub metrics_port: u16,
}

impl Gateway {
    /// `-c CONFIG serve --listen … --upstream UPSTREAM --metrics-listen … ARGS…`, once it
    /// answers.
    pub async fn start(config: &Path, upstream: &str, args: &[&str]) -> Gateway {
        let (port, metrics_port) = (super::free_port(), super::free_port());
        let child = super::app::command()
            .args([
                "-c",
                config.to_str().unwrap(),
                "serve",
                "--upstream",
                upstream,
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut g = Gateway {
            child: Some(child),
            port,
            metrics_port,
        };
        let health = format!("http://127.0.0.1:{metrics_port}/healthz");
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(&health).await
                && r.status() == 200
            {
                return g;
            }
            if let Some(status) = g.child.as_mut().unwrap().try_wait().unwrap() {
                let out = g.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "serve exited with {status}:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve did not start within 30 s");
    }

    /// `http://127.0.0.1:<port>/parse/files/app/<encoded name>`.
    pub fn file_url(&self, name: &str) -> String {
        let encoded: Vec<String> = name
            .split('/')
            .map(|s| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect();
        format!("{}/parse/files/{APP}/{}", self.url(), encoded.join("/"))
    }

    /// `http://127.0.0.1:<port>/parse/files/<encoded name>` (Parse Server's DELETE route).
    pub fn delete_url(&self, name: &str) -> String {
        self.file_url(name)
            .replacen(&format!("/files/{APP}/"), "/files/", 1)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// SIGTERM, and the exit code and stderr.
    pub async fn stop(mut self) -> (i32, String) {
        let child = self.child.take().unwrap();
        sigterm(child.id());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
