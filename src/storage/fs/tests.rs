//! Unit tests of the fs store: layout, temp-file hygiene, configuration.

use super::*;

fn store(dir: &str) -> FsStore {
    let cfg = FsConfig {
        path: Some(dir.into()),
        ..Default::default()
    };
    FsStore::new(&cfg, &StoreContext::default()).unwrap()
}

#[test]
fn paths_follow_the_fs_adapter() {
    let s = store("/data/files");
    assert_eq!(
        s.location("a b@c.txt").unwrap(),
        "/data/files/a%20b%40c.txt"
    );
    assert_eq!(s.location("../x").unwrap(), "/data/files/..%2Fx");
    assert_eq!(
        s.location("/etc/passwd").unwrap(),
        "/data/files/%2Fetc%2Fpasswd"
    );
    for bad in ["", ".", "..", "a\0b"] {
        assert!(
            matches!(s.location(bad), Err(StorageError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert!(s.location(&"é".repeat(43)).is_err(), "258 encoded bytes");
}

#[tokio::test]
async fn check_removes_temp_files_of_dead_processes_only() {
    let dir = std::env::temp_dir().join(format!("pfm-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dead = dir.join(format!("{TEMP_PREFIX}{}+4194304+aa", host_tag()));
    let live = dir.join(format!("{TEMP_PREFIX}{}+1+bb", host_tag())); // pid 1 always runs
    let other_host = dir.join(format!("{TEMP_PREFIX}00000000+4194304+cc"));
    let real = dir.join("photo.jpg");
    for f in [&dead, &live, &other_host, &real] {
        std::fs::write(f, b"x").unwrap();
    }
    let store = FsStore::new(
        &FsConfig {
            path: Some(dir.clone()),
            ..Default::default()
        },
        &StoreContext::default(),
    )
    .unwrap();
    store.check().await.unwrap();
    assert!(!dead.exists());
    assert!(live.exists() && other_host.exists() && real.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn temp_names_never_collide_with_encoded_names() {
    assert!(!encode_uri_component(TEMP_PREFIX).starts_with(TEMP_PREFIX));
}

#[test]
fn config_needs_path_and_describe_hides_key() {
    assert!(FsStore::new(&FsConfig::default(), &StoreContext::default()).is_err());
    let cfg = FsConfig {
        path: Some("/d".into()),
        encryption_key: Some("hunter2".into()),
        ..Default::default()
    };
    let s = FsStore::new(&cfg, &StoreContext::default()).unwrap();
    assert_eq!(s.describe(), "fs /d (encrypted)");
    assert!(!format!("{s:?}").contains("hunter2"));
}

/// A directory is one store however it is spelled or reached, and whether or not it encrypts:
/// `D`, `D/`, `D/./`, `X/../D`, a symbolic link to `D`, and a `D` not created yet.
#[test]
fn identity_is_the_real_path_whatever_the_spelling() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::create_dir(tmp.path().join("x")).unwrap();
    std::os::unix::fs::symlink(&d, tmp.path().join("link")).unwrap();
    let id = |path: PathBuf, key: Option<&str>| {
        let cfg = FsConfig {
            path: Some(path),
            encryption_key: key.map(Into::into),
            ..Default::default()
        };
        FsStore::new(&cfg, &StoreContext::default())
            .unwrap()
            .identity()
    };
    let real = id(d.clone(), None);
    assert_eq!(
        real,
        format!("fs:{}", std::fs::canonicalize(&d).unwrap().display())
    );
    for same in [
        PathBuf::from(format!("{}/", d.display())),
        d.join("."),
        tmp.path().join("x/../d"),
        tmp.path().join("link"),
    ] {
        assert_eq!(id(same.clone(), None), real, "{}", same.display());
    }
    assert_eq!(
        id(d.clone(), Some("k")),
        real,
        "encryption is not where the bytes are"
    );
    let later = id(tmp.path().join("link/new/"), None);
    assert_eq!(later, format!("{real}/new"));
    assert_ne!(id(tmp.path().join("x"), None), real);
}

/// A create-only put that finds the name taken (perhaps a copy a killed run left in the page
/// cache, which the caller may then record verified) leaves the store to sync: the next `sync`
/// makes it durable (review §15).
#[tokio::test]
async fn a_copy_found_already_there_is_synced_before_it_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = FsConfig {
        path: Some(tmp.path().to_path_buf()),
        ..Default::default()
    };
    let s = FsStore::new(&cfg, &StoreContext::default()).unwrap();
    let body =
        || futures::stream::iter([Ok(bytes::Bytes::from_static(b"left by a killed run"))]).boxed();
    let create = PutOptions {
        mode: crate::storage::PutMode::Create,
        ..Default::default()
    };
    s.put("a.bin", body(), &create).await.unwrap();
    s.sync().await.unwrap();
    assert!(!s.unsynced.load(Ordering::SeqCst));
    let err = s.put("a.bin", body(), &create).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    assert_eq!(s.unsynced.load(Ordering::SeqCst), BATCHED_SYNC);
    s.sync().await.unwrap();
    assert!(!s.unsynced.load(Ordering::SeqCst));
}
