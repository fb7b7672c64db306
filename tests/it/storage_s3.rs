//! The S3 store against a real S3 server (s3s-fs from `scripts/test-services`): the shared
//! conformance suite, with and without a prefix, plus what is specific to S3 — multipart uploads
//! really happen and are aborted on failure, keys are exactly `prefix + name`, and headers are
//! stored.

use futures::StreamExt;
use parse_files_migrate::secret::Secret;
use parse_files_migrate::storage::s3::{S3Config, S3Store};
use parse_files_migrate::storage::{ObjectStore, PutOptions, StoreContext};

use crate::support;
use crate::support::conformance::{self, body, read_all};
use crate::support::s3::{config, fresh_bucket, raw_client};

const MIB: usize = 1024 * 1024;

async fn store(cfg: &S3Config) -> S3Store {
    S3Store::new(cfg, &StoreContext::default())
        .await
        .expect("build S3 store")
}

async fn keys(bucket: &str) -> Vec<String> {
    let out = raw_client()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list objects");
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn conformance_without_prefix() {
    let bucket = fresh_bucket("pfm-s3-conf").await;
    let s = store(&config(&bucket)).await;
    conformance::run(&s).await;
    assert!(keys(&bucket).await.is_empty(), "the suite cleans up");
}

#[tokio::test]
async fn conformance_with_prefix() {
    let bucket = fresh_bucket("pfm-s3-conf-prefix").await;
    // Keys outside the prefix (another app's, and one sharing the prefix's start) are never listed.
    let raw = support::s3::raw_client().await;
    for key in ["other.txt", "apps/my-ap.txt"] {
        raw.put_object()
            .bucket(&bucket)
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let s = store(&S3Config {
        prefix: Some("apps/my-app/".into()),
        ..config(&bucket)
    })
    .await;
    conformance::run(&s).await;
}

#[tokio::test]
async fn keys_are_prefix_plus_name() {
    let bucket = fresh_bucket("pfm-s3-keys").await;
    // No separator is added: parse-server-s3-adapter concatenates `bucketPrefix + filename`.
    let s = store(&S3Config {
        prefix: Some("pre/fix-".into()),
        ..config(&bucket)
    })
    .await;
    for name in conformance::NAMES {
        s.put(name, body(b"x", 1), &PutOptions::default())
            .await
            .expect("put");
        assert_eq!(
            s.location(name).unwrap(),
            format!("s3://{bucket}/pre/fix-{name}")
        );
    }
    let mut want: Vec<String> = conformance::NAMES
        .iter()
        .map(|n| format!("pre/fix-{n}"))
        .collect();
    want.sort();
    assert_eq!(keys(&bucket).await, want);
}

#[tokio::test]
async fn multipart_upload_happens_for_more_than_one_part() {
    let bucket = fresh_bucket("pfm-s3-multi").await;
    let s = store(&S3Config {
        part_size: Some(5 * MIB as u64),
        ..config(&bucket)
    })
    .await;
    let data = support::bytes(11 * MIB + 17, 3);
    let put = s
        .put("big.bin", body(&data, 300_001), &PutOptions::default())
        .await
        .expect("multipart put");
    let etag = put.etag.expect("etag");
    assert!(etag.ends_with("-3"), "3 parts of 5 MiB, got ETag {etag}");
    assert!(read_all(&s, "big.bin").await.unwrap() == data);
    let meta = s.stat("big.bin").await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.md5, None, "a multipart ETag is not an MD5");

    // Exactly one part's worth goes up in a single PutObject (no 1-part multipart).
    let exact = support::bytes(5 * MIB, 4);
    let put = s
        .put("exact.bin", body(&exact, MIB), &PutOptions::default())
        .await
        .expect("put");
    assert!(!put.etag.unwrap().contains('-'));
    assert_eq!(s.stat("exact.bin").await.unwrap().md5, Some(put.md5));
}

#[tokio::test]
async fn failed_multipart_upload_is_aborted() {
    let bucket = fresh_bucket("pfm-s3-abort").await;
    let s = store(&S3Config {
        part_size: Some(5 * MIB as u64),
        ..config(&bucket)
    })
    .await;
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // Thread-local: `#[tokio::test]` runs the future on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let logs = logs.0;
    // Two full parts go up, then the source breaks.
    let good = body(&support::bytes(12 * MIB, 5), MIB);
    let broken = futures::stream::iter(vec![Err(
        parse_files_migrate::storage::StorageError::message("src", true, "reset (injected)"),
    )]);
    let err = s
        .put(
            "aborted.bin",
            good.chain(broken).boxed(),
            &PutOptions::default(),
        )
        .await
        .expect_err("a failing source fails the put");
    drop(_guard);
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(s.stat("aborted.bin").await.unwrap_err().is_not_found());
    assert!(keys(&bucket).await.is_empty());

    // The upload was aborted, not just left incomplete: the store logged the abort, and s3s-fs
    // (which keeps parts as `.upload_id-<id>.part-<n>` files in its root) holds no part of it.
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("aborted multipart upload") && l.contains("aborted.bin"))
        .unwrap_or_else(|| panic!("no abort logged:\n{logs}"));
    let id = line
        .split("upload_id=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("upload id in the log line")
        .trim_matches('"')
        .to_string();
    assert_eq!(id.len(), 36, "s3s-fs upload ids are UUIDs: {line}");
    let root = std::path::Path::new(&support::env("PFM_TEST_SERVICES_DIR")).join("data/s3");
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .expect("s3s-fs data dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".upload_id-{id}"))
        })
        .collect();
    assert!(leftovers.is_empty(), "parts left behind: {leftovers:?}");
}

/// A log sink for one test (the store reports aborted uploads at debug level).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn content_type_and_cache_control_are_stored() {
    let bucket = fresh_bucket("pfm-s3-headers").await;
    let s = store(&S3Config {
        cache_control: Some("public, max-age=600".into()),
        part_size: Some(5 * MIB as u64),
        ..config(&bucket)
    })
    .await;
    let typed = PutOptions {
        content_type: Some("image/png".into()),
        ..Default::default()
    };
    let own = PutOptions {
        content_type: Some("text/plain".into()),
        cache_control: Some("no-cache".into()),
        ..Default::default()
    };
    s.put("a.png", body(b"png", 3), &typed).await.unwrap();
    // The multipart path carries the same headers.
    let big = support::bytes(6 * MIB, 6);
    s.put("b.png", body(&big, MIB), &typed).await.unwrap();
    s.put("c.txt", body(b"txt", 3), &own).await.unwrap();
    for (name, ct, cc) in [
        ("a.png", "image/png", "public, max-age=600"),
        ("b.png", "image/png", "public, max-age=600"),
        ("c.txt", "text/plain", "no-cache"),
    ] {
        let meta = s.stat(name).await.unwrap();
        assert_eq!(meta.content_type.as_deref(), Some(ct), "{name}");
        assert_eq!(meta.cache_control.as_deref(), Some(cc), "{name}");
        let head = raw_client()
            .await
            .head_object()
            .bucket(&bucket)
            .key(name)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some(ct));
        assert_eq!(head.cache_control(), Some(cc));
    }
}

#[tokio::test]
async fn check_names_a_missing_bucket() {
    let s = store(&config("pfm-no-such-bucket-4b1d")).await;
    let err = s.check().await.expect_err("check of a missing bucket");
    let msg = err.to_string();
    assert!(msg.contains("pfm-no-such-bucket-4b1d"), "{msg}");
    assert!(!err.is_retryable(), "{msg}");
    let described = s.describe();
    assert!(!described.contains("testsecret"), "{described}");
}

#[tokio::test]
async fn wrong_secret_is_a_permanent_error() {
    let bucket = fresh_bucket("pfm-s3-auth").await;
    let s = store(&S3Config {
        secret_access_key: Some(Box::new(Secret::new("wrong"))),
        ..config(&bucket)
    })
    .await;
    let err = s
        .put("x.txt", body(b"x", 1), &PutOptions::default())
        .await
        .expect_err("bad signature");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    assert!(!format!("{err:?}").contains("testsecret"));
}

/// `ca_file` reaches the SDK's HTTPS client: against an HTTPS server whose CA the system does
/// not trust (`openssl s_server -WWW`, which serves `<bucket>/<key>` as a file), a read without
/// it fails on the certificate; with it the object's bytes come back.
#[tokio::test]
async fn ca_file_is_trusted_by_the_sdk_client() {
    let server = support::tls::start().await;
    std::fs::create_dir(server.root.join("pfm-s3-ca")).unwrap();
    // s_server takes the whole request target for the file name, query string included.
    std::fs::write(
        server.root.join("pfm-s3-ca/x.txt?x-id=GetObject"),
        b"trusted",
    )
    .unwrap();
    let mut cfg = config("pfm-s3-ca");
    cfg.endpoint = Some(server.url.clone());
    let read = |s: S3Store| async move {
        let got = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            read_all(&s, "x.txt").await
        });
        got.await.expect("an answer within 60 s")
    };
    let e = read(store(&cfg).await).await.expect_err("not trusted");
    let refused = parse_files_migrate::storage::error_chain(&e);
    assert!(refused.contains("certificate"), "{refused}");
    cfg.ca_file = Some(server.ca_file.clone());
    let got = read(store(&cfg).await).await.expect("trusted with ca_file");
    assert_eq!(got, b"trusted");
}
