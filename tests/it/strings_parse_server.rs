//! URLs in strings end to end through a real Parse Server (#19): an app whose String field holds
//! hosted-Parse URLs (bytes on nginx, the stand-in for the dead hosts), an HTML `<img src>` with
//! a percent-encoded name, and a URL of a file Parse Server created under an old server URL.
//! After `migrate --strings` (hosted files copied into Parse Server's own GridFS, encrypted with
//! `fileKey`) and `rebase` (the old server URL moved to the current one), every URL found in the
//! strings must download the original bytes through the restarted Parse Server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::parse_server::{App, Files, ParseServer, Rest, name_of};
use crate::support::app::bin;
use crate::support::{self, free_port, uri_for};
use parse_files_migrate::parse::names::{encode_uri_component as encode, parse_server_name};
use parse_files_migrate::parse::urls::Matcher;

const OLD: &str = "https://old-api.example.com/parse";

#[tokio::test]
async fn strings_serve_the_original_bytes_after_migrate_and_rebase() {
    let database = support::unique("ps_str");
    let db = support::mongo_client().await.database(&database);
    let tag = support::unique("k");
    let app = App {
        app_id: "strApp".into(),
        master_key: format!("mk-{tag}-SECRET"),
        file_key: format!("fk-{tag}-SECRET"),
        database: database.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };
    let http_root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT"));
    let http_url = support::env("PFM_TEST_HTTP_URL");
    let http_dir = support::unique("pfm_ps_str");
    let work = tempfile::tempdir().unwrap();

    // The app: one file created by Parse Server, two hosted-era files on nginx.
    let server = ParseServer::start(&app, &Files::Default, "strings-source");
    let rest = Rest::new(&app);
    let own = support::bytes(4_321, 31);
    let file = rest.upload("own pic.png", "image/png", &own).await;
    let own_name = name_of(&file);
    let uuid = |n: u32| format!("3f2504e0-4f89-11d3-9a0c-{n:012x}");
    let h1 = format!("tfss-{}-hosted photo.jpg", uuid(1));
    let h2 = format!("{}-legacy é.png", uuid(2));
    let mut bytes: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    bytes.insert(own_name.clone(), own);
    for (i, (name, host)) in [(&h1, "tfss"), (&h2, "parse")].into_iter().enumerate() {
        let dir = http_root.join(&http_dir).join(host).join(&app.file_key);
        std::fs::create_dir_all(&dir).unwrap();
        let data = support::bytes(2_000 + i * 1_000, 32 + i as u64);
        std::fs::write(dir.join(name), &data).unwrap();
        bytes.insert(name.clone(), data);
    }
    let hosted = |name: &str| {
        let host = if name.starts_with("tfss-") {
            "files.parsetfss.com"
        } else {
            "files.parse.com"
        };
        format!("http://{host}/{}/{}", app.file_key, encode(name))
    };
    let old_url = format!("{OLD}/files/{}/{}", app.app_id, encode(&own_name));
    let body = format!(
        "<p><img src=\"{}\"> and <a href='{}'>doc</a></p>\n<img src=\"{old_url}\">",
        hosted(&h1),
        hosted(&h2)
    );
    let json_text = format!("{{\"cover\":\"{}\",\"n\":2}}", hosted(&h1));
    let id = rest
        .create(
            "Post",
            json!({"body": body, "json": json_text, "title": "no urls"}),
        )
        .await;
    server.stop(&app);

    // Migrate the strings' hosted files into Parse Server's GridFS, then rebase the old URL.
    let config = format!(
        "[mongo]\nuri = {uri:?}\n\n\
         [parse]\napp_id = {app_id:?}\nfile_key = {file_key:?}\npublic_server_url = {public:?}\n\n\
         [source.hosted]\ntype = \"http\"\n\
         tfss_base_url = \"{http_url}/{http_dir}/tfss/{{file_key}}/\"\n\
         legacy_base_url = \"{http_url}/{http_dir}/parse/{{file_key}}/\"\n\n\
         [source.server]\ntype = \"gridfs\"\n\n[destination]\ntype = \"gridfs\"\n\n\
         [rebase]\nfrom = [{OLD:?}]\n\n[output]\nprogress = \"never\"\n",
        uri = uri_for(&database),
        app_id = app.app_id,
        file_key = app.file_key,
        public = app.server_url(),
    );
    let cfg = work.path().join("strings.toml");
    std::fs::write(&cfg, &config).unwrap();
    let run = |args: &[&str]| {
        let out = bin()
            .args(["-c", cfg.to_str().unwrap()])
            .args(args)
            .timeout(Duration::from_secs(300))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains(&app.file_key),
            "the fileKey leaked: {stderr}"
        );
        (out.status.code(), stderr)
    };
    let (code, stderr) = run(&["migrate", "--strings", "--yes", "--output", "jsonl"]);
    assert_eq!(code, Some(0), "migrate --strings: {stderr}");
    let (code, stderr) = run(&["rebase", "--yes", "--output", "jsonl"]);
    assert_eq!(code, Some(0), "rebase: {stderr}");

    // Every URL in the strings now leads to this Parse Server and serves the original bytes.
    let server = ParseServer::start(&app, &Files::Default, "strings-destination");
    // A new client: the old one's pooled connections went with the first server.
    let rest = Rest::new(&app);
    let got = rest
        .send(
            "get Post",
            rest.req(reqwest::Method::GET, &format!("/classes/Post/{id}")),
        )
        .await;
    let everything = Matcher::new(true)
        .server(
            &app.server_url(),
            &app.app_id,
            parse_files_migrate::parse::urls::Origin::Current,
        )
        .unwrap()
        .server(
            OLD,
            &app.app_id,
            parse_files_migrate::parse::urls::Origin::Old(0),
        )
        .unwrap();
    let mut served = 0;
    for field in ["body", "json"] {
        let text = got[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {got}"));
        let found = everything.find(text);
        assert!(!found.is_empty(), "{field}: {text}");
        for f in found {
            let url = f.url(text);
            assert!(
                url.starts_with(&format!("{}/files/{}/", app.server_url(), app.app_id)),
                "{field}: {url} is not on the current server: {text}"
            );
            let want = bytes
                .iter()
                .find(|(orig, _)| **orig == f.name || parse_server_name(orig) == f.name)
                .map(|(_, b)| b.clone());
            let data = rest.download(url).await.unwrap_or_else(|e| panic!("{e}"));
            let want = want.unwrap_or_else(|| panic!("{url}: no original for {}", f.name));
            assert!(data == want, "{url}: bytes differ from the original");
            served += 1;
        }
    }
    assert_eq!(got["title"], Value::from("no urls"));
    eprintln!("strings_parse_server: {served} URLs in strings served byte-identical");
    assert_eq!(served, 4);
    // `rebase --check`: nothing left to move, and every current URL answers 200 here.
    let (code, stderr) = run(&["rebase", "--yes", "--check", "--output", "jsonl"]);
    assert_eq!(code, Some(0), "rebase --check: {stderr}");
    assert!(stderr.contains("unreachable=0"), "{stderr}");
    server.stop(&app);
    drop(db);
}
