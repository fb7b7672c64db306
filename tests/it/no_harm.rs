//! Never overwrite what the tool did not write (issue #20, item 9), against the real servers: a
//! target name already holding *other* bytes at the destination is a per-file collision —
//! reported, recorded, its references left alone, the object untouched — until `--overwrite`;
//! one holding the *same* bytes counts as already copied. For a legacy → fs migration and a
//! `--rename keep` GridFS → S3 adapter move into a bucket that already holds another app's
//! `logo.png`. (Create-only writes on every store: the conformance suite.)

use std::path::PathBuf;

use parse_files_migrate::parse::names::{encode_uri_component, parse_server_name};
use parse_files_migrate::storage::{self, StoreConfig, StoreContext};

use crate::support::{self, app};

const FILE_KEY: &str = "harmKey";

fn config(tag: &str, db: &str, source: &str, destination: &str) -> PathBuf {
    app::write_config(tag, db, "harmApp", FILE_KEY, "", source, destination)
}

#[tokio::test]
async fn an_existing_target_with_other_bytes_is_a_collision_never_overwritten() {
    let db_name = support::unique("harm_fs");
    let db = support::mongo_client().await.database(&db_name);
    let http_dir = support::unique("harm");
    let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT"))
        .join(&http_dir)
        .join(FILE_KEY);
    std::fs::create_dir_all(&root).unwrap();
    let names: Vec<String> = ["other", "same", "new"]
        .iter()
        .map(|t| format!("tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-{t}.jpg"))
        .collect();
    let data: Vec<Vec<u8>> = (0..3)
        .map(|i| support::bytes(5_000 + i, i as u64))
        .collect();
    for (n, d) in names.iter().zip(&data) {
        std::fs::write(root.join(n), d).unwrap();
    }
    app::seed_items(&db, &names).await;
    let dest = support::temp_path("harm-dest");
    std::fs::create_dir_all(&dest).unwrap();
    let at = |n: &str| dest.join(encode_uri_component(&parse_server_name(n)));
    // Another app's file under the first target name (other bytes, same size), and an identical
    // copy of the second (a restored backup).
    let foreign = support::bytes(5_000, 999);
    std::fs::write(at(&names[0]), &foreign).unwrap();
    std::fs::write(at(&names[1]), &data[1]).unwrap();
    let source = format!(
        "[source.hosted]\ntype = \"http\"\ntfss_base_url = \"{}/{http_dir}/{{file_key}}/\"\n",
        support::env("PFM_TEST_HTTP_URL")
    );
    let cfg = config(
        "harm_fs",
        &db_name,
        &source,
        &format!("type = \"fs\"\npath = \"{}\"\n", dest.display()),
    );
    let cfg = cfg.to_str().unwrap();

    let out = app::run(["-c", cfg, "migrate", "--yes", "--output", "jsonl"]);
    assert_eq!(
        out.code, 3,
        "a collision makes the run incomplete: {}",
        out.stderr
    );
    let s = out.summary();
    assert_eq!(s["files"]["collisions"], 1, "{s}");
    assert_eq!(
        s["files"]["skipped"], 1,
        "the identical copy counts as done: {s}"
    );
    assert_eq!(s["files"]["copied"], 1, "{s}");
    assert_eq!(s["files"]["failed"], 0, "{s}");
    assert_eq!(s["references"]["rewritten"], 2, "{s}");
    assert_eq!(s["references"]["left_untouched"], 1, "{s}");
    let item = &s["collisions"][0];
    assert_eq!(item["name"], names[0].as_str(), "{s}");
    assert!(
        item["reason"].as_str().unwrap().starts_with("collision:"),
        "{item}"
    );
    assert!(
        std::fs::read(at(&names[0])).unwrap() == foreign,
        "never overwritten"
    );
    assert!(std::fs::read(at(&names[1])).unwrap() == data[1]);
    assert!(std::fs::read(at(&names[2])).unwrap() == data[2]);
    let docs = app::find_all(&db, "Item").await;
    assert_eq!(docs[0].get_str("file").unwrap(), names[0], "left alone");
    assert_eq!(
        docs[1].get_str("file").unwrap(),
        parse_server_name(&names[1])
    );
    let rec = support::ledger::file(&db, &names[0]).await.unwrap();
    assert!(
        rec.error.as_deref().unwrap_or("").starts_with("collision:"),
        "{rec:?}"
    );
    assert_eq!(
        support::ledger::file(&db, &names[1])
            .await
            .unwrap()
            .state
            .as_str(),
        "verified"
    );
    let entries = std::fs::read_dir(&dest).unwrap().count();
    assert_eq!(entries, 3, "no temp file left by the refused write");

    // Again: still a collision (the tool does not forget, nor decide alone).
    let out = app::run(["-c", cfg, "migrate", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(std::fs::read(at(&names[0])).unwrap() == foreign);

    // The operator says so: --overwrite replaces it and the run completes.
    let out = app::run([
        "-c",
        cfg,
        "migrate",
        "--yes",
        "--overwrite",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        std::fs::read(at(&names[0])).unwrap() == data[0],
        "replaced on request"
    );
    let docs = app::find_all(&db, "Item").await;
    assert_eq!(
        docs[0].get_str("file").unwrap(),
        parse_server_name(&names[0])
    );
}

#[tokio::test]
async fn an_adapter_move_keeping_names_leaves_another_apps_object_alone() {
    let db_name = support::unique("harm_s3");
    let db = support::mongo_client().await.database(&db_name);
    let ctx = StoreContext {
        mongo_uri: Some(support::mongo_uri().into()),
        database: Some(db_name.clone()),
        file_key: None,
        app_id: Some("harmApp".into()),
    };
    let gridfs: StoreConfig = toml::from_str("type = \"gridfs\"").unwrap();
    let source = storage::open(&gridfs, &ctx).await.unwrap();
    let names = vec!["logo.png".to_string(), "banner.png".to_string()];
    let data: Vec<Vec<u8>> = (0..2)
        .map(|i| support::bytes(2_000 + i, 50 + i as u64))
        .collect();
    for (n, d) in names.iter().zip(&data) {
        source
            .put(n, support::conformance::body(d, 700), &Default::default())
            .await
            .unwrap();
    }
    app::seed_items(&db, &names).await;
    let bucket = support::s3::fresh_bucket("harm").await;
    let client = support::s3::raw_client().await;
    let theirs = b"another app's logo".to_vec();
    client
        .put_object()
        .bucket(&bucket)
        .key("logo.png")
        .body(theirs.clone().into())
        .send()
        .await
        .unwrap();
    let cfg = config(
        "harm_s3",
        &db_name,
        "[source.server]\ntype = \"gridfs\"\n",
        &support::s3::table(&bucket, &support::s3::endpoint()),
    );
    let cfg = cfg.to_str().unwrap();
    let out = app::run([
        "-c", cfg, "migrate", "--yes", "--select", "server", "--rename", "keep", "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let s = out.summary();
    assert_eq!(s["files"]["collisions"], 1, "{s}");
    assert_eq!(s["files"]["copied"], 1, "{s}");
    let read = |key: &'static str| {
        let client = client.clone();
        let bucket = bucket.clone();
        async move {
            let got = client
                .get_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            got.body.collect().await.unwrap().into_bytes().to_vec()
        }
    };
    assert_eq!(
        read("logo.png").await,
        theirs,
        "another app's object untouched"
    );
    assert!(read("banner.png").await == data[1]);
}
