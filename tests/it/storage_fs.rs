//! The filesystem store against a real directory: the conformance suite (plain and encrypted),
//! Parse FS adapter layout, compatibility with files Node's crypto encrypted, plaintext fallback,
//! and names that try to leave the directory.

use parse_files_migrate::storage::crypto::{self, FileKey};
use parse_files_migrate::storage::fs::{FsConfig, FsStore};
use parse_files_migrate::storage::{ObjectStore, PutOptions, StorageError, StoreContext};

use crate::support;
use crate::support::conformance::{self, body, read_all};

fn store(dir: &std::path::Path, key: Option<&str>) -> FsStore {
    let cfg = FsConfig {
        path: Some(dir.to_path_buf()),
        encryption_key: key.map(Into::into),
        ..Default::default()
    };
    FsStore::new(&cfg, &StoreContext::default()).expect("fs store")
}

/// Entries of a directory, sorted (to see temp files or escapes).
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn conformance_plain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    conformance::run(&store(&root, None)).await;
    assert!(
        entries(&root).is_empty(),
        "left behind: {:?}",
        entries(&root)
    );
}

#[tokio::test]
async fn listing_leaves_out_temp_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    s.put("a b.txt", body(b"abc", 1), &PutOptions::default())
        .await
        .unwrap();
    std::fs::write(dir.path().join(".pfm-tmp+0000+1+x"), b"partial").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub").join("inner.txt"), b"x").unwrap();
    let (listed, _) = conformance::list_all(&s, None, 10).await;
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a b.txt"]);
    assert_eq!(listed[0].size, 3);
    // A store whose directory does not exist yet is empty, not an error.
    let missing = store(&dir.path().join("not-yet"), None);
    assert!(conformance::list_all(&missing, None, 10).await.0.is_empty());
}

#[tokio::test]
async fn conformance_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    conformance::run(&store(&root, Some("conformance key"))).await;
    assert!(
        entries(&root).is_empty(),
        "left behind: {:?}",
        entries(&root)
    );
}

#[tokio::test]
async fn encrypted_files_use_parse_layout_and_fall_back_to_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), Some("k1"));
    let data = support::bytes(1000, 3);
    s.put("a b.bin", body(&data, 100), &PutOptions::default())
        .await
        .unwrap();
    let raw = std::fs::read(dir.path().join("a%20b.bin")).unwrap();
    assert_eq!(raw.len(), data.len() + 32, "ciphertext ‖ iv ‖ tag");
    assert_eq!(
        crypto::open(&FileKey::derive("k1"), &raw),
        Some(data.clone())
    );

    // A plaintext file (written before the key was set) reads back as is, small and large.
    for len in [5, 40, 9 * 1024 * 1024] {
        let plain = support::bytes(len, len as u64);
        std::fs::write(dir.path().join("old.txt"), &plain).unwrap();
        assert!(read_all(&s, "old.txt").await.unwrap() == plain, "len {len}");
        assert_eq!(s.stat("old.txt").await.unwrap().size, len as u64);
    }
    // The same store without the key sees the stored bytes.
    assert_eq!(
        read_all(&store(dir.path(), None), "a b.bin").await.unwrap(),
        raw
    );
}

#[tokio::test]
async fn reads_files_encrypted_by_node() {
    let dir = tempfile::tempdir().unwrap();
    // What the FS adapter does with `encryptionKey`: Node's crypto, `ciphertext ‖ iv ‖ tag`,
    // at `encodeURIComponent(name)`. The large file takes the streaming (two-pass) read path.
    let script = r#"
        const crypto = require('crypto'), fs = require('fs'), path = require('path');
        const [dir, keyString] = process.argv.slice(1);
        const key = crypto.createHash('sha256').update(String(keyString)).digest('base64').substring(0, 32);
        for (const [name, len] of [['small é.txt', 43], ['big/file.bin', 9 * 1024 * 1024 + 5]]) {
          const data = Buffer.alloc(len);
          for (let i = 0; i < len; i++) data[i] = (i * 31) % 251;
          const iv = crypto.randomBytes(16);
          const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
          const out = Buffer.concat([cipher.update(data), cipher.final(), iv, cipher.getAuthTag()]);
          fs.writeFileSync(path.join(dir, encodeURIComponent(name)), out);
        }
    "#;
    let status = std::process::Command::new("node")
        .args(["-e", script, dir.path().to_str().unwrap(), "node fileKey"])
        .status()
        .expect("node is needed for this test");
    assert!(status.success());
    let s = store(dir.path(), Some("node fileKey"));
    for (name, len) in [
        ("small é.txt", 43usize),
        ("big/file.bin", 9 * 1024 * 1024 + 5),
    ] {
        let want: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        assert!(read_all(&s, name).await.unwrap() == want, "{name}");
        assert_eq!(s.stat(name).await.unwrap().size, len as u64);
    }
}

#[tokio::test]
async fn names_never_leave_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("files");
    let s = store(&root, None);
    s.check().await.unwrap();
    for name in ["../x", "/etc/passwd", "../../escape", "a/../../b"] {
        s.put(name, body(b"x", 1), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(read_all(&s, name).await.unwrap(), b"x");
    }
    assert_eq!(
        entries(parent.path()),
        vec!["files"],
        "nothing outside the store directory"
    );
    assert_eq!(
        entries(&root),
        vec![
            "%2Fetc%2Fpasswd",
            "..%2F..%2Fescape",
            "..%2Fx",
            "a%2F..%2F..%2Fb"
        ]
    );
    for name in ["", ".", "..", "nul\0byte"] {
        let err = s
            .put(name, body(b"x", 1), &PutOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidName { .. }),
            "{name:?}: {err}"
        );
        assert!(matches!(
            s.stat(name).await,
            Err(StorageError::InvalidName { .. })
        ));
    }
}

#[tokio::test]
async fn failed_put_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), Some("k"));
    let err = s
        .put(
            "x.bin",
            conformance::failing_body(1000),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.is_retryable(),
        "the injected source error is retryable: {err}"
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

/// A create-only write in progress has no name in the directory where the filesystem has
/// `O_TMPFILE` (one directory change per file: the final link); elsewhere its named temp file.
/// Either way the finished file is whole and nothing else is left. A streamed body that waits
/// half-way lets the test look at the directory mid-write.
#[tokio::test]
async fn a_write_in_progress_has_no_name_where_the_filesystem_allows() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let data = support::bytes(600 << 10, 9); // above the gathered size: streamed
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, StorageError>>(1);
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
    let opts = PutOptions {
        mode: parse_files_migrate::storage::PutMode::Create,
        ..Default::default()
    };
    let put = tokio::spawn({
        let s = std::sync::Arc::new(s);
        let s2 = s.clone();
        async move { (s2.put("big.bin", body, &opts).await, s) }
    });
    tx.send(Ok(bytes::Bytes::copy_from_slice(&data[..300 << 10])))
        .await
        .unwrap();
    // The first half is written once the next send is accepted (the channel holds one).
    tx.send(Ok(bytes::Bytes::copy_from_slice(
        &data[300 << 10..400 << 10],
    )))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mid = entries(dir.path());
    if unnamed_files_allowed(dir.path()) {
        assert!(mid.is_empty(), "no name while writing: {mid:?}");
    } else {
        assert_eq!(mid.len(), 1, "one named temp file: {mid:?}");
        assert!(mid[0].starts_with(".pfm-tmp+"), "{mid:?}");
    }
    tx.send(Ok(bytes::Bytes::copy_from_slice(&data[400 << 10..])))
        .await
        .unwrap();
    drop(tx);
    let (put, _s) = put.await.unwrap();
    assert_eq!(put.unwrap().size, data.len() as u64);
    assert_eq!(entries(dir.path()), ["big.bin"]);
    assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), data);
}

/// Whether `dir`'s filesystem makes unnamed files (Linux `O_TMPFILE`).
fn unnamed_files_allowed(dir: &std::path::Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
            .is_ok()
            && std::path::Path::new("/proc/self/fd").is_dir()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

/// `sync` reports a failure instead of swallowing it, and a failed sync is tried again by the
/// next one (the writes it covered are still not known to be durable). With nothing written
/// since the last sync it does nothing, not even look at the directory.
#[tokio::test]
async fn a_failed_sync_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let s = store(&root, None);
    s.check().await.unwrap();
    s.put("a.bin", body(b"abc", 1), &PutOptions::default())
        .await
        .unwrap();
    let away = dir.path().join("away");
    std::fs::rename(&root, &away).unwrap();
    if cfg!(target_os = "linux") {
        let err = s
            .sync()
            .await
            .expect_err("sync of a directory that is gone");
        assert!(err.to_string().contains("fs "), "names the store: {err}");
    }
    std::fs::rename(&away, &root).unwrap();
    s.sync().await.expect("the retry succeeds");
    std::fs::rename(&root, &away).unwrap();
    s.sync()
        .await
        .expect("nothing new since the last sync: no work, no error");
    std::fs::rename(&away, &root).unwrap();
    assert_eq!(read_all(&s, "a.bin").await.unwrap(), b"abc");
}

/// A put that announces a small size is gathered and written in one step: the bytes, size and
/// MD5 are the same as streamed, with and without encryption; a body longer than announced is
/// written whole; one that fails (gathering or past the announced size) leaves nothing.
#[tokio::test]
async fn puts_announcing_a_small_size() {
    for key in [None, Some("small key")] {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), key);
        for (len, hint) in [(0, 0), (1_000, 1_000), (100, 100_000), (300_000, 10)] {
            let data = support::bytes(len, len as u64);
            let name = format!("f{len}.bin");
            let opts = PutOptions {
                size_hint: Some(hint),
                ..Default::default()
            };
            let put = s.put(&name, body(&data, 4_096), &opts).await.unwrap();
            assert_eq!(put.size, len as u64, "{name} {key:?}");
            assert_eq!(put.md5, conformance::md5_hex(&data), "{name}");
            assert!(read_all(&s, &name).await.unwrap() == data, "{name} {key:?}");
            assert_eq!(s.stat(&name).await.unwrap().size, len as u64, "{name}");
        }
        for (good, hint) in [(100, 1_000), (300_000, 10)] {
            let opts = PutOptions {
                size_hint: Some(hint),
                ..Default::default()
            };
            s.put("broken.bin", conformance::failing_body(good), &opts)
                .await
                .expect_err("a failing body fails the put");
        }
        let left: Vec<_> = entries(dir.path())
            .into_iter()
            .filter(|e| !e.starts_with('f'))
            .collect();
        assert!(left.is_empty(), "nothing of the failed puts: {left:?}");
    }
}
