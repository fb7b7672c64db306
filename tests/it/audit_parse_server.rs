//! `audit` end to end through a stock Parse Server 9.10.0 on its default (encrypted GridFS)
//! adapter: files uploaded through the REST API, then real orphans made the way apps make them —
//! an object deleted, a File field overwritten, an upload never saved in an object — and
//! references pointed at absent names (top level and nested). `audit` must report exactly those.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::parse_server::{App, Files, ParseServer, Rest, name_of};
use crate::support::app::{self, base_tables};
use crate::support::{self, free_port};

#[tokio::test]
async fn reports_the_orphans_and_dangling_references_an_app_made() {
    let tag = support::unique("pfm_audit_ps");
    let app = App {
        app_id: "auditApp".into(),
        master_key: format!("mk-{tag}-SECRET"),
        file_key: format!("fk-{tag}-SECRET"),
        database: tag.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };
    let server = ParseServer::start(&app, &Files::Default, "audit");
    let rest = Rest::new(&app);

    let mut sizes = std::collections::BTreeMap::new();
    let mut upload = async |name: &str, len: usize| -> Value {
        let file = rest
            .upload(
                name,
                "application/octet-stream",
                &support::bytes(len, len as u64),
            )
            .await;
        sizes.insert(name_of(&file), len as u64);
        file
    };
    let a = upload("a.jpg", 1_000).await;
    let b = upload("b thumb.png", 2_000).await;
    let c = upload("c.jpg", 3_000).await;
    let d = upload("d.jpg", 4_000).await;
    let e = upload("e.jpg", 5_000).await;
    let logo = upload("logo.svg", 600).await;
    let never_saved = upload("never saved.bin", 700).await;

    let o1 = rest
        .create("Photo", json!({"image": a, "meta": {"thumb": b}}))
        .await;
    let o2 = rest.create("Photo", json!({"image": c})).await;
    let o3 = rest.create("Photo", json!({"image": d})).await;
    let o4 = rest.create("Photo", json!({"image": e})).await;
    rest.put_config(json!({"logo": logo})).await;

    // What apps do: overwrite a File field (a.jpg stays stored), delete an object (d.jpg stays).
    let put = |id: &str, body: Value| {
        rest.req(Method::PUT, &format!("/classes/Photo/{id}"))
            .json(&body)
    };
    rest.send("overwrite o1.image", put(&o1, json!({"image": e})))
        .await;
    rest.send(
        "delete o3",
        rest.req(Method::DELETE, &format!("/classes/Photo/{o3}")),
    )
    .await;
    // References to names no store holds: top level and nested.
    let gone = "0123456789abcdef0123456789abcdef_gone.jpg";
    let gone_nested = "0123456789abcdef0123456789abcdef_gone thumb.png";
    rest.send(
        "point o2.image at nothing",
        put(&o2, json!({"image": {"__type": "File", "name": gone}})),
    )
    .await;
    rest.send(
        "point o1.meta.thumb at nothing",
        put(
            &o1,
            json!({"meta": {"thumb": {"__type": "File", "name": gone_nested}}}),
        ),
    )
    .await;
    server.stop(&app);

    // The app's store: Parse Server's default GridFS bucket in the app database (encrypted with
    // fileKey; the audit only lists it).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[destination]\ntype = \"gridfs\"\n",
            base_tables(&app.database, &app.file_key)
        ),
    )
    .unwrap();
    let out = app::run(["-c", config.to_str().unwrap(), "audit", "--output", "jsonl"]);
    assert_eq!(out.code, 6, "{}\n{}", out.stdout, out.stderr);
    out.assert_hides("fileKey", &app.file_key);
    let lines = out.jsonl();
    let (orphans, dangling) = crate::audit::findings(&lines);
    // Stored sizes: the content plus Parse's 32-byte encryption trailer (IV and tag).
    let want: BTreeSet<(String, u64)> = [&a, &b, &c, &d, &never_saved]
        .iter()
        .map(|f| (name_of(f), sizes[&name_of(f)] + 32))
        .collect();
    assert_eq!(orphans, want, "{}", out.stdout);
    let want: BTreeSet<crate::audit::Dangling> = [
        ("Photo", o2.as_str(), "image", gone),
        ("Photo", o1.as_str(), "meta.thumb", gone_nested),
    ]
    .iter()
    .map(|(c, o, p, n)| (c.to_string(), o.to_string(), p.to_string(), n.to_string()))
    .collect();
    assert_eq!(dangling, want, "{}", out.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["finding"], "summary");
    // e.jpg (o1 and o4: shared) and the Config logo are referenced.
    assert_eq!(summary["stored_files"], 7, "{summary}");
    assert_eq!(summary["referenced_files"], 2, "{summary}");
    assert_eq!(summary["shared_files"], 1, "{summary}");
    assert_eq!(summary["superseded_versions"], 0, "{summary}");
    let _ = o4;
    let client = support::mongo_client().await;
    client.database(&app.database).drop().await.unwrap();
}
