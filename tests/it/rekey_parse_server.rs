//! `rekey` proven end to end with a stock Parse Server 9.10.0 (issue #18): files uploaded through
//! Parse Server's REST API by a server without encryption and by one with `fileKey = A` (a mixed
//! bucket, as after an upgrade to ≥ 4.3.0); `rekey --encrypt` → a stock server with `fileKey =
//! A` serves every file byte-identical; rotate A → B → a server with `fileKey = B` serves every
//! one; Parse Server's own `GridFSBucketAdapter.rotateEncryptionKey` then rotates B → C (leaving
//! its old revisions behind), the tool reads those files and `--decrypt`s them (removing the old
//! revisions) → a server with an unencrypted GridFS adapter serves every one. Each step prints
//! `served byte-identical` counts on stderr (`-- --nocapture`). The same for the FS adapter
//! (`@parse/fs-files-adapter`) with its `encryptionKey`: plain and A uploads → `--encrypt` → A
//! serves all; rotate → B serves all; `--decrypt` → an adapter without a key serves all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde_json::Value;

use crate::parse_server::{App, Files, ParseServer, Rest};
use crate::support::{self, app, free_port};

const KEY_A: &str = "psRekeyAlpha-SECRET";
const KEY_B: &str = "psRekeyBravo-SECRET";
const KEY_C: &str = "psRekeyCharlie-SECRET";

fn app_with(base: &App, file_key: &str) -> App {
    App {
        file_key: file_key.to_string(),
        ..base.clone()
    }
}

fn config(db: &str, file_key: &str) -> PathBuf {
    config_with(db, file_key, "type = \"gridfs\"")
}

fn config_with(db: &str, file_key: &str, destination: &str) -> PathBuf {
    let path = support::temp_path("rekey_ps").with_extension("toml");
    let text = format!(
        "[mongo]\nuri = \"{}\"\ndatabase = \"{db}\"\n\n[parse]\napp_id = \"rekeyProof\"\n\
         file_key = \"{file_key}\"\n\n[destination]\n{destination}\n",
        support::mongo_uri()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn rekey(config: &Path, new_key: Option<&str>, args: &[&str]) -> Value {
    let mut cmd = app::command();
    cmd.args(["-c", config.to_str().unwrap(), "rekey", "--json", "--yes"])
        .args(args);
    if let Some(k) = new_key {
        cmd.env("PFM_NEW_FILE_KEY", k);
    }
    let out = app::Out::from(cmd.output().unwrap());
    for k in [KEY_A, KEY_B, KEY_C] {
        out.assert_hides("a file key", k);
    }
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

/// Start a server of `app` with `files`, download every file by its URL, stop it: how many were
/// served byte-identical (the rest are listed).
async fn served(app: &App, files: &Files, label: &str, want: &BTreeMap<String, Vec<u8>>) -> usize {
    let server = ParseServer::start(app, files, label);
    let rest = Rest::new(app);
    let mut ok = 0;
    for (name, data) in want {
        let url = format!(
            "{}/files/{}/{}",
            app.server_url(),
            app.app_id,
            parse_files_migrate::parse::names::encode_uri_component(name)
        );
        match rest.download(&url).await {
            Ok(got) if &got == data => ok += 1,
            Ok(got) => eprintln!("{label}: {name}: {} bytes, not the original", got.len()),
            Err(e) => eprintln!("{label}: {name}: {e}"),
        }
    }
    server.stop(app);
    eprintln!(
        "rekey_parse_server: {label}: {ok}/{} served byte-identical",
        want.len()
    );
    ok
}

/// Parse Server's own key rotation (`GridFSBucketAdapter.rotateEncryptionKey`), run with node
/// from the pinned install, keys through the environment.
fn parse_rotate(db: &str, old: &str, new: &str) -> Value {
    let dir = support::env("PFM_TEST_PARSE_SERVER_DIR");
    let script = r#"
const { createRequire } = require('module');
const req = createRequire(require('path').join(process.env.PS_DIR, 'package.json'));
const { GridFSBucketAdapter } = req('parse-server/lib/Adapters/Files/GridFSBucketAdapter');
const a = new GridFSBucketAdapter(process.env.PS_URI, {}, process.env.PS_NEW);
a.rotateEncryptionKey({ oldKey: process.env.PS_OLD }).then(
  (r) => { console.log(JSON.stringify({ rotated: r.rotated.length, notRotated: r.notRotated.length })); process.exit(0); },
  (e) => { console.error(String(e)); process.exit(1); });
"#;
    let out = std::process::Command::new("node")
        .args(["-e", script])
        .env("PS_DIR", dir)
        .env("PS_URI", support::uri_for(db))
        .env("PS_OLD", old)
        .env("PS_NEW", new)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "rotateEncryptionKey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn gridfs_encrypt_rotate_decrypt_served_by_parse_server() {
    let database = support::unique("pfm_rekey_ps");
    let base = App {
        app_id: "rekeyProof".into(),
        master_key: "mk-rekey-SECRET".into(),
        file_key: KEY_A.into(),
        database: database.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Uploaded by a server whose GridFS adapter does not encrypt (before fileKey / 4.3.0).
    let server = ParseServer::start(&base, &Files::GridfsPlain, "rekey-upload-plain");
    let rest = Rest::new(&base);
    for (i, len) in [0usize, 10, 5000, 300_000].into_iter().enumerate() {
        let data = support::bytes(len.max(1), i as u64);
        let name = format!("plain {i}.bin");
        let f = rest.upload(&name, "application/octet-stream", &data).await;
        want.insert(f["name"].as_str().unwrap().to_string(), data);
    }
    server.stop(&base);
    // Uploaded by a stock server with fileKey = A (encrypted).
    let server = ParseServer::start(&base, &Files::Default, "rekey-upload-a");
    let rest = Rest::new(&base);
    for (i, len) in [1usize, 700, 270_000].into_iter().enumerate() {
        let data = support::bytes(len, 50 + i as u64);
        let name = format!("enc {i}.txt");
        let f = rest.upload(&name, "text/plain", &data).await;
        want.insert(f["name"].as_str().unwrap().to_string(), data);
    }
    server.stop(&base);
    let n = want.len();
    assert!(served(&base, &Files::Default, "rekey-mixed-a", &want).await < n);

    let s = rekey(&config(&database, KEY_A), None, &["--encrypt"]);
    assert_eq!(s["rewritten"]["files"], 4, "{s}");
    assert_eq!(
        served(&base, &Files::Default, "rekey-encrypted-a", &want).await,
        n
    );

    let s = rekey(&config(&database, KEY_A), Some(KEY_B), &[]);
    assert_eq!(s["rewritten"]["files"], n, "{s}");
    let app_b = app_with(&base, KEY_B);
    assert_eq!(
        served(&app_b, &Files::Default, "rekey-rotated-b", &want).await,
        n
    );

    // Parse Server's own rotation B → C leaves every old revision in place.
    let r = parse_rotate(&database, KEY_B, KEY_C);
    assert_eq!(r["rotated"], n, "{r}");
    let client = support::mongo_client().await;
    let db = client.database(&database);
    let revisions = || async {
        db.collection::<Document>("fs.files")
            .count_documents(doc! {})
            .await
            .unwrap()
    };
    assert_eq!(revisions().await, 2 * n as u64);
    let cfg_c = config(&database, KEY_C);
    let out = app::run([
        "-c",
        cfg_c.to_str().unwrap(),
        "rekey",
        "--decrypt",
        "--dry-run",
        "--json",
    ]);
    let s: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(s["current_key"]["files"], n, "{s}");
    assert_eq!(s["stale_versions"], n, "{s}");
    let s = rekey(&cfg_c, None, &["--decrypt"]);
    assert_eq!(s["rewritten"]["files"], n, "{s}");
    assert_eq!(revisions().await, n as u64, "Parse's old revisions removed");
    let plain = app_with(&base, KEY_C);
    assert_eq!(
        served(&plain, &Files::GridfsPlain, "rekey-decrypted", &want).await,
        n
    );

    let chunks: Vec<Document> = db
        .collection::<Document>("fs.chunks")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let expected: usize = want
        .values()
        .map(|d| d.len().div_ceil(261_120).max(1))
        .sum();
    assert!(
        chunks.len() <= expected,
        "{} chunks for {expected}",
        chunks.len()
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn fs_encrypt_rotate_decrypt_served_by_parse_server() {
    let database = support::unique("pfm_rekey_psfs");
    let root = support::temp_path("rekey_psfs");
    std::fs::create_dir_all(&root).unwrap();
    let fs = |encrypted| Files::Fs {
        root: root.clone(),
        subdir: "app".into(),
        encrypted,
    };
    let dir = root.join("files").join("app");
    let base = App {
        app_id: "rekeyProof".into(),
        master_key: "mk-rekeyfs-SECRET".into(),
        file_key: KEY_A.into(),
        database: database.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (encrypted, label) in [(false, "rekeyfs-upload-plain"), (true, "rekeyfs-upload-a")] {
        let server = ParseServer::start(&base, &fs(encrypted), label);
        let rest = Rest::new(&base);
        for (i, len) in [3usize, 4000, 300_000].into_iter().enumerate() {
            let data = support::bytes(len, i as u64 + if encrypted { 10 } else { 0 });
            let name = format!("{label} {i}.bin");
            let f = rest.upload(&name, "application/octet-stream", &data).await;
            want.insert(f["name"].as_str().unwrap().to_string(), data);
        }
        server.stop(&base);
    }
    let n = want.len();
    let dest = |key: &str| {
        format!(
            "type = \"fs\"\npath = \"{}\"\nencryption_key = \"{key}\"",
            dir.display()
        )
    };
    let s = rekey(
        &config_with(&database, KEY_A, &dest(KEY_A)),
        None,
        &["--encrypt"],
    );
    assert_eq!(s["rewritten"]["files"], 3, "{s}");
    assert_eq!(
        served(&base, &fs(true), "rekeyfs-encrypted-a", &want).await,
        n
    );
    let s = rekey(
        &config_with(&database, KEY_A, &dest(KEY_A)),
        Some(KEY_B),
        &[],
    );
    assert_eq!(s["rewritten"]["files"], n, "{s}");
    let app_b = app_with(&base, KEY_B);
    assert_eq!(
        served(&app_b, &fs(true), "rekeyfs-rotated-b", &want).await,
        n
    );
    let s = rekey(
        &config_with(&database, KEY_B, &dest(KEY_B)),
        None,
        &["--decrypt"],
    );
    assert_eq!(s["rewritten"]["files"], n, "{s}");
    assert_eq!(
        served(&app_b, &fs(false), "rekeyfs-decrypted", &want).await,
        n
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        n,
        "no temp file left"
    );
    let client = support::mongo_client().await;
    client.database(&database).drop().await.unwrap();
}
