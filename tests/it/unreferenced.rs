//! `migrate --include-unreferenced`: every file of `[source.server]` that no reference names is
//! copied too (a complete copy of the old store), byte-identical and recorded in the ledger;
//! referenced files are migrated as usual; `--dry-run` prints the copies; a re-run copies
//! nothing again; without a listable `[source.server]` it is a usage error.

use mongodb::bson::{Document, doc};
use parse_files_migrate::storage::PutOptions;

use crate::support;
use crate::support::app::{self, base_tables};
use crate::support::conformance::{body, read_all};

const REFERENCED: &str = "0123456789abcdef0123456789abcdef_ref.jpg";
const ORPHANS: &[&str] = &["orphan.bin", "dir/ünï %2F+.bin"];
/// A real run that also copies the server's unreferenced files.
const WITH_UNREFERENCED: &[&str] = &[
    "--include-unreferenced",
    "--select",
    "server",
    "--yes",
    "--output",
    "jsonl",
];

async fn scenario(tag: &str, source: &str, destination: &str) {
    let (db, db_name) = support::one_photo(tag, REFERENCED).await;
    let src = support::open_store(source, &db_name).await;
    let data = |n: &str| support::bytes(5000 + n.len(), support::fnv1a(n));
    for n in ORPHANS.iter().chain([&REFERENCED]) {
        src.put(n, body(&data(n), 999), &PutOptions::default())
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("m.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[source.server]\n{source}\n[destination]\n{destination}",
            base_tables(&db_name, "fk")
        ),
    )
    .unwrap();

    let out = app::migrate(
        &config,
        &[
            "--include-unreferenced",
            "--select",
            "server",
            "--dry-run",
            "--output",
            "jsonl",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let copies: std::collections::BTreeSet<String> = out
        .jsonl()
        .iter()
        .filter(|l| l["action"] == "copy")
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    let mut all: std::collections::BTreeSet<String> =
        ORPHANS.iter().map(|s| s.to_string()).collect();
    all.insert(REFERENCED.into());
    assert_eq!(copies, all, "{}", out.stdout);

    let out = app::migrate(&config, WITH_UNREFERENCED);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.summary();
    assert_eq!(s["files"]["copied"], 3, "{s}");
    let dest = support::open_store(destination, &db_name).await;
    for n in &all {
        assert!(read_all(&*dest, n).await.unwrap() == data(n), "{n} differs");
    }
    let ledger = db.collection::<Document>("_FileMigration");
    for n in ORPHANS {
        let rec = ledger.count_documents(doc! {"n": n}).await.unwrap();
        assert_eq!(rec, 1, "{n} recorded in the ledger");
    }
    let out = app::migrate(&config, WITH_UNREFERENCED);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.summary()["files"]["copied"], 0, "{}", out.stdout);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn gridfs_to_fs() {
    let files = tempfile::tempdir().unwrap();
    let source = "type = \"gridfs\"\nencryption = \"none\"\n";
    let destination = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        files.path().display()
    );
    scenario("pfm_unref_gfs", source, &destination).await;
}

#[tokio::test]
async fn fs_to_s3() {
    let files = tempfile::tempdir().unwrap();
    let bucket = support::s3::fresh_bucket("pfm-unref").await;
    let source = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        files.path().display()
    );
    let destination = format!(
        "{}prefix = \"new/\"\n",
        support::s3::table(&bucket, &support::s3::endpoint())
    );
    scenario("pfm_unref_s3", &source, &destination).await;
}

#[tokio::test]
async fn needs_a_listable_server_store() {
    let client = support::mongo_client().await;
    let db_name = support::unique("pfm_unref_usage");
    let db = client.database(&db_name);
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file"})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("m.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}",
            base_tables(&db_name, "fk"),
            app::fs_destination(&dir.path().join("out"))
        ),
    )
    .unwrap();
    let out = app::migrate(&config, &["--include-unreferenced", "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("[source.server]"), "{}", out.stderr);
    db.drop().await.unwrap();
}
