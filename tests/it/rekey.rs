//! `rekey` (issue #18) against the real MongoDB-wire test server and a real directory: a mixed
//! GridFS bucket (plaintext files as an old Parse Server wrote them, files encrypted with key A,
//! a stale superseded revision) is encrypted with A, rotated A → B and decrypted, each step
//! checked byte for byte and for leftovers (no stale revision, no orphan chunk, no unsettled
//! record), each re-run a no-op; `kill -9` at spread instants of a rotation, each followed by a
//! re-run, ends with every file in the new key exactly once; a newer version Parse Server
//! uploads meanwhile is never replaced; the FS store the same; and neither key shows anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use futures::io::AsyncWriteExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use parse_files_migrate::secret::Secret;
use parse_files_migrate::storage::ObjectStore;
use parse_files_migrate::storage::crypto::{self, FileKey};
use parse_files_migrate::storage::gridfs::{GridFsConfig, GridFsStore};
use parse_files_migrate::storage::rekey::{Outcome, Versioned};
use serde_json::Value;

use crate::support::{self, app};

const KEY_A: &str = "rekeyKeyAlpha-7f3c";
const KEY_B: &str = "rekeyKeyBravo-91d2";

/// Upload raw stored bytes with the driver, as Parse Server does.
async fn raw_upload(db: &Database, name: &str, data: &[u8]) {
    let bucket = db.gridfs_bucket(None);
    let mut up = bucket.open_upload_stream(name).await.unwrap();
    up.write_all(data).await.unwrap();
    up.close().await.unwrap();
}

async fn all(db: &Database, coll: &str) -> Vec<Document> {
    db.collection::<Document>(coll)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn config(tag: &str, db: &str, destination: &str) -> PathBuf {
    let path = support::temp_path(tag).with_extension("toml");
    let text = format!(
        "[mongo]\nuri = \"{}\"\ndatabase = \"{db}\"\n\n[parse]\napp_id = \"rekeyApp\"\n\
         file_key = \"{KEY_A}\"\n\n[destination]\n{destination}\n",
        support::mongo_uri()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `-c CONFIG [extra] rekey ARGS --json`, the new key in the environment when given; checks
/// that neither key shows in the output and returns the summary.
fn rekey(config: &Path, new_key: Option<&str>, args: &[&str]) -> (i32, Value) {
    let mut cmd = app::command();
    cmd.args(["-c", config.to_str().unwrap(), "rekey", "--json"])
        .args(args);
    if let Some(k) = new_key {
        cmd.env("PFM_NEW_FILE_KEY", k);
    }
    let out = app::Out::from(cmd.output().unwrap());
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.assert_hides("key A", KEY_A);
    out.assert_hides("key B", KEY_B);
    // A refused run prints no summary: its error is on stderr.
    let summary = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|_| {
        assert!(
            out.code != 0,
            "no JSON summary:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        Value::String(out.stderr.clone())
    });
    (out.code, summary)
}

/// Every file's newest revision, decrypted with `key` (or taken as is), must equal `want`; one
/// revision per name, every chunk belonging to one, no unsettled rekey record.
async fn check_bucket(db: &Database, key: Option<&str>, want: &BTreeMap<String, Vec<u8>>) {
    let files = all(db, "fs.files").await;
    assert_eq!(files.len(), want.len(), "one revision per name");
    let store = gridfs(db.name(), None).await;
    let key = key.map(FileKey::derive);
    for (name, data) in want {
        let v = Versioned::current(&store, name).await.unwrap().expect(name);
        let stored = crypto::recode::md5_of(store.open(&v, 0).await.unwrap());
        let stored_md5 = stored.await.unwrap();
        let mut bytes = Vec::new();
        let mut s = store.open(&v, 0).await.unwrap();
        while let Some(c) = s.try_next().await.unwrap() {
            bytes.extend_from_slice(&c);
        }
        assert_eq!(stored_md5.0, bytes.len() as u64);
        let plain = match &key {
            Some(k) => crypto::open(k, &bytes).unwrap_or_else(|| panic!("{name}: not encrypted")),
            None => bytes,
        };
        assert!(&plain == data, "{name}: bytes differ");
    }
    let ids: std::collections::HashSet<String> = files
        .iter()
        .map(|f| f.get_object_id("_id").unwrap().to_hex())
        .collect();
    for c in all(db, "fs.chunks").await {
        let owner = c.get_object_id("files_id").unwrap().to_hex();
        assert!(ids.contains(&owner), "orphan chunk of {owner}");
    }
    let staged = db
        .collection::<Document>("_FileMigration.rekey")
        .count_documents(doc! {"state": "staged", "store": {"$ne": ANOTHER_STORE}})
        .await
        .unwrap();
    assert_eq!(staged, 0, "unsettled rekey records");
}

/// The identity of a store no test rekeys, for a record of another store's rekey.
const ANOTHER_STORE: &str = "gridfs://127.0.0.1:1/another/fs";

async fn gridfs(db: &str, key: Option<&str>) -> GridFsStore {
    let cfg = GridFsConfig {
        uri: Some(Secret::new(support::mongo_uri())),
        database: Some(db.to_string()),
        encryption_key: key.map(Into::into),
        ..Default::default()
    };
    GridFsStore::new(&cfg, &Default::default()).await.unwrap()
}

/// Neither key anywhere in the database (ledger records, run records with their settings).
async fn assert_db_hides_keys(db: &Database) {
    for coll in db.list_collection_names().await.unwrap() {
        for d in all(db, &coll).await {
            let text = format!("{d:?}");
            assert!(
                !text.contains(KEY_A) && !text.contains(KEY_B),
                "{coll}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn gridfs_encrypt_rotate_decrypt() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_rekey");
    let db = client.database(&name);
    let a = FileKey::derive(KEY_A);
    let mut want = BTreeMap::new();
    for (i, len) in [0usize, 1, 31, 32, 33, 1000, 261_120, 261_121, 700_000]
        .into_iter()
        .enumerate()
    {
        let plain = support::bytes(len, i as u64);
        let n = format!("{i:02}abcdef_plain {len}.bin");
        raw_upload(&db, &n, &plain).await;
        want.insert(n, plain);
        let enc = support::bytes(len + 7, 100 + i as u64);
        let n = format!("{i:02}abcdef_enc {len}.bin");
        raw_upload(&db, &n, &crypto::seal(&a, &enc)).await;
        want.insert(n, enc);
    }
    // A stale revision under a name (never served: the newer one is).
    let stale = "99_stale.txt".to_string();
    raw_upload(&db, &stale, b"old revision").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    raw_upload(&db, &stale, &crypto::seal(&a, b"served revision")).await;
    want.insert(stale, b"served revision".to_vec());
    let cfg = config(&name, &name, "type = \"gridfs\"");

    let (code, s) = rekey(&cfg, None, &["--encrypt", "--dry-run"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["files_checked"], 19);
    assert_eq!(s["plaintext"]["files"], 9);
    assert_eq!(s["current_key"]["files"], 10);
    assert_eq!(s["rewritten"]["files"], 9);
    assert_eq!(
        all(&db, "fs.files").await.len(),
        20,
        "a dry run changes nothing"
    );

    let (code, s) = rekey(&cfg, None, &["--encrypt"]);
    assert_eq!(code, 2, "writing without a terminal needs --yes: {s}");
    let (code, s) = rekey(&cfg, None, &["--encrypt", "--yes"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["rewritten"]["files"], 9);
    assert_eq!(s["already_done"]["files"], 10);
    check_bucket(&db, Some(KEY_A), &want).await;
    let (code, s) = rekey(&cfg, None, &["--encrypt", "--yes"]);
    assert_eq!(
        (code, s["rewritten"]["files"].clone()),
        (0, 0.into()),
        "{s}"
    );

    // Rotation without a new key is refused; with B every file ends in B.
    let (code, _) = rekey(&cfg, None, &["--yes"]);
    assert_eq!(code, 2);
    let (code, s) = rekey(&cfg, Some(KEY_B), &["--dry-run"]);
    assert_eq!(
        (code, s["current_key"]["files"].clone()),
        (0, 19.into()),
        "{s}"
    );
    let (code, s) = rekey(&cfg, Some(KEY_B), &["--yes", "--concurrency", "3"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["rewritten"]["files"], 19);
    check_bucket(&db, Some(KEY_B), &want).await;

    // A file only A opens after the rotation is undecryptable for a rotation to B: left, exit 3.
    raw_upload(&db, "zz_late.bin", &crypto::seal(&a, b"late upload")).await;
    let cfg_b = support::temp_path(&format!("{name}_b")).with_extension("toml");
    std::fs::write(
        &cfg_b,
        std::fs::read_to_string(&cfg).unwrap().replace(KEY_A, KEY_B),
    )
    .unwrap();
    let (code, s) = rekey(&cfg_b, Some("yet-another-key"), &["--dry-run"]);
    assert_eq!((code, s["undecryptable"]["files"].clone()), (0, 1.into()));
    ObjectStore::delete(&gridfs(&name, None).await, "zz_late.bin")
        .await
        .unwrap();

    let report = support::temp_path("rekey_report").with_extension("json");
    let report_arg = report.to_str().unwrap();
    let (code, s) = rekey(
        &cfg_b,
        None,
        &["--decrypt", "--yes", "--report", report_arg],
    );
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["rewritten"]["files"], 19);
    let written = std::fs::read_to_string(&report).unwrap();
    assert!(!written.contains(KEY_A) && !written.contains(KEY_B));
    let from_file: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(from_file["rewritten"], s["rewritten"]);
    check_bucket(&db, None, &want).await;
    let states = parse_files_migrate::ledger::Ledger::new(db.clone(), "_FileMigration")
        .rekey_states()
        .await
        .unwrap();
    assert_eq!(states.get("done"), Some(&(9 + 19 + 19)), "{states:?}");
    assert_db_hides_keys(&db).await;
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_newer_upload_is_never_replaced() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_rekey_live");
    let db = client.database(&name);
    raw_upload(&db, "live.txt", b"first").await;
    let store = gridfs(&name, Some(KEY_A)).await;
    let v = Versioned::current(&store, "live.txt")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Parse Server uploads under the same name while the rekey reads the old version.
    raw_upload(&db, "live.txt", b"second").await;
    let id = store.new_id();
    let body = support::conformance::body(b"first, rewritten", 4);
    let got = store.stage(&v, &id, body).await.unwrap();
    assert_eq!(got, Outcome::Superseded);
    let files = all(&db, "fs.files").await;
    assert_eq!(files.len(), 2, "ours removed, theirs and the old one left");
    assert!(
        files
            .iter()
            .all(|f| f.get_object_id("_id").unwrap().to_hex() != id)
    );
    let newest = Versioned::current(&store, "live.txt")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(newest.id, v.id, "the newer upload is what readers see");
    let chunks = all(&db, "fs.chunks").await;
    assert_eq!(chunks.len(), 2, "no chunk of ours left");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn fs_rotate_and_decrypt() {
    let dir = support::temp_path("rekey_fs");
    std::fs::create_dir_all(&dir).unwrap();
    let a = FileKey::derive(KEY_A);
    let mut want = BTreeMap::new();
    for (i, len) in [0usize, 5, 40, 300_000].into_iter().enumerate() {
        let data = support::bytes(len, 7 + i as u64);
        let name = format!("f{i} x/é.bin");
        let path = dir.join(parse_files_migrate::parse::names::encode_uri_component(
            &name,
        ));
        std::fs::write(path, crypto::seal(&a, &data)).unwrap();
        want.insert(name, data);
    }
    let db = support::unique("pfm_rekey_fs");
    let dest = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption_key = \"{KEY_A}\"",
        dir.display()
    );
    let cfg = config(&db, &db, &dest);
    let (code, s) = rekey(&cfg, Some(KEY_B), &["--yes"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["rewritten"]["files"], 4);
    let b = FileKey::derive(KEY_B);
    let read = |name: &str| {
        std::fs::read(
            dir.join(parse_files_migrate::parse::names::encode_uri_component(
                name,
            )),
        )
        .unwrap()
    };
    for (name, data) in &want {
        assert_eq!(&crypto::open(&b, &read(name)).expect(name), data);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4, "no temp left");
    let (code, s) = rekey(&cfg, Some(KEY_B), &["--yes"]);
    assert_eq!((code, s["rewritten"]["files"].clone()), (0, 0.into()));
    let dest_b = dest.replace(KEY_A, KEY_B);
    let cfg_b = config(&format!("{db}_b"), &db, &dest_b);
    let (code, s) = rekey(&cfg_b, None, &["--decrypt", "--yes"]);
    assert_eq!(
        (code, s["rewritten"]["files"].clone()),
        (0, 4.into()),
        "{s}"
    );
    for (name, data) in &want {
        assert_eq!(&read(name), data);
    }
    let client = support::mongo_client().await;
    assert_db_hides_keys(&client.database(&db)).await;
    client.database(&db).drop().await.unwrap();
}

/// `kill -9` at spread instants of a rotation, each followed by a re-run; then one run to the
/// end: every file in the new key exactly once, byte-identical, nothing stale or orphaned, every
/// record settled, and the kills landed while rewrites were in flight (records were settled).
#[tokio::test]
async fn kill_9_during_rotation_then_rerun() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_rekey_kill");
    let db = client.database(&name);
    let a = FileKey::derive(KEY_A);
    let mut want = BTreeMap::new();
    for i in 0..40u64 {
        let data = support::bytes(150_000 + (i as usize * 37_123) % 500_000, i);
        let n = format!("{i:03}_kill.bin");
        raw_upload(&db, &n, &crypto::seal(&a, &data)).await;
        want.insert(n, data);
    }
    let cfg = config(&name, &name, "type = \"gridfs\"");
    let log = support::temp_path("rekey_kill").with_extension("log");
    let mut kills = 0;
    for i in 0..12u64 {
        let mut child = app::command()
            .args([
                "-c",
                cfg.to_str().unwrap(),
                "rekey",
                "--yes",
                "--concurrency",
                "3",
            ])
            .env("PFM_NEW_FILE_KEY", KEY_B)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Spread over the start, the middle and the end of a run (each re-run has less to do).
        tokio::time::sleep(Duration::from_millis(300 + (i * 137) % 700)).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains("panicked"), "{text}");
        assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
        if status.success() {
            break;
        }
    }
    assert!(kills >= 3, "only {kills} runs were killed mid-way");
    let (code, s) = rekey(&cfg, Some(KEY_B), &["--yes"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    check_bucket(&db, Some(KEY_B), &want).await;
    let states = parse_files_migrate::ledger::Ledger::new(db.clone(), "_FileMigration")
        .rekey_states()
        .await
        .unwrap();
    eprintln!("rekey kill -9: {kills} kills, ledger states {states:?}");
    assert_eq!(states.get("staged"), None, "{states:?}");
    assert_db_hides_keys(&db).await;
    db.drop().await.unwrap();
}

/// Seeds a GridFS bucket for the `rekey` benchmark (README "Benchmarks"), and measures the raw
/// store write and read rates beside it: `PFM_REKEY_BENCH_DB` (database), `_COUNT` × `_SIZE`
/// bytes plus one file of `_HUGE` bytes, plaintext (as an old Parse Server wrote them), through
/// the store's own streaming `put`. Run by hand:
/// `PFM_REKEY_BENCH_DB=bench_rekey cargo test --release --test it rekey::seed_bench -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn seed_bench() {
    use parse_files_migrate::storage::PutOptions;
    let var = |k: &str, d: u64| {
        std::env::var(format!("PFM_REKEY_BENCH_{k}"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let db = std::env::var("PFM_REKEY_BENCH_DB").expect("PFM_REKEY_BENCH_DB");
    let (count, size, huge) = (var("COUNT", 1000), var("SIZE", 65536), var("HUGE", 1 << 30));
    let client = support::mongo_client().await;
    client.database(&db).drop().await.unwrap();
    let store = gridfs(&db, None).await;
    let body = |len: u64, seed: u64| {
        let piece = bytes::Bytes::from(support::bytes(1 << 20, seed));
        let parts = (0..len.div_ceil(1 << 20)).map(move |i| {
            let end = ((len - i * (1 << 20)) as usize).min(1 << 20);
            Ok(piece.slice(..end))
        });
        futures::StreamExt::boxed(futures::stream::iter(parts.collect::<Vec<_>>()))
    };
    let t = std::time::Instant::now();
    for i in 0..count {
        let name = format!("{i:07}_bench.bin");
        store
            .put(&name, body(size, i), &PutOptions::default())
            .await
            .unwrap();
    }
    eprintln!(
        "seed: {count} × {size} B written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if huge > 0 {
        let t = std::time::Instant::now();
        store
            .put("huge_bench.bin", body(huge, 99), &PutOptions::default())
            .await
            .unwrap();
        let w = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let opts = Default::default();
        let got = ObjectStore::get(&store, "huge_bench.bin", &opts)
            .await
            .unwrap();
        let n = crypto::recode::md5_of(got.stream).await.unwrap();
        let r = t.elapsed().as_secs_f64();
        assert_eq!(n.0, huge);
        eprintln!(
            "seed: raw store write {huge} B in {w:.1} s ({:.1} MiB/s), read in {r:.1} s ({:.1} MiB/s)",
            huge as f64 / w / 1048576.0,
            huge as f64 / r / 1048576.0
        );
    }
}

/// The three places a rewrite can be killed, made exactly: during the new version's chunks (no
/// files document), after the new version is complete but before the old one is removed, and
/// after the old files document is removed but not its chunks. The next run settles each from
/// its `staged` record, then rotates what is left: every file in B once, nothing orphaned.
#[tokio::test]
async fn every_crash_point_is_settled() {
    use parse_files_migrate::ledger::Ledger;
    let client = support::mongo_client().await;
    let name = support::unique("pfm_rekey_settle");
    let db = client.database(&name);
    let (a, b) = (FileKey::derive(KEY_A), FileKey::derive(KEY_B));
    let mut want = BTreeMap::new();
    for n in ["x_partial", "y_complete", "z_committed", "w_untouched"] {
        let data = support::bytes(300_000, n.len() as u64 + n.as_bytes()[0] as u64);
        raw_upload(&db, n, &crypto::seal(&a, &data)).await;
        want.insert(n.to_string(), data);
    }
    let store = gridfs(&name, Some(KEY_A)).await;
    let killed = Ledger::new(db.clone(), "_FileMigration");
    let stage = |n: &'static str| {
        let (store, killed, want, b) = (&store, &killed, &want, b.clone());
        async move {
            let v = Versioned::current(store, n).await.unwrap().unwrap();
            let id = store.new_id();
            killed
                .rekey_intent(
                    &ObjectStore::identity(store),
                    n,
                    &v.id,
                    &id,
                    "rotate",
                    "current",
                    "new",
                )
                .await
                .unwrap();
            let sealed = crypto::seal(&b, &want[n]);
            (v, id, sealed)
        }
    };
    // x: killed while writing chunks — one chunk of the new version, no files document.
    let (_, id, sealed) = stage("x_partial").await;
    db.collection::<Document>("fs.chunks")
        .insert_one(
            doc! {"files_id": mongodb::bson::oid::ObjectId::parse_str(&id).unwrap(),
            "n": 0, "data": mongodb::bson::Binary {
                subtype: mongodb::bson::spec::BinarySubtype::Generic,
                bytes: sealed[..261_120].to_vec() }},
        )
        .await
        .unwrap();
    // y: the new version complete (readers see it), the old one not yet removed.
    let (v, id, sealed) = stage("y_complete").await;
    let got = store
        .stage(&v, &id, support::conformance::body(&sealed, 65536))
        .await
        .unwrap();
    assert!(matches!(got, Outcome::Done(_)));
    // z: complete, and the old files document removed, but not its chunks.
    let (v, id, sealed) = stage("z_committed").await;
    store
        .stage(&v, &id, support::conformance::body(&sealed, 65536))
        .await
        .unwrap();
    let old = mongodb::bson::oid::ObjectId::parse_str(&v.id).unwrap();
    db.collection::<Document>("fs.files")
        .delete_one(doc! {"_id": old})
        .await
        .unwrap();
    // A rewrite another store's rekey began (same ledger, same name): left to that store's next
    // rekey, never settled against this one (review §15).
    let (old, new) = (
        mongodb::bson::oid::ObjectId::new().to_hex(),
        mongodb::bson::oid::ObjectId::new().to_hex(),
    );
    let elsewhere = killed
        .rekey_intent(
            ANOTHER_STORE,
            "w_untouched",
            &old,
            &new,
            "rotate",
            "current",
            "new",
        )
        .await
        .unwrap();
    let cfg = config(&name, &name, "type = \"gridfs\"");
    let (code, s) = rekey(&cfg, Some(KEY_B), &["--yes"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["settled"], 3, "{s}");
    let other = db
        .collection::<Document>("_FileMigration.rekey")
        .find_one(doc! {"_id": elsewhere})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.get_str("state").unwrap(), "staged", "{other}");
    // x and w rotated now; y and z were finished by settling.
    assert_eq!(s["rewritten"]["files"], 2, "{s}");
    assert_eq!(s["new_key"]["files"], 2, "{s}");
    check_bucket(&db, Some(KEY_B), &want).await;
    let settled: Vec<String> = all(&db, "_FileMigration.rekey")
        .await
        .iter()
        .filter_map(|d| d.get_str("found").ok().map(str::to_string))
        .collect();
    assert_eq!(settled.len(), 3, "{settled:?}");
    db.drop().await.unwrap();
}

/// The new key from `[rekey] new_key`: used, and redacted by `--show-settings`.
#[tokio::test]
async fn new_key_from_the_config_file_is_never_shown() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_rekey_cfgkey");
    let db = client.database(&name);
    let data = support::bytes(1000, 3);
    raw_upload(
        &db,
        "one.bin",
        &crypto::seal(&FileKey::derive(KEY_A), &data),
    )
    .await;
    let cfg = config(&name, &name, "type = \"gridfs\"");
    let text =
        std::fs::read_to_string(&cfg).unwrap() + &format!("\n[rekey]\nnew_key = \"{KEY_B}\"\n");
    std::fs::write(&cfg, text).unwrap();
    let out = app::run(["-c", cfg.to_str().unwrap(), "--show-settings", "rekey"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("[rekey]"), "{}", out.stdout);
    out.assert_hides("new key", KEY_B);
    out.assert_hides("file key", KEY_A);
    let (code, s) = rekey(&cfg, None, &["--yes"]);
    assert_eq!(
        (code, s["rewritten"]["files"].clone()),
        (0, 1.into()),
        "{s}"
    );
    check_bucket(
        &db,
        Some(KEY_B),
        &BTreeMap::from([("one.bin".into(), data)]),
    )
    .await;
    assert_db_hides_keys(&db).await;
    db.drop().await.unwrap();
}

/// A bucket nothing was ever written to (its collections do not exist yet: MongoDB answers
/// `listIndexes` with NamespaceNotFound) has nothing to rekey: exit 0, and no collection made.
/// Found by the stateful test (`rekey --encrypt` of a destination before any migration).
#[tokio::test]
async fn a_bucket_never_written_has_nothing_to_rekey() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_rekey_empty");
    let db = client.database(&name);
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file"})
        .await
        .unwrap();
    let cfg = config(&name, &name, "type = \"gridfs\"\nbucket = \"moved\"");
    for mode in ["--encrypt", "--decrypt"] {
        let (code, s) = rekey(&cfg, None, &[mode, "--yes"]);
        assert_eq!(code, 0, "{mode}: {s}");
    }
    let collections = db.list_collection_names().await.unwrap();
    assert!(
        !collections.iter().any(|c| c.starts_with("moved.")),
        "{collections:?}"
    );
    db.drop().await.unwrap();
}
