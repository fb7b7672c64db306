//! `schema` and `list` against the real MongoDB-wire server, on databases shaped the way hosted
//! Parse and Parse Server leave them.

use std::collections::BTreeSet;

use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use serde_json::Value;

use crate::support::app::{self, bin, jsonl};
use crate::support::{self, uri_for};

const UUID: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
const FILE_KEY: &str = "fk-discovery-SECRET";

fn tfss(n: &str) -> String {
    format!("tfss-{UUID}-{n}")
}

/// A hosted File object with its `url` at files.parsetfss.com.
fn file(name: &str) -> Document {
    app::file(name, Some(&app::tfss_url(FILE_KEY, name)))
}

/// One expected row: (class, object_id, path, name, kind, nested).
type Row = (String, String, String, String, String, bool);

fn row(class: &str, id: &str, path: &str, name: &str, kind: &str, nested: bool) -> Row {
    (
        class.into(),
        id.into(),
        path.into(),
        name.into(),
        kind.into(),
        nested,
    )
}

/// Build an app database; returns the references that exist in it.
async fn seed(db: &mongodb::Database, prefix: &str) -> BTreeSet<Row> {
    let c = |n: &str| db.collection::<Document>(&format!("{prefix}{n}"));
    c("_SCHEMA")
        .insert_many([
            doc! {"_id": "Photo", "objectId": "string", "createdAt": "date", "image": "file",
            "thumb": "file", "meta": "object", "gallery": "array", "owner": "*_User",
            "_metadata": {"class_permissions": {}}},
            doc! {"_id": "_User", "objectId": "string", "avatar": "file", "username": "string"},
            doc! {"_id": "Empty", "objectId": "string", "title": "string"},
            doc! {"_id": "_GlobalConfig", "params": "object"},
            doc! {"_id": 12, "junk": "file"},
        ])
        .await
        .unwrap();
    let oid = ObjectId::parse_str("64b7f0a1c2d3e4f5a6b7c8d9").unwrap();
    let server = "0123456789abcdef0123456789abcdef_server.png";
    c("Photo")
        .insert_many([
            // Parse Server format: string _id, bare names at top level.
            doc! {"_id": "aaaaaaaaaa", "image": tfss("a.jpg"), "thumb": format!("{UUID}-t.png"),
            "meta": {"avatar": file(&tfss("avatar.png")), "deep": {"list": [file(server)]}},
            "gallery": [file(&tfss("g0.jpg")), Bson::Null, 5, file("mfp_0123x.jpg"),
                        [file("nested-array.bin")]]},
            doc! {"_id": "bbbbbbbbbb", "image": Bson::Null, "gallery": []},
            doc! {"_id": "cccccccccc", "image": "plain name.txt", "_p_owner": "_User$u1"},
            // Imported data: ObjectId, integer and long _ids in the same collection.
            doc! {"_id": oid, "image": format!("{UUID}_uuid-server.jpg")},
            doc! {"_id": 7, "image": tfss("int-id.jpg")},
            doc! {"_id": 9_000_000_000i64, "thumb": tfss("long-id.jpg")},
            doc! {"_id": 3.5, "image": tfss("double-id.jpg")},
            // Malformed: reported, not listed, not fatal.
            doc! {"_id": "dddddddddd", "image": 42, "thumb": "", "meta": {"x": {"__type": "File"}},
            "gallery": [{"__type": "File", "name": 3}]},
            // A top-level File object (accepted defensively).
            doc! {"_id": "eeeeeeeeee", "image": file(&tfss("obj.jpg"))},
        ])
        .await
        .unwrap();
    c("_User")
        .insert_many([
            doc! {"_id": "u1", "avatar": tfss("a.jpg"), "_hashed_password": "x"},
            doc! {"_id": "u2"},
        ])
        .await
        .unwrap();
    c("Empty")
        .insert_one(doc! {"_id": "e1", "title": "t"})
        .await
        .unwrap();
    c("_GlobalConfig")
        .insert_one(doc! {"_id": 1, "params": {"logo": file(&tfss("logo.png")),
        "screens": [{"hero": file("cfg-hero.png")}], "n": 3}})
        .await
        .unwrap();
    [
        row(
            "Photo",
            "aaaaaaaaaa",
            "image",
            &tfss("a.jpg"),
            "parse-hosted",
            false,
        ),
        row(
            "Photo",
            "aaaaaaaaaa",
            "thumb",
            &format!("{UUID}-t.png"),
            "parse-legacy",
            false,
        ),
        row(
            "Photo",
            "aaaaaaaaaa",
            "meta.avatar",
            &tfss("avatar.png"),
            "parse-hosted",
            true,
        ),
        row(
            "Photo",
            "aaaaaaaaaa",
            "meta.deep.list.0",
            server,
            "parse-server",
            true,
        ),
        row(
            "Photo",
            "aaaaaaaaaa",
            "gallery.0",
            &tfss("g0.jpg"),
            "parse-hosted",
            true,
        ),
        row(
            "Photo",
            "aaaaaaaaaa",
            "gallery.3",
            "mfp_0123x.jpg",
            "migrated",
            true,
        ),
        row(
            "Photo",
            "aaaaaaaaaa",
            "gallery.4.0",
            "nested-array.bin",
            "other",
            true,
        ),
        row(
            "Photo",
            "cccccccccc",
            "image",
            "plain name.txt",
            "other",
            false,
        ),
        row(
            "Photo",
            &oid.to_hex(),
            "image",
            &format!("{UUID}_uuid-server.jpg"),
            "parse-server",
            false,
        ),
        row(
            "Photo",
            "7",
            "image",
            &tfss("int-id.jpg"),
            "parse-hosted",
            false,
        ),
        row(
            "Photo",
            "9000000000",
            "thumb",
            &tfss("long-id.jpg"),
            "parse-hosted",
            false,
        ),
        row(
            "Photo",
            "3.5",
            "image",
            &tfss("double-id.jpg"),
            "parse-hosted",
            false,
        ),
        row(
            "Photo",
            "eeeeeeeeee",
            "image",
            &tfss("obj.jpg"),
            "parse-hosted",
            false,
        ),
        row(
            "_User",
            "u1",
            "avatar",
            &tfss("a.jpg"),
            "parse-hosted",
            false,
        ),
        row(
            "_GlobalConfig",
            "1",
            "params.logo",
            &tfss("logo.png"),
            "parse-hosted",
            true,
        ),
        row(
            "_GlobalConfig",
            "1",
            "params.screens.0.hero",
            "cfg-hero.png",
            "other",
            true,
        ),
    ]
    .into_iter()
    .collect()
}

fn rows(values: &[Value]) -> BTreeSet<Row> {
    values
        .iter()
        .map(|v| {
            row(
                v["class"].as_str().unwrap(),
                v["object_id"].as_str().unwrap(),
                v["path"].as_str().unwrap(),
                v["name"].as_str().unwrap(),
                v["kind"].as_str().unwrap(),
                v["nested"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn list_exact(prefix: &str) {
    let client = support::mongo_client().await;
    let name = support::unique("disc");
    let db = client.database(&name);
    let expected = seed(&db, prefix).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // page_size 2 forces many keyset pages, across every _id type bracket.
    std::fs::write(
        &cfg,
        format!("[mongo]\npage_size = 2\ncollection_prefix = {prefix:?}\n"),
    )
    .unwrap();
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "--mongo-uri", &uri_for(&name)])
        .args(["--file-key", FILE_KEY, "list", "--output", "jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let values = jsonl(&out.stdout);
    let got = rows(&values);
    assert_eq!(values.len(), got.len(), "no duplicate rows");
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );
    // target names: hosted kinds renamed deterministically, the others kept.
    for v in &values {
        let (name, target) = (
            v["name"].as_str().unwrap(),
            v["target_name"].as_str().unwrap(),
        );
        let hosted = matches!(v["kind"].as_str(), Some("parse-hosted" | "parse-legacy"));
        assert_eq!(hosted, name != target, "{v}");
        if hosted {
            assert!(
                target.len() > 33 && target.as_bytes()[32] == b'_',
                "{target}"
            );
        }
        assert_eq!(v["status"], "pending");
        // Where the bytes come from: the hosted-Parse URL (fileKey as a placeholder, never the
        // key); no [source.server] is configured, so other kinds have none.
        let encoded = name.replace(' ', "%20");
        let want = match v["kind"].as_str() {
            Some("parse-hosted") => {
                Some(format!("http://files.parsetfss.com/{{file_key}}/{encoded}"))
            }
            Some("parse-legacy") => Some(format!("http://files.parse.com/{{file_key}}/{encoded}")),
            _ => None,
        };
        assert_eq!(v["source"].as_str().map(str::to_string), want, "{v}");
    }
    // Malformed values are reported with class, object id and path.
    for path in ["path=image", "path=thumb", "path=meta.x", "path=gallery.0"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("object_id=dddddddddd") && l.contains(path)),
            "no warning for {path}: {stderr}"
        );
    }
    assert!(
        stderr.contains("_SCHEMA"),
        "junk _SCHEMA document reported: {stderr}"
    );
    // The fileKey never shows.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(FILE_KEY));
    assert!(!stderr.contains(FILE_KEY));
    client.database(&name).drop().await.unwrap();
}

#[tokio::test]
async fn list_returns_exactly_the_references_without_prefix() {
    list_exact("").await;
}

#[tokio::test]
async fn list_returns_exactly_the_references_with_prefix() {
    list_exact("test_").await;
}

#[tokio::test]
async fn list_filters_fail_on_and_formats() {
    let client = support::mongo_client().await;
    let name = support::unique("disc");
    seed(&client.database(&name), "").await;
    let uri = uri_for(&name);
    let run = |args: &[&str]| {
        bin()
            .arg("--mongo-uri")
            .arg(&uri)
            .args(args)
            .output()
            .unwrap()
    };

    let out = run(&["list", "--output", "jsonl", "--kind", "parse-legacy"]);
    let v = jsonl(&out.stdout);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["path"], "thumb");

    let out = run(&["list", "--output", "jsonl", "--class", "_GlobalConfig"]);
    assert_eq!(jsonl(&out.stdout).len(), 2);

    let out = run(&["list", "--output", "jsonl", "--field", "Photo.gallery"]);
    assert_eq!(jsonl(&out.stdout).len(), 3);

    let out = run(&["list", "--output", "jsonl", "--no-nested"]);
    let v = jsonl(&out.stdout);
    assert!(
        v.iter().all(|r| r["nested"] == false) && v.len() == 9,
        "{v:?}"
    );

    // CI gate: exit 3 while any listed reference is of a failing kind; 0 when none is.
    assert_eq!(
        run(&["list", "--fail-on", "parse-hosted,parse-legacy"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        run(&["list", "--kind", "other", "--fail-on", "parse-hosted"])
            .status
            .code(),
        Some(0)
    );

    let out = run(&["list", "--output", "csv", "--class", "_User"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("class,object_id,path,name,kind,nested,source,target_name,status,in_string,url")
    );
    assert!(lines.next().unwrap().starts_with("_User,u1,avatar,tfss-"));
    assert_eq!(lines.next(), None);

    let out = run(&["list", "--output", "table", "--class", "_User"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("CLASS") && text.contains("parse-hosted"),
        "{text}"
    );
    client.database(&name).drop().await.unwrap();
}

#[tokio::test]
async fn schema_counts_fields_and_nested_paths() {
    let client = support::mongo_client().await;
    let name = support::unique("disc");
    seed(&client.database(&name), "p_").await;
    let out = bin()
        .args(["--mongo-uri", &uri_for(&name), "--collection-prefix", "p_"])
        .args(["schema", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_collection"], "p__SCHEMA");
    assert_eq!(v["total_references"], 16);
    let class = |n: &str| {
        v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == n)
            .unwrap_or_else(|| panic!("no class {n} in {v}"))
            .clone()
    };
    let photo = class("Photo");
    assert_eq!(photo["objects"], 9);
    assert_eq!(photo["file_fields"]["image"], 6);
    assert_eq!(photo["file_fields"]["thumb"], 2);
    assert_eq!(photo["nested_paths"]["gallery.*"], 2);
    assert_eq!(photo["nested_paths"]["gallery.*.*"], 1);
    assert_eq!(photo["nested_paths"]["meta.deep.list.*"], 1);
    assert_eq!(photo["issues"], 4);
    assert_eq!(
        class("_GlobalConfig")["nested_paths"]["params.screens.*.hero"],
        1
    );
    assert_eq!(class("Empty")["objects"], 1);
    assert!(v["explanation"].is_null());
    client.database(&name).drop().await.unwrap();
}

#[tokio::test]
async fn schema_explains_an_empty_result() {
    let client = support::mongo_client().await;
    let name = support::unique("disc");
    seed(&client.database(&name), "app_").await;
    // Wrong prefix: says which _SCHEMA collections exist and what to pass.
    let out = bin()
        .args([
            "--mongo-uri",
            &uri_for(&name),
            "schema",
            "--output",
            "table",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("no collection \"_SCHEMA\""), "{text}");
    assert!(text.contains("--collection-prefix \"app_\""), "{text}");
    // A schema without File fields.
    let other = support::unique("disc");
    let db = client.database(&other);
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Note", "title": "string"})
        .await
        .unwrap();
    let out = bin()
        .args([
            "--mongo-uri",
            &uri_for(&other),
            "schema",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["explanation"]
            .as_str()
            .unwrap()
            .contains("none has a File field"),
        "{v}"
    );
    client.database(&name).drop().await.unwrap();
    client.database(&other).drop().await.unwrap();
}

#[tokio::test]
async fn list_and_schema_write_nothing() {
    let client = support::mongo_client().await;
    let name = support::unique("disc");
    let db = client.database(&name);
    seed(&db, "").await;
    let before = app::snapshot(&db).await;
    for cmd in [["list", "--output=jsonl"], ["schema", "--output=json"]] {
        let out = bin()
            .args(["--mongo-uri", &uri_for(&name)])
            .args(cmd)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
    assert!(
        before == app::snapshot(&db).await,
        "a read-only command changed the database"
    );
    db.drop().await.unwrap();
}

/// A walk reads each `_id` type bracket through one sorted cursor; a cursor the server loses
/// mid-walk (killed here, as a timeout or a failover would) is reopened from the last `_id`
/// read: every object is still seen exactly once, across mixed `_id` types.
#[tokio::test]
async fn a_walk_survives_a_lost_cursor() {
    use parse_files_migrate::parse::schema::ClassSchema;
    use parse_files_migrate::scan::{ClassWalker, WalkOptions};
    let client = support::mongo_client().await;
    let name = support::unique("disc_cursor");
    let db = client.database(&name);
    let mut docs: Vec<Document> = (0..95)
        .map(|i| doc! {"_id": format!("s{i:03}"), "image": format!("f{i}.png")})
        .collect();
    docs.extend((0..25).map(|i| doc! {"_id": i, "image": format!("n{i}.png")}));
    docs.extend((0..12).map(|i| doc! {"_id": ObjectId::new(), "image": format!("o{i}.png")}));
    db.collection::<Document>("Photo")
        .insert_many(docs)
        .await
        .unwrap();
    let class = ClassSchema {
        name: "Photo".into(),
        file_fields: vec!["image".into()],
        container_fields: vec![],
    };
    let opts = WalkOptions {
        page_size: 10,
        nested: true,
    };
    let mut walker = ClassWalker::new(db.collection("Photo"), class, opts);
    let mut seen = Vec::new();
    let mut killed = 0;
    let mut pages = 0;
    while let Some(page) = walker.next_page().await.unwrap() {
        pages += 1;
        seen.extend(page.refs.into_iter().map(|r| r.name));
        if pages % 3 == 1 {
            // Kill every idle cursor over this collection: the walker's.
            let ops = client
                .database("admin")
                .run_command(doc! {"currentOp": 1, "idleCursors": true})
                .await
                .unwrap();
            let ns = format!("{name}.Photo");
            let ids: Vec<Bson> = ops
                .get_array("inprog")
                .unwrap()
                .iter()
                .filter_map(|o| o.as_document())
                .filter(|o| o.get_str("ns") == Ok(ns.as_str()))
                .filter_map(|o| o.get("cursorId").cloned())
                .collect();
            if !ids.is_empty() {
                killed += ids.len();
                db.run_command(doc! {"killCursors": "Photo", "cursors": ids})
                    .await
                    .unwrap();
            }
        }
    }
    assert!(killed >= 3, "the test killed cursors mid-walk: {killed}");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 132, "each object once: {seen:?}");
    assert_eq!(unique.len(), 132);
    db.drop().await.unwrap();
}
