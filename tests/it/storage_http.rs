//! The HTTP source against real servers: the read-only conformance suite over nginx (objects
//! seeded into a unique subdirectory of `$PFM_TEST_HTTP_ROOT`, reached through the tfss, legacy
//! and Parse Server URL rules), and error classification against a scripted server in the test.

use std::path::{Path, PathBuf};

use parse_files_migrate::storage::http::{HttpConfig, HttpStore, is_legacy_uuid_name};
use parse_files_migrate::storage::{GetOptions, ObjectStore, StorageError, StoreContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

const KEY: &str = "testFileKey";

fn ctx() -> StoreContext {
    StoreContext {
        file_key: Some(KEY.into()),
        app_id: Some("appId".into()),
        ..Default::default()
    }
}

/// A store whose three URL rules all point into `<root>/<dir>/` on nginx.
fn nginx_store(dir: &str) -> HttpStore {
    let url = support::env("PFM_TEST_HTTP_URL");
    let cfg = HttpConfig {
        tfss_base_url: Some(format!("{url}/{dir}/tfss/{{file_key}}/")),
        legacy_base_url: Some(format!("{url}/{dir}/legacy/{{file_key}}/")),
        server_url: Some(format!("{url}/{dir}/parse")),
        ..Default::default()
    };
    HttpStore::new(&cfg, &ctx()).expect("http store")
}

/// Where nginx finds `name`: it decodes the URL path once, so `%2F` in the encoded name becomes a
/// directory separator and the file sits at the raw name.
fn seed_path(root: &Path, name: &str) -> PathBuf {
    let kind = if name.starts_with("tfss-") {
        format!("tfss/{KEY}")
    } else if is_legacy_uuid_name(name) {
        format!("legacy/{KEY}")
    } else {
        "parse/files/appId".to_string()
    };
    root.join(kind).join(name)
}

#[tokio::test]
async fn conformance_read_only() {
    let dir = support::unique("pfm_http");
    let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT")).join(&dir);
    let store = nginx_store(&dir);
    let seed = |name: &str, data: &[u8]| {
        let path = seed_path(&root, name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    };
    support::conformance::run_read_only(&store, &seed).await;
    let shown = format!(
        "{} {:?}",
        store.describe(),
        store.location("tfss-a.png").unwrap()
    );
    assert!(!shown.contains(KEY), "{shown}");
    let _ = std::fs::remove_dir_all(&root);
}

/// One scripted response per path; the connection is closed after each.
async fn scripted_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let html = "<html>error page</html>";
                let reply = match path.rsplit('/').next().unwrap_or("") {
                    "short" => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly fifty bytes..................................".to_string(),
                    code @ ("403" | "404" | "410" | "400" | "429" | "503") => {
                        format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{html}", html.len())
                    }
                    "norange" => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_string(),
                    // Redirects: to the same allowed host, and to another name of it
                    // (`localhost`) that is not allowed.
                    "near" => format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/norange\r\nContent-Length: 0\r\n\r\n"),
                    "away" => format!("HTTP/1.1 302 Found\r\nLocation: http://localhost:{}/norange\r\nContent-Length: 0\r\n\r\n", addr.port()),
                    _ => "HTTP/1.1 500 X\r\nContent-Length: 0\r\n\r\n".to_string(),
                };
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn get(store: &HttpStore, url: &str, offset: u64) -> Result<Vec<u8>, StorageError> {
    use futures::TryStreamExt;
    let opts = GetOptions {
        offset,
        url_hint: Some(url.to_string()),
        ..GetOptions::default()
    };
    let got = store.get("0123456789abcdef_file.txt", &opts).await?;
    let chunks: Vec<bytes::Bytes> = got.stream.try_collect().await?;
    Ok(chunks.concat())
}

#[tokio::test]
async fn statuses_and_broken_bodies() {
    let base = scripted_server().await;
    let allow_loopback = HttpConfig {
        stored_url_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let store = HttpStore::new(&allow_loopback, &ctx()).unwrap();
    for code in ["403", "404", "410"] {
        // The key in a stored URL must not leak into the error.
        let err = get(&store, &format!("{base}/{KEY}/{code}"), 0)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{code}: {err}");
        assert!(!err.to_string().contains(KEY), "{err}");
    }
    for (code, retry) in [("400", false), ("429", true), ("503", true)] {
        let err = get(&store, &format!("{base}/{code}"), 0).await.unwrap_err();
        assert!(
            !err.is_not_found() && err.is_retryable() == retry,
            "{code}: {err}"
        );
    }
    // A body cut short of Content-Length fails the read (hyper or our own count notices).
    let err = get(&store, &format!("{base}/short"), 0).await.unwrap_err();
    assert!(err.is_retryable() && !err.is_not_found(), "{err}");
    // A server that ignores Range: the store skips to the offset itself.
    assert_eq!(
        get(&store, &format!("{base}/norange"), 4).await.unwrap(),
        b"456789"
    );
    let err = get(&store, "http://127.0.0.1:1/x", 0).await.unwrap_err();
    assert!(err.is_retryable(), "connection refused: {err}");
}

async fn refused(store: &HttpStore, url: String) -> String {
    let err = get(store, &url, 0).await.unwrap_err();
    assert!(!err.is_not_found() && !err.is_retryable(), "{url}: {err}");
    err.to_string()
}

/// A `url` stored in the database is fetched only from hosts the operator allowed: otherwise
/// anyone who can save a File object could point the tool at internal addresses.
#[tokio::test]
async fn stored_urls_are_fetched_only_from_allowed_hosts() {
    let base = scripted_server().await;
    let default = HttpStore::new(&HttpConfig::default(), &ctx()).unwrap();
    let e = refused(&default, format!("{base}/norange")).await;
    assert!(
        e.contains("stored_url_hosts") && e.contains("127.0.0.1"),
        "{e}"
    );
    let e = refused(&default, "http://169.254.169.254/latest/meta-data/".into()).await;
    assert!(e.contains("stored_url_hosts"), "{e}");

    let some = HttpStore::new(
        &HttpConfig {
            stored_url_hosts: vec!["*.example.com".into(), "files.example.org".into()],
            ..Default::default()
        },
        &ctx(),
    )
    .unwrap();
    let e = refused(&some, format!("{base}/norange")).await;
    assert!(e.contains("not in stored_url_hosts"), "{e}");
    let e = refused(&some, "file:///etc/passwd".into()).await;
    assert!(e.contains("scheme"), "{e}");
    let e = refused(&some, "http://evil-example.com/x".into()).await;
    assert!(
        e.contains("not in stored_url_hosts"),
        "suffix without a dot: {e}"
    );

    let any = HttpStore::new(
        &HttpConfig {
            stored_url_hosts: vec!["*".into()],
            ..Default::default()
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        get(&any, &format!("{base}/norange"), 0).await.unwrap(),
        b"0123456789"
    );
}

/// A server whose certificate is signed by a CA the system does not trust: refused, with a
/// permanent error that names the fix (a retry meets the same certificate); trusted with
/// `ca_file`, the file is served. A refused connection stays retryable.
#[tokio::test]
async fn a_private_ca_is_trusted_with_ca_file_and_refused_without() {
    let server = support::tls::start().await;
    std::fs::write(server.root.join("x.txt"), b"0123456789").unwrap();
    let url = format!("{}/x.txt", server.url);
    let loopback = HttpConfig {
        stored_url_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let store = HttpStore::new(&loopback, &ctx()).unwrap();
    let err = get(&store, &url, 0).await.unwrap_err();
    assert!(!err.is_retryable(), "a refused certificate: {err}");
    let e = err.to_string();
    assert!(e.contains("certificate") && e.contains("ca_file"), "{e}");

    let trusting = HttpConfig {
        ca_file: Some(server.ca_file.clone()),
        ..loopback.clone()
    };
    let store = HttpStore::new(&trusting, &ctx()).unwrap();
    assert_eq!(get(&store, &url, 3).await.unwrap(), b"3456789");

    let not_pem = HttpConfig {
        ca_file: Some(server.root.join("x.txt")),
        ..loopback.clone()
    };
    let e = HttpStore::new(&not_pem, &ctx()).unwrap_err().to_string();
    assert!(e.contains("ca_file") && e.contains("x.txt"), "{e}");

    drop(server);
    let err = get(&store, &url, 0).await.unwrap_err();
    assert!(err.is_retryable(), "nothing listening any more: {err}");
}

/// A redirect from a stored url is followed only to a host `stored_url_hosts` allows too: an
/// allowed host must not lead the tool anywhere else (issue #20, item 9).
#[tokio::test]
async fn stored_url_redirects_are_followed_only_to_allowed_hosts() {
    let base = scripted_server().await;
    let loopback = HttpStore::new(
        &HttpConfig {
            stored_url_hosts: vec!["127.0.0.1".into()],
            ..Default::default()
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        get(&loopback, &format!("{base}/near"), 0).await.unwrap(),
        b"0123456789",
        "a redirect to the same allowed host is followed"
    );
    let e = refused(&loopback, format!("{base}/away")).await;
    assert!(e.contains("redirect") && e.contains("localhost"), "{e}");
    let both = HttpStore::new(
        &HttpConfig {
            stored_url_hosts: vec!["127.0.0.1".into(), "localhost".into()],
            ..Default::default()
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(
        get(&both, &format!("{base}/away"), 0).await.unwrap(),
        b"0123456789",
        "followed once the operator allows that host too"
    );
}
