//! `migrate` end to end on the real servers: a hosted-era app (legacy names at the top level, in
//! objects, in arrays and in Parse Config; a file shared by several objects; a 0-byte file; one
//! file missing at the legacy host) migrated to each destination, and an adapter move from GridFS
//! to S3 that keeps names. Every file is read back at the destination and every document checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mongodb::bson::{Bson, Document, doc};
use parse_files_migrate::parse::names::{encode_uri_component, parse_server_name};
use parse_files_migrate::storage::{self, ObjectStore, StoreConfig, StoreContext};
use serde_json::Value;

use crate::support;
use crate::support::app::{self, SERVER_URL, file, summary, uuid};
use crate::support::conformance::read_all;

const FILE_KEY: &str = "fk-migrate-SECRET";
const APP_ID: &str = "migrateApp";

/// A seeded app: its database, the legacy files the HTTP stand-in serves, and a config file.
struct App {
    db_name: String,
    db: mongodb::Database,
    dir: PathBuf,
    /// Present legacy files: name → bytes.
    files: BTreeMap<String, Vec<u8>>,
    missing: String,
    shared: String,
    /// Where the HTTP stand-in serves this app's legacy files from.
    http_root: PathBuf,
    /// The `[mongo]`, `[parse]` and `[source.hosted]` tables.
    base_config: String,
}

fn legacy_url(name: &str) -> String {
    app::tfss_url(FILE_KEY, name)
}

impl App {
    async fn seed(tag: &str) -> App {
        let db_name = support::unique(tag);
        let client = support::mongo_client().await;
        let db = client.database(&db_name);
        let dir = support::temp_path(&format!("{tag}-dir"));
        std::fs::create_dir_all(&dir).unwrap();

        let a = format!("tfss-{}-a.jpg", uuid(1));
        let shared = format!("tfss-{}-shared photo.png", uuid(2));
        let leg = format!("{}-legacy.txt", uuid(3));
        let g0 = format!("tfss-{}-g0.jpg", uuid(4));
        let g1 = format!("{}-g1.gif", uuid(5));
        let logo = format!("tfss-{}-logo.png", uuid(6));
        let empty = format!("tfss-{}-empty.bin", uuid(7));
        let missing = format!("tfss-{}-missing.jpg", uuid(8));
        let server = "0123456789abcdef0123456789abcdef_server.jpg";

        // The legacy hosts' stand-in: nginx serves $PFM_TEST_HTTP_ROOT/<unique>/{tfss,legacy}/<key>/.
        let http_dir = support::unique(tag);
        let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT")).join(&http_dir);
        let mut files = BTreeMap::new();
        for (i, (name, len)) in [
            (&a, 3000),
            (&shared, 70_000),
            (&leg, 1234),
            (&g0, 10),
            (&g1, 4096),
            (&logo, 555),
            (&empty, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let host = if name.starts_with("tfss-") {
                "tfss"
            } else {
                "legacy"
            };
            let d = root.join(host).join(FILE_KEY);
            std::fs::create_dir_all(&d).unwrap();
            let data = support::bytes(len, i as u64 + 1);
            std::fs::write(d.join(name), &data).unwrap();
            files.insert(name.clone(), data);
        }

        app::photo_schema(&db).await;
        db.collection::<Document>("Photo")
            .insert_many([
                doc! {"_id": "p1", "image": &a, "thumb": &shared},
                doc! {"_id": "p2", "image": &leg, "thumb": &shared},
                doc! {"_id": "p3", "image": &missing,
                "meta": {"avatar": file(&shared, Some(&legacy_url(&shared)))},
                "gallery": [file(&g0, Some(&legacy_url(&g0))), Bson::Null, file(&g1, None)]},
                doc! {"_id": "p4", "image": server, "thumb": &empty},
            ])
            .await
            .unwrap();
        db.collection::<Document>("_User")
            .insert_one(doc! {"_id": "u1", "avatar": &shared})
            .await
            .unwrap();
        db.collection::<Document>("_GlobalConfig")
            .insert_one(
                doc! {"_id": 1, "params": {"logo": file(&logo, Some(&legacy_url(&logo))), "n": 5}},
            )
            .await
            .unwrap();

        let http = support::env("PFM_TEST_HTTP_URL");
        let base_config = format!(
            r#"
[mongo]
uri = "{uri}"
database = "{db_name}"
page_size = 2

[parse]
app_id = "{APP_ID}"
file_key = "{FILE_KEY}"
public_server_url = "{SERVER_URL}"

[source.hosted]
type = "http"
tfss_base_url = "{http}/{http_dir}/tfss/{{file_key}}/"
legacy_base_url = "{http}/{http_dir}/legacy/{{file_key}}/"
"#,
            uri = support::mongo_uri(),
        );
        App {
            db_name,
            db,
            dir,
            files,
            missing,
            shared,
            http_root: root,
            base_config,
        }
    }

    /// Write a config with this `[destination]` table (and any extra tables).
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.toml", support::unique("cfg")));
        std::fs::write(&path, format!("{}\n{extra}\n", self.base_config)).unwrap();
        path
    }

    async fn snapshot(&self) -> BTreeMap<String, Vec<Document>> {
        app::snapshot(&self.db).await
    }

    async fn doc(&self, coll: &str, id: impl Into<Bson>) -> Document {
        app::find(&self.db, coll, id).await
    }
}

fn migrate(config: &Path, args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = app::migrate(config, args);
    out.assert_hides("fileKey", FILE_KEY);
    (out.code, out.jsonl(), out.stderr)
}

fn target(name: &str) -> String {
    parse_server_name(name)
}

fn new_url(name: &str) -> String {
    format!(
        "{SERVER_URL}/files/{APP_ID}/{}",
        encode_uri_component(&target(name))
    )
}

/// The full acceptance scenario against one destination.
async fn full_migration(tag: &str, destination: String, store_cfg: StoreConfig) {
    let app = App::seed(tag).await;
    let config = app.config(&destination);
    let dest: Arc<dyn ObjectStore> = storage::open(
        &store_cfg,
        &StoreContext {
            mongo_uri: Some(support::mongo_uri().into()),
            database: Some(app.db_name.clone()),
            file_key: Some(FILE_KEY.to_string().into()),
            app_id: Some(APP_ID.into()),
        },
    )
    .await
    .unwrap();

    // Without --yes and without a terminal: refused, nothing written.
    let before = app.snapshot().await;
    let (code, _, stderr) = migrate(&config, &["--output", "jsonl"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");

    // Dry run: the full plan, nothing written anywhere.
    let (code, lines, stderr) = migrate(&config, &["--dry-run", "--output", "jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    let copies: Vec<&Value> = lines.iter().filter(|l| l["action"] == "copy").collect();
    let updates: Vec<&Value> = lines.iter().filter(|l| l["action"] == "update").collect();
    assert_eq!(copies.len(), 8, "7 present + 1 missing file, each once");
    assert_eq!(updates.len(), 11, "every hosted reference");
    assert!(
        copies
            .iter()
            .any(|c| c["target"] == target(&app.shared) && c["name"] == app.shared.as_str())
    );
    assert_eq!(app.snapshot().await, before, "a dry run writes nothing");
    for name in app.files.keys() {
        assert!(dest.stat(&target(name)).await.unwrap_err().is_not_found());
    }

    // The real run: incomplete (one file is missing), everything else done.
    let (code, lines, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(code, 3, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["files"]["copied"], 7, "{s}");
    assert_eq!(s["files"]["missing"], 1, "{s}");
    assert_eq!(s["files"]["failed"], 0, "{s}");
    assert_eq!(s["references"]["rewritten"], 10, "{s}");
    assert_eq!(s["references"]["left_untouched"], 1, "{s}");
    assert_eq!(s["references"]["not_selected"], 1, "{s}");
    assert_eq!(s["references"]["conflicts"], 0, "{s}");
    assert_eq!(s["missing"][0]["name"], app.missing.as_str());
    let total: usize = app.files.values().map(Vec::len).sum();
    assert_eq!(s["bytes_copied"], total as u64);

    // Bytes: every present file byte-identical under its planned name.
    for (name, data) in &app.files {
        let got = read_all(&*dest, &target(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name}: bytes differ");
    }
    assert!(
        dest.stat(&target(&app.missing))
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Documents: every reference rewritten, nested urls rebuilt, the missing one untouched.
    let name = |d: &Document, k: &str| d.get_str(k).unwrap().to_string();
    let p1 = app.doc("Photo", "p1").await;
    let p2 = app.doc("Photo", "p2").await;
    let p3 = app.doc("Photo", "p3").await;
    let p4 = app.doc("Photo", "p4").await;
    let shared_t = target(&app.shared);
    assert_eq!(name(&p1, "thumb"), shared_t);
    assert_eq!(name(&p2, "thumb"), shared_t);
    assert!(name(&p1, "image").ends_with("_a.jpg"));
    assert!(name(&p2, "image").ends_with("_legacy.txt"));
    assert_eq!(
        name(&p3, "image"),
        app.missing,
        "missing file: reference untouched"
    );
    let avatar = p3
        .get_document("meta")
        .unwrap()
        .get_document("avatar")
        .unwrap();
    assert_eq!(avatar.get_str("name").unwrap(), shared_t);
    assert_eq!(avatar.get_str("url").unwrap(), new_url(&app.shared));
    assert_eq!(avatar.get_str("__type").unwrap(), "File");
    let gallery = p3.get_array("gallery").unwrap();
    assert_eq!(gallery[1], Bson::Null);
    let g1 = gallery[2].as_document().unwrap();
    assert!(g1.get_str("name").unwrap().ends_with("_g1.gif"));
    assert!(g1.get_str("url").unwrap().starts_with(SERVER_URL));
    assert_eq!(
        name(&p4, "image"),
        "0123456789abcdef0123456789abcdef_server.jpg"
    );
    assert!(name(&p4, "thumb").ends_with("_empty.bin"));
    let u1 = app.doc("_User", "u1").await;
    assert_eq!(name(&u1, "avatar"), shared_t);
    let config_doc = app.doc("_GlobalConfig", 1).await;
    let params = config_doc.get_document("params").unwrap();
    assert!(
        params
            .get_document("logo")
            .unwrap()
            .get_str("name")
            .unwrap()
            .ends_with("_logo.png")
    );
    assert_eq!(params.get_i32("n").unwrap(), 5);

    // The ledger: the shared file was copied once; every rewrite recorded with its old value.
    let rec = support::ledger::file(&app.db, &app.shared).await.unwrap();
    assert_eq!(rec.state, parse_files_migrate::ledger::FileState::Verified);
    assert_eq!(rec.attempts, 1, "copied once: {rec:?}");
    assert_eq!(rec.size, Some(70_000));
    assert_eq!(
        support::ledger::refs_in(&app.db, Some("rewritten")).await,
        10
    );
    let r = support::ledger::reference(&app.db, "Photo", "p3", "meta.avatar")
        .await
        .unwrap();
    // The old url embedded the fileKey: recorded with a placeholder, never the key itself.
    assert_eq!(
        r.change.old.url.as_deref().unwrap(),
        legacy_url(&app.shared).replace(FILE_KEY, "{file_key}")
    );
    assert!(r.change.old.key_redacted);
    for (coll, docs) in app.snapshot().await {
        if coll.starts_with("_FileMigration") {
            let text = format!("{docs:?}");
            assert!(!text.contains(FILE_KEY), "the fileKey leaked into {coll}");
        }
    }
    let missing = support::ledger::file(&app.db, &app.missing).await.unwrap();
    assert_eq!(
        missing.state,
        parse_files_migrate::ledger::FileState::Missing
    );

    // A re-run changes nothing and copies nothing; still incomplete.
    let after = app.snapshot().await;
    let (code, lines, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(code, 3, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["files"]["copied"], 0, "{s}");
    assert_eq!(s["references"]["rewritten"], 0, "{s}");
    let again = app.snapshot().await;
    for coll in ["Photo", "_User", "_GlobalConfig"] {
        assert_eq!(after[coll], again[coll], "{coll} changed on a re-run");
    }

    // The missing file turns up at the legacy host: --retry-failed finishes the job.
    let late = support::bytes(777, 99);
    std::fs::write(
        app.http_root.join("tfss").join(FILE_KEY).join(&app.missing),
        &late,
    )
    .unwrap();
    let (code, lines, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(
        code, 3,
        "missing stays missing without --retry-failed: {stderr}"
    );
    assert_eq!(summary(&lines)["files"]["copied"], 0);
    let (code, lines, stderr) = migrate(&config, &["--yes", "--retry-failed", "--output", "jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["files"]["copied"], 1, "{s}");
    assert_eq!(s["references"]["rewritten"], 1, "{s}");
    assert_eq!(read_all(&*dest, &target(&app.missing)).await.unwrap(), late);
    assert_eq!(
        name(&app.doc("Photo", "p3").await, "image"),
        target(&app.missing)
    );
}

/// Run `verify` with a config; returns the exit code and the JSON lines.
fn verify(config: &Path) -> (i32, Vec<Value>) {
    let out = app::run(["-c", config.to_str().unwrap(), "verify"]);
    (out.code, out.jsonl())
}

#[tokio::test]
async fn verify_proves_completeness_and_finds_dangling_references() {
    let app = App::seed("mig_verify").await;
    let dir = support::temp_path("pfm-verify");
    let config = app.config(&format!(
        "[destination]\ntype = \"fs\"\npath = \"{}\"\n",
        dir.display()
    ));
    let (code, _, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(code, 3, "{stderr}");
    // The missing file's reference is still legacy: not migrated.
    let (code, lines) = verify(&config);
    assert_eq!(code, 5);
    let problems: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("problem").is_some())
        .collect();
    assert_eq!(problems.len(), 1, "{lines:?}");
    assert_eq!(problems[0]["problem"], "not-migrated");
    assert_eq!(problems[0]["name"], app.missing.as_str());
    let summary = &lines.last().unwrap()["verify"];
    assert_eq!(summary["ok"], 10, "{summary}");
    assert_eq!(
        summary["not_covered"], 1,
        "the Parse Server name p4.image: {summary}"
    );

    // Once the missing file arrives and is migrated: complete.
    std::fs::write(
        app.http_root.join("tfss").join(FILE_KEY).join(&app.missing),
        b"late",
    )
    .unwrap();
    let (code, _, stderr) = migrate(&config, &["--yes", "--retry-failed", "--output", "jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, lines) = verify(&config);
    assert_eq!(code, 0, "{lines:?}");
    // `--select all` asks more: the Parse Server name p4.image was never moved (the migration
    // selected hosted names), so it is not at the destination.
    let out = app::run(["-c", config.to_str().unwrap(), "verify", "--select", "all"]);
    let lines = out.jsonl();
    assert_eq!(out.code, 5, "{lines:?}");
    let problems: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("problem").is_some())
        .collect();
    assert!(
        problems.len() == 1 && problems[0]["problem"] == "dangling",
        "{problems:?}"
    );
    assert_eq!(lines.last().unwrap()["verify"]["not_covered"], 0);

    // A copy lost at the destination: every reference to it is dangling.
    let shared = dir.join(encode_uri_component(&target(&app.shared)));
    std::fs::remove_file(&shared).unwrap();
    let (code, lines) = verify(&config);
    assert_eq!(code, 5);
    let dangling = lines.iter().filter(|l| l["problem"] == "dangling").count();
    assert_eq!(
        dangling, 4,
        "p1.thumb, p2.thumb, p3.meta.avatar, u1.avatar: {lines:?}"
    );
    // A copy with other bytes than recorded: a size mismatch.
    std::fs::write(&shared, b"not the photo").unwrap();
    let (code, lines) = verify(&config);
    assert_eq!(code, 5);
    assert!(
        lines.iter().any(|l| l["problem"] == "size-mismatch"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn hosted_legacy_to_fs() {
    let dir = support::temp_path("pfm-dest-fs");
    let dest = format!(
        "[destination]\ntype = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.display()
    );
    let cfg: StoreConfig = toml::from_str(&dest.replace("[destination]\n", "")).unwrap();
    full_migration("mig_fs", dest, cfg).await;
    // The FS adapter layout: <dir>/<encodeURIComponent(name)>, plaintext.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("_shared%20photo.png")),
        "{names:?}"
    );
}

#[tokio::test]
async fn hosted_legacy_to_gridfs_encrypted() {
    // Default encryption with parse.file_key set: what Parse Server's GridFS adapter reads.
    let bucket = support::unique("b");
    let dest = format!("[destination]\ntype = \"gridfs\"\nbucket = \"{bucket}\"\n");
    let cfg: StoreConfig = toml::from_str(&dest.replace("[destination]\n", "")).unwrap();
    full_migration("mig_gridfs", dest, cfg).await;
}

#[tokio::test]
async fn hosted_legacy_to_s3() {
    let bucket = support::s3::fresh_bucket("mig").await;
    let dest = format!("[destination]\n{}", s3_table(&bucket));
    let cfg: StoreConfig = toml::from_str(&s3_table(&bucket)).unwrap();
    full_migration("mig_s3", dest, cfg).await;
}

#[tokio::test]
async fn hosted_legacy_to_gcs() {
    let bucket = support::gcs::fresh_bucket("mig").await;
    let dest = format!("[destination]\n{}", gcs_table(&bucket));
    let cfg: StoreConfig = toml::from_str(&gcs_table(&bucket)).unwrap();
    full_migration("mig_gcs", dest, cfg).await;
}

/// An adapter move (the README's recipes): Parse-Server names in one store go to another under
/// the same names with `--select server`. Top-level documents are untouched; nested urls are
/// rebased onto the configured server URL; the bytes at the destination are identical.
/// `server_side`: how many of the three copies the store's server must have made (a move within
/// one service).
async fn adapter_move(tag: &str, source: &str, destination: &str, server_side: u64) {
    let db_name = support::unique(tag);
    let client = support::mongo_client().await;
    let db = client.database(&db_name);
    let ctx = StoreContext {
        mongo_uri: Some(support::mongo_uri().into()),
        database: Some(db_name.clone()),
        file_key: None,
        app_id: Some(APP_ID.into()),
    };
    let source_cfg: StoreConfig = toml::from_str(source).unwrap();
    let source_store = storage::open(&source_cfg, &ctx).await.unwrap();
    let dest_cfg: StoreConfig = toml::from_str(destination).unwrap();
    let names = [
        "0123456789abcdef0123456789abcdef_one.jpg".to_string(),
        "fedcba9876543210fedcba9876543210_two words.png".to_string(),
        "plain.txt".to_string(),
    ];
    let mut data = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let bytes = support::bytes(300_000 * i + 17, 40 + i as u64);
        source_store
            .put(
                n,
                support::conformance::body(&bytes, 65536),
                &Default::default(),
            )
            .await
            .unwrap();
        data.insert(n.clone(), bytes);
    }
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Doc", "objectId": "string", "file": "file", "extra": "object"})
        .await
        .unwrap();
    let old_url = |n: &str| {
        format!(
            "http://old-host:1337/parse/files/{APP_ID}/{}",
            encode_uri_component(n)
        )
    };
    db.collection::<Document>("Doc")
        .insert_many([
            doc! {"_id": "d1", "file": &names[0], "extra": {"f": file(&names[1], Some(&old_url(&names[1])))}},
            doc! {"_id": "d2", "file": &names[2]},
            doc! {"_id": "d3", "file": &names[1], "extra": {"legacy": file("tfss-x-not-selected.jpg", None)}},
        ])
        .await
        .unwrap();
    let dir = support::temp_path("mig-move");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mongo]
uri = "{uri}"
database = "{db_name}"

[parse]
app_id = "{APP_ID}"
public_server_url = "{SERVER_URL}"

[source.server]
{source}

[destination]
{destination}
"#,
            uri = support::mongo_uri(),
        ),
    )
    .unwrap();
    let before = app::find_all(&db, "Doc").await;

    let (code, lines, stderr) = migrate(
        &config,
        &["--yes", "--select", "server", "--output", "jsonl"],
    );
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["files"]["copied"], 3, "{s}");
    let made = s["files"]["server_side"].as_u64().unwrap_or(0);
    assert_eq!(made, server_side, "copies made by the server: {s}");
    assert_eq!(s["references"]["rewritten"], 1, "only the nested url: {s}");
    assert_eq!(s["references"]["unchanged"], 3, "{s}");
    assert_eq!(s["references"]["not_selected"], 1, "{s}");

    let dest = storage::open(&dest_cfg, &ctx).await.unwrap();
    for (n, bytes) in &data {
        let got = support::conformance::read_all(&*dest, n).await.unwrap();
        assert!(got == *bytes, "{n}: bytes differ at the destination");
    }
    let after = app::find_all(&db, "Doc").await;
    assert_eq!(
        before[1], after[1],
        "d2 has only a top-level name: untouched"
    );
    assert_eq!(
        before[2], after[2],
        "d3: top level kept, legacy nested not selected"
    );
    assert_eq!(after[0].get_str("file").unwrap(), names[0]);
    let f = after[0]
        .get_document("extra")
        .unwrap()
        .get_document("f")
        .unwrap();
    assert_eq!(f.get_str("name").unwrap(), names[1]);
    assert_eq!(
        f.get_str("url").unwrap(),
        format!("{SERVER_URL}/files/{APP_ID}/fedcba9876543210fedcba9876543210_two%20words.png")
    );
}

#[tokio::test]
async fn gridfs_to_s3_keeps_names_and_rebases_nested_urls() {
    let bucket = support::s3::fresh_bucket("move").await;
    adapter_move("mig_move_s3", "type = \"gridfs\"", &s3_table(&bucket), 0).await;
}

#[tokio::test]
async fn gridfs_to_gcs_keeps_names_and_rebases_nested_urls() {
    let bucket = support::gcs::fresh_bucket("move").await;
    adapter_move("mig_move_gcs", "type = \"gridfs\"", &gcs_table(&bucket), 0).await;
}

#[tokio::test]
async fn fs_to_s3_keeps_names_and_rebases_nested_urls() {
    let dir = support::temp_path("mig-move-fs");
    let bucket = support::s3::fresh_bucket("move").await;
    adapter_move(
        "mig_move_fs",
        &format!("type = \"fs\"\npath = \"{}\"", dir.display()),
        &s3_table(&bucket),
        0,
    )
    .await;
}

/// A `bucketPrefix` change (#31 item 2): between two prefixes of one bucket every copy is a
/// server-side `CopyObject`, names unchanged.
#[tokio::test]
async fn s3_prefix_to_prefix_copies_on_the_server() {
    let bucket = support::s3::fresh_bucket("prefix").await;
    let table = |prefix: &str| format!("{}prefix = \"{prefix}\"\n", s3_table(&bucket));
    adapter_move("mig_prefix_s3", &table("old/"), &table("new/"), 3).await;
}

/// Two buckets on one endpoint: `CopyObject` across buckets.
#[tokio::test]
async fn s3_bucket_to_bucket_copies_on_the_server() {
    let from = support::s3::fresh_bucket("from").await;
    let to = support::s3::fresh_bucket("to").await;
    adapter_move("mig_bucket_s3", &s3_table(&from), &s3_table(&to), 3).await;
}

/// A multipart upload's ETag is no MD5: its server-side copy is checked by its size, as a
/// streamed multipart upload is, and the bytes are the same.
#[tokio::test]
async fn s3_prefix_move_copies_a_multipart_object_on_the_server() {
    let bucket = support::s3::fresh_bucket("prefix-mp").await;
    let table = |prefix: &str| {
        format!(
            "{}prefix = \"{prefix}\"\npart_size = {}\n",
            s3_table(&bucket),
            5 * 1024 * 1024
        )
    };
    let name = "0123456789abcdef0123456789abcdef_big.bin";
    let (db, db_name) = support::one_photo("mig_prefix_mp", name).await;
    let source = support::open_store(&table("old/"), &db_name).await;
    let data = support::bytes(11 * 1024 * 1024 + 3, 9);
    source
        .put(
            name,
            support::conformance::body(&data, 1 << 20),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        source.stat(name).await.unwrap().md5,
        None,
        "a multipart ETag"
    );
    let config = support::temp_path("mig-prefix-mp").with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[mongo]\nuri = \"{}\"\ndatabase = \"{db_name}\"\n\n[source.server]\n{}\n\
             [destination]\n{}",
            support::mongo_uri(),
            table("old/"),
            table("new/")
        ),
    )
    .unwrap();
    let (code, lines, stderr) =
        migrate(&config, &["--yes", "--select", "all", "--output", "jsonl"]);
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["files"]["copied"], 1, "{s}");
    assert_eq!(s["files"]["server_side"], 1, "{s}");
    let dest = support::open_store(&table("new/"), &db_name).await;
    assert!(support::conformance::read_all(&*dest, name).await.unwrap() == data);
    db.drop().await.unwrap();
}

/// GCS: `copyTo` between two prefixes of one bucket.
#[tokio::test]
async fn gcs_prefix_to_prefix_copies_on_the_server() {
    let bucket = support::gcs::fresh_bucket("prefix").await;
    let table = |prefix: &str| format!("{}prefix = \"{prefix}\"\n", gcs_table(&bucket));
    adapter_move("mig_prefix_gcs", &table("old/"), &table("new/"), 3).await;
}

fn s3_table(bucket: &str) -> String {
    support::s3::table(bucket, &support::s3::endpoint())
}

fn gcs_table(bucket: &str) -> String {
    format!(
        "type = \"gcs\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nanonymous = true\n",
        support::gcs::endpoint()
    )
}

/// `--rename keep` on legacy names is refused unless the operator confirms `fileKey` is gone.
#[tokio::test]
async fn keeping_legacy_names_needs_confirmation() {
    let app = App::seed("mig_keep").await;
    let dir = support::temp_path("pfm-keep");
    let config = app.config(&format!(
        "[destination]\ntype = \"fs\"\npath = \"{}\"\n",
        dir.display()
    ));
    let (code, _, stderr) = migrate(&config, &["--yes", "--rename", "keep"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("fileKey"), "{stderr}");
    assert!(!dir.exists(), "nothing written");
    let (code, lines, stderr) = migrate(
        &config,
        &[
            "--yes",
            "--rename",
            "keep",
            "--confirm-file-key-removed",
            "--output",
            "jsonl",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["files"]["copied"], 7, "{s}");
    // Names kept: top-level references unchanged, nested urls rebased.
    let p1 = app.doc("Photo", "p1").await;
    assert_eq!(p1.get_str("thumb").unwrap(), app.shared);
    assert_eq!(
        s["references"]["rewritten"], 4,
        "the 4 nested File objects: {s}"
    );
}

/// A real fs store in a fresh directory (and the directory).
async fn fs_store(tag: &str) -> (PathBuf, Arc<dyn ObjectStore>) {
    let dir = support::temp_path(tag);
    let fs: StoreConfig =
        toml::from_str(&format!("type = \"fs\"\npath = \"{}\"", dir.display())).unwrap();
    (
        dir,
        storage::open(&fs, &StoreContext::default()).await.unwrap(),
    )
}

/// The live effects of a run on `db` writing to `destination`, to drive single steps.
fn live_on(
    db: &mongodb::Database,
    destination: Arc<dyn ObjectStore>,
) -> parse_files_migrate::engine::live::Live {
    use parse_files_migrate::engine::Stores;
    parse_files_migrate::engine::live::Live::new(
        Stores {
            hosted: None,
            server: None,
            destination,
        },
        parse_files_migrate::ledger::Ledger::new(db.clone(), "_FileMigration"),
        db.clone(),
        "all".into(),
        "test".into(),
        String::new(),
        Default::default(),
    )
}

/// The compare-and-swap itself, on the real server: a reference the app changed meanwhile is a
/// conflict and keeps the app's value; a refused update is a failure; the rest are rewritten; the
/// ledger records each outcome.
#[tokio::test]
async fn rewrites_are_compare_and_swap() {
    use parse_files_migrate::engine::UrlBase;
    use parse_files_migrate::engine::{Effects, pipeline::rewrite::change_for};
    use parse_files_migrate::ledger::RefChange;
    use parse_files_migrate::ledger::RefState;
    use parse_files_migrate::scan::{FileRef, Shape};

    let client = support::mongo_client().await;
    let db = client.database(&support::unique("mig_cas"));
    let photos = db.collection::<Document>("Photo");
    photos
        .insert_many([
            doc! {"_id": "ok", "image": "old.jpg"},
            doc! {"_id": "raced", "image": "the-app-wrote-this.jpg"},
            doc! {"_id": "bad", "image": "old.jpg", "meta": "not an object"},
        ])
        .await
        .unwrap();
    let fref = |id: &str, path: &str, shape| FileRef {
        class: "Photo".into(),
        id: Bson::String(id.into()),
        path: path.into(),
        name: "old.jpg".into(),
        url: None,
        shape,
        page: 0,
    };
    let urls = UrlBase::Template("https://cdn/{name}".into());
    let changes: Vec<RefChange> = [
        fref("ok", "image", Shape::BareName),
        fref("raced", "image", Shape::BareName),
        fref("bad", "meta.f", Shape::Nested),
    ]
    .iter()
    .map(|r| {
        change_for(r, "old.jpg", "new.jpg", &urls, None)
            .unwrap()
            .unwrap()
    })
    .collect();
    let (_dir, fs) = fs_store("cas").await;
    let live = live_on(&db, fs);
    let states = live.rewrite("Photo", &changes).await.unwrap();
    assert_eq!(states[0], (RefState::Rewritten, None));
    assert_eq!(states[1], (RefState::Conflict, None));
    assert_eq!(
        states[2].0,
        RefState::Conflict,
        "no File object at meta.f: {states:?}"
    );
    let get = |id: &'static str| {
        let photos = photos.clone();
        async move { photos.find_one(doc! {"_id": id}).await.unwrap().unwrap() }
    };
    assert_eq!(get("ok").await.get_str("image").unwrap(), "new.jpg");
    assert_eq!(
        get("raced").await.get_str("image").unwrap(),
        "the-app-wrote-this.jpg",
        "the app's write is never overwritten"
    );
    assert_eq!(get("bad").await.get_str("meta").unwrap(), "not an object");
    let state = |id: &'static str, path: &'static str| {
        let db = db.clone();
        async move {
            support::ledger::reference(&db, "Photo", id, path)
                .await
                .unwrap()
                .state
                .as_str()
                .to_string()
        }
    };
    assert_eq!(state("ok", "image").await, "rewritten");
    assert_eq!(state("raced", "image").await, "conflict");
    // Running the same batch again: the done one is recognised as done, not as a conflict.
    let again = live.rewrite("Photo", &changes[..1]).await.unwrap();
    assert_eq!(again[0].0, RefState::Rewritten);
}

/// A real fs destination that, when asked to make its writes durable, notes how many files the
/// ledger already calls verified: a run must sync before it records, never after.
#[derive(Debug)]
struct SyncProbe {
    inner: Arc<dyn ObjectStore>,
    /// The app database, whose ledger it reads.
    db: mongodb::Database,
    /// Files recorded verified at each sync, in order.
    seen: std::sync::Mutex<Vec<u64>>,
}

#[deny(clippy::missing_trait_methods)]
#[async_trait::async_trait]
impl ObjectStore for SyncProbe {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn put_buffer(&self) -> u64 {
        self.inner.put_buffer()
    }
    fn capabilities(&self) -> storage::Capabilities {
        self.inner.capabilities()
    }
    fn location(&self, name: &str) -> Result<String, storage::StorageError> {
        self.inner.location(name)
    }
    async fn stat(&self, name: &str) -> Result<storage::ObjectMeta, storage::StorageError> {
        self.inner.stat(name).await
    }
    async fn get(
        &self,
        name: &str,
        opts: &storage::GetOptions,
    ) -> Result<storage::GetResult, storage::StorageError> {
        self.inner.get(name, opts).await
    }
    async fn put(
        &self,
        name: &str,
        body: storage::ByteStream,
        opts: &storage::PutOptions,
    ) -> Result<storage::PutResult, storage::StorageError> {
        self.inner.put(name, body, opts).await
    }
    async fn sync(&self) -> Result<(), storage::StorageError> {
        let verified = support::ledger::files_in(&self.db, "verified").await;
        self.seen.lock().unwrap().push(verified);
        self.inner.sync().await
    }
    fn list(&self, opts: storage::ListOptions) -> storage::ListStream<'_> {
        self.inner.list(opts)
    }
    fn quarantine(&self) -> Option<&dyn storage::Quarantine> {
        self.inner.quarantine()
    }
    fn debris(&self) -> Option<&dyn storage::debris::Debris> {
        self.inner.debris()
    }
    fn server_copy(&self) -> Option<&dyn storage::copy::ServerCopy> {
        self.inner.server_copy()
    }
    fn versioned(self: Arc<Self>) -> Option<Arc<dyn storage::rekey::Versioned>> {
        self.inner.clone().versioned()
    }
    async fn delete(&self, name: &str) -> Result<(), storage::StorageError> {
        self.inner.delete(name).await
    }
    async fn check(&self) -> Result<(), storage::StorageError> {
        self.inner.check().await
    }
}

/// The destination makes a batch of copies durable (fs: one `syncfs` instead of `fsync`s per
/// file) before the ledger records any of them verified; batches without a verified copy do
/// not sync.
#[tokio::test]
async fn copies_are_made_durable_before_they_are_recorded_verified() {
    use parse_files_migrate::engine::Effects;
    use parse_files_migrate::ledger::{FileResult, FileState, Intent};

    let client = support::mongo_client().await;
    let db = client.database(&support::unique("mig_sync"));
    let (dir, fs) = fs_store("sync").await;
    let probe = Arc::new(SyncProbe {
        inner: fs,
        db: db.clone(),
        seen: Default::default(),
    });
    probe.check().await.unwrap();
    let live = live_on(&db, probe.clone());
    let intent = |name| Intent {
        name,
        target: name,
        kind: "other",
        destination: "test",
        attempts: 0,
    };
    live.plan(&[intent("a.bin"), intent("gone.bin")])
        .await
        .unwrap();
    let put = probe
        .put(
            "a.bin",
            support::conformance::body(b"abc", 2),
            &Default::default(),
        )
        .await
        .unwrap();
    fn result<'a>(name: &'a str, state: FileState, md5: Option<&'a str>) -> FileResult<'a> {
        FileResult {
            name,
            state,
            size: md5.map(|_| 3),
            md5,
            hash_checked: true,
            error: None,
            wrote: true,
        }
    }
    live.record_files(&[result("gone.bin", FileState::Missing, None)])
        .await
        .unwrap();
    assert!(
        probe.seen.lock().unwrap().is_empty(),
        "nothing verified: no sync"
    );
    live.record_files(&[result("a.bin", FileState::Verified, Some(&put.md5))])
        .await
        .unwrap();
    assert_eq!(
        *probe.seen.lock().unwrap(),
        vec![0],
        "one sync, before the ledger said verified"
    );
    let rec = support::ledger::file(&db, "a.bin").await.unwrap();
    assert_eq!(rec.state, FileState::Verified);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rollback` after a full migration: every document byte-equal to before, copies deleted; a
/// document the app changed after the migration is left alone and reported.
#[tokio::test]
async fn rollback_restores_byte_equal_documents() {
    let app = App::seed("mig_rollback").await;
    let dir = support::temp_path("pfm-rb");
    let config = app.config(&app::fs_destination(&dir));
    let raw = |snap: &BTreeMap<String, Vec<Document>>| -> BTreeMap<String, Vec<Vec<u8>>> {
        snap.iter()
            .filter(|(c, _)| !c.starts_with("_FileMigration"))
            .map(|(c, docs)| {
                (
                    c.clone(),
                    docs.iter()
                        .map(|d| mongodb::bson::to_vec(d).unwrap())
                        .collect(),
                )
            })
            .collect()
    };
    let before = raw(&app.snapshot().await);
    let (code, _, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(code, 3, "{stderr}");
    assert_ne!(raw(&app.snapshot().await), before);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 7);

    let rollback = |args: &[&str]| {
        let mut all = vec!["-c", config.to_str().unwrap(), "rollback"];
        all.extend_from_slice(args);
        let out = app::run(all);
        out.assert_hides("fileKey", FILE_KEY);
        (out.code, out.stdout, out.stderr)
    };
    // Dry run: lists the restores, changes nothing.
    let (code, stdout, stderr) = rollback(&["--dry-run", "--delete-copies"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains("\"update\"")).count(),
        10
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains("\"delete\"")).count(),
        7
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 7);

    let (code, _, stderr) = rollback(&["--delete-copies"]);
    assert_eq!(code, 2, "needs --yes without a terminal: {stderr}");
    let (code, stdout, stderr) = rollback(&["--yes", "--delete-copies"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"restored\":10"), "{stdout}");
    assert_eq!(
        raw(&app.snapshot().await),
        before,
        "documents byte-equal to before"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "copies deleted"
    );

    // Again: migrate, then the app changes one reference; rollback leaves that one alone.
    let (code, _, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(code, 3, "{stderr}");
    app.db
        .collection::<Document>("Photo")
        .update_one(
            doc! {"_id": "p1"},
            doc! {"$set": {"image": "the-app-changed-it.jpg"}},
        )
        .await
        .unwrap();
    let (code, stdout, stderr) = rollback(&["--yes"]);
    assert_eq!(
        code, 3,
        "a conflict makes the rollback incomplete: {stderr}"
    );
    assert!(stdout.contains("\"conflicts\":1"), "{stdout}{stderr}");
    assert_eq!(
        app.doc("Photo", "p1").await.get_str("image").unwrap(),
        "the-app-changed-it.jpg"
    );
    assert_eq!(
        app.doc("Photo", "p1").await.get_str("thumb").unwrap(),
        app.shared
    );
}

/// Regression (#16): `rollback` took no lease, so it could restore references while a `migrate`
/// was rewriting them (and `--delete-copies` race a rewrite to a copy it deletes). It now holds
/// the `all` lease like every writing run, and refuses while any run holds a lease on any shard;
/// nothing is touched when refused.
#[tokio::test]
async fn rollback_holds_the_lease_and_waits_for_every_shard() {
    let app = App::seed("mig_rb_lease").await;
    let dir = std::env::temp_dir().join(support::unique("pfm-rbl"));
    let config = app.config(&format!(
        "[destination]\ntype = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.display()
    ));
    let (code, _, stderr) = migrate(&config, &["--yes", "--output", "jsonl"]);
    assert_eq!(code, 3, "{stderr}");
    let migrated = app.snapshot().await;
    let copies = std::fs::read_dir(&dir).unwrap().count();
    let locks = app.db.collection::<Document>("_FileMigration.locks");
    let until = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 3_600_000,
    );
    let rollback = || {
        let out = support::app::bin()
            .arg("-c")
            .arg(&config)
            .args(["rollback", "--yes", "--delete-copies"])
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        (out.status.code().unwrap(), stderr)
    };
    for scope in ["all", "1/2"] {
        locks
            .insert_one(
                doc! {"_id": scope, "run": mongodb::bson::oid::ObjectId::new(),
                "host": "other-host", "pid": 4242_i64, "until": until},
            )
            .await
            .unwrap();
        let (code, stderr) = rollback();
        assert_eq!(code, 2, "refused while {scope} is leased: {stderr}");
        assert!(
            stderr.contains("another run holds the lease") && stderr.contains("other-host"),
            "{stderr}"
        );
        let now = app.snapshot().await;
        let documents = |s: &BTreeMap<String, Vec<Document>>| {
            s.iter()
                .filter(|(c, _)| !c.starts_with("_FileMigration"))
                .map(|(c, d)| (c.clone(), d.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(documents(&now), documents(&migrated), "nothing restored");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            copies,
            "nothing deleted"
        );
        locks.delete_one(doc! {"_id": scope}).await.unwrap();
    }
    // Free: it runs, and gives its own lease back.
    let (code, stderr) = rollback();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(locks.count_documents(doc! {}).await.unwrap(), 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (#16): the throttling wrapper every source store goes through forwarded every
/// method but `sync`, so the trait's do-nothing default swallowed it (now a clippy
/// `missing_trait_methods` denial on the impl keeps every wrapper complete).
#[tokio::test]
async fn the_throttled_wrapper_forwards_sync() {
    use parse_files_migrate::throttle::{Limits, Throttle, Throttled};
    let client = support::mongo_client().await;
    let db = client.database(&support::unique("mig_tsync"));
    let (dir, fs) = fs_store("tsync").await;
    let probe = Arc::new(SyncProbe {
        inner: fs,
        db: db.clone(),
        seen: Default::default(),
    });
    let throttled = Throttled {
        inner: probe.clone(),
        throttle: Throttle::new(Limits::default()),
    };
    throttled.sync().await.unwrap();
    throttled.sync().await.unwrap();
    assert_eq!(
        probe.seen.lock().unwrap().len(),
        2,
        "each sync reached the store"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A ledger a newer version of the tool has written to is refused, by reading commands and
/// writing ones alike, with a usage error that says to upgrade — never misread or written next to.
#[tokio::test]
async fn a_ledger_of_a_newer_format_is_refused() {
    let app = App::seed("mig_newer").await;
    let dir = support::temp_path("pfm-newer");
    let config = app.config(&format!(
        "[destination]\ntype = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.display()
    ));
    let runs = app.db.collection::<Document>("_FileMigration.runs");
    runs.insert_one(doc! {"_id": "from-the-future", "v": 99, "host": "h"})
        .await
        .unwrap();
    let before = app.snapshot().await;
    for args in [
        &["status"][..],
        &["migrate", "--yes", "--output", "jsonl"],
        &["rollback", "--yes"],
    ] {
        let out = support::app::bin()
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("newer parse-files-migrate") && stderr.contains("format 99"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(app.snapshot().await, before, "nothing written");
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().count() == 0);
}

/// A ledger of the first format (a document per record) is converted into batch records by the
/// first writing run: every record is then read back as it was, a second conversion finds
/// nothing, and a conversion cut after its batch insert (the old records still there) finishes
/// without a duplicate.
#[tokio::test]
async fn a_ledger_of_the_first_format_is_converted_once() {
    use parse_files_migrate::ledger::{FileState, RefState};
    let client = support::mongo_client().await;
    let db = client.database(&support::unique("mig_v1"));
    let files = db.collection::<Document>("_FileMigration");
    let refs = db.collection::<Document>("_FileMigration.refs");
    let v1_files: Vec<Document> = (0..300)
        .map(|i| {
            doc! {"_id": format!("tfss-{i}-a.png"), "v": 1, "target": format!("h{i}_a.png"),
            "kind": "parse-hosted", "state": if i == 7 { "missing" } else { "verified" },
            "size": i64::from(i), "attempts": 2, "error": if i == 7 { "404" } else { "" }}
        })
        .collect();
    files.insert_many(v1_files.clone()).await.unwrap();
    refs.insert_many([
        doc! {"_id": "Photo/\"p1\"/image", "v": 1, "c": "Photo", "o": "p1", "p": "image",
        "file": "tfss-1-a.png", "old": {"name": "tfss-1-a.png"}, "new": {"name": "h1_a.png"},
        "state": "rewritten"},
        doc! {"_id": "Photo/\"p2\"/image", "v": 1, "c": "Photo", "o": "p2", "p": "image",
        "file": "tfss-2-a.png", "old": {"name": "tfss-2-a.png"}, "new": {"name": "h2_a.png"},
        "state": "pending"},
    ])
    .await
    .unwrap();
    let ledger = support::ledger::of(&db);
    // Before: the reading side reports the old records instead of misreading them.
    let err = ledger.status(0).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("older parse-files-migrate"),
        "{err:#}"
    );

    assert_eq!(ledger.upgrade().await.unwrap(), 302);
    assert_eq!(ledger.upgrade().await.unwrap(), 0, "converted once");
    let rec = support::ledger::file(&db, "tfss-5-a.png").await.unwrap();
    assert_eq!(
        (rec.state, rec.target.as_str(), rec.size, rec.attempts),
        (FileState::Verified, "h5_a.png", Some(5), 2)
    );
    assert_eq!(support::ledger::files_in(&db, "verified").await, 299);
    assert_eq!(support::ledger::files_in(&db, "missing").await, 1);
    let p2 = support::ledger::reference(&db, "Photo", "p2", "image")
        .await
        .unwrap();
    assert_eq!(p2.state, RefState::Pending);
    assert_eq!(p2.change.old.name, "tfss-2-a.png");
    // The pending one is in an open batch: the next run settles it.
    let open = ledger
        .refs_page(&[RefState::Pending], None, true)
        .await
        .unwrap();
    assert_eq!(open.records.len(), 1);

    // A conversion cut short after writing its batches, before deleting the old records: the
    // same old records again beside their batches. Converting again rebuilds the same batches
    // (no duplicate) and removes them.
    files.insert_many(v1_files).await.unwrap();
    assert_eq!(ledger.upgrade().await.unwrap(), 300);
    assert_eq!(
        files.count_documents(doc! {}).await.unwrap(),
        2,
        "two batches"
    );
    assert_eq!(support::ledger::files_in(&db, "verified").await, 299);
    db.drop().await.unwrap();
}
