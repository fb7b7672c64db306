//! File URLs inside strings (#19) on the real servers: `list --strings`, `migrate --strings`
//! (whole-string compare-and-swap, ledger, `rollback` byte for byte), `rebase`, and a concurrent
//! writer editing the same strings during a run.
//!
//! The app: hosted files named only in strings (and one also in a File field), strings holding
//! one legacy URL; several (two hosted, one unrelated); an HTML `<img src>` with a
//! percent-encoded name; a JSON string; look-alike hosts; a URL to a file missing at the source;
//! a string inside an Object field and one in Parse Config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mongodb::bson::{Bson, Document, doc};
use parse_files_migrate::parse::names::{encode_uri_component, parse_server_name};
use serde_json::Value;

use crate::support;
use crate::support::app::{self, APP_ID, SERVER_URL, summary, uuid};

const KEY: &str = "fk-strings-SECRET";

fn legacy(name: &str) -> String {
    let host = if name.starts_with("tfss-") {
        "https://files.parsetfss.com"
    } else {
        "http://files.parse.com"
    };
    format!("{host}/{KEY}/{}", encode_uri_component(name))
}

fn new_url(name: &str) -> String {
    format!(
        "{SERVER_URL}/files/{APP_ID}/{}",
        encode_uri_component(&parse_server_name(name))
    )
}

struct App {
    db: mongodb::Database,
    dir: PathBuf,
    config: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
    missing: String,
    /// `(collection, _id, path)` → the string as seeded.
    strings: Vec<(&'static str, Bson, &'static str, String)>,
}

impl App {
    async fn seed(tag: &str, extra: &str) -> App {
        let db_name = support::unique(tag);
        let db = support::mongo_client().await.database(&db_name);
        let dir = support::temp_path(&format!("{tag}-dir"));
        std::fs::create_dir_all(&dir).unwrap();
        let a = format!("tfss-{}-a.jpg", uuid(1));
        let b = format!("{}-b.png", uuid(2));
        let c = format!("tfss-{}-my photo é+1.png", uuid(3));
        let missing = format!("tfss-{}-gone.jpg", uuid(4));
        let http_dir = support::unique(tag);
        let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT")).join(&http_dir);
        let mut files = BTreeMap::new();
        for (i, name) in [&a, &b, &c].into_iter().enumerate() {
            let host = if name.starts_with("tfss-") {
                "tfss"
            } else {
                "legacy"
            };
            let d = root.join(host).join(KEY);
            std::fs::create_dir_all(&d).unwrap();
            let data = support::bytes(1000 + i * 777, i as u64 + 40);
            std::fs::write(d.join(name), &data).unwrap();
            files.insert(name.clone(), data);
        }
        db.collection::<Document>("_SCHEMA")
            .insert_one(doc! {"_id": "Post", "objectId": "string", "body": "string",
            "html": "string", "json": "string", "image": "file", "meta": "object", "n": "number"})
            .await
            .unwrap();
        let strings = vec![
            ("Post", "s1".into(), "body", format!("see {}", legacy(&a))),
            (
                "Post",
                "s2".into(),
                "body",
                format!(
                    "two: {} and {} and https://example.org/unrelated.jpg\nend",
                    legacy(&a),
                    legacy(&b)
                ),
            ),
            (
                "Post",
                "s3".into(),
                "html",
                format!("<p><img src=\"{}\" alt=\"é\"></p>", legacy(&c)),
            ),
            (
                "Post",
                "s4".into(),
                "json",
                format!("{{\"photo\":\"{}\",\"n\":1}}", legacy(&a)),
            ),
            (
                "Post",
                "s5".into(),
                "body",
                format!(
                    "fake: http://files.parsetfss.com.evil.net/{KEY}/{a} \
                     http://notfiles.parsetfss.com/{KEY}/{a} \
                     https://proxy.example.com/?u={}",
                    legacy(&a)
                ),
            ),
            (
                "Post",
                "s6".into(),
                "body",
                format!("gone: {}", legacy(&missing)),
            ),
            (
                "Post",
                "s6".into(),
                "meta.note",
                format!("[pic]({})", legacy(&b)),
            ),
            (
                "_GlobalConfig",
                Bson::Int32(1),
                "params.welcome",
                format!("<img src='{}'>", legacy(&c)),
            ),
        ];
        let posts = db.collection::<Document>("Post");
        for id in ["s1", "s2", "s3", "s4", "s5", "s6"] {
            let mut d = doc! {"_id": id, "n": 1};
            for (_, sid, path, text) in &strings {
                if sid.as_str() == Some(id) {
                    match path.split_once('.') {
                        Some((top, key)) => d.insert(top, doc! {key: text}),
                        None => d.insert(*path, text),
                    };
                }
            }
            if id == "s1" {
                d.insert("image", &a);
            }
            posts.insert_one(d).await.unwrap();
        }
        db.collection::<Document>("_GlobalConfig")
            .insert_one(doc! {"_id": 1, "params": {"welcome": &strings[7].3, "n": 5}})
            .await
            .unwrap();
        let config = dir.join("config.toml");
        let http = format!("{}/{http_dir}", support::env("PFM_TEST_HTTP_URL"));
        std::fs::write(
            &config,
            format!(
                "{}{}{}{extra}",
                app::base_tables(&db_name, KEY),
                app::hosted_table(&http, 10),
                app::fs_destination(&dir.join("dest")),
            ),
        )
        .unwrap();
        App {
            db,
            dir,
            config,
            files,
            missing,
            strings,
        }
    }

    fn run(&self, args: &[&str]) -> app::Out {
        let mut all = vec!["-c", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = app::run(all);
        out.assert_hides("fileKey", KEY);
        out
    }

    async fn string(&self, coll: &str, id: &Bson, path: &str) -> String {
        let d = app::find(&self.db, coll, id.clone()).await;
        match parse_files_migrate::engine::cas::get_path(&d, path) {
            Some(Bson::String(s)) => s.clone(),
            other => panic!("{coll} {id} {path}: {other:?}"),
        }
    }

    /// Every collection but the ledger's, as raw BSON bytes per document.
    async fn raw(&self) -> BTreeMap<String, Vec<Vec<u8>>> {
        app::snapshot(&self.db)
            .await
            .into_iter()
            .filter(|(c, _)| !c.starts_with("_FileMigration"))
            .map(|(c, docs)| {
                let docs = docs
                    .iter()
                    .map(|d| mongodb::bson::to_vec(d).unwrap())
                    .collect();
                (c, docs)
            })
            .collect()
    }
}

fn in_string(rows: &[Value]) -> Vec<&Value> {
    rows.iter().filter(|r| r["in_string"] == true).collect()
}

#[tokio::test]
async fn list_strings_finds_every_url_and_no_look_alike() {
    let app = App::seed("str_list", "").await;
    // Without --strings: only the File field.
    let out = app.run(&["list", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = out.jsonl();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["in_string"], false);

    let out = app.run(&["list", "--strings", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = out.jsonl();
    let found = in_string(&rows);
    let got: Vec<(String, String, String)> = found
        .iter()
        .map(|r| {
            (
                format!("{}/{}", r["class"].as_str().unwrap(), r["object_id"]),
                r["path"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (a, b, c) = {
        let names: Vec<&String> = app.files.keys().collect();
        // Sorted: uuid(2)-b.png, tfss-…-a.jpg, tfss-…-my photo….
        (names[1].clone(), names[0].clone(), names[2].clone())
    };
    let want = vec![
        ("Post/\"s1\"".into(), "body".into(), a.clone()),
        ("Post/\"s2\"".into(), "body".into(), a.clone()),
        ("Post/\"s2\"".into(), "body".into(), b.clone()),
        ("Post/\"s3\"".into(), "html".into(), c.clone()),
        ("Post/\"s4\"".into(), "json".into(), a.clone()),
        ("Post/\"s6\"".into(), "body".into(), app.missing.clone()),
        ("Post/\"s6\"".into(), "meta.note".into(), b.clone()),
        (
            "_GlobalConfig/\"1\"".into(),
            "params.welcome".into(),
            c.clone(),
        ),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted: Vec<(String, String, String)> = want;
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted);
    for r in &found {
        let url = r["url"].as_str().unwrap();
        assert!(url.contains("{file_key}"), "{url}");
        assert!(!url.contains("evil") && !url.contains("notfiles"), "{url}");
        assert!(r["kind"].as_str().unwrap().starts_with("parse-"), "{r}");
    }
    // `[scan] strings = true` does the same without the flag.
    let cfg = app.dir.join("scan.toml");
    let text = std::fs::read_to_string(&app.config).unwrap() + "\n[scan]\nstrings = true\n";
    std::fs::write(&cfg, text).unwrap();
    let out = app::run(["-c", cfg.to_str().unwrap(), "list", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(in_string(&out.jsonl()).len(), 8);
}

#[tokio::test]
async fn migrate_strings_rewrites_every_url_and_rollback_restores_bytes() {
    let app = App::seed("str_migrate", "").await;
    let before = app.raw().await;

    // Dry run: every string change shown as a before/after excerpt; nothing written.
    let out = app.run(&["migrate", "--strings", "--dry-run", "--output", "text"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let changes = out.stdout.matches("(string):").count();
    assert_eq!(changes, 7, "{}", out.stdout);
    assert!(out.stdout.contains("  - "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&new_url(app.files.keys().next().unwrap()))
    );
    assert!(
        !out.stdout
            .contains("two: https://files.parsetfss.com/K\nend")
    );
    assert_eq!(app.raw().await, before, "a dry run writes nothing");

    // The run: incomplete (one file is missing); every other legacy URL replaced.
    let out = app.run(&["migrate", "--strings", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let s = summary(&out.jsonl()).clone();
    assert_eq!(s["files"]["copied"], 3, "{s}");
    assert_eq!(s["files"]["missing"], 1, "{s}");
    // 6 strings + the File field.
    assert_eq!(s["references"]["rewritten"], 7, "{s}");
    assert_eq!(s["references"]["conflicts"], 0, "{s}");
    for (name, data) in &app.files {
        let stored = encode_uri_component(&parse_server_name(name));
        let got = std::fs::read(app.dir.join("dest").join(stored)).unwrap();
        assert!(got == *data, "{name}: bytes differ");
    }
    let a = app.files.keys().nth(1).unwrap();
    let rec = support::ledger::file(&app.db, a).await.unwrap();
    assert_eq!(
        rec.attempts, 1,
        "a file named in a field and strings is copied once"
    );

    for (coll, id, path, old) in &app.strings {
        let now = app.string(coll, id, path).await;
        let mut want = old.clone();
        for name in app.files.keys() {
            want = want.replace(&legacy(name), &new_url(name));
        }
        // Look-alikes and the URL inside another URL's query stay.
        if id.as_str() == Some("s5") {
            want = old.clone();
        }
        assert_eq!(now, want, "{coll} {id} {path}");
        if id.as_str() == Some("s6") && *path == "body" {
            assert_eq!(now, *old, "a URL to a missing file is left untouched");
        }
    }
    assert!(
        out.stderr.contains(&app.missing) || s.to_string().contains(&app.missing),
        "the missing file is reported"
    );
    // The ledger holds the old strings without the key.
    let r = support::ledger::reference(&app.db, "Post", "s1", "body")
        .await
        .unwrap();
    assert!(r.change.old.key_redacted);
    assert!(r.change.old.text.as_deref().unwrap().contains("{file_key}"));

    // A re-run changes nothing.
    let after = app.raw().await;
    let out = app.run(&["migrate", "--strings", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(summary(&out.jsonl())["references"]["rewritten"], 0);
    assert_eq!(app.raw().await, after);

    // Rollback: every document byte-equal to before.
    let out = app.run(&["rollback", "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(app.raw().await, before, "rollback restores every byte");
}

/// A concurrent writer (a careful app: read, edit, compare-and-swap, retry) appends to each
/// string while `migrate --strings` runs: no edit is lost, and every string the run could not
/// rewrite because of an edit is a recorded conflict.
#[tokio::test]
async fn a_concurrent_writer_loses_no_edit() {
    const N: usize = 400;
    let app = App::seed("str_writer", "").await;
    let a = app.files.keys().nth(1).unwrap().clone();
    let coll = app.db.collection::<Document>("Post");
    let docs: Vec<Document> = (0..N)
        .map(|i| doc! {"_id": format!("w{i:04}"), "body": format!("w{i} {}", legacy(&a))})
        .collect();
    coll.insert_many(docs).await.unwrap();

    let config = app.config.clone();
    let run = tokio::task::spawn_blocking(move || {
        let out = app::run([
            "-c",
            config.to_str().unwrap(),
            "migrate",
            "--strings",
            "--yes",
            "--output",
            "jsonl",
        ]);
        out.assert_hides("fileKey", KEY);
        out
    });
    // Edit every string once, in a shuffled order, while the run goes on.
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by_key(|i| support::fnv1a(i.to_string()));
    for i in order {
        let id = format!("w{i:04}");
        loop {
            let d = app::find(&app.db, "Post", id.as_str()).await;
            let body = d.get_str("body").unwrap().to_string();
            let r = coll
                .update_one(
                    doc! {"_id": &id, "body": &body},
                    doc! {"$set": {"body": format!("{body} EDITED")}},
                )
                .await
                .unwrap();
            if r.matched_count == 1 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let out = run.await.unwrap();
    assert!(matches!(out.code, 0 | 3), "{}", out.stderr);
    let s = summary(&out.jsonl()).clone();
    let mut still_old = 0;
    for i in 0..N {
        let body = app.string("Post", &format!("w{i:04}").into(), "body").await;
        assert!(body.ends_with(" EDITED"), "w{i}: the edit was lost: {body}");
        assert_eq!(body.matches(" EDITED").count(), 1, "{body}");
        if body.contains(&legacy(&a)) {
            still_old += 1;
        } else {
            assert_eq!(body, format!("w{i} {} EDITED", new_url(&a)));
        }
    }
    let conflicts = s["references"]["conflicts"].as_u64().unwrap();
    eprintln!(
        "concurrent writer: {conflicts} conflicts, {still_old} strings left with the old URL"
    );
    assert_eq!(conflicts as usize, still_old, "{s}");
    assert_eq!(
        support::ledger::refs_in(&app.db, Some("conflict")).await as usize,
        still_old
    );
    // A later run rewrites what the conflicts left, keeping the edits.
    let out = app.run(&["migrate", "--strings", "--yes", "--output", "jsonl"]);
    assert!(matches!(out.code, 0 | 3), "{}", out.stderr);
    for i in 0..N {
        let body = app.string("Post", &format!("w{i:04}").into(), "body").await;
        assert_eq!(body, format!("w{i} {} EDITED", new_url(&a)));
    }
}

const OLD_BASE: &str = "https://old-api.example.com/parse";

fn old_url(name: &str) -> String {
    format!("{OLD_BASE}/files/{APP_ID}/{}", encode_uri_component(name))
}

fn current_url(name: &str) -> String {
    format!("{SERVER_URL}/files/{APP_ID}/{}", encode_uri_component(name))
}

/// `rebase`: nested File urls and URLs in strings move from `[rebase] from` to the current
/// base, nothing else changes, `rollback` restores every byte; `--check` reports current URLs
/// that do not answer.
#[tokio::test]
async fn rebase_moves_old_bases_and_rolls_back() {
    let extra = format!("\n[rebase]\nfrom = [\"{OLD_BASE}/\"]\n");
    let app = App::seed("str_rebase", &extra).await;
    let n1 = "0123456789abcdef0123456789abcdef_r one.png";
    let n2 = "0123456789abcdef0123456789abcdef_r2.png";
    let a = app.files.keys().nth(1).unwrap().clone();
    let posts = app.db.collection::<Document>("Post");
    let text = format!(
        "<img src=\"{}\"> {} {} https://old-api.example.com.evil/parse/files/{APP_ID}/x.png",
        old_url(n1),
        legacy(&a),
        current_url(n2)
    );
    posts
        .insert_many([
            doc! {"_id": "r1", "body": &text},
            doc! {"_id": "r2", "meta": {"pic": app::file(n1, Some(&old_url(n1))),
            "same": app::file(n2, Some(&current_url(n2)))}},
        ])
        .await
        .unwrap();
    let before = app.raw().await;

    let out = app.run(&["rebase", "--dry-run", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let updates = out
        .jsonl()
        .iter()
        .filter(|l| l["action"] == "update")
        .count();
    assert_eq!(updates, 2, "{}", out.stdout);
    assert_eq!(app.raw().await, before, "a dry run writes nothing");

    let out = app.run(&["rebase", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = summary(&out.jsonl()).clone();
    assert_eq!(s["references"]["rewritten"], 2, "{s}");
    assert_eq!(s["files"]["copied"], 0, "{s}");
    let body = app.string("Post", &"r1".into(), "body").await;
    assert_eq!(body, text.replace(&old_url(n1), &current_url(n1)));
    let r2 = app::find(&app.db, "Post", "r2").await;
    let meta = r2.get_document("meta").unwrap();
    let pic = meta.get_document("pic").unwrap();
    assert_eq!(pic.get_str("url").unwrap(), current_url(n1));
    assert_eq!(pic.get_str("name").unwrap(), n1);
    assert_eq!(
        meta.get_document("same").unwrap().get_str("url").unwrap(),
        current_url(n2)
    );
    // The hosted-era strings are not a rebase's business.
    for (coll, id, path, old) in &app.strings {
        assert_eq!(app.string(coll, id, path).await, *old);
    }

    // --check: the current base (api.example.com) does not answer here.
    let out = app.run(&["rebase", "--yes", "--check", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("does not answer 200"), "{}", out.stderr);

    let out = app.run(&["rollback", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(app.raw().await, before, "rollback restores every byte");
}

/// A figure, not a check run by default: `migrate --strings` over 5,000 strings naming 3 files
/// (`cargo test --test it strings::throughput -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn throughput() {
    const N: usize = 5_000;
    let app = App::seed("str_speed", "").await;
    let names: Vec<String> = app.files.keys().cloned().collect();
    let docs: Vec<Document> = (0..N)
        .map(|i| {
            let n = &names[i % names.len()];
            doc! {"_id": format!("t{i:05}"), "body": format!("<p>{i} <img src=\"{}\"></p>", legacy(n))}
        })
        .collect();
    app.db
        .collection::<Document>("Post")
        .insert_many(docs)
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let out = app.run(&["migrate", "--strings", "--yes", "--output", "jsonl"]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.code, 3, "{}", out.stderr);
    let s = summary(&out.jsonl()).clone();
    assert_eq!(s["references"]["rewritten"], N as u64 + 7, "{s}");
    eprintln!(
        "strings throughput: {N} strings rewritten in {secs:.2} s ({:.0}/s)",
        N as f64 / secs
    );
    let t = std::time::Instant::now();
    let out = app.run(&["rollback", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    eprintln!(
        "strings throughput: rollback of {N} strings in {:.2} s",
        t.elapsed().as_secs_f64()
    );
}
