//! `serve`, the read-through gateway, run as a child process in front of a programmable stand-in
//! for Parse Server (`support::gateway::FakeParse`, whose files route answers from the real
//! destination store as stock Parse Server does), with real stores: requests pass through with
//! their bodies and headers; a miss is copied from the old store, recorded in the ledger (a
//! later `migrate` skips it) and answered by the upstream; an absent file keeps the upstream's
//! 404; an old store that is down gives 502; concurrent misses read the old store once; HEAD
//! never copies; a DELETE is recorded and never resurrected; `--dry-run` copies nothing; SIGTERM
//! stops it cleanly and the run is recorded.

use std::sync::Arc;

use mongodb::bson::{Document, doc};
use parse_files_migrate::ledger::FileState;
use parse_files_migrate::storage::ObjectStore;

use crate::support::app::{self, base_tables};
use crate::support::conformance::read_all;
use crate::support::gateway::{FakeParse, Gateway, put};
use crate::support::{self, ledger, s3, wiretap::Tap};

/// A Parse Server style name (a directory in it, as Parse 9.4 allows).
const NAME: &str = "dir/0123456789abcdef0123456789abcdef_photo é.jpg";

struct Setup {
    db: mongodb::Database,
    db_name: String,
    config: std::path::PathBuf,
    source: Arc<dyn ObjectStore>,
    destination: Arc<dyn ObjectStore>,
    _dir: tempfile::TempDir,
}

/// A database with one Photo referencing [`NAME`], the config naming `source` as
/// `[source.server]` and `destination`, and both stores opened.
async fn setup(tag: &str, source: &str, destination: &str, extra: &str) -> Setup {
    let (db, db_name) = support::one_photo(tag, NAME).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("m.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[run]\nretries = 0\n{extra}\n[source.server]\n{source}\n[destination]\n{destination}",
            base_tables(&db_name, "fk")
        ),
    )
    .unwrap();
    Setup {
        source: support::open_store(source, &db_name).await,
        destination: support::open_store(destination, &db_name).await,
        db,
        db_name,
        config,
        _dir: dir,
    }
}

fn fs_table(dir: &std::path::Path) -> String {
    format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.display()
    )
}

/// GridFS (encrypted with the app's fileKey) → an fs directory.
async fn gridfs_to_fs(tag: &str) -> (Setup, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let s = setup(tag, "type = \"gridfs\"\n", &fs_table(out.path()), "").await;
    (s, out)
}

#[tokio::test]
async fn requests_pass_through_with_bodies_and_headers() {
    let (s, _out) = gridfs_to_fs("pfm_serve_pass").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let body = support::bytes(3 << 20, 7);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/parse/classes/Photo?where=%7B%7D", gw.url()))
        .header("x-parse-application-id", app::APP_ID)
        .header("x-custom", "kept")
        .header("host", "files.example.com")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-upstream"], "fake");
    assert!(r.bytes().await.unwrap() == body, "the echoed body differs");
    let seen = parse.seen("/parse/classes/Photo");
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(seen[0].path, "/parse/classes/Photo?where=%7B%7D");
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["x-parse-application-id"], app::APP_ID);
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "files.example.com");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(seen[0].body == body, "the upstream got another body");
    // A file the upstream has is its answer, untouched, and nothing is copied or recorded.
    put(&*s.destination, "hit.txt", b"hello").await;
    let r = reqwest::get(gw.file_url("hit.txt")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "fake-parse");
    assert_eq!(r.text().await.unwrap(), "hello");
    assert!(ledger::file(&s.db, "hit.txt").await.is_none());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("pfm_serve_requests_total{outcome=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pfm_serve_requests_total{outcome=\"passed_through\"} 1"),
        "{metrics}"
    );
    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn a_miss_is_copied_recorded_served_and_skipped_by_migrate() {
    let (s, _out) = gridfs_to_fs("pfm_serve_miss").await;
    let data = support::bytes(700_000, 11);
    put(&*s.source, NAME, &data).await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;

    let r = reqwest::get(gw.file_url(NAME)).await.unwrap();
    assert_eq!(r.status(), 200);
    // Answered by the upstream after the copy (its triggers and headers apply).
    assert_eq!(r.headers()["x-served-by"], "fake-parse");
    assert!(r.bytes().await.unwrap() == data, "served bytes differ");
    assert!(read_all(&*s.destination, NAME).await.unwrap() == data);
    let rec = ledger::file(&s.db, NAME).await.expect("recorded");
    assert_eq!(rec.state, FileState::Verified);
    assert_eq!(rec.size, Some(data.len() as u64));
    assert!(rec.wrote);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("pfm_serve_requests_total{outcome=\"copied_in_flight\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("pfm_serve_bytes_copied_total {}", data.len())),
        "{metrics}"
    );

    // The drain, while the gateway runs: nothing left to copy.
    let m = app::migrate(
        &s.config,
        &["--select", "server", "--yes", "--output", "jsonl"],
    );
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert_eq!(m.summary()["files"]["copied"], 0, "{}", m.stdout);
    // `rollback` holds its lease exclusively: refused while a gateway copies.
    let rb = app::run(["-c", s.config.to_str().unwrap(), "rollback", "--yes"]);
    assert_eq!(rb.code, 2, "{}", rb.stderr);
    assert!(rb.stderr.contains("serve@"), "{}", rb.stderr);

    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("copied in flight"),
        "one log line per copy:\n{stderr}"
    );
    let runs = s.db.collection::<Document>("_FileMigration.runs");
    let serve_run = runs.find_one(doc! {"command": "serve"}).await.unwrap();
    let serve_run = serve_run.expect("the gateway's run is recorded");
    assert!(serve_run.contains_key("finished_at"), "{serve_run}");
    assert_eq!(
        serve_run
            .get_document("summary")
            .unwrap()
            .get_document("serve")
            .unwrap()
            .get_i64("copied_in_flight")
            .unwrap(),
        1
    );
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn absent_everywhere_keeps_the_upstreams_404() {
    let (s, _out) = gridfs_to_fs("pfm_serve_absent").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let r = reqwest::get(gw.file_url("nowhere.png")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "File not found.");
    let r = reqwest::Client::new()
        .head(gw.file_url("nowhere.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("pfm_serve_requests_total{outcome=\"absent\"} 2"),
        "{metrics}"
    );
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn an_old_store_that_is_down_gives_502_never_404() {
    let bucket = s3::fresh_bucket("pfm-serve-down").await;
    let endpoint = s3::endpoint();
    let tap = Tap::start(endpoint.trim_start_matches("http://")).await;
    let out = tempfile::tempdir().unwrap();
    let s = setup(
        "pfm_serve_down",
        &s3::table(&bucket, &tap.url()),
        &fs_table(out.path()),
        "",
    )
    .await;
    put(&*s.source, "a.bin", b"bytes").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    // Down: its open connections reset, new ones refused.
    tap.refuse(true);
    tap.cut();
    let r = reqwest::get(gw.file_url("a.bin")).await.unwrap();
    assert!(r.status() == 502 || r.status() == 504, "{}", r.status());
    let text = r.text().await.unwrap();
    assert!(text.contains("old store"), "{text}");
    // A short sentence: no store address for the world to see.
    assert!(!text.contains(&tap.host_port()), "{text}");
    assert!(!text.contains(&bucket), "{text}");
    // Back up: the next request copies it.
    tap.refuse(false);
    let r = reqwest::get(gw.file_url("a.bin")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "bytes");
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn concurrent_misses_read_the_old_store_once() {
    let bucket = s3::fresh_bucket("pfm-serve-flight").await;
    let endpoint = s3::endpoint();
    let tap = Tap::start(endpoint.trim_start_matches("http://")).await;
    let out = tempfile::tempdir().unwrap();
    let s = setup(
        "pfm_serve_flight",
        &s3::table(&bucket, &tap.url()),
        &fs_table(out.path()),
        "",
    )
    .await;
    let data = support::bytes(2 << 20, 5);
    put(&*s.source, "big_one.bin", &data).await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let client = reqwest::Client::new();
    let gets = (0..32).map(|_| {
        let (client, url) = (client.clone(), gw.file_url("big_one.bin"));
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status(), r.bytes().await.unwrap())
        }
    });
    for (status, bytes) in futures::future::join_all(gets).await {
        assert_eq!(status, 200);
        assert!(bytes == data, "a reader got other bytes");
    }
    let reads: Vec<String> = tap
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("GET ") && l.contains("big_one.bin"))
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("pfm_serve_copy_seconds_count 1"),
        "{metrics}"
    );
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn head_answers_from_the_old_store_without_copying() {
    let (s, _out) = gridfs_to_fs("pfm_serve_head").await;
    let data = support::bytes(12_345, 3);
    put(&*s.source, NAME, &data).await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let r = reqwest::Client::new()
        .head(gw.file_url(NAME))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "12345");
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert!(
        read_all(&*s.destination, NAME).await.is_err(),
        "HEAD copied"
    );
    assert!(ledger::file(&s.db, NAME).await.is_none());
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn a_delete_is_recorded_and_never_resurrected() {
    let (s, _out) = gridfs_to_fs("pfm_serve_delete").await;
    put(&*s.source, NAME, b"to delete").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(gw.file_url(NAME)).send().await.unwrap().status(),
        200
    );
    let r = client
        .delete(gw.delete_url(NAME))
        .header("x-parse-master-key", "mk")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = parse.seen("/parse/files/").pop().unwrap();
    assert_eq!(last.method, http::Method::DELETE);
    assert_eq!(last.headers["x-parse-master-key"], "mk");
    let r = client.get(gw.file_url(NAME)).send().await.unwrap();
    assert_eq!(r.status(), 404, "resurrected from the old store");
    assert!(read_all(&*s.destination, NAME).await.is_err());
    let rec = ledger::file(&s.db, NAME).await.unwrap();
    assert_eq!(rec.state, FileState::Deleted);
    // Nor does the drain copy it back (the Photo still references it: reported missing).
    let m = app::migrate(
        &s.config,
        &["--select", "server", "--yes", "--output", "jsonl"],
    );
    assert_eq!(m.summary()["files"]["copied"], 0, "{}", m.stdout);
    assert_eq!(m.summary()["files"]["missing"], 1, "{}", m.stdout);
    assert!(
        m.stdout
            .contains("deleted through the serve gateway; still referenced"),
        "{}",
        m.stdout
    );
    assert!(
        read_all(&*s.destination, NAME).await.is_err(),
        "migrate resurrected it"
    );
    // A DELETE of a file never copied (nor asked for) is a tombstone too.
    put(&*s.source, "never_copied.txt", b"x").await;
    put(&*s.destination, "never_copied.txt", b"x").await;
    let r = client
        .delete(gw.delete_url("never_copied.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(gw.file_url("never_copied.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn dry_run_answers_from_the_old_store_and_writes_nothing() {
    let (s, _out) = gridfs_to_fs("pfm_serve_dry").await;
    put(&*s.source, NAME, b"old bytes").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--dry-run"]).await;
    let r = reqwest::get(gw.file_url(NAME)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "old bytes");
    assert!(
        read_all(&*s.destination, NAME).await.is_err(),
        "a dry run copied"
    );
    assert!(ledger::file(&s.db, NAME).await.is_none());
    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn without_yes_and_a_terminal_it_refuses() {
    let (s, _out) = gridfs_to_fs("pfm_serve_yes").await;
    let out = app::run([
        "-c",
        s.config.to_str().unwrap(),
        "serve",
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        &format!("127.0.0.1:{}", support::free_port()),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    let _ = &s.db_name;
    s.db.drop().await.unwrap();
}

/// An S3 old store behind a tap (to stall or cut it) and an fs destination.
async fn s3_through_tap(tag: &str) -> (Setup, Tap, tempfile::TempDir) {
    let bucket = s3::fresh_bucket(tag).await;
    let endpoint = s3::endpoint();
    let tap = Tap::start(endpoint.trim_start_matches("http://")).await;
    let out = tempfile::tempdir().unwrap();
    let s = setup(
        &tag.replace('-', "_"),
        &s3::table(&bucket, &tap.url()),
        &fs_table(out.path()),
        "",
    )
    .await;
    (s, tap, out)
}

#[tokio::test]
async fn a_slow_copy_gives_504_and_copies_beyond_the_limit_503() {
    let (s, tap, _out) = s3_through_tap("pfm-serve-busy").await;
    put(&*s.source, "slow.bin", &support::bytes(50_000, 1)).await;
    put(&*s.source, "other.bin", b"other").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(
        &s.config,
        &parse.url(),
        &["--yes", "--max-copies", "1", "--wait-secs", "2"],
    )
    .await;
    tap.stall(true);
    let slow = tokio::spawn(reqwest::get(gw.file_url("slow.bin")));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = reqwest::get(gw.file_url("other.bin")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 504);
    // Released: the copy that went on lands, and the next request is served.
    tap.stall(false);
    let mut status = 0;
    for _ in 0..50 {
        status = reqwest::get(gw.file_url("slow.bin"))
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("pfm_serve_requests_total{outcome=\"busy\"} 1"),
        "{metrics}"
    );
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn sigterm_lets_the_copy_in_flight_finish_and_records_it() {
    let (s, tap, _out) = s3_through_tap("pfm-serve-term").await;
    let data = support::bytes(300_000, 2);
    put(&*s.source, "inflight.bin", &data).await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    tap.stall(true);
    let get = tokio::spawn(reqwest::get(gw.file_url("inflight.bin")));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stopping = tokio::spawn(gw.stop());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tap.stall(false);
    let r = get.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == data);
    let (code, stderr) = stopping.await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        ledger::file(&s.db, "inflight.bin").await.unwrap().state,
        FileState::Verified
    );
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn kill_9_mid_copy_leaves_nothing_and_the_next_request_copies() {
    let (s, tap, _out) = s3_through_tap("pfm-serve-kill").await;
    let data = support::bytes(400_000, 3);
    put(&*s.source, "killed.bin", &data).await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let mut gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    tap.stall(true);
    let get = tokio::spawn(reqwest::get(gw.file_url("killed.bin")));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let mut child = gw.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    tap.stall(false);
    assert!(
        get.await.unwrap().is_err(),
        "the connection dies with the process"
    );
    assert!(
        read_all(&*s.destination, "killed.bin").await.is_err(),
        "a partial file is visible"
    );
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let r = reqwest::get(gw.file_url("killed.bin")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == data);
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn stream_above_answers_large_misses_from_the_old_store_while_copying() {
    let (s, _out) = gridfs_to_fs("pfm_serve_stream").await;
    let data = support::bytes(2 << 20, 9);
    put(&*s.source, NAME, &data).await;
    put(&*s.source, "small.txt", b"small").await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(
        &s.config,
        &parse.url(),
        &["--yes", "--stream-above", "1MiB"],
    )
    .await;
    let r = reqwest::get(gw.file_url(NAME)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-served-by").is_none(),
        "answered by the upstream"
    );
    assert_eq!(r.headers()["content-length"], (2 << 20).to_string());
    assert!(r.bytes().await.unwrap() == data);
    // The copy ran beside it.
    let mut copied = false;
    for _ in 0..100 {
        if read_all(&*s.destination, NAME)
            .await
            .is_ok_and(|b| b == data)
        {
            copied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(copied, "the copy beside the answer did not land");
    // Below the threshold: copied first, then answered by the upstream.
    let r = reqwest::get(gw.file_url("small.txt")).await.unwrap();
    assert_eq!(r.headers()["x-served-by"], "fake-parse");
    drop(gw);
    s.db.drop().await.unwrap();
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn memory_does_not_grow_with_the_file_size() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let s = setup(
        "pfm_serve_memory",
        &fs_table(src.path()),
        &fs_table(out.path()),
        "",
    )
    .await;
    let size = 96 << 20;
    let data = support::bytes(size, 4);
    put(&*s.source, "huge.bin", &data).await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let pid = gw.child.as_ref().unwrap().id();
    let before = peak_rss(pid);
    // A miss copied and served, and an upload passed through: 96 MiB each way.
    let r = reqwest::get(gw.file_url("huge.bin")).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut n = 0;
    let mut stream = r.bytes_stream();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, size);
    let r = reqwest::Client::new()
        .post(format!("{}/parse/files/upload.bin", gw.url()))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let grew = peak_rss(pid).saturating_sub(before);
    eprintln!(
        "serve: peak RSS {} MiB, grew {} MiB over 2 × 96 MiB",
        peak_rss(pid) >> 20,
        grew >> 20
    );
    assert!(
        grew < 40 << 20,
        "the gateway's peak RSS grew by {} MiB",
        grew >> 20
    );
    drop(gw);
    s.db.drop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502() {
    let (s, _out) = gridfs_to_fs("pfm_serve_noupstream").await;
    let closed = format!("http://user:pw-SECRET@127.0.0.1:{}", support::free_port());
    let gw = Gateway::start(&s.config, &closed, &["--yes"]).await;
    for url in [
        format!("{}/parse/classes/Photo", gw.url()),
        gw.file_url(NAME),
    ] {
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status(), 502);
    }
    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("could not be reached"), "{stderr}");
    assert!(!stderr.contains("pw-SECRET"), "{stderr}");
    s.db.drop().await.unwrap();
}

/// Hooks (issue 33): `before` runs when the gateway starts (holding its lease, before it accepts a
/// request), `after` once it has stopped, with `PFM_HOOK_COMMAND=serve`; a failing `before` hook
/// stops it with exit 9 before it serves anything, its lease given back.
#[tokio::test]
async fn serve_runs_its_start_and_stop_hooks() {
    let log = support::temp_path("pfm-serve-hooks-log");
    let logger = |e: &str| {
        format!(
            "{e} = \"echo {e} $PFM_HOOK_COMMAND $PFM_EXIT_CODE >> {}\"\n",
            log.display()
        )
    };
    let hooks = format!("[hooks]\n{}{}", logger("before"), logger("after"));
    let out = tempfile::tempdir().unwrap();
    let s = setup(
        "pfm_serve_hooks",
        "type = \"gridfs\"\n",
        &fs_table(out.path()),
        &hooks,
    )
    .await;
    let parse = FakeParse::start(s.destination.clone()).await;
    let gw = Gateway::start(&s.config, &parse.url(), &["--yes"]).await;
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(read().trim(), "before serve", "started: only before");
    let (code, stderr) = gw.stop().await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        read().lines().collect::<Vec<_>>(),
        ["before serve", "after serve 0"]
    );

    // A failing before hook: exit 9, nothing listens, the lease is given back.
    let port = support::free_port();
    let failing = app::command()
        .args([
            "-c",
            s.config.to_str().unwrap(),
            "serve",
            "--yes",
            "--upstream",
            &parse.url(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--hook-before",
            "echo maintenance window closed >&2; exit 3",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert_eq!(failing.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("maintenance window closed"), "{stderr}");
    let locks =
        s.db.collection::<Document>("_FileMigration.locks")
            .count_documents(doc! {})
            .await
            .unwrap();
    assert_eq!(locks, 0, "the lease is given back");
    s.db.drop().await.unwrap();
}
