//! `serve` in front of a stock Parse Server 9.10.0 (`scripts/parse-server`): files uploaded
//! while Parse Server used its old adapter, then Parse Server restarted with the new one and the
//! gateway in front of it with the old store as `[source.server]`. Through the gateway every file
//! is served byte-identical (Parse Server answers after the copy), a Range request gets what
//! Parse Server gives directly, HEAD of a file not copied yet answers without copying, a DELETE
//! is honoured, a name Cloud Code's `beforeFind(Parse.File)` denies is refused as directly (and
//! not copied); afterwards Parse Server serves the copied files by itself, `migrate` finds nothing
//! left to copy and `verify` is clean. Three moves: GridFS (encrypted with `fileKey`, Parse's
//! default) → S3 with a bucket prefix, the FS adapter → GridFS (encrypted), and an old server's
//! files over HTTP → the FS adapter. 32 concurrent misses of one name read the old store once
//! (counted by a tap in front of it, where there is one).

use mongodb::bson::doc;
use serde_json::json;

use crate::parse_server::{App, Files, ParseServer, Rest};
use crate::support::gateway::Gateway;
use crate::support::wiretap::Tap;
use crate::support::{self, free_port, uri_for};

#[tokio::test]
async fn gridfs_to_s3_through_a_stock_parse_server() {
    let bucket = support::s3::fresh_bucket("pfm-serve-ps").await;
    let s3 = Files::S3 {
        bucket: bucket.clone(),
        prefix: "parse/".into(),
    };
    let table = format!(
        "{}prefix = \"parse/\"\nforce_path_style = true\n",
        support::s3::table(&bucket, &support::s3::endpoint())
    );
    through_the_gateway(Files::Default, "type = \"gridfs\"\n", s3, &table, None).await;
}

#[tokio::test]
async fn fs_to_encrypted_gridfs_through_a_stock_parse_server() {
    let root = tempfile::tempdir().unwrap();
    let fs = Files::Fs {
        root: root.path().to_path_buf(),
        subdir: "serveApp".into(),
        encrypted: false,
    };
    let old = format!(
        "type = \"fs\"\npath = {:?}\n",
        root.path().join("files").join("serveApp").to_str().unwrap()
    );
    // Parse Server's default adapter encrypts with fileKey; so does the GridFS store.
    through_the_gateway(fs, &old, Files::Default, "type = \"gridfs\"\n", None).await;
}

#[tokio::test]
async fn an_old_server_over_http_to_the_fs_adapter_through_a_stock_parse_server() {
    // The old store is an HTTP server that serves `<base>/files/<appId>/<name>` (an old Parse
    // deployment still answering, or its files behind nginx): here nginx, over the directory
    // the FS adapter wrote (`files/<appId>/<encoded name>` under its root).
    let dir = support::unique("serve_http");
    let root = std::path::PathBuf::from(support::env("PFM_TEST_HTTP_ROOT")).join(&dir);
    let fs = Files::Fs {
        root: root.clone(),
        subdir: "serveApp".into(),
        encrypted: false,
    };
    // A tap in front of nginx counts the old store's reads.
    let nginx = support::env("PFM_TEST_HTTP_URL");
    let tap = Tap::start(nginx.trim_start_matches("http://")).await;
    let old = format!("type = \"http\"\nserver_url = \"{}/{dir}\"\n", tap.url());
    // The new adapter: the FS adapter in a directory of its own.
    let new_root = tempfile::tempdir().unwrap();
    let new = Files::Fs {
        root: new_root.path().to_path_buf(),
        subdir: "serveApp".into(),
        encrypted: false,
    };
    let new_table = format!(
        "type = \"fs\"\npath = {:?}\n",
        new_root
            .path()
            .join("files")
            .join("serveApp")
            .to_str()
            .unwrap()
    );
    through_the_gateway(fs, &old, new, &new_table, Some(&tap)).await;
    let _ = std::fs::remove_dir_all(root);
}

/// Upload through Parse Server on `old` (the store `old_table` reads), switch it to `new` (which
/// `new_table` writes), and check everything through the gateway, then without it. `reads`, a tap
/// in front of the old store, counts its reads: 32 concurrent misses of one name read it once.
async fn through_the_gateway(
    old: Files,
    old_table: &str,
    new: Files,
    new_table: &str,
    reads: Option<&Tap>,
) {
    let client = support::mongo_client().await;
    let database = support::unique("ps_serve");
    let db = client.database(&database);
    let tag = support::unique("k");
    let app = App {
        app_id: "serveApp".into(),
        master_key: format!("mk-{tag}-SECRET"),
        file_key: format!("fk-{tag}-SECRET"),
        database: database.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };

    // Cloud Code on both servers: a file trigger that denies every name containing "secret".
    let work = tempfile::tempdir().unwrap();
    let cloud = work.path().join("cloud.js");
    std::fs::write(
        &cloud,
        "Parse.Cloud.beforeFind(Parse.File, req => {\n\
           if (req.file.name().includes('secret')) {\n\
             throw new Parse.Error(Parse.Error.OPERATION_FORBIDDEN, 'denied by a file trigger');\n\
           }\n\
         });\n",
    )
    .unwrap();
    let cloud_args = [std::ffi::OsStr::new("--cloud"), cloud.as_os_str()];

    // a. The old adapter.
    let server = ParseServer::start_with(&app, &old, "serve-source", &cloud_args);
    let rest = Rest::new(&app);
    let mut files = Vec::new();
    for (i, (name, ct, len)) in [
        ("notes.txt", "text/plain", 1_000usize),
        ("clip.bin", "application/octet-stream", 600_000),
        ("pic.png", "image/png", 40_000),
        ("gone.txt", "text/plain", 10),
    ]
    .into_iter()
    .enumerate()
    {
        let data = support::bytes(len, 100 + i as u64);
        let file = rest.upload(name, ct, &data).await;
        files.push((file["name"].as_str().unwrap().to_string(), data));
    }
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let secret = rest
        .upload("secret.txt", "text/plain", b"for nobody's eyes")
        .await;
    let secret = secret["name"].as_str().unwrap().to_string();
    rest.create(
        "Photo",
        json!({"image": {"__type": "File", "name": names[0]}}),
    )
    .await;
    server.stop(&app);

    // b. Parse Server now on the new adapter; the gateway in front of it.
    let server = ParseServer::start_with(&app, &new, "serve-destination", &cloud_args);
    let cfg = work.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mongo]\nuri = {uri:?}\n\n[parse]\napp_id = {app_id:?}\nfile_key = {file_key:?}\n\
             public_server_url = {public:?}\n\n[source.server]\n{old_table}\n\
             [destination]\n{new_table}\n\
             [output]\nprogress = \"never\"\n",
            uri = uri_for(&database),
            app_id = app.app_id,
            file_key = app.file_key,
            public = app.server_url(),
        ),
    )
    .unwrap();
    let upstream = format!("http://127.0.0.1:{}", app.port);
    let direct = |name: &str| format!("{}/files/{}/{name}", app.server_url(), app.app_id);
    let http = reqwest::Client::new();
    let r = http.get(direct(&names[0])).send().await.unwrap();
    assert_eq!(r.status(), 404, "Parse Server alone does not have it yet");

    let gw = Gateway::start(&cfg, &upstream, &["--yes"]).await;
    let via = |name: &str| format!("{}/parse/files/{}/{name}", gw.url(), app.app_id);
    // HEAD first: answered from GridFS, nothing copied.
    let r = http.head(via(&names[2])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "40000");
    assert_eq!(
        http.get(direct(&names[2])).send().await.unwrap().status(),
        404
    );
    // 32 clients miss the same name at once: every one gets its bytes, from one copy.
    let gets = (0..32).map(|_| {
        let (http, url) = (http.clone(), via(&names[1]));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.bytes().await.unwrap())
        }
    });
    for (status, bytes) in futures::future::join_all(gets).await {
        assert_eq!(status, 200);
        assert!(bytes == files[1].1[..], "a reader got other bytes");
    }
    if let Some(tap) = reads {
        let gets: Vec<String> = tap
            .requests()
            .into_iter()
            .filter(|l| l.starts_with("GET ") && l.contains(&names[1]))
            .collect();
        assert_eq!(gets.len(), 1, "the old store read once: {gets:?}");
    }
    // Every file, through the gateway, byte-identical.
    for (name, data) in &files {
        let r = http.get(via(name)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert!(r.bytes().await.unwrap() == data[..], "{name} differs");
    }
    // A Range request is Parse Server's to answer: through the gateway exactly as directly.
    let range = |url: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(url)
                .header("range", "bytes=100-199")
                .send()
                .await
                .unwrap();
            (r.status(), r.bytes().await.unwrap())
        }
    };
    let (status, body) = range(via(&names[1])).await;
    assert_eq!((status, body.clone()), range(direct(&names[1])).await);
    eprintln!("serve_parse_server: Range through the gateway: {status}");
    if status == 206 && matches!(new, Files::Default) {
        // Parse Server's GridFS adapter answers a Range from the stored bytes without decrypting
        // them (`GridFSBucketAdapter.handleFileStream`): with fileKey set, the range is of the
        // ciphertext. The gateway passes on exactly that; the copy itself is right (whole-file
        // GETs above and below are byte-identical).
        let mut stored = Vec::new();
        let mut down = db
            .gridfs_bucket(None)
            .open_download_stream_by_name(&names[1])
            .await
            .unwrap();
        futures::io::AsyncReadExt::read_to_end(&mut down, &mut stored)
            .await
            .unwrap();
        assert!(body == stored[100..200], "the stored bytes' range");
        assert!(body != files[1].1[100..200]);
    } else if status == 206 {
        assert!(body == files[1].1[100..200]);
    }
    // DELETE (master key) through the gateway, then GET: gone for good.
    let r = http
        .delete(format!("{}/parse/files/{}", gw.url(), names[3]))
        .header("X-Parse-Application-Id", &app.app_id)
        .header("X-Parse-Master-Key", &app.master_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(http.get(via(&names[3])).send().await.unwrap().status(), 404);
    // A name the file trigger denies: Parse Server's refusal, as directly; never a 404, so the
    // gateway copies nothing and the old store's bytes are not served.
    let denied = http.get(via(&secret)).send().await.unwrap();
    let (status, body) = (denied.status(), denied.text().await.unwrap());
    let directly = http.get(direct(&secret)).send().await.unwrap();
    assert_eq!(status, directly.status(), "{body}");
    assert!(
        !status.is_success() && status != 404 && !body.contains("nobody"),
        "{status} {body}"
    );
    eprintln!("serve_parse_server: a denied name through the gateway: {status} {body}");

    // An absent file: Parse Server's own 404.
    let r = http.get(via("nothing_here.txt")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(&app.file_key) && !stderr.contains(&app.master_key));

    // c. Parse Server serves the copies by itself; the drain has nothing left.
    for (name, data) in &files[..3] {
        let r = http.get(direct(name)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert!(
            r.bytes().await.unwrap() == data[..],
            "{name} differs served directly"
        );
    }
    let out =
        crate::support::app::migrate(&cfg, &["--select", "server", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.summary()["files"]["copied"], 0, "{}", out.stdout);
    let verify =
        crate::support::app::run(["-c", cfg.to_str().unwrap(), "verify", "--output", "jsonl"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    server.stop(&app);
    db.drop().await.unwrap();
    let _ = doc! {};
}
