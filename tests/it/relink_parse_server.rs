//! `relink` end to end through a stock Parse Server 9.10.0, on its default (encrypted GridFS)
//! adapter, the FS adapter and the S3 adapter with a bucket prefix. Files are uploaded through
//! the REST API; then the damage a broken `generateKey` does is made: the bytes of a referenced
//! name sit under a longer key (`gen/<name>`, `undefined/<name>`), so Parse Server answers 404.
//! A name with two candidate keys stays as it is.
//!
//! After `relink --dry-run` the database is unchanged; after `relink` Parse Server serves every
//! relinked reference (top level, through the object's own url, and nested, through the url the
//! tool wrote) byte-identical, the ambiguous reference is untouched and `audit` finds only it
//! dangling; after `rollback` the documents are byte-equal to what they were before.

use std::sync::Arc;

use serde_json::{Value, json};

use parse_files_migrate::storage::{ObjectStore, PutOptions, StoreConfig, StoreContext};

use crate::parse_server::{App, Files, ParseServer, Rest, name_of};
use crate::support;
use crate::support::app::{self, snapshot};
use crate::support::conformance::{body, read_all};

/// Move the bytes of `from` to `to` in `store` (what a `generateKey` that disagrees with
/// `getFileLocation` leaves: the object under another key than the name the app holds).
async fn misplace(store: &dyn ObjectStore, from: &str, to: &str) {
    let data = read_all(store, from).await.unwrap();
    store
        .put(to, body(&data, 1 << 12), &PutOptions::default())
        .await
        .unwrap();
    store.delete(from).await.unwrap();
}

/// `table`: the store's `[destination]` body (the store Parse Server uses).
async fn scenario(tag: &str, files: Files, table: String) {
    let app = App::fresh(tag, "relinkApp");
    let server = ParseServer::start(&app, &files, "relink");
    let rest = Rest::new(&app);
    let mut up = Vec::new();
    for (name, len) in [
        ("ok.jpg", 1_000),
        ("top.jpg", 2_000),
        ("nested thumb.png", 3_000),
        ("twice.jpg", 4_000),
    ] {
        let data = support::bytes(len, len as u64);
        let file = rest.upload(name, "application/octet-stream", &data).await;
        up.push((file, data));
    }
    let [ok, top, nested, twice] = &up[..] else {
        unreachable!()
    };
    let o1 = rest
        .create("Photo", json!({"image": ok.0, "meta": {"thumb": nested.0}}))
        .await;
    let o2 = rest.create("Photo", json!({"image": top.0})).await;
    let o3 = rest.create("Photo", json!({"image": twice.0})).await;

    // The damage, made in the store Parse Server reads (encrypted as it encrypts).
    let cfg: StoreConfig = toml::from_str(&table).unwrap();
    let ctx = StoreContext {
        mongo_uri: Some(support::uri_for(&app.database).into()),
        database: Some(app.database.clone()),
        file_key: Some(app.file_key.clone().into()),
        app_id: Some(app.app_id.clone()),
    };
    let store: Arc<dyn ObjectStore> = parse_files_migrate::storage::open(&cfg, &ctx)
        .await
        .unwrap();
    let (top_name, nested_name, twice_name) =
        (name_of(&top.0), name_of(&nested.0), name_of(&twice.0));
    misplace(&*store, &top_name, &format!("gen/{top_name}")).await;
    misplace(&*store, &nested_name, &format!("undefined/{nested_name}")).await;
    let twice_data = read_all(&*store, &twice_name).await.unwrap();
    store
        .put(
            &format!("a/{twice_name}"),
            body(&twice_data, 4096),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    misplace(&*store, &twice_name, &format!("b/{twice_name}")).await;
    let url_of = |f: &Value| f["url"].as_str().unwrap().to_string();
    assert!(rest.download(&url_of(&top.0)).await.is_err(), "damage made");

    let dir = tempfile::tempdir().unwrap();
    let config = app.tool_config(dir.path(), &table);
    let c = config.to_str().unwrap();
    let db = support::mongo_client().await.database(&app.database);
    let photos =
        |s: &std::collections::BTreeMap<String, Vec<mongodb::bson::Document>>| s["Photo"].clone();
    let before = photos(&snapshot(&db).await);

    let dry = app::run(["-c", c, "relink", "--dry-run", "--output", "jsonl"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(
        photos(&snapshot(&db).await),
        before,
        "a dry run changes nothing"
    );
    dry.assert_hides("fileKey", &app.file_key);

    let out = app::run(["-c", c, "relink", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.assert_hides("fileKey", &app.file_key);
    let summary = out.summary();
    assert_eq!(summary["references"]["rewritten"], 2, "{summary}");
    let left = summary["missing"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{summary}");
    assert_eq!(left[0]["name"], twice_name.as_str(), "{summary}");
    assert!(
        left[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("ambiguous: 2"),
        "{summary}"
    );

    // Parse Server serves the relinked files: the top-level one through the url it builds itself,
    // the nested one through the url the tool wrote.
    let get = |id: String| {
        let rest = &rest;
        async move { rest.get_object("Photo", &id).await }
    };
    let p2 = get(o2.clone()).await;
    assert_eq!(
        p2["image"]["name"],
        format!("gen/{top_name}").as_str(),
        "{p2}"
    );
    let got = rest.download(&url_of(&p2["image"])).await.unwrap();
    assert!(
        got == top.1,
        "the relinked top-level file is served byte-identical"
    );
    let p1 = get(o1.clone()).await;
    let thumb = &p1["meta"]["thumb"];
    assert_eq!(
        thumb["name"],
        format!("undefined/{nested_name}").as_str(),
        "{p1}"
    );
    let got = rest.download(&url_of(thumb)).await.unwrap();
    assert!(
        got == nested.1,
        "the relinked nested file is served byte-identical"
    );
    assert!(rest.download(&url_of(&p1["image"])).await.unwrap() == ok.1);
    let p3 = get(o3.clone()).await;
    assert_eq!(
        p3["image"]["name"],
        twice_name.as_str(),
        "ambiguous: untouched"
    );

    // Only the ambiguous reference is still dangling.
    let audit = app::run(["-c", c, "audit", "--output", "jsonl"]);
    let (_, dangling) = crate::audit::findings(&audit.jsonl());
    let names: Vec<&str> = dangling.iter().map(|d| d.3.as_str()).collect();
    assert_eq!(names, [twice_name.as_str()], "{}", audit.stdout);

    // A second relink finds nothing more to do.
    let again = app::run(["-c", c, "relink", "--yes", "--output", "jsonl"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.summary()["references"]["rewritten"], 0);

    // Rollback puts the dangling names back, byte for byte.
    let back = app::run(["-c", c, "rollback", "--yes", "--output", "jsonl"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(
        photos(&snapshot(&db).await),
        before,
        "rollback restores the documents"
    );

    server.stop(&app);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn default_gridfs_adapter() {
    scenario("pfm_rl_gfs", Files::Default, "type = \"gridfs\"\n".into()).await;
}

#[tokio::test]
async fn fs_adapter() {
    let root = tempfile::tempdir().unwrap();
    let (files, table) = Files::fs_adapter(root.path(), "rlapp");
    scenario("pfm_rl_fs", files, table).await;
}

#[tokio::test]
async fn s3_adapter_with_a_bucket_prefix() {
    let (files, table) = Files::s3_adapter("pfm-rl").await;
    scenario("pfm_rl_s3", files, table).await;
}
