//! `audit --quarantine / --restore / --purge` against every listable store (fs, GridFS, S3, GCS)
//! and a seeded app: only orphans older than `--min-age` move; one that gets a reference between
//! the listing and the move (added while the tool waits right before its re-check walk) never
//! moves; referenced files stay byte-identical; writing needs `--yes` without a terminal and
//! `--dry-run` prints every move and changes nothing; every move is in the ledger; a restore onto
//! a name taken meanwhile is refused and changes nothing; `--purge` deletes only what was
//! quarantined long enough, and `--superseded` only older GridFS revisions.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use futures::io::AsyncWriteExt;
use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};
use parse_files_migrate::storage::{self, ObjectStore, PutOptions, StoreConfig, StoreContext};
use serde_json::Value;

use crate::support;
use crate::support::app::{self, file};
use crate::support::conformance::{body, read_all};

const KEY: &str = "quarantineFileKey";
/// Referenced: top level, nested, in an array.
const KEPT: &[&str] = &[
    "0123456789abcdef0123456789abcdef_kept.jpg",
    "nested kept.png",
    "gallery/ünï.bin",
];
/// Orphans old enough to move.
const OLD: &[&str] = &["old orphan.jpg", "orphans/ünï %2F+.bin"];
/// An old orphan that gets a reference between the listing and the move: before the re-check
/// walk (in a nested File), and after it, right before the moves (top level).
const LATE: &str = "late.jpg";
const LATER: &str = "later.jpg";
/// An orphan younger than `--min-age` (only where the test can age the others).
const YOUNG: &str = "young.jpg";

/// How the test makes orphans old: by setting their time, or (S3, GCS: the server sets it) by
/// running with `--min-age 0s`.
enum Aging {
    Fs(std::path::PathBuf),
    GridFs(Database),
    MinAgeZero,
}

impl Aging {
    async fn age(&self, name: &str) {
        let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86_400);
        match self {
            Aging::Fs(dir) => {
                let path = dir.join(parse_files_migrate::parse::names::encode_uri_component(
                    name,
                ));
                let f = std::fs::File::options().write(true).open(path).unwrap();
                f.set_modified(ten_days_ago).unwrap();
            }
            Aging::GridFs(db) => {
                let done = db
                    .collection::<Document>("fs.files")
                    .update_many(
                        doc! {"filename": name},
                        doc! {"$set": {"uploadDate": DateTime::from_system_time(ten_days_ago)}},
                    )
                    .await
                    .unwrap();
                assert!(done.modified_count > 0);
            }
            Aging::MinAgeZero => {}
        }
    }

    fn min_age(&self) -> Vec<&'static str> {
        match self {
            Aging::MinAgeZero => vec!["--min-age", "0s"],
            _ => vec![],
        }
    }
}

async fn seed_app(db: &Database) {
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file",
        "meta": "object", "gallery": "array"})
        .await
        .unwrap();
    db.collection::<Document>("Photo")
        .insert_many(vec![
            doc! {"_id": "p1", "image": KEPT[0], "meta": {"avatar": file(KEPT[1], None)},
            "gallery": [file(KEPT[2], None)]},
            doc! {"_id": "p2", "image": "gone.jpg"},
        ])
        .await
        .unwrap();
}

/// Upload `bytes` as a new GridFS revision of `name` through the driver, as Parse Server does
/// (the store's own `put` keeps one revision), then wait a little so the next one is newer.
async fn upload_revision(db: &Database, name: &str, bytes: &[u8]) {
    let mut up = db
        .gridfs_bucket(None)
        .open_upload_stream(name)
        .await
        .unwrap();
    up.write_all(bytes).await.unwrap();
    up.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// The `[destination]` table of the plain GridFS bucket `fs` of `db_name`.
fn gridfs_table(db_name: &str) -> String {
    format!(
        "type = \"gridfs\"\nuri = \"{}\"\ndatabase = \"{db_name}\"\nencryption = \"none\"\n",
        support::mongo_uri()
    )
}

fn data(name: &str) -> Vec<u8> {
    support::bytes(3000 + name.len(), support::fnv1a(name))
}

/// The names of the JSON lines with this `action` and `outcome` (`None`: a dry run's line).
fn named(lines: &[Value], action: &str, outcome: Option<&str>) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["action"] == action && l["outcome"].as_str() == outcome)
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn counts(lines: &[Value]) -> Value {
    let s = lines.last().expect("a summary line");
    assert_eq!(s["action"], "summary", "{s}");
    s["counts"].clone()
}

async fn served(store: &dyn ObjectStore, name: &str) -> bool {
    match store.stat(name).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("stat {name}: {e}"),
    }
}

/// Run `audit --quarantine --yes`; while the tool waits right before its re-check walk (it has
/// listed the store and chosen the orphans), add a nested reference to [`LATE`]; while it waits
/// right before the moves (walked again), a top-level one to [`LATER`].
fn quarantine_with_late_references(c: &str, aging: &Aging, db_name: &str) -> app::Out {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-c",
        c,
        "audit",
        "--quarantine",
        "--yes",
        "--output",
        "jsonl",
    ];
    args.extend(aging.min_age());
    let stages = [
        (
            "PFM_TEST_PAUSE_BEFORE_RECHECK",
            "recheck",
            doc! {"_id": "p9", "meta": {"x": file(LATE, None)}},
        ),
        (
            "PFM_TEST_PAUSE_BEFORE_MOVES",
            "moves",
            doc! {"_id": "p10", "image": LATER},
        ),
    ];
    let mut cmd = app::command();
    cmd.args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (var, stage, _) in &stages {
        cmd.env(var, dir.path().join(stage));
    }
    let child = cmd.spawn().unwrap();
    for (_, stage, photo) in stages {
        let go = dir.path().join(stage);
        let ready = dir.path().join(format!("{stage}.ready"));
        let start = std::time::Instant::now();
        while !ready.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the tool never paused at {stage}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A real write to the app's database, as Parse Server would make it.
        let db_name = db_name.to_string();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let client = support::mongo_client().await;
                client
                    .database(&db_name)
                    .collection::<Document>("Photo")
                    .insert_one(photo)
                    .await
                    .unwrap();
            })
        })
        .join()
        .unwrap();
        std::fs::write(&go, b"").unwrap();
    }
    app::Out::from(child.wait_with_output().unwrap())
}

async fn scenario(tag: &str, table: &str, aging: Aging) {
    let client = support::mongo_client().await;
    let db_name = support::unique(tag);
    let db = client.database(&db_name);
    seed_app(&db).await;
    let cfg: StoreConfig = toml::from_str(table).unwrap();
    let ctx = StoreContext {
        mongo_uri: Some(support::mongo_uri().into()),
        database: Some(db_name.clone()),
        ..Default::default()
    };
    let store = storage::open(&cfg, &ctx).await.unwrap();
    let young = !matches!(aging, Aging::MinAgeZero);
    let mut all: Vec<&str> = KEPT.iter().chain(OLD).copied().collect();
    all.extend([LATE, LATER]);
    if young {
        all.push(YOUNG);
    }
    for name in &all {
        store
            .put(name, body(&data(name), 1000), &PutOptions::default())
            .await
            .unwrap();
    }
    for name in OLD.iter().chain([&LATE, &LATER]) {
        aging.age(name).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("q.toml");
    app::write_destination_config(&config, &db_name, KEY, table);
    let c = config.to_str().unwrap();
    let min_age = aging.min_age();
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["-c", c, "audit", "--output", "jsonl"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        if extra.contains(&"--quarantine") {
            a.extend(min_age.iter().map(|s| s.to_string()));
        }
        a
    };

    // No terminal, no --yes: refused, nothing moved.
    let out = app::run(args(&["--quarantine"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);

    // The dry run prints every move and changes nothing.
    let out = app::run(args(&["--quarantine", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = out.jsonl();
    let mut would = set(OLD);
    would.extend([LATE.into(), LATER.into()]);
    assert_eq!(named(&lines, "quarantine", None), would, "{}", out.stdout);
    for name in &all {
        assert!(served(&*store, name).await, "{name} moved by a dry run");
    }
    let mut text = vec![
        "-c",
        c,
        "audit",
        "--quarantine",
        "--dry-run",
        "--output",
        "table",
    ];
    text.extend(aging.min_age());
    let out = app::run(text);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let planned = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("quarantine "))
        .count();
    assert_eq!(planned, 4, "{}", out.stdout);
    assert!(out.stderr.contains("(dry run)"), "{}", out.stderr);

    // The real run: LATE and LATER get a reference after the listing, so they stay.
    let out = quarantine_with_late_references(c, &aging, &db_name);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let lines = out.jsonl();
    assert_eq!(
        named(&lines, "quarantine", Some("done")),
        set(OLD),
        "{}",
        out.stdout
    );
    let n = counts(&lines);
    assert_eq!(
        (n["done"].as_u64(), n["kept"].as_u64()),
        (Some(2), Some(2)),
        "{n}"
    );
    for name in OLD {
        assert!(!served(&*store, name).await, "{name} still served");
    }
    assert!(
        served(&*store, LATE).await,
        "a file referenced before the move was moved"
    );
    if young {
        assert!(served(&*store, YOUNG).await, "a young orphan was moved");
    }
    for name in KEPT {
        assert!(
            read_all(&*store, name).await.unwrap() == data(name),
            "{name} changed"
        );
    }
    let records = db.collection::<Document>("_FileMigration.quarantine");
    let recorded = records
        .count_documents(doc! {"state": "quarantined", "name": {"$in": OLD}})
        .await
        .unwrap();
    assert_eq!(recorded, 2, "each move is in the ledger");

    // The quarantine is not part of the store: a plain audit sees only the young orphan.
    let out = app::run(args(&[]));
    let orphans: BTreeSet<String> = out
        .jsonl()
        .iter()
        .filter(|l| l["finding"] == "orphan")
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        orphans,
        if young { set(&[YOUNG]) } else { set(&[]) },
        "{}",
        out.stdout
    );

    // Nothing left to move.
    let out = app::run(args(&["--quarantine", "--yes"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(counts(&out.jsonl())["done"], 0, "{}", out.stdout);

    // A restore onto a name taken meanwhile is refused (exit 3) and changes nothing.
    let blocker = b"a new file under the old name".to_vec();
    store
        .put(OLD[0], body(&blocker, 7), &PutOptions::default())
        .await
        .unwrap();
    let out = app::run(args(&["--restore", "--dry-run"]));
    assert_eq!(
        named(&out.jsonl(), "restore", None),
        set(OLD),
        "{}",
        out.stdout
    );
    let out = app::run(args(&["--restore", "--yes"]));
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let lines = out.jsonl();
    assert_eq!(named(&lines, "restore", Some("refused")), set(&OLD[..1]));
    assert_eq!(named(&lines, "restore", Some("done")), set(&OLD[1..]));
    assert_eq!(read_all(&*store, OLD[0]).await.unwrap(), blocker);
    assert!(read_all(&*store, OLD[1]).await.unwrap() == data(OLD[1]));
    store.delete(OLD[0]).await.unwrap();
    let out = app::run(args(&["--restore", "--yes"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(named(&out.jsonl(), "restore", Some("done")), set(&OLD[..1]));
    assert!(read_all(&*store, OLD[0]).await.unwrap() == data(OLD[0]));

    // Purge: only what was quarantined at least --older-than ago.
    let out = app::run(args(&["--quarantine", "--yes"]));
    assert_eq!(
        named(&out.jsonl(), "quarantine", Some("done")),
        set(OLD),
        "{}",
        out.stdout
    );
    let out = app::run(args(&["--purge", "--yes", "--older-than", "1h"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(counts(&out.jsonl())["done"], 0, "{}", out.stdout);
    let out = app::run(args(&["--purge", "--dry-run", "--older-than", "0s"]));
    assert_eq!(
        named(&out.jsonl(), "purge", None),
        set(OLD),
        "{}",
        out.stdout
    );
    let out = app::run(args(&["--purge", "--yes", "--older-than", "0s"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        named(&out.jsonl(), "purge", Some("done")),
        set(OLD),
        "{}",
        out.stdout
    );
    for name in OLD {
        let err = store
            .quarantine()
            .unwrap()
            .unquarantine(name)
            .await
            .expect_err("purged");
        assert!(err.is_not_found(), "{err}");
    }
    let out = app::run(args(&["--restore", "--yes"]));
    assert_eq!(counts(&out.jsonl())["done"], 0, "{}", out.stdout);
    for name in KEPT.iter().chain([&LATE, &LATER]) {
        assert!(
            read_all(&*store, name).await.unwrap() == data(name),
            "{name} changed"
        );
    }
    db.drop().await.unwrap();
}

#[tokio::test]
async fn fs_store() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let table = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        files.display()
    );
    scenario("pfm_q_fs", &table, Aging::Fs(files)).await;
}

#[tokio::test]
async fn gridfs_store() {
    let client = support::mongo_client().await;
    let files_db = client.database(&support::unique("pfm_q_gfs_files"));
    let table = format!(
        "type = \"gridfs\"\nuri = \"{}\"\ndatabase = \"{}\"\nencryption = \"none\"\n",
        support::mongo_uri(),
        files_db.name()
    );
    scenario("pfm_q_gfs", &table, Aging::GridFs(files_db.clone())).await;
    files_db.drop().await.unwrap();
}

#[tokio::test]
async fn s3_store_with_a_prefix() {
    let bucket = support::s3::fresh_bucket("pfm-q").await;
    let table = format!(
        "{}prefix = \"app1/\"\n",
        support::s3::table(&bucket, &support::s3::endpoint())
    );
    scenario("pfm_q_s3", &table, Aging::MinAgeZero).await;
}

#[tokio::test]
async fn gcs_store() {
    let bucket = support::gcs::fresh_bucket("pfm-q").await;
    let table = format!(
        "type = \"gcs\"\nbucket = \"{bucket}\"\nprefix = \"app/\"\nendpoint = \"{}\"\nanonymous = true\n",
        support::gcs::endpoint()
    );
    scenario("pfm_q_gcs", &table, Aging::MinAgeZero).await;
}

#[tokio::test]
async fn purge_superseded_deletes_only_older_gridfs_revisions() {
    let client = support::mongo_client().await;
    let db_name = support::unique("pfm_q_sup");
    let db = client.database(&db_name);
    seed_app(&db).await;
    // Two revisions of a referenced name, through the driver (the store's put keeps one).
    for rev in [&b"older"[..], b"newest"] {
        upload_revision(&db, KEPT[0], rev).await;
    }
    let table = gridfs_table(&db_name);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("q.toml");
    app::write_destination_config(&config, &db_name, KEY, &table);
    let c = config.to_str().unwrap();
    let out = app::run([
        "-c",
        c,
        "audit",
        "--purge",
        "--superseded",
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        named(&out.jsonl(), "purge-superseded", Some("done")),
        set(&KEPT[..1])
    );
    let cfg: StoreConfig = toml::from_str(&table).unwrap();
    let store = storage::open(&cfg, &StoreContext::default()).await.unwrap();
    assert_eq!(read_all(&*store, KEPT[0]).await.unwrap(), b"newest");
    let left = db
        .collection::<Document>("fs.files")
        .count_documents(doc! {"filename": KEPT[0]})
        .await
        .unwrap();
    assert_eq!(left, 1, "only the newest revision is left");
    // The newest revision is never deleted, whatever the caller asks.
    let newest = db
        .collection::<Document>("fs.files")
        .find_one(doc! {"filename": KEPT[0]})
        .await
        .unwrap()
        .unwrap();
    let id = newest.get_object_id("_id").unwrap().to_hex();
    let err = store
        .quarantine()
        .unwrap()
        .delete_superseded(KEPT[0], &id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newest"), "{err}");
    assert_eq!(read_all(&*store, KEPT[0]).await.unwrap(), b"newest");

    // A revision uploaded at the same moment as the newest (which one Parse Server's driver
    // serves is unspecified) is never deleted as superseded (review §15).
    upload_revision(&db, KEPT[0], b"twin").await;
    let when = newest.get_datetime("uploadDate").unwrap();
    db.collection::<Document>("fs.files")
        .update_many(
            doc! {"filename": KEPT[0]},
            doc! {"$set": {"uploadDate": *when}},
        )
        .await
        .unwrap();
    let twin = db
        .collection::<Document>("fs.files")
        .find_one(doc! {"filename": KEPT[0], "_id": {"$ne": newest.get_object_id("_id").unwrap()}})
        .await
        .unwrap()
        .unwrap();
    let quarantine = store.quarantine().unwrap();
    for id in [&id, &twin.get_object_id("_id").unwrap().to_hex()] {
        let err = quarantine.delete_superseded(KEPT[0], id).await.unwrap_err();
        assert!(err.to_string().contains("newest"), "{err}");
    }
    let left = db
        .collection::<Document>("fs.files")
        .count_documents(doc! {"filename": KEPT[0]})
        .await
        .unwrap();
    assert_eq!(left, 2, "tied revisions are both kept");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn moves_a_crash_interrupted_are_taken_back_or_finished() {
    let client = support::mongo_client().await;
    let db_name = support::unique("pfm_q_crash");
    let db = client.database(&db_name);
    seed_app(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let table = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        files.display()
    );
    let cfg: StoreConfig = toml::from_str(&table).unwrap();
    let store = storage::open(&cfg, &StoreContext::default()).await.unwrap();
    // The app's referenced files are there (else the store looks like another app's, and the
    // quarantine refuses).
    for kept in KEPT {
        store
            .put(kept, body(&data(kept), 100), &PutOptions::default())
            .await
            .unwrap();
    }
    // A move killed between the link into the quarantine and the unlink of the original: both
    // names on one inode, the ledger record still `moving`.
    let name = OLD[1];
    store
        .put(name, body(&data(name), 100), &PutOptions::default())
        .await
        .unwrap();
    let encoded = parse_files_migrate::parse::names::encode_uri_component(name);
    std::fs::create_dir_all(files.join(".pfm-quarantine+")).unwrap();
    std::fs::hard_link(
        files.join(&encoded),
        files.join(".pfm-quarantine+").join(&encoded),
    )
    .unwrap();
    let records = db.collection::<Document>("_FileMigration.quarantine");
    records
        .insert_one(doc! {"v": 2, "store": store.describe(), "name": name,
        "location": store.quarantine().unwrap().location(name).unwrap(), "size": 3000i64,
        "state": "moving", "at": DateTime::now()})
        .await
        .unwrap();
    let config = dir.path().join("q.toml");
    app::write_destination_config(&config, &db_name, KEY, &table);
    let c = config.to_str().unwrap();
    // The next --quarantine takes the move back, then judges the file afresh (still an orphan;
    // `--min-age 0s`): quarantined again, under a new record.
    let out = app::run([
        "-c",
        c,
        "audit",
        "--quarantine",
        "--min-age",
        "0s",
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let lines = out.jsonl();
    assert_eq!(named(&lines, "restore", Some("done")), set(&[name]));
    assert_eq!(named(&lines, "quarantine", Some("done")), set(&[name]));
    assert!(!served(&*store, name).await, "not quarantined again");
    let states = |records: mongodb::Collection<Document>| async move {
        let all: Vec<Document> = futures::TryStreamExt::try_collect(
            records
                .find(doc! {"name": name})
                .sort(doc! {"_id": 1})
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        let mut states: Vec<String> = all
            .iter()
            .map(|r| r.get_str("state").unwrap().to_string())
            .collect();
        states.sort();
        states
    };
    assert_eq!(states(records.clone()).await, ["quarantined", "restored"]);

    // A restore killed the same way the other direction: `--restore` finishes it.
    std::fs::hard_link(
        files.join(".pfm-quarantine+").join(&encoded),
        files.join(&encoded),
    )
    .unwrap();
    records
        .update_one(
            doc! {"name": name, "state": "quarantined"},
            doc! {"$set": {"state": "restoring"}},
        )
        .await
        .unwrap();
    let out = app::run(["-c", c, "audit", "--restore", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(named(&out.jsonl(), "restore", Some("done")), set(&[name]));
    assert!(read_all(&*store, name).await.unwrap() == data(name));
    assert!(
        !files.join(".pfm-quarantine+").exists(),
        "quarantine left behind"
    );
    assert_eq!(states(records).await, ["restored", "restored"]);
    db.drop().await.unwrap();
}

/// A GridFS restore cut short (a failover between the documents of its `update_many`) is
/// finished by the next restore; a revision the app uploaded since the quarantine keeps its
/// place, and the quarantined ones stay where they are (review §15).
#[tokio::test]
async fn a_gridfs_restore_cut_short_is_finished_and_a_newer_upload_keeps_its_place() {
    let client = support::mongo_client().await;
    let db_name = support::unique("pfm_q_cut");
    let db = client.database(&db_name);
    let files = db.collection::<Document>("fs.files");
    for rev in [&b"older"[..], b"newest"] {
        upload_revision(&db, "cut.jpg", rev).await;
    }
    upload_revision(&db, "raced.jpg", b"quarantined").await;
    let table = gridfs_table(&db_name);
    let cfg: StoreConfig = toml::from_str(&table).unwrap();
    let store = storage::open(&cfg, &StoreContext::default()).await.unwrap();
    let quarantine = store.quarantine().unwrap();
    for name in ["cut.jpg", "raced.jpg"] {
        quarantine.quarantine(name).await.unwrap();
        assert!(!served(&*store, name).await, "{name} quarantined");
    }

    // The cut: only the older revision of cut.jpg got its name back.
    let older = files
        .find_one(doc! {"pfmQuarantinedFilename": "cut.jpg"})
        .sort(doc! {"uploadDate": 1})
        .await
        .unwrap()
        .unwrap();
    files
        .update_one(
            doc! {"_id": older.get_object_id("_id").unwrap()},
            doc! {"$rename": {"pfmQuarantinedFilename": "filename"}},
        )
        .await
        .unwrap();
    assert_eq!(read_all(&*store, "cut.jpg").await.unwrap(), b"older");
    quarantine.unquarantine("cut.jpg").await.unwrap();
    assert_eq!(
        read_all(&*store, "cut.jpg").await.unwrap(),
        b"newest",
        "the newest revision is served again"
    );
    let left = files
        .count_documents(doc! {"pfmQuarantinedFilename": "cut.jpg"})
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing of cut.jpg is left in quarantine");

    // The app uploads raced.jpg again while its old bytes are in quarantine: the restore is
    // refused, the upload stays served, the old bytes stay in quarantine.
    upload_revision(&db, "raced.jpg", b"uploaded since").await;
    let err = quarantine.unquarantine("raced.jpg").await.unwrap_err();
    assert!(
        matches!(err, storage::StorageError::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(
        read_all(&*store, "raced.jpg").await.unwrap(),
        b"uploaded since"
    );
    let kept = files
        .count_documents(doc! {"pfmQuarantinedFilename": "raced.jpg"})
        .await
        .unwrap();
    assert_eq!(kept, 1, "the quarantined revision is kept");
    db.drop().await.unwrap();
}

/// A name quarantined twice (the app uploaded it again after the first quarantine, and it was an
/// orphan again): GridFS keeps both revisions in quarantine under the name, so the purge of the
/// older record waits until the younger one is due too (review §15).
#[tokio::test]
async fn a_younger_quarantine_of_the_same_name_holds_the_purge_back() {
    let client = support::mongo_client().await;
    let db_name = support::unique("pfm_q_twice");
    let db = client.database(&db_name);
    seed_app(&db).await;
    let files = db.collection::<Document>("fs.files");
    let table = gridfs_table(&db_name);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("q.toml");
    app::write_destination_config(&config, &db_name, KEY, &table);
    let c = config.to_str().unwrap();
    let audit = |extra: &[&str]| {
        let mut a = vec!["-c", c, "audit", "--yes", "--output", "jsonl"];
        a.extend_from_slice(extra);
        app::run(a)
    };
    let records = db.collection::<Document>("_FileMigration.quarantine");
    let age = |records: mongodb::Collection<Document>| async move {
        let two_days_ago =
            DateTime::from_millis(DateTime::now().timestamp_millis() - 2 * 86_400_000);
        records
            .update_many(
                doc! {"name": "twice.jpg"},
                doc! {"$set": {"quarantined_at": two_days_ago}},
            )
            .await
            .unwrap();
    };

    for name in KEPT {
        upload_revision(&db, name, b"referenced").await;
    }
    upload_revision(&db, "twice.jpg", b"first").await;
    let out = audit(&["--quarantine", "--min-age", "0s"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(named(&out.jsonl(), "quarantine", Some("done")).contains("twice.jpg"));
    age(records.clone()).await;
    upload_revision(&db, "twice.jpg", b"second").await;
    let out = audit(&["--quarantine", "--min-age", "0s"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(named(&out.jsonl(), "quarantine", Some("done")).contains("twice.jpg"));
    let in_quarantine = || files.count_documents(doc! {"pfmQuarantinedFilename": "twice.jpg"});
    assert_eq!(in_quarantine().await.unwrap(), 2, "both revisions");

    let out = audit(&["--purge", "--older-than", "1d"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !named(&out.jsonl(), "purge", Some("done")).contains("twice.jpg"),
        "{}",
        out.stdout
    );
    assert_eq!(
        in_quarantine().await.unwrap(),
        2,
        "the younger quarantine's revision is not purged before its time"
    );

    age(records.clone()).await;
    let out = audit(&["--purge", "--older-than", "1d"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(named(&out.jsonl(), "purge", Some("done")).contains("twice.jpg"));
    assert_eq!(
        in_quarantine().await.unwrap(),
        0,
        "purged once both are due"
    );
    db.drop().await.unwrap();
}
