//! The engine's copy-and-verify step between real stores: bytes arrive identical, the result
//! carries the stream's size and MD5, the destination's own hash is compared where it reports
//! one, and a missing source file is NotFound with nothing written.

use std::sync::Arc;

use parse_files_migrate::engine::transfer::copy_verified;
use parse_files_migrate::storage::fs::{FsConfig, FsStore};
use parse_files_migrate::storage::s3::S3Store;
use parse_files_migrate::storage::{
    Encryption, GetOptions, ObjectStore, PutMode, PutOptions, StoreContext,
};

use crate::support;
use crate::support::conformance::{body, md5_hex, read_all};

fn fs_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    let cfg = FsConfig {
        path: Some(dir.to_path_buf()),
        encryption: Some(Encryption::None),
        ..Default::default()
    };
    Arc::new(FsStore::new(&cfg, &StoreContext::default()).expect("fs store"))
}

#[tokio::test]
async fn copies_verify_and_rename() {
    let src_dir = tempfile::tempdir().unwrap();
    let source = fs_store(src_dir.path());
    let bucket = support::s3::fresh_bucket("pfm-transfer").await;
    let dest: Arc<dyn ObjectStore> = Arc::new(
        S3Store::new(&support::s3::config(&bucket), &StoreContext::default())
            .await
            .expect("s3 store"),
    );
    let name = "tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-photo.jpg";
    let target = "0123456789abcdef0123456789abcdef_photo.jpg";
    let data = support::bytes(3 * 1024 * 1024 + 17, 42);
    source
        .put(name, body(&data, 65_537), &PutOptions::default())
        .await
        .unwrap();

    let v = copy_verified(
        &source,
        &*dest,
        name,
        target,
        &GetOptions::default(),
        PutMode::Create,
    )
    .await
    .expect("copy");
    assert_eq!(v.size, data.len() as u64);
    assert_eq!(v.md5.as_deref(), Some(md5_hex(&data).as_str()));
    assert!(
        v.hash_checked,
        "S3 reports the MD5 of a single-part object: it must be compared"
    );
    assert!(
        read_all(&*dest, target).await.unwrap() == data,
        "bytes at the destination"
    );
    assert_eq!(
        dest.stat(target).await.unwrap().content_type.as_deref(),
        Some("image/jpeg"),
        "content type from the target name when the source has none"
    );

    // Back to a filesystem store, which reports no hash: size-only verification, said so.
    let out_dir = tempfile::tempdir().unwrap();
    let out = fs_store(out_dir.path());
    let v = copy_verified(
        &dest,
        &*out,
        target,
        target,
        &GetOptions::default(),
        PutMode::Create,
    )
    .await
    .expect("copy back");
    assert!(!v.hash_checked);
    assert_eq!(v.md5.as_deref(), Some(md5_hex(&data).as_str()));
    assert!(read_all(&*out, target).await.unwrap() == data);

    // A file missing at the source: NotFound, and nothing appears at the destination.
    let err = copy_verified(
        &source,
        &*out,
        "gone.jpg",
        "x_gone.jpg",
        &GetOptions::default(),
        PutMode::Create,
    )
    .await
    .expect_err("missing source");
    assert!(err.is_not_found(), "{err}");
    assert!(out.stat("x_gone.jpg").await.unwrap_err().is_not_found());
}
