//! Resumable runs on the real servers: cron cutoffs (exit 8, the next run continues), `kill -9`
//! at many points followed by a re-run, shards run by concurrent processes, and the lease that
//! refuses two runs over the same shard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::{encode_uri_component, parse_server_name};
use serde_json::Value;

use crate::support::{self, app};

const FILE_KEY: &str = "resumeKey";

/// An app with `n` legacy files: object i references file i at the top level and file (i+1)%n
/// in an object field, so every file has two references on different pages.
struct Fixture {
    db: mongodb::Database,
    config: PathBuf,
    dest: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

async fn fixture(tag: &str, n: usize, size: usize, extra_config: &str) -> Fixture {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let http_dir = support::unique(tag);
    let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT"))
        .join(&http_dir)
        .join(FILE_KEY);
    std::fs::create_dir_all(&root).unwrap();
    let mut files = BTreeMap::new();
    let names: Vec<String> = (0..n)
        .map(|i| format!("tfss-3f2504e0-4f89-11d3-9a0c-{i:012x}-f{i}.bin"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let data = support::bytes(size + i, i as u64 + 7);
        std::fs::write(root.join(name), &data).unwrap();
        files.insert(name.clone(), data);
    }
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Item", "objectId": "string", "file": "file", "meta": "object"})
        .await
        .unwrap();
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            doc! {"_id": format!("o{i:05}"), "file": &names[i],
            "meta": {"f": {"__type": "File", "name": &names[(i + 1) % n]}}}
        })
        .collect();
    db.collection::<Document>("Item")
        .insert_many(docs)
        .await
        .unwrap();
    let dest = support::temp_path(&format!("{tag}-dest"));
    let config = support::temp_path(tag).with_extension("toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mongo]
uri = "{uri}"
database = "{db_name}"
page_size = 10

[parse]
app_id = "resumeApp"
file_key = "{FILE_KEY}"
public_server_url = "{server_url}"

[source.hosted]
type = "http"
tfss_base_url = "{http}/{http_dir}/{{file_key}}/"

[destination]
type = "fs"
path = "{dest}"

[ledger]
# Short, so that the tests' leases end soon; not so short that a loaded machine's pause of a
# second makes a run lose its lease (which now stops it).
lease_secs = 3

{extra_config}
"#,
            uri = support::mongo_uri(),
            http = support::env("PFM_TEST_HTTP_URL"),
            dest = dest.display(),
            server_url = app::SERVER_URL,
        ),
    )
    .unwrap();
    Fixture {
        db,
        config,
        dest,
        files,
    }
}

fn command(config: &Path, args: &[&str]) -> std::process::Command {
    let mut c = app::command();
    c.arg("-c")
        .arg(config)
        .arg("migrate")
        .args(["--yes", "--output", "jsonl"])
        .args(args);
    c
}

fn migrate(config: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = command(config, args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary = stdout
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), summary, stderr)
}

impl Fixture {
    /// The end state every scenario must reach: every reference rewritten to its target, every
    /// file byte-identical at the destination, nothing else there, and the ledger agreeing.
    async fn assert_complete(&self) {
        let items: Vec<Document> = futures::TryStreamExt::try_collect(
            self.db
                .collection::<Document>("Item")
                .find(doc! {})
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        let targets: BTreeSet<String> = self.files.keys().map(|n| parse_server_name(n)).collect();
        for d in &items {
            let top = d.get_str("file").unwrap();
            assert!(targets.contains(top), "not rewritten: {d}");
            let nested = d.get_document("meta").unwrap().get_document("f").unwrap();
            assert!(targets.contains(nested.get_str("name").unwrap()), "{d}");
            assert!(
                nested
                    .get_str("url")
                    .unwrap()
                    .ends_with(&encode_uri_component(nested.get_str("name").unwrap()))
            );
        }
        let on_disk: BTreeSet<String> = std::fs::read_dir(&self.dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let expected: BTreeSet<String> = targets.iter().map(|t| encode_uri_component(t)).collect();
        assert_eq!(
            on_disk, expected,
            "no orphan objects, no temp files, nothing missing"
        );
        for (name, data) in &self.files {
            let got = std::fs::read(
                self.dest
                    .join(encode_uri_component(&parse_server_name(name))),
            )
            .unwrap();
            assert!(got == *data, "{name}: bytes differ");
        }
        assert_eq!(
            support::ledger::files_in(&self.db, "verified").await,
            self.files.len() as u64,
            "ledger file count equals reality"
        );
        // Two references per document (a test may add documents to the fixture's).
        assert_eq!(
            support::ledger::refs_in(&self.db, Some("rewritten")).await,
            2 * items.len() as u64,
            "ledger reference count equals reality"
        );
        assert_eq!(
            support::ledger::refs_in(&self.db, None).await,
            2 * items.len() as u64
        );
    }
}

#[tokio::test]
async fn cutoffs_stop_cleanly_and_the_next_run_continues() {
    let f = fixture("res_cut", 40, 3000, "").await;
    let mut copied = 0;
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 6, "did not finish in 6 slices");
        let (code, s, stderr) = migrate(&f.config, &["--max-files", "12"]);
        copied += s["files"]["copied"].as_u64().unwrap();
        assert!(s["files"]["copied"].as_u64().unwrap() <= 12, "{s}");
        match code {
            8 => assert!(
                s["stopped_by"].as_str().unwrap().contains("--max-files"),
                "{s}"
            ),
            0 => break,
            other => panic!("exit {other}: {stderr}"),
        }
    }
    assert_eq!(runs, 4, "40 files in slices of 12");
    assert_eq!(copied, 40, "each file copied exactly once over all slices");
    f.assert_complete().await;

    // --max-duration 0s stops before the first copy; --max-bytes after the first batch.
    let g = fixture("res_cut_d", 5, 100, "").await;
    let (code, s, _) = migrate(&g.config, &["--max-duration", "0s"]);
    assert_eq!(code, 8);
    assert_eq!(s["files"]["copied"], 0);
    let (code, _, stderr) = migrate(&g.config, &["--max-bytes", "1GiB"]);
    assert_eq!(code, 0, "{stderr}");
    g.assert_complete().await;
}

#[tokio::test]
async fn shards_run_concurrently_cover_everything_exactly_once() {
    let f = fixture("res_shard", 60, 2000, "").await;
    let a = command(&f.config, &["--shard", "0/2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = command(&f.config, &["--shard", "1/2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let summary = |o: &std::process::Output| -> Value {
        let s = String::from_utf8_lossy(&o.stdout);
        serde_json::from_str(s.lines().last().unwrap()).unwrap()
    };
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let (sa, sb) = (summary(&a), summary(&b));
    let (ca, cb) = (
        sa["files"]["copied"].as_u64().unwrap(),
        sb["files"]["copied"].as_u64().unwrap(),
    );
    assert_eq!(ca + cb, 60, "{sa}\n{sb}");
    assert!(ca > 10 && cb > 10, "both shards did work: {ca} + {cb}");
    let names: Vec<&str> = f.files.keys().map(String::as_str).collect();
    let records = support::ledger::of(&f.db).lookup(&names).await.unwrap();
    assert_eq!(records.len(), names.len(), "every file recorded");
    let again: Vec<_> = records.values().filter(|r| r.attempts != 1).collect();
    assert!(again.is_empty(), "copied more than once: {again:?}");
    f.assert_complete().await;
}

/// A run settles the open reference batches that interrupted runs left, never those of a run
/// alive on another shard: settling them raced that run's own outcomes and dropped references it
/// then recorded as rewritten (seen as 95 of 120 in the test above). Once that run's lease has
/// expired, the next run settles its batch.
#[tokio::test]
async fn open_batches_of_a_live_run_are_left_to_it() {
    use mongodb::bson::oid::ObjectId;
    let f = fixture("res_live_open", 4, 100, "").await;
    // An object of the other run's (none of this fixture's, so no run here records it anew).
    let name = "tfss-3f2504e0-4f89-11d3-9a0c-000000000000-f0.bin";
    let (other, batch) = (ObjectId::new(), ObjectId::new());
    let now = mongodb::bson::DateTime::now();
    let refs = f.db.collection::<Document>("_FileMigration.refs");
    refs.insert_one(
        doc! {"_id": batch, "v": 2, "run": other, "at": now, "open": true,
        "k": ["Item/\"other\"/file"], "r": [{"k": "Item/\"other\"/file", "c": "Item",
        "o": "other", "p": "file", "file": name, "old": {"name": name},
        "new": {"name": "3f2504e0_f0.bin"}, "s": "pending"}]},
    )
    .await
    .unwrap();
    let locks = f.db.collection::<Document>("_FileMigration.locks");
    let until = mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 600_000);
    locks
        .insert_one(
            doc! {"_id": "1/2", "run": other, "host": "other-host", "pid": 4242i64,
            "until": until},
        )
        .await
        .unwrap();
    let (code, _, stderr) = migrate(&f.config, &["--shard", "0/2"]);
    assert_eq!(code, 0, "{stderr}");
    let left = refs.find_one(doc! {"_id": batch}).await.unwrap().unwrap();
    assert_eq!(left.get_bool("open"), Ok(true), "left open: {left}");
    assert!(left.get("o").is_none(), "nothing appended: {left}");
    assert_eq!(left.get_array("k").unwrap().len(), 1, "{left}");

    locks
        .update_one(doc! {"_id": "1/2"}, doc! {"$set": {"until": now}})
        .await
        .unwrap();
    let (code, _, stderr) = migrate(&f.config, &["--shard", "1/2"]);
    assert_eq!(code, 0, "{stderr}");
    let settled = refs.find_one(doc! {"_id": batch}).await.unwrap().unwrap();
    assert_ne!(settled.get_bool("open"), Ok(true), "settled: {settled}");
}

#[tokio::test]
async fn a_second_run_on_the_same_shard_is_refused_until_the_lease_ends() {
    let f = fixture("res_lease", 3, 100, "").await;
    let locks = f.db.collection::<Document>("_FileMigration.locks");
    let until = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 60_000,
    );
    locks
        .insert_one(
            doc! {"_id": "all", "run": mongodb::bson::oid::ObjectId::new(),
            "host": "other-host", "pid": 4242i64, "until": until},
        )
        .await
        .unwrap();
    let (code, _, stderr) = migrate(&f.config, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("another run holds the lease") && stderr.contains("other-host"),
        "{stderr}"
    );
    assert!(!f.dest.exists() || std::fs::read_dir(&f.dest).unwrap().count() == 0);
    // Another shard is not blocked by it… but the same shard is until the lease expires.
    locks
        .update_one(
            doc! {"_id": "all"},
            doc! {"$set": {"until": mongodb::bson::DateTime::now()}},
        )
        .await
        .unwrap();
    let (code, _, stderr) = migrate(&f.config, &[]);
    assert_eq!(code, 0, "an expired lease is taken over: {stderr}");
    assert_eq!(
        locks.count_documents(doc! {}).await.unwrap(),
        0,
        "released at the end"
    );
    f.assert_complete().await;
}

/// `kill -9` during the scan, transfers, between copy and rewrite and during rewrites (delays
/// spread over a run's length), re-running after each: the end state is complete and
/// consistent.
#[tokio::test]
async fn sigkill_at_many_points_then_a_rerun_completes() {
    let f = fixture("res_kill", 150, 40_000, "").await;
    // How long an uninterrupted run would take, on a copy of the data, to spread the kills.
    let probe = fixture("res_kill_probe", 150, 40_000, "").await;
    let started = std::time::Instant::now();
    let (code, _, stderr) = migrate(&probe.config, &["--concurrency", "4"]);
    assert_eq!(code, 0, "{stderr}");
    let full = started.elapsed();
    eprintln!("resume: an uninterrupted run of 150 files takes {full:?}");

    let mut kills = 0;
    // Each run gets further than the last (done work is skipped), so the delays stay within the
    // first third of a full run's length, cycling, until six kills have landed mid-run.
    for attempt in 0..14u32 {
        if kills == 6 {
            break;
        }
        let delay = full * (attempt % 7 + 1) / 21;
        let mut child = command(&f.config, &["--concurrency", "4"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        // The killed run's lease (3 s in this config) is taken over at once on this machine;
        // waiting it out keeps the test independent of that.
        tokio::time::sleep(Duration::from_millis(3100)).await;
    }
    eprintln!("resume: {kills} runs killed with SIGKILL at spread points");
    assert!(kills >= 4, "the kills must land mid-run (only {kills} did)");
    let (code, s, stderr) = migrate(&f.config, &["--concurrency", "4"]);
    assert_eq!(code, 0, "{stderr}");
    eprintln!("resume: the final run: {s}");
    f.assert_complete().await;
}

/// SIGTERM (as Ctrl-C): no new work starts, what is in flight finishes and is recorded, exit 130;
/// a re-run completes everything.
#[tokio::test]
async fn sigterm_stops_cleanly_with_130_and_a_rerun_continues() {
    let f = fixture("res_term", 120, 40_000, "").await;
    // 40 requests/s: the run takes 3 s whatever the machine, so the signal lands mid-run.
    let child = command(&f.config, &["--concurrency", "2", "--tps-limit", "40"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once copies are under way (a fixed delay raced the start-up on a loaded machine:
    // a signal before the run installs its handler ends the process the default way).
    let started = std::time::Instant::now();
    while std::fs::read_dir(&f.dest).map_or(0, |d| d.count()) < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "no copy began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let copied = summary["files"]["copied"].as_u64().unwrap();
    assert!(copied < 120, "stopped early: {summary}");
    // What it copied is recorded: the re-run does not copy it again.
    let (code, s, stderr) = migrate(&f.config, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(s["files"]["copied"].as_u64().unwrap() + copied, 120, "{s}");
    f.assert_complete().await;
}

/// A pass cut short records how far its walk is settled; the next run continues from there (it
/// walks fewer objects), finishes the pass and clears the checkpoint; the run after that walks
/// every object again, which is how objects created behind the checkpoint are found.
#[tokio::test(flavor = "multi_thread")]
async fn a_cut_pass_resumes_its_walk_and_the_next_pass_walks_everything() {
    let n = 60;
    let f = fixture("res_walk", n, 2_000, "").await;
    let walk = f.db.collection::<Document>("_FileMigration.walk");

    let (code, s1, stderr) = migrate(&f.config, &["--max-files", "20", "--concurrency", "2"]);
    assert_eq!(code, 8, "{stderr}");
    let checkpoint = walk
        .find_one(doc! {"_id": "all"})
        .await
        .unwrap()
        .expect("a checkpoint of the unfinished pass");
    assert_eq!(checkpoint.get_str("class").unwrap(), "Item", "{checkpoint}");
    let last = checkpoint.get_str("last").unwrap().to_string();
    assert!(last.as_str() >= "o00009", "{checkpoint}");
    let settled = checkpoint.get_i64("objects").unwrap() as u64;
    assert!(settled >= 10 && settled < n as u64, "{checkpoint}");
    assert!(s1["objects_scanned"].as_u64().unwrap() >= settled, "{s1}");

    // `status` shows the unfinished pass.
    let out = app::command()
        .arg("-c")
        .arg(&f.config)
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["unfinished_passes"][0]["scope"], "all", "{status}");
    assert_eq!(
        status["unfinished_passes"][0]["walking"], "Item",
        "{status}"
    );

    // A run over other fields does not continue this pass (it settled only its own fields).
    let out = command(&f.config, &["--dry-run", "--field", "file"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("classes or fields"), "{stderr}");
    assert!(
        walk.find_one(doc! {"_id": "all"}).await.unwrap().is_some(),
        "a dry run keeps it"
    );

    // --rescan walks from the start (every object it settles is counted from zero again).
    let (code, s2, stderr) = migrate(&f.config, &["--rescan", "--max-files", "10"]);
    assert_eq!(code, 8, "{stderr}");
    assert!(stderr.contains("from the start (--rescan)"), "{stderr}");
    let checkpoint = walk.find_one(doc! {"_id": "all"}).await.unwrap().unwrap();
    let settled = checkpoint.get_i64("objects").unwrap() as u64;
    assert!(
        settled <= s2["objects_scanned"].as_u64().unwrap(),
        "{checkpoint} {s2}"
    );

    // An object created behind the checkpoint (its `_id` sorts first) during the pass.
    let names: Vec<&String> = f.files.keys().collect();
    f.db.collection::<Document>("Item")
        .insert_one(doc! {"_id": "a0000", "file": names[0],
        "meta": {"f": {"__type": "File", "name": names[1]}}})
        .await
        .unwrap();

    let (code, s3, stderr) = migrate(&f.config, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("continuing an unfinished pass"), "{stderr}");
    let walked = s3["objects_scanned"].as_u64().unwrap();
    assert_eq!(
        walked,
        n as u64 - settled,
        "only the rest of the walk: {s3}"
    );
    assert!(walk.find_one(doc! {}).await.unwrap().is_none(), "pass over");
    let late =
        f.db.collection::<Document>("Item")
            .find_one(doc! {"_id": "a0000"})
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        late.get_str("file").unwrap(),
        names[0].as_str(),
        "not walked yet"
    );

    // The next pass walks everything and rewrites the late object (its file is already there).
    let (code, s4, stderr) = migrate(&f.config, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        s4["objects_scanned"].as_u64().unwrap(),
        n as u64 + 1,
        "{s4}"
    );
    assert_eq!(s4["files"]["copied"].as_u64().unwrap(), 0, "{s4}");
    assert_eq!(s4["references"]["rewritten"].as_u64().unwrap(), 2, "{s4}");
    f.assert_complete().await;
}

/// `--metrics-file` is valid Prometheus text format (parsed by the reference client library's
/// parser, not compared as a string): counts by outcome, the exit code, and a last-success time
/// that a failing run later keeps.
#[tokio::test]
async fn the_metrics_file_is_prometheus_text_and_keeps_the_last_success() {
    let f = fixture("res_metrics", 3, 100, "").await;
    let prom = f.dest.parent().unwrap().join("pfm-metrics.prom");
    let p = prom.to_str().unwrap();
    let (code, _, stderr) = migrate(&f.config, &["--metrics-file", p]);
    assert_eq!(code, 0, "{stderr}");
    let m = support::prometheus_samples(&prom, &[("command", "migrate"), ("shard", "all")]);
    assert_eq!(m["pfm_files_total{outcome=copied}"], 3.0, "{m:?}");
    assert_eq!(m["pfm_references_total{outcome=rewritten}"], 6.0, "{m:?}");
    assert_eq!(m["pfm_exit_code{}"], 0.0);
    assert_eq!(m["pfm_run_running{}"], 0.0);
    assert!(m["pfm_bytes_copied_total{}"] >= 300.0, "{m:?}");
    let success = m["pfm_last_success_timestamp_seconds{}"];
    assert!(success > 1.7e9, "{m:?}");

    // A reference to a file the source does not have: exit 3, the earlier success kept.
    f.db.collection::<Document>("Item")
        .insert_one(doc! {"_id": "zz-missing",
        "file": "tfss-3f2504e0-4f89-11d3-9a0c-0000000000ff-gone.bin",
        "meta": {"f": {"__type": "File", "name": "tfss-3f2504e0-4f89-11d3-9a0c-0000000000ff-gone.bin"}}})
        .await
        .unwrap();
    let (code, _, stderr) = migrate(&f.config, &["--metrics-file", p]);
    assert_eq!(code, 3, "{stderr}");
    let m = support::prometheus_samples(&prom, &[("command", "migrate"), ("shard", "all")]);
    assert_eq!(m["pfm_exit_code{}"], 3.0, "{m:?}");
    assert_eq!(m["pfm_files_total{outcome=missing}"], 1.0, "{m:?}");
    assert_eq!(m["pfm_last_success_timestamp_seconds{}"], success, "{m:?}");
}
