//! `audit` against real stores (fs, GridFS, S3 with a bucket prefix, GCS) and a seeded app:
//! exactly the orphans and the dangling references (top level, nested, `_GlobalConfig`) are
//! reported, legacy hosted names are counted apart, superseded GridFS revisions are listed, the
//! exit code says whether anything was found, and JSON lines / CSV / table carry it all.

use std::collections::BTreeSet;

use futures::io::AsyncWriteExt;

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId, spec::BinarySubtype};
use parse_files_migrate::storage::{self, PutOptions, StoreConfig, StoreContext};
use serde_json::Value;

use crate::support;
use crate::support::app::{self, base_tables, file};
use crate::support::conformance::body;

const KEY: &str = "auditFileKey";
/// Stored and referenced: (name, bytes).
const KEPT: &[(&str, usize)] = &[
    ("0123456789abcdef0123456789abcdef_top.jpg", 10),
    ("0123456789abcdef0123456789abcdef_nested avatar.png", 20),
    ("gallery/ünï+%20.bin", 30),
    ("logo.svg", 40),
    ("shared.txt", 50),
];
/// Stored, referenced by nothing; the last under a key a broken S3 adapter `generateKey` writes.
const ORPHANS: &[(&str, usize)] = &[
    ("orphan one.jpg", 7),
    ("orphans/ünï%2F+x.bin", 9),
    ("uploads/undefined", 5),
];
/// A hosted-Parse name no store holds: counted as legacy, never dangling.
const LEGACY: &str = "tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-old.png";

/// The app: `Photo` (File `image`, Object `meta`, Array `gallery`) and Parse Config.
async fn seed_app(db: &Database) {
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file",
        "meta": "object", "gallery": "array"})
        .await
        .unwrap();
    let photos = vec![
        doc! {"_id": "p1", "image": KEPT[0].0, "meta": {"avatar": file(KEPT[1].0, None)},
        "gallery": [file(KEPT[2].0, None), Bson::Null]},
        doc! {"_id": "p2", "image": KEPT[4].0},
        doc! {"_id": "p3", "image": KEPT[4].0, "meta": {"avatar": file("gone nested.png", None)}},
        doc! {"_id": "p4", "image": "gone_top.jpg"},
        doc! {"_id": "p5", "image": LEGACY},
    ];
    db.collection::<Document>("Photo")
        .insert_many(photos)
        .await
        .unwrap();
    db.collection::<Document>("_GlobalConfig")
        .insert_one(doc! {"_id": 1, "params": {"logo": file(KEPT[3].0, None),
        "banner": file("gone-config.gif", None)}})
        .await
        .unwrap();
}

/// A dangling reference: (class, object id, path, name).
pub(crate) type Dangling = (String, String, String, String);

/// The orphans (name, size) and the dangling references of `audit --output jsonl`'s lines.
pub(crate) fn findings(lines: &[Value]) -> (BTreeSet<(String, u64)>, BTreeSet<Dangling>) {
    let of = |kind: &'static str| lines.iter().filter(move |l| l["finding"] == kind);
    let orphans = of("orphan")
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let dangling = of("dangling")
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("class"), s("object_id"), s("path"), s("name"))
        })
        .collect();
    (orphans, dangling)
}

/// The dangling references the seeded app holds: (class, object id, path, name).
fn dangling() -> BTreeSet<Dangling> {
    [
        ("Photo", "p3", "meta.avatar", "gone nested.png"),
        ("Photo", "p4", "image", "gone_top.jpg"),
        ("_GlobalConfig", "1", "params.banner", "gone-config.gif"),
    ]
    .iter()
    .map(|(c, o, p, n)| (c.to_string(), o.to_string(), p.to_string(), n.to_string()))
    .collect()
}

/// Seed the app and (with `put`) the store (`table`: the `[destination]` body), run `audit`,
/// check the findings; then remove the orphans and the dangling references and check it is
/// clean. Returns the clean run's JSON lines.
async fn audit_scenario(tag: &str, table: &str, put: bool) -> Vec<Value> {
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
    for (i, (name, len)) in KEPT.iter().chain(ORPHANS).enumerate() {
        if !put {
            break;
        }
        let data = support::bytes(*len, i as u64);
        store
            .put(name, body(&data, 4), &PutOptions::default())
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("audit.toml");
    app::write_destination_config(&config, &db_name, KEY, table);
    let c = config.to_str().unwrap();

    // Small sort runs: the join goes through temp files even here.
    let out = app::run([
        "-c",
        c,
        "audit",
        "--output",
        "jsonl",
        "--sort-run-bytes",
        "200",
    ]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let lines = out.jsonl();
    let summary = lines.last().unwrap().clone();
    assert_eq!(summary["finding"], "summary", "{summary}");
    let (orphans, got_dangling) = findings(&lines);
    for l in lines.iter().filter(|l| l["finding"] == "orphan") {
        assert!(l["modified"].as_str().unwrap().ends_with('Z'), "{l}");
        let broken = l["name"] == "uploads/undefined";
        assert_eq!(
            l["note"].as_str(),
            broken.then_some("generateKey wrote \"undefined\""),
            "{l}"
        );
    }
    let want: BTreeSet<(String, u64)> = ORPHANS
        .iter()
        .map(|(n, l)| (n.to_string(), *l as u64))
        .collect();
    assert_eq!(orphans, want, "{}", out.stdout);
    assert_eq!(got_dangling, dangling(), "{}", out.stdout);
    let stored_bytes: usize = KEPT.iter().chain(ORPHANS).map(|(_, l)| l).sum();
    for (k, v) in [
        ("stored_files", 8),
        ("stored_bytes", stored_bytes as u64),
        ("referenced_files", 5),
        ("references", 10),
        ("orphans", 3),
        ("orphan_bytes", 21),
        ("broken_keys", 1),
        ("dangling_references", 3),
        ("legacy_references", 1),
        ("legacy_unresolved", 1),
        ("shared_files", 1),
    ] {
        assert_eq!(summary[k], v, "{k} in {summary}");
    }
    let image = summary["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == "Photo" && f["field"] == "image")
        .unwrap();
    // p1's top.jpg (10) and shared.txt twice (50 + 50); gone_top and the legacy name add none.
    assert_eq!(
        (image["references"].as_u64(), image["bytes"].as_u64()),
        (Some(5), Some(110))
    );

    // CSV and table carry the same findings.
    let csv = app::run(["-c", c, "audit", "--output", "csv"]);
    assert_eq!(csv.code, 6, "{}", csv.stderr);
    assert_eq!(
        csv.stdout
            .lines()
            .filter(|l| l.starts_with("orphan,"))
            .count(),
        3
    );
    assert!(
        csv.stderr.contains("broken keys          1 orphans"),
        "{}",
        csv.stderr
    );
    assert!(
        csv.stdout
            .contains("dangling,gone-config.gif,,,_GlobalConfig,1,params.banner,")
    );
    assert!(
        csv.stderr.contains("dangling references  3"),
        "{}",
        csv.stderr
    );
    let table = app::run(["-c", c, "audit", "--output", "table"]);
    assert!(table.stdout.contains("Photo p4 image"), "{}", table.stdout);

    // Clean up what the audit found: it is clean, exit 0.
    for (name, _) in ORPHANS {
        store.delete(name).await.unwrap();
    }
    let photo = db.collection::<Document>("Photo");
    photo.delete_one(doc! {"_id": "p4"}).await.unwrap();
    photo
        .update_one(doc! {"_id": "p3"}, doc! {"$unset": {"meta": ""}})
        .await
        .unwrap();
    db.collection::<Document>("_GlobalConfig")
        .update_one(doc! {"_id": 1}, doc! {"$unset": {"params.banner": ""}})
        .await
        .unwrap();
    let clean = app::run(["-c", c, "audit", "--output", "jsonl"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    let lines = clean.jsonl();
    assert_eq!(
        lines.len(),
        lines
            .iter()
            .filter(|l| l["finding"] == "superseded")
            .count()
            + 1
    );
    db.drop().await.unwrap();
    lines
}

#[tokio::test]
async fn fs_store() {
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.path().join("files").display()
    );
    audit_scenario("pfm_audit_fs", &table, true).await;
}

#[tokio::test]
async fn s3_store_with_a_prefix() {
    let bucket = support::s3::fresh_bucket("pfm-audit").await;
    // Another app's object in the same bucket, outside the prefix: never an orphan here.
    support::s3::raw_client()
        .await
        .put_object()
        .bucket(&bucket)
        .key("other-app/x.jpg")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let table = format!(
        "{}prefix = \"app1/\"\n",
        support::s3::table(&bucket, &support::s3::endpoint())
    );
    audit_scenario("pfm_audit_s3", &table, true).await;
}

#[tokio::test]
async fn gcs_store() {
    let bucket = support::gcs::fresh_bucket("pfm-audit").await;
    let table = format!(
        "type = \"gcs\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nanonymous = true\n",
        support::gcs::endpoint()
    );
    audit_scenario("pfm_audit_gcs", &table, true).await;
}

#[tokio::test]
async fn gridfs_store_reports_superseded_revisions() {
    // The bucket lives in its own database, so the older revision can be added by hand first.
    let client = support::mongo_client().await;
    let files_db = client.database(&support::unique("pfm_audit_gfs_files"));
    let old = ObjectId::new();
    files_db
        .collection::<Document>("fs.chunks")
        .insert_one(
            doc! {"files_id": old, "n": 0, "data": Bson::Binary(mongodb::bson::Binary {
            subtype: BinarySubtype::Generic, bytes: b"older".to_vec() })},
        )
        .await
        .unwrap();
    files_db
        .collection::<Document>("fs.files")
        .insert_one(
            doc! {"_id": old, "filename": KEPT[0].0, "length": 5i64, "chunkSize": 261_120,
            "uploadDate": DateTime::from_millis(1_000_000)},
        )
        .await
        .unwrap();
    let table = format!(
        "type = \"gridfs\"\nuri = \"{}\"\ndatabase = \"{}\"\nencryption = \"none\"\n",
        support::mongo_uri(),
        files_db.name()
    );
    // The store's `put` would remove the older revision: upload through the driver's bucket.
    for (i, (name, len)) in KEPT.iter().chain(ORPHANS).enumerate() {
        let mut up = files_db
            .gridfs_bucket(None)
            .open_upload_stream(*name)
            .await
            .unwrap();
        up.write_all(&support::bytes(*len, i as u64)).await.unwrap();
        up.close().await.unwrap();
    }
    let clean = audit_scenario("pfm_audit_gfs", &table, false).await;
    let superseded: Vec<&Value> = clean
        .iter()
        .filter(|l| l["finding"] == "superseded")
        .collect();
    assert_eq!(superseded.len(), 1, "{clean:?}");
    assert_eq!(superseded[0]["name"], KEPT[0].0);
    assert_eq!(superseded[0]["size"], 5);
    assert_eq!(superseded[0]["version"], old.to_hex());
    let summary = clean.last().unwrap();
    assert_eq!(
        (
            summary["superseded_versions"].as_u64(),
            summary["superseded_bytes"].as_u64()
        ),
        (Some(1), Some(5))
    );
    files_db.drop().await.unwrap();
}

#[tokio::test]
async fn stores_that_cannot_be_listed_and_bad_flags_are_usage_errors() {
    let client = support::mongo_client().await;
    let db_name = support::unique("pfm_audit_usage");
    let db = client.database(&db_name);
    seed_app(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("audit.toml");
    let base = base_tables(&db_name, KEY);
    let write = |tail: &str| std::fs::write(&config, format!("{base}{tail}")).unwrap();
    let c = config.to_str().unwrap();

    write("\n[destination]\ntype = \"http\"\nserver_url = \"http://127.0.0.1:9/parse\"\n");
    let out = app::run(["-c", c, "audit"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be listed"), "{}", out.stderr);

    write(&app::fs_destination(&dir.path().join("files")));
    let out = app::run(["-c", c, "audit", "--store", "server"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("[source.server]"), "{}", out.stderr);
    let out = app::run(["-c", c, "audit", "--sort-run-bytes", "lots"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--sort-run-bytes"), "{}", out.stderr);

    // An empty store: every reference is dangling (legacy ones apart), exit 6.
    let out = app::run(["-c", c, "audit", "--output", "jsonl"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let (orphans, dangling) = findings(&out.jsonl());
    assert!(orphans.is_empty());
    assert_eq!(dangling.len(), 3 + KEPT.len() + 1, "{dangling:?}");
    db.drop().await.unwrap();
}
