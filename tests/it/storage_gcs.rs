//! The GCS store against fake-gcs-server (from `scripts/test-services`, on `127.0.0.2:80`
//! because Google's crate sends a Host header without the port): the shared conformance suite,
//! with and without a prefix, plus resumable uploads, failed uploads, exact object names and
//! stored headers, checked through the JSON API behind the store's back.

use futures::StreamExt;
use parse_files_migrate::storage::gcs::{GcsConfig, GcsStore};
use parse_files_migrate::storage::{ObjectStore, PutOptions, StorageError, StoreContext};

use crate::support;
use crate::support::conformance::{self, body, read_all};
use crate::support::gcs::{endpoint, fresh_bucket};

const KIB: usize = 1024;

fn config(bucket: &str) -> GcsConfig {
    GcsConfig {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint()),
        anonymous: true,
        ..Default::default()
    }
}

async fn store(cfg: &GcsConfig) -> GcsStore {
    GcsStore::new(cfg, &StoreContext::default())
        .await
        .expect("build GCS store")
}

/// Object resources in a bucket, listed through the JSON API.
async fn objects(bucket: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/storage/v1/b/{bucket}/o", endpoint());
    let v: serde_json::Value = reqwest::get(&url)
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn names(bucket: &str) -> Vec<String> {
    let mut names: Vec<String> = objects(bucket)
        .await
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn conformance_without_prefix() {
    let bucket = fresh_bucket("pfm-gcs-conf").await;
    let s = store(&config(&bucket)).await;
    conformance::run(&s).await;
    assert!(names(&bucket).await.is_empty(), "the suite cleans up");
}

#[tokio::test]
async fn conformance_with_prefix() {
    let bucket = fresh_bucket("pfm-gcs-conf-prefix").await;
    let s = store(&GcsConfig {
        prefix: Some("apps/my-app/".into()),
        ..config(&bucket)
    })
    .await;
    conformance::run(&s).await;
}

#[tokio::test]
async fn keys_are_prefix_plus_name() {
    let bucket = fresh_bucket("pfm-gcs-keys").await;
    // No separator is added: parse-server-gcs-adapter uses `bucketPrefix + filename`.
    let s = store(&GcsConfig {
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
            format!("gs://{bucket}/pre/fix-{name}")
        );
    }
    let mut want: Vec<String> = conformance::NAMES
        .iter()
        .map(|n| format!("pre/fix-{n}"))
        .collect();
    want.sort();
    assert_eq!(names(&bucket).await, want);
}

#[tokio::test]
async fn resumable_upload_in_small_chunks() {
    let bucket = fresh_bucket("pfm-gcs-resumable").await;
    let s = store(&GcsConfig {
        resumable_threshold: Some(256 * KIB as u64),
        chunk_size: Some(256 * KIB as u64),
        ..config(&bucket)
    })
    .await;
    let data = support::bytes(1100 * KIB + 3, 8);
    let put = s
        .put("big.bin", body(&data, 70_001), &PutOptions::default())
        .await
        .expect("resumable put");
    assert_eq!(put.size, data.len() as u64);
    assert!(read_all(&s, "big.bin").await.unwrap() == data);
    let meta = s.stat("big.bin").await.unwrap();
    assert_eq!(meta.md5.as_deref(), Some(put.md5.as_str()));
    assert_eq!(meta.etag, put.etag, "etag is the generation");

    // The input breaks after several chunks went up: the session is never finalized.
    let good = body(&support::bytes(900 * KIB, 9), 64 * KIB);
    let broken = futures::stream::iter(vec![Err(StorageError::message(
        "src",
        true,
        "reset (injected)",
    ))]);
    let err = s
        .put(
            "broken.bin",
            good.chain(broken).boxed(),
            &PutOptions::default(),
        )
        .await
        .expect_err("a failing source fails the put");
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(
        err.is_retryable(),
        "the source's own error is returned: {err}"
    );
    assert!(s.stat("broken.bin").await.unwrap_err().is_not_found());
    assert_eq!(names(&bucket).await, vec!["big.bin".to_string()]);
}

#[tokio::test]
async fn content_type_and_cache_control_are_stored() {
    let bucket = fresh_bucket("pfm-gcs-headers").await;
    let s = store(&GcsConfig {
        cache_control: Some("public, max-age=600".into()),
        resumable_threshold: Some(256 * KIB as u64),
        chunk_size: Some(256 * KIB as u64),
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
    // The resumable path carries the same metadata.
    s.put("b.png", body(&support::bytes(600 * KIB, 1), 50_000), &typed)
        .await
        .unwrap();
    s.put("c.txt", body(b"txt", 3), &own).await.unwrap();
    let listed = objects(&bucket).await;
    for (name, ct, cc) in [
        ("a.png", "image/png", "public, max-age=600"),
        ("b.png", "image/png", "public, max-age=600"),
        ("c.txt", "text/plain", "no-cache"),
    ] {
        let meta = s.stat(name).await.unwrap();
        assert_eq!(meta.content_type.as_deref(), Some(ct), "{name}");
        assert_eq!(meta.cache_control.as_deref(), Some(cc), "{name}");
        let raw = listed
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(raw["contentType"], ct);
        assert_eq!(raw["cacheControl"], cc);
    }
}

#[tokio::test]
async fn check_names_a_missing_bucket() {
    let s = store(&config("pfm-no-such-bucket-4b1d")).await;
    let err = s.check().await.expect_err("check of a missing bucket");
    let msg = err.to_string();
    assert!(msg.contains("pfm-no-such-bucket-4b1d"), "{msg}");
    assert!(!err.is_retryable(), "{msg}");
}
