//! `audit --quarantine` and `--restore` end to end through a stock Parse Server, on its default
//! (encrypted GridFS) adapter, the FS adapter and the S3 adapter (with a bucket prefix): files uploaded through the REST API, real
//! orphans made the way apps make them (a File field overwritten, an object deleted, an upload
//! never saved). After `--quarantine` Parse Server still serves every referenced file
//! byte-identical and no longer serves the quarantined ones (not under their name, and on the FS
//! adapter not under any name that maps into the quarantine directory either); after `--restore`
//! it serves them again, byte-identical.

use reqwest::Method;
use serde_json::{Value, json};

use crate::parse_server::{App, Files, ParseServer, Rest, name_of};
use crate::support::app::{self, base_tables};
use crate::support::{self, free_port};

fn url_of(file: &Value) -> String {
    file["url"].as_str().expect("File url").to_string()
}

/// `table`: the store's table (`[destination]`, or `[source.server]` with `--store server` in
/// `store`).
async fn scenario(tag: &str, files: Files, table: String, store: &[&str]) {
    let tag = support::unique(tag);
    let app = App {
        app_id: "quarantineApp".into(),
        master_key: format!("mk-{tag}-SECRET"),
        file_key: format!("fk-{tag}-SECRET"),
        database: tag.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };
    let server = ParseServer::start(&app, &files, "quarantine");
    let rest = Rest::new(&app);
    let mut uploaded = Vec::new();
    for (name, len) in [
        ("a.jpg", 1_000),
        ("b thumb.png", 2_000),
        ("c.jpg", 3_000),
        ("d.jpg", 4_000),
        ("never saved.bin", 700),
    ] {
        let data = support::bytes(len, len as u64);
        let file = rest.upload(name, "application/octet-stream", &data).await;
        uploaded.push((file, data));
    }
    let [a, b, c, d, never] = &uploaded[..] else {
        unreachable!()
    };
    let o1 = rest
        .create("Photo", json!({"image": c.0, "meta": {"thumb": b.0}}))
        .await;
    let o2 = rest.create("Photo", json!({"image": d.0})).await;
    // Real orphans: o1.image overwritten (c.jpg stays stored), o2 deleted (d.jpg stays).
    rest.send(
        "overwrite o1.image",
        rest.req(Method::PUT, &format!("/classes/Photo/{o1}"))
            .json(&json!({"image": a.0})),
    )
    .await;
    rest.send(
        "delete o2",
        rest.req(Method::DELETE, &format!("/classes/Photo/{o2}")),
    )
    .await;
    let referenced = [a, b];
    let orphans = [c, d, never];

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("q.toml");
    std::fs::write(
        &config,
        format!("{}\n{table}", base_tables(&app.database, &app.file_key)),
    )
    .unwrap();
    let c_path = config.to_str().unwrap();
    let run = |what: &[&str]| {
        let mut args = vec!["-c", c_path, "audit", "--yes", "--output", "jsonl"];
        args.extend(store);
        args.extend(what);
        app::run(args)
    };

    // Parse Server runs meanwhile (a live app); the uploads are seconds old: --min-age 0s.
    let out = run(&["--quarantine", "--min-age", "0s"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.assert_hides("fileKey", &app.file_key);
    let moved: std::collections::BTreeSet<String> = out
        .jsonl()
        .iter()
        .filter(|l| l["action"] == "quarantine" && l["outcome"] == "done")
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    let want: std::collections::BTreeSet<String> =
        orphans.iter().map(|(f, _)| name_of(f)).collect();
    assert_eq!(moved, want, "{}", out.stdout);
    for (file, data) in referenced {
        let got = rest.download(&url_of(file)).await.unwrap();
        assert!(got == *data, "{} not served byte-identical", name_of(file));
    }
    for (file, _) in orphans {
        assert!(
            rest.download(&url_of(file)).await.is_err(),
            "{} still served after the quarantine",
            name_of(file)
        );
    }
    if let Files::Fs { .. } = files {
        // Nor through a name that would point into the quarantine directory.
        let base = url_of(&c.0);
        let base = &base[..base.rfind('/').unwrap()];
        for name in [
            format!(".pfm-quarantine+/{}", name_of(&c.0)),
            format!(".pfm-quarantine%2B%2F{}", name_of(&c.0)),
        ] {
            let url = format!("{base}/{}", name.replace('/', "%2F"));
            assert!(rest.download(&url).await.is_err(), "{url} served");
        }
    }

    let out = run(&["--restore"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for (file, data) in referenced.iter().chain(&orphans) {
        let got = rest.download(&url_of(file)).await.unwrap();
        assert!(
            got == *data,
            "{} not restored byte-identical",
            name_of(file)
        );
    }
    server.stop(&app);
    let client = support::mongo_client().await;
    client.database(&app.database).drop().await.unwrap();
}

#[tokio::test]
async fn default_gridfs_adapter() {
    scenario(
        "pfm_q_ps_gfs",
        Files::Default,
        "[source.server]\ntype = \"gridfs\"\n".into(),
        &["--store", "server"],
    )
    .await;
}

#[tokio::test]
async fn fs_adapter() {
    let root = tempfile::tempdir().unwrap();
    let (files, table) = Files::fs_adapter(root.path(), "qapp");
    scenario("pfm_q_ps_fs", files, format!("[destination]\n{table}"), &[]).await;
}

#[tokio::test]
async fn s3_adapter_with_a_bucket_prefix() {
    let (files, table) = Files::s3_adapter("pfm-q-ps").await;
    scenario("pfm_q_ps_s3", files, format!("[destination]\n{table}"), &[]).await;
}
