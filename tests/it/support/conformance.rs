//! The one conformance suite every storage backend runs (the `object_store` `integration.rs`
//! idea): the contract in `src/storage/mod.rs`, checked against a real server.
//!
//! Usage from a backend's test module:
//! ```ignore
//! let store = /* a store on a fresh bucket/prefix/dir */;
//! support::conformance::run(&*store).await;
//! ```
//! Read-only stores (the HTTP source) use [`run_read_only`] with a way to seed objects.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use parse_files_migrate::storage::{
    ByteStream, GetOptions, ListOptions, ListedObject, ObjectStore, PutMode, PutOptions,
    StorageError,
};

/// Names every writable backend must round-trip unchanged.
pub const NAMES: &[&str] = &[
    "plain.txt",
    "0123456789abcdef0123456789abcdef_photo.jpg",
    "tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-pic.png",
    "with space and (parens).txt",
    "unicodé-名前-🎉.bin",
    "at@sign~tilde.dat",
    "percent%20literal%2F.txt",
    "dir/sub/nested.txt",
    "plus+and&amp=eq;semi'quote!.txt",
];

/// Chunk a buffer into a stream of `chunk`-sized pieces (uneven on purpose).
pub fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, StorageError>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks).boxed()
}

/// Store every file of `files` (name → bytes) in `store`, streamed in 64 KiB chunks.
pub async fn put_all(store: &dyn ObjectStore, files: &std::collections::BTreeMap<String, Vec<u8>>) {
    for (n, data) in files {
        store
            .put(n, body(data, 65536), &Default::default())
            .await
            .unwrap_or_else(|e| panic!("put {n}: {e}"));
    }
}

/// A stream that yields `good` bytes and then fails, to simulate a source that breaks midway.
pub fn failing_body(good: usize) -> ByteStream {
    let data = super::bytes(good, 99);
    let chunks: Vec<Result<Bytes, StorageError>> = vec![
        Ok(Bytes::from(data)),
        Err(StorageError::message(
            "source",
            true,
            "connection reset (injected)",
        )),
    ];
    stream::iter(chunks).boxed()
}

/// Read an object completely.
pub async fn read_all(store: &dyn ObjectStore, name: &str) -> Result<Vec<u8>, StorageError> {
    let got = store.get(name, &GetOptions::default()).await?;
    let chunks: Vec<Bytes> = got.stream.try_collect().await?;
    Ok(chunks.concat())
}

/// The MD5 of `data` in hex, as stores report it.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

async fn roundtrip(store: &dyn ObjectStore, name: &str, data: &[u8], chunk: usize) {
    let put = store
        .put(name, body(data, chunk), &PutOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: put {name:?} ({} bytes): {e}",
                store.describe(),
                data.len()
            )
        });
    assert_eq!(put.size, data.len() as u64, "put size of {name:?}");
    assert_eq!(put.md5, md5_hex(data), "put md5 of {name:?}");
    let back = read_all(store, name)
        .await
        .unwrap_or_else(|e| panic!("{}: get {name:?}: {e}", store.describe()));
    assert_eq!(back.len(), data.len(), "length of {name:?} read back");
    assert!(back == data, "bytes of {name:?} read back differ");
    let meta = store
        .stat(name)
        .await
        .unwrap_or_else(|e| panic!("{}: stat {name:?}: {e}", store.describe()));
    assert_eq!(meta.size, data.len() as u64, "stat size of {name:?}");
    if store.capabilities().reports_md5
        && let Some(md5) = &meta.md5
    {
        assert_eq!(md5, &md5_hex(data), "stat md5 of {name:?}");
    }
}

/// A name no suite ever creates.
const MISSING: &str = "does-not-exist-4b1d.bin";

/// `get` (and, with `stat`, `stat`) of [`MISSING`] say NotFound, distinct from other errors.
async fn assert_missing(store: &dyn ObjectStore, stat: bool) {
    match store.get(MISSING, &GetOptions::default()).await {
        Err(e) => assert!(
            e.is_not_found(),
            "get of a missing object: want NotFound, got {e}"
        ),
        Ok(_) => panic!("get of a missing object succeeded"),
    }
    if stat {
        match store.stat(MISSING).await {
            Err(e) => assert!(
                e.is_not_found(),
                "stat of a missing object: want NotFound, got {e}"
            ),
            Ok(m) => panic!("stat of a missing object returned {m:?}"),
        }
    }
}

/// Every object `store.list` yields under `prefix` with pages of `page`, and how many pages came;
/// checks each page's bound.
pub async fn list_all(
    store: &dyn ObjectStore,
    prefix: Option<&str>,
    page: usize,
) -> (Vec<ListedObject>, usize) {
    let pages: Vec<Vec<ListedObject>> = store
        .list(ListOptions {
            prefix: prefix.map(str::to_string),
            page_size: Some(page),
        })
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{}: list {prefix:?}: {e}", store.describe()));
    for p in &pages {
        assert!(
            p.len() <= page,
            "a page of {} objects, asked {page}",
            p.len()
        );
    }
    let n = pages.len();
    (pages.into_iter().flatten().collect(), n)
}

/// The sorted names of a listing.
fn names_of(objects: &[ListedObject]) -> Vec<String> {
    let mut v: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
    v.sort();
    v
}

/// The listing contract, with exactly [`NAMES`] stored (object `i` holding `100 + i` bytes):
/// several pages, prefixes (with `/`, `%`, `+`, spaces, unicode), sizes, dates, no temp objects.
async fn check_listing(store: &dyn ObjectStore) {
    let (all, pages) = list_all(store, None, 2).await;
    let mut want: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(names_of(&all), want, "{}: listed names", store.describe());
    assert!(
        pages >= NAMES.len() / 2,
        "{pages} pages of 2 for {} names",
        NAMES.len()
    );
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for o in &all {
        let i = NAMES.iter().position(|n| *n == o.name).unwrap() as u64;
        // Stored bytes: the plaintext, or the plaintext plus IV and tag when encrypted.
        assert!(
            o.size == 100 + i || o.size == 100 + i + 32,
            "{}: size {} of {:?}",
            store.describe(),
            o.size,
            o.name
        );
        assert!(!o.superseded, "{:?} superseded", o.name);
        if let Some(m) = o.modified {
            assert!(m > hour_ago, "{:?} modified long ago: {m:?}", o.name);
        }
        assert!(
            !o.name.starts_with(".pfm-"),
            "a temp object listed: {:?}",
            o.name
        );
    }
    assert!(
        all.iter().any(|o| o.modified.is_some()),
        "no modification dates"
    );
    let (big, _) = list_all(store, None, 1000).await;
    assert_eq!(names_of(&big), want, "one big page");
    for (prefix, want) in [
        ("dir/", vec!["dir/sub/nested.txt"]),
        ("dir", vec!["dir/sub/nested.txt"]),
        ("unicodé-名", vec!["unicodé-名前-🎉.bin"]),
        ("percent%20", vec!["percent%20literal%2F.txt"]),
        ("plus+", vec!["plus+and&amp=eq;semi'quote!.txt"]),
        ("with space and (", vec!["with space and (parens).txt"]),
        (
            "p",
            vec![
                "percent%20literal%2F.txt",
                "plain.txt",
                "plus+and&amp=eq;semi'quote!.txt",
            ],
        ),
        ("nothing-here", vec![]),
    ] {
        let (got, _) = list_all(store, Some(prefix), 1).await;
        assert_eq!(
            names_of(&got),
            want,
            "{}: prefix {prefix:?}",
            store.describe()
        );
    }
}

/// The whole suite for a writable store. Every object it creates is deleted at the end.
pub async fn run(store: &dyn ObjectStore) {
    let caps = store.capabilities();
    assert!(
        caps.write,
        "run() is for writable stores; use run_read_only"
    );
    store.check().await.expect("check() on a healthy store");
    if caps.list {
        let (objects, _) = list_all(store, None, 3).await;
        assert_eq!(
            names_of(&objects),
            Vec::<String>::new(),
            "a fresh store lists nothing"
        );
    }

    // Sizes: empty, 1 byte, one byte over 5 MiB (S3's minimum part), 64 MiB (many parts/chunks).
    let sizes: &[(usize, usize)] = &[
        (0, 1),
        (1, 1),
        (5 * 1024 * 1024 + 1, 64 * 1024 + 7),
        (64 * 1024 * 1024, 1024 * 1024 + 3),
    ];
    for (i, (len, chunk)) in sizes.iter().enumerate() {
        let name = format!("size-{len}.bin");
        roundtrip(store, &name, &super::bytes(*len, i as u64), *chunk).await;
        store.delete(&name).await.expect("delete");
    }

    // Durability: sync makes what was put durable, and is a cheap no-op with nothing new.
    store
        .put("synced.bin", body(b"synced", 2), &PutOptions::default())
        .await
        .expect("put before sync");
    store.sync().await.expect("sync after a put");
    store.sync().await.expect("sync with nothing new");
    assert_eq!(read_all(store, "synced.bin").await.unwrap(), b"synced");
    store.delete("synced.bin").await.expect("delete");

    // Names with characters that layouts must encode exactly like Parse Server's adapters.
    for (i, name) in NAMES.iter().enumerate() {
        roundtrip(store, name, &super::bytes(100 + i, 1000 + i as u64), 33).await;
        let loc = store.location(name).expect("location of a valid name");
        assert!(!loc.is_empty());
    }
    if caps.list {
        check_listing(store).await;
    }

    // Not found: get and stat say NotFound, distinct from other errors; delete is idempotent.
    assert_missing(store, true).await;
    store
        .delete(MISSING)
        .await
        .expect("delete of a missing object is not an error");

    // Overwrite replaces: a shorter second version leaves no tail of the first.
    let name = "overwrite.txt";
    roundtrip(store, name, b"first version, quite long", 4).await;
    roundtrip(store, name, b"second", 4).await;

    // Create-only (what migrate writes with): a new name is written; over an existing one the
    // write fails with AlreadyExists and leaves the object exactly as it was — in one shot and
    // in parts (S3 checks at CompleteMultipartUpload); Overwrite still replaces.
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    for (name, len) in [("create.bin", 10), ("create-big.bin", 5 * 1024 * 1024 + 1)] {
        let first = super::bytes(len, 70);
        let put = store
            .put(name, body(&first, 64 * 1024), &create)
            .await
            .expect("create-only put of a new name");
        assert_eq!(put.size, len as u64);
        let other = super::bytes(len, 71);
        match store.put(name, body(&other, 64 * 1024), &create).await {
            Err(e) => assert!(
                e.is_already_exists(),
                "create-only over an existing object: want AlreadyExists, got {e}"
            ),
            Ok(_) => panic!("a create-only put replaced {name}"),
        }
        assert!(
            read_all(store, name).await.unwrap() == first,
            "{name}: the existing object must be untouched"
        );
        store
            .put(name, body(&other, 64 * 1024), &PutOptions::default())
            .await
            .expect("overwrite after a refused create");
        assert!(read_all(store, name).await.unwrap() == other, "{name}");
        store.delete(name).await.expect("delete");
    }

    // Content type: carried through where the backend stores one.
    let name = "typed.json";
    store
        .put(
            name,
            body(b"{}", 2),
            &PutOptions {
                content_type: Some("application/json".into()),
                ..Default::default()
            },
        )
        .await
        .expect("put with content type");
    let meta = store.stat(name).await.expect("stat typed");
    if let Some(ct) = meta.content_type {
        assert_eq!(ct, "application/json", "content type round trip");
    }

    // Atomicity: a write whose input fails midway leaves nothing visible — neither a new object
    // nor a damaged old one.
    let name = "atomic.bin";
    store
        .put(name, failing_body(3 * 1024 * 1024), &PutOptions::default())
        .await
        .expect_err("put of a failing stream must fail");
    match store.stat(name).await {
        Err(e) => assert!(
            e.is_not_found(),
            "after a failed put: want NotFound, got {e}"
        ),
        Ok(m) => panic!("a failed put left a visible object: {m:?}"),
    }
    roundtrip(store, name, b"old content", 3).await;
    let _ = store
        .put(name, failing_body(100), &PutOptions::default())
        .await
        .expect_err("put of a failing stream must fail");
    assert_eq!(
        read_all(store, name)
            .await
            .expect("old object still readable"),
        b"old content",
        "a failed overwrite must leave the old object intact"
    );

    // Ranged reads, where supported.
    if caps.range_reads {
        let data = super::bytes(300_000, 7);
        store
            .put("range.bin", body(&data, 10_000), &PutOptions::default())
            .await
            .expect("put range.bin");
        let got = store
            .get(
                "range.bin",
                &GetOptions {
                    offset: 123_457,
                    ..Default::default()
                },
            )
            .await
            .expect("ranged get");
        let chunks: Vec<Bytes> = got.stream.try_collect().await.expect("ranged read");
        assert!(chunks.concat() == data[123_457..], "ranged read content");

        // A read pinned to the version an earlier read saw: the rest of that version while it
        // is there; once the object is replaced, an integrity error, never the new bytes.
        let first = store
            .get("range.bin", &GetOptions::default())
            .await
            .expect("get range.bin");
        drop(first.stream);
        // Every store but the filesystem (which keeps no version) says which one it read.
        let fs = store.describe().starts_with("fs ");
        assert_eq!(first.version.is_some(), !fs, "{}", store.describe());
        if let Some(version) = first.version {
            let pinned = GetOptions {
                offset: 1000,
                version: Some(version),
                ..Default::default()
            };
            let rest = store.get("range.bin", &pinned).await.expect("pinned get");
            let chunks: Vec<Bytes> = rest.stream.try_collect().await.expect("pinned read");
            assert!(chunks.concat() == data[1000..], "pinned read content");
            let other = super::bytes(300_000, 8);
            store
                .put("range.bin", body(&other, 10_000), &PutOptions::default())
                .await
                .expect("replace range.bin");
            match store.get("range.bin", &pinned).await {
                Err(StorageError::Integrity { reason, .. }) => {
                    assert!(reason.contains("replaced"), "{reason}")
                }
                Err(e) => panic!("a pinned read of a replaced object: {e}"),
                Ok(_) => panic!("a pinned read of a replaced object read the new bytes"),
            }
        }
        store.delete("range.bin").await.expect("delete");
    }

    if store.quarantine().is_some() {
        quarantine(store).await;
    }

    debris(store).await;
    server_copy(store).await;

    // Clean up and check deletes took.
    for name in NAMES
        .iter()
        .chain(["overwrite.txt", "typed.json", "atomic.bin"].iter())
    {
        store.delete(name).await.expect("delete");
        match store.stat(name).await {
            Err(e) => assert!(e.is_not_found(), "after delete: want NotFound, got {e}"),
            Ok(_) => panic!("{name:?} still exists after delete"),
        }
    }
}

/// The server-side copy door, within the store itself: a create-only copy makes a new name with
/// the same bytes and refuses a name that holds an object (which keeps its bytes); an
/// overwriting copy replaces it; a missing source is [`StorageError::NotFound`]. Stores without
/// the door answer `None`.
pub async fn server_copy(store: &dyn ObjectStore) {
    use parse_files_migrate::storage::PutMode;
    let Some(door) = store.server_copy() else {
        return;
    };
    let data = super::bytes(70_001, 77);
    roundtrip(store, "copy-src.bin", &data, 4096).await;
    let src = door.copy_source("copy-src.bin").expect("copy source");
    let meta = store.stat("copy-src.bin").await.expect("stat");
    let made = door
        .copy_from(&src, &meta, "copy-dst.bin", PutMode::Create)
        .await
        .expect("create-only copy");
    assert_eq!(made, Some(()), "a copy within the store itself is possible");
    assert!(read_all(store, "copy-dst.bin").await.unwrap() == data);
    let copied = store.stat("copy-dst.bin").await.unwrap();
    assert_eq!(
        (copied.size, copied.md5.as_deref()),
        (meta.size, meta.md5.as_deref())
    );

    let other = super::bytes(333, 78);
    roundtrip(store, "copy-taken.bin", &other, 100).await;
    match door
        .copy_from(&src, &meta, "copy-taken.bin", PutMode::Create)
        .await
    {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => panic!("a create-only copy onto an object: {other:?}"),
    }
    assert!(
        read_all(store, "copy-taken.bin").await.unwrap() == other,
        "kept"
    );
    door.copy_from(&src, &meta, "copy-taken.bin", PutMode::Overwrite)
        .await
        .expect("overwriting copy");
    assert!(
        read_all(store, "copy-taken.bin").await.unwrap() == data,
        "replaced"
    );

    let gone = door.copy_source("copy-none.bin").expect("copy source");
    match door
        .copy_from(&gone, &meta, "copy-none-dst.bin", PutMode::Create)
        .await
    {
        Err(e) if e.is_not_found() => {}
        other => panic!("a copy of a missing object: {other:?}"),
    }
    for n in ["copy-src.bin", "copy-dst.bin", "copy-taken.bin"] {
        store.delete(n).await.expect("delete");
    }
}

/// The suite for a read-only store (the HTTP source). `seed(name, bytes)` must make `name`
/// readable through `store` (e.g. write a file under the web server's root). Checks get, stat,
/// not-found, ranged reads, and that writes are refused.
pub async fn run_read_only(store: &dyn ObjectStore, seed: &dyn Fn(&str, &[u8])) {
    let caps = store.capabilities();
    assert!(
        !caps.write,
        "run_read_only() is for read-only stores; use run"
    );
    store.check().await.expect("check() on a healthy store");

    let sizes: &[usize] = &[0, 1, 5 * 1024 * 1024 + 1, 64 * 1024 * 1024];
    let mut objects: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| (format!("size-{len}.bin"), super::bytes(*len, i as u64)))
        .collect();
    for (i, name) in NAMES.iter().enumerate() {
        objects.push((name.to_string(), super::bytes(100 + i, 1000 + i as u64)));
    }
    for (name, data) in &objects {
        seed(name, data);
        let back = read_all(store, name)
            .await
            .unwrap_or_else(|e| panic!("{}: get {name:?}: {e}", store.describe()));
        assert_eq!(back.len(), data.len(), "length of {name:?} read back");
        assert!(&back == data, "bytes of {name:?} read back differ");
        if caps.stat {
            let meta = store
                .stat(name)
                .await
                .unwrap_or_else(|e| panic!("{}: stat {name:?}: {e}", store.describe()));
            assert_eq!(meta.size, data.len() as u64, "stat size of {name:?}");
        }
        assert!(!store.location(name).expect("location").is_empty());
    }

    assert_missing(store, caps.stat).await;

    if caps.range_reads {
        let data = super::bytes(300_000, 7);
        seed("range.bin", &data);
        for offset in [1usize, 123_457, 299_999, 300_000] {
            let got = store
                .get(
                    "range.bin",
                    &GetOptions {
                        offset: offset as u64,
                        ..Default::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("ranged get at {offset}: {e}"));
            let chunks: Vec<Bytes> = got.stream.try_collect().await.expect("ranged read");
            assert!(
                chunks.concat() == data[offset..],
                "ranged read content at {offset}"
            );
        }
    }

    let err = store
        .put("x", body(b"x", 1), &PutOptions::default())
        .await
        .expect_err("put on a read-only store");
    assert!(
        matches!(err, StorageError::Unsupported { .. }),
        "put: {err}"
    );
    if !caps.list {
        let err = store
            .list(ListOptions::default())
            .try_collect::<Vec<_>>()
            .await
            .expect_err("list on a store that cannot list");
        assert!(
            matches!(err, StorageError::Unsupported { .. }),
            "list: {err}"
        );
        assert!(
            err.to_string().contains("listing is not supported"),
            "{err}"
        );
    }
    let err = store
        .delete("x")
        .await
        .expect_err("delete on a read-only store");
    assert!(
        matches!(err, StorageError::Unsupported { .. }),
        "delete: {err}"
    );
}

/// The quarantine part of the contract: a move hides the object from reads and listings, is
/// idempotent, never replaces (a restore onto a name that holds an object again is refused and
/// changes nothing), restores byte-identical, and a purge removes it for good.
pub async fn quarantine(store: &dyn ObjectStore) {
    let name = "quarantine/ünï %2F+.bin";
    let a = super::bytes(70_000, 5);
    let b = super::bytes(10, 6);
    let listed = |store| async move {
        let (objects, _) = list_all(store, None, 1000).await;
        names_of(&objects)
    };
    let before = listed(store).await;
    store
        .put(name, body(&a, 4096), &PutOptions::default())
        .await
        .expect("put");
    assert_ne!(
        store.quarantine().unwrap().location(name).unwrap(),
        store.location(name).unwrap(),
        "the quarantine is elsewhere"
    );
    store
        .quarantine()
        .unwrap()
        .quarantine(name)
        .await
        .expect("quarantine");
    let err = store.stat(name).await.expect_err("quarantined: not served");
    assert!(err.is_not_found(), "{err}");
    assert!(read_all(store, name).await.unwrap_err().is_not_found());
    assert_eq!(
        listed(store).await,
        before,
        "quarantined objects are not listed"
    );
    store
        .quarantine()
        .unwrap()
        .quarantine(name)
        .await
        .expect("quarantine again: already done");

    // The name holds another object meanwhile: the restore is refused, nothing changes.
    store
        .put(name, body(&b, 3), &PutOptions::default())
        .await
        .expect("put");
    let err = store
        .quarantine()
        .unwrap()
        .unquarantine(name)
        .await
        .expect_err("restore onto a taken name");
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(
        read_all(store, name).await.unwrap(),
        b,
        "the newer object stays"
    );
    store.delete(name).await.expect("delete");
    store
        .quarantine()
        .unwrap()
        .unquarantine(name)
        .await
        .expect("restore");
    assert!(
        read_all(store, name).await.unwrap() == a,
        "restored byte-identical"
    );
    store
        .quarantine()
        .unwrap()
        .unquarantine(name)
        .await
        .expect("restore again: already done");
    let err = store
        .quarantine()
        .unwrap()
        .quarantine("never stored.bin")
        .await
        .expect_err("nothing to move");
    assert!(err.is_not_found(), "{err}");

    store
        .quarantine()
        .unwrap()
        .quarantine(name)
        .await
        .expect("quarantine");
    store
        .quarantine()
        .unwrap()
        .purge(name)
        .await
        .expect("purge");
    store
        .quarantine()
        .unwrap()
        .purge(name)
        .await
        .expect("purge again");
    let err = store
        .quarantine()
        .unwrap()
        .unquarantine(name)
        .await
        .expect_err("purged: nothing to restore");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(listed(store).await, before);
}

/// The debris part of the contract: sweeping for a run of *this* process — which wrote every
/// object of the suite, so its GridFS upload ids carry this process's bytes — removes nothing
/// complete (every object still reads back), and an announced upload that does not exist (never
/// started, or completed) is not counted. Without the capability: [`StorageError::Unsupported`].
pub async fn debris(store: &dyn ObjectStore) {
    use parse_files_migrate::storage::debris::{Owner, Swept, Upload};
    let owner = Owner {
        run: mongodb::bson::oid::ObjectId::new(),
        uploads: vec![Upload {
            name: NAMES[0].to_string(),
            id: "no-such-upload".to_string(),
        }],
    };
    let before: Vec<Vec<u8>> = futures::future::join_all(NAMES.iter().map(|n| read_all(store, n)))
        .await
        .into_iter()
        .map(|r| r.expect("read before the sweep"))
        .collect();
    // Stores without the capability have no accessor: nothing to sweep, nothing to check.
    let Some(d) = store.debris() else {
        return;
    };
    let mut swept = Ok(Swept::default());
    let mut batches = d.find(&owner);
    while let Some(batch) = batches.next().await {
        match batch {
            Ok(b) => match d.remove(&b).await {
                Ok(s) => swept.as_mut().unwrap().add(s),
                Err(e) => swept = Err(e),
            },
            Err(e) => swept = Err(e),
        }
    }
    assert_eq!(swept.expect("sweep"), Swept::default(), "nothing to remove");
    for (n, data) in NAMES.iter().zip(before) {
        assert!(
            read_all(store, n).await.expect("read after the sweep") == data,
            "{n}"
        );
    }
}
