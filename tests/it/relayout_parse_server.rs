//! `relayout` end to end through a stock Parse Server 9.10.0, on its GridFS adapter (encrypted,
//! its default, and plain), the FS adapter and the S3 adapter with a bucket prefix (where the copies are made by
//! the S3 server): files uploaded and objects created through the REST API; after `relayout
//! --template '{class}/{yyyy}/{name}'` Parse Server serves every reference's new name (top
//! level through the url it builds, nested through the url the tool wrote) byte-identical,
//! `verify` is clean, and after `rollback` the documents are byte-equal to what they were.

use serde_json::{Value, json};

use crate::parse_server::{App, Files, ParseServer, Rest, name_of};
use crate::support;
use crate::support::app::{self, snapshot};

/// `table`: the store's `[destination]` body (the store Parse Server uses); `server_side`:
/// whether its copies are made without the bytes passing through the tool (S3's server, an fs
/// hard link).
async fn scenario(tag: &str, files: Files, table: String, server_side: bool) {
    let app = App::fresh(tag, "layoutApp");
    let server = ParseServer::start(&app, &files, "relayout");
    let rest = Rest::new(&app);
    let mut up = Vec::new();
    for (name, len) in [("a.jpg", 1_000), ("thumb b.png", 2_000), ("c.jpg", 3_000)] {
        let data = support::bytes(len, len as u64);
        let file = rest.upload(name, "application/octet-stream", &data).await;
        up.push((file, data));
    }
    let [a, thumb, c] = &up[..] else {
        unreachable!()
    };
    let o1 = rest
        .create("Photo", json!({"image": a.0, "meta": {"thumb": thumb.0}}))
        .await;
    let o2 = rest.create("Album", json!({"cover": c.0})).await;

    let dir = tempfile::tempdir().unwrap();
    let config = app.tool_config(dir.path(), &table);
    let cfg = config.to_str().unwrap();
    let db = support::mongo_client().await.database(&app.database);
    let classes = |s: &std::collections::BTreeMap<String, Vec<mongodb::bson::Document>>| {
        (s["Photo"].clone(), s["Album"].clone())
    };
    let before = classes(&snapshot(&db).await);

    let template = "{class}/{yyyy}/{name}";
    let out = app::run([
        "-c",
        cfg,
        "relayout",
        "--template",
        template,
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.assert_hides("fileKey", &app.file_key);
    let s = out.summary();
    assert_eq!(s["files"]["copied"], 3, "{s}");
    assert_eq!(s["references"]["rewritten"], 3, "{s}");
    let made = s["files"]["server_side"].as_u64().unwrap_or(0);
    assert_eq!(made, if server_side { 3 } else { 0 }, "{s}");

    let year = |f: &Value| {
        f["name"]
            .as_str()
            .unwrap()
            .split('/')
            .nth(1)
            .unwrap()
            .to_string()
    };
    let url_of = |f: &Value| f["url"].as_str().unwrap().to_string();
    let p1 = rest.get_object("Photo", &o1).await;
    let image = &p1["image"];
    assert_eq!(
        image["name"],
        format!("Photo/{}/{}", year(image), name_of(&a.0)).as_str(),
        "{p1}"
    );
    assert!(
        rest.download(&url_of(image)).await.unwrap() == a.1,
        "served by its new name"
    );
    let t = &p1["meta"]["thumb"];
    assert!(t["name"].as_str().unwrap().starts_with("Photo/"), "{p1}");
    assert!(
        rest.download(&url_of(t)).await.unwrap() == thumb.1,
        "nested, by the tool's url"
    );
    let al = rest.get_object("Album", &o2).await;
    assert!(
        al["cover"]["name"].as_str().unwrap().starts_with("Album/"),
        "{al}"
    );
    assert!(rest.download(&url_of(&al["cover"])).await.unwrap() == c.1);

    let verify = app::run(["-c", cfg, "verify", "--output", "jsonl"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);

    let back = app::run(["-c", cfg, "rollback", "--yes", "--output", "jsonl"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(
        classes(&snapshot(&db).await),
        before,
        "rollback restores the documents"
    );
    let p1 = rest.get_object("Photo", &o1).await;
    assert!(rest.download(&url_of(&p1["image"])).await.unwrap() == a.1);

    server.stop(&app);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn default_gridfs_adapter() {
    scenario(
        "pfm_rlo_gfs",
        Files::Default,
        "type = \"gridfs\"\n".into(),
        false,
    )
    .await;
}

#[tokio::test]
async fn plain_gridfs_adapter() {
    scenario(
        "pfm_rlo_gfsp",
        Files::GridfsPlain,
        "type = \"gridfs\"\nencryption = \"none\"\n".into(),
        false,
    )
    .await;
}

#[tokio::test]
async fn fs_adapter() {
    let root = tempfile::tempdir().unwrap();
    let (files, table) = Files::fs_adapter(root.path(), "rloapp");
    // The FS adapter's directory is one store: its copies are hard links.
    scenario("pfm_rlo_fs", files, table, true).await;
}

#[tokio::test]
async fn s3_adapter_with_a_bucket_prefix() {
    let (files, table) = Files::s3_adapter("pfm-rlo").await;
    scenario("pfm_rlo_s3", files, table, true).await;
}
