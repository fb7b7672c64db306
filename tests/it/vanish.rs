//! Credentials or buckets vanish mid-run (#20 item 4), on an S3 server of the test's own: the
//! keys are revoked (the server restarted with other keys) or the bucket disappears (its data
//! directory moved away). The run stops at the first refusal — exit 4, the S3 error code and
//! what to change — instead of failing every remaining file; after the fix a re-run completes:
//! every file byte-identical, every reference rewritten.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use parse_files_migrate::parse::names::parse_server_name;
use parse_files_migrate::storage::s3::S3Config;
use parse_files_migrate::storage::{self, StoreConfig, StoreContext};
use serde_json::Value;

use crate::support::app::{self, Hosted};
use crate::support::conformance::read_all;
use crate::support::faulty::FaultyServer;
use crate::support::s3::{self, OwnS3};
use crate::support::{self};

const FILE_KEY: &str = "vanishKey";
const FILES: usize = 60;

struct Fixture {
    db: mongodb::Database,
    h: Hosted,
    _server: FaultyServer,
    s3: OwnS3,
    bucket: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(tag: &str) -> Fixture {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, FILES, 0, FILE_KEY).await;
    let server = FaultyServer::slow(h.files.clone(), Duration::from_millis(25));
    let dir = tempfile::tempdir().unwrap();
    let s3 = OwnS3::start(&dir.path().join("s3")).await;
    let bucket = s3::fresh_bucket_at(&s3.endpoint(), tag).await;
    let config = dir.path().join("vanish.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}\n[destination]\n{}\n[run]\nconcurrency = 2\n",
            app::base_tables(&db_name, FILE_KEY),
            app::hosted_table(&server.url(), 5),
            s3::table(&bucket, &s3.endpoint()),
        ),
    )
    .unwrap();
    Fixture {
        db,
        h,
        _server: server,
        s3,
        bucket,
        config,
        _dir: dir,
    }
}

fn spawn(config: &Path) -> Child {
    app::spawn_migrate(config, &[])
}

async fn finish(child: Child) -> (i32, Value, String) {
    let out = app::wait(child).await;
    let summary = out
        .stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (out.code, summary, out.stderr)
}

/// Objects in the bucket so far (with the keys the server accepts now).
async fn stored(f: &Fixture) -> usize {
    let client = s3::raw_client_at(&f.s3.endpoint()).await;
    client
        .list_objects_v2()
        .bucket(&f.bucket)
        .send()
        .await
        .map_or(0, |o| o.key_count().unwrap_or(0) as usize)
}

async fn wait_for_copies(f: &Fixture, n: usize) {
    for _ in 0..1200 {
        if stored(f).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never {n} objects in the bucket");
}

/// The run stopped at the refusal: exit 4, the code and the fix said, few files failed.
fn assert_stopped(what: &str, (code, summary, stderr): &(i32, Value, String), want: &[&str]) {
    assert_eq!(*code, 4, "{what}: exit {code}:\n{stderr}\n{summary}");
    for w in want {
        assert!(stderr.contains(w), "{what}: {w:?} not said:\n{stderr}");
    }
    let stop = summary["stopped_by"].as_str().unwrap_or_default();
    assert!(stop.starts_with("store refused"), "{what}: {summary}");
    let failed = summary["files"]["failed"].as_u64().unwrap();
    let copied = summary["files"]["copied"].as_u64().unwrap();
    assert!(
        failed <= 4,
        "{what}: the run must stop at the first refusals, not fail every file: {failed} failed"
    );
    assert!(copied < FILES as u64, "{what}: stopped before the end");
}

/// After the fix, a re-run completes and every file and reference is right.
async fn assert_rerun_completes(f: &Fixture, what: &str) {
    let (code, summary, stderr) = finish(spawn(&f.config)).await;
    assert_eq!(
        code, 0,
        "{what}: the re-run must complete:\n{stderr}\n{summary}"
    );
    let mut cfg: S3Config = s3::config(&f.bucket);
    cfg.endpoint = Some(f.s3.endpoint());
    let dest = storage::open(&StoreConfig::S3(cfg), &StoreContext::default())
        .await
        .unwrap();
    for (name, data) in &f.h.files {
        let got = read_all(&*dest, &parse_server_name(name)).await.unwrap();
        assert!(got == *data, "{what}: {name} differs at the destination");
    }
    let refs = f.h.check_references(&f.db, parse_server_name).await;
    assert_eq!(refs, f.h.refs.len(), "{what}: every reference rewritten");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_keys_stop_the_run_and_a_rerun_after_the_fix_completes() {
    let mut f = fixture("vanish-keys").await;
    let child = spawn(&f.config);
    wait_for_copies(&f, 5).await;
    // Revoked: the server now accepts other keys only.
    f.s3.kill();
    let good = f.s3.keys.clone();
    f.s3.keys = ("other-key".into(), "other-secret".into());
    f.s3.restart().await;
    let stopped = finish(child).await;
    assert_stopped(
        "keys revoked",
        &stopped,
        &["refused the request", "fix access_key_id"],
    );
    // The fix: the keys are valid again.
    f.s3.kill();
    f.s3.keys = good;
    f.s3.restart().await;
    assert_rerun_completes(&f, "keys restored").await;
}

/// A source bucket the test can make vanish and come back.
#[async_trait::async_trait]
trait Bucket {
    /// The `[source.server]` table body.
    fn table(&self) -> String;
    async fn put(&self, name: &str, data: &[u8]);
    async fn vanish(&self);
    async fn come_back(&self);
    /// Whether the bucket vanishes at once (else its objects go first, and the files read
    /// meanwhile are truly missing).
    fn at_once(&self) -> bool {
        true
    }
}

/// A bucket on an s3s-fs of the test's own: it keeps a bucket as a directory, answers
/// NoSuchKey for every object once the directory is gone, and NoSuchBucket only to a listing.
struct S3Bucket {
    s3: OwnS3,
    bucket: String,
}

#[async_trait::async_trait]
impl Bucket for S3Bucket {
    fn table(&self) -> String {
        s3::table(&self.bucket, &self.s3.endpoint())
    }
    async fn put(&self, name: &str, data: &[u8]) {
        let client = s3::raw_client_at(&self.s3.endpoint()).await;
        let body = data.to_vec().into();
        client
            .put_object()
            .bucket(&self.bucket)
            .key(name)
            .body(body)
            .send()
            .await
            .unwrap();
    }
    async fn vanish(&self) {
        let dir = self.s3.dir.join(&self.bucket);
        std::fs::rename(dir, self.s3.dir.join("moved-away")).unwrap();
    }
    async fn come_back(&self) {
        let dir = self.s3.dir.join(&self.bucket);
        std::fs::rename(self.s3.dir.join("moved-away"), dir).unwrap();
    }
}

/// A bucket on the GCS test server: deleted (objects, then the bucket) and re-created with the
/// same objects.
struct GcsBucket {
    bucket: String,
    files: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
}

impl GcsBucket {
    fn url(&self, rest: &str) -> String {
        format!(
            "{}/storage/v1/b/{}{rest}",
            support::gcs::endpoint(),
            self.bucket
        )
    }
    async fn upload(&self, name: &str, data: &[u8]) {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            support::gcs::endpoint(),
            self.bucket,
            parse_files_migrate::parse::names::encode_uri_component(name)
        );
        let resp = reqwest::Client::new()
            .post(url)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "upload {name}: {}",
            resp.status()
        );
    }
}

#[async_trait::async_trait]
impl Bucket for GcsBucket {
    fn at_once(&self) -> bool {
        false // GCS deletes only an empty bucket
    }
    fn table(&self) -> String {
        format!(
            "type = \"gcs\"\nbucket = \"{}\"\nendpoint = \"{}\"\nanonymous = true\n",
            self.bucket,
            support::gcs::endpoint()
        )
    }
    async fn put(&self, name: &str, data: &[u8]) {
        self.upload(name, data).await;
        self.files
            .lock()
            .unwrap()
            .push((name.to_string(), data.to_vec()));
    }
    async fn vanish(&self) {
        let http = reqwest::Client::new();
        let files = self.files.lock().unwrap().clone();
        for (name, _) in &files {
            let enc = parse_files_migrate::parse::names::encode_uri_component(name);
            http.delete(self.url(&format!("/o/{enc}")))
                .send()
                .await
                .unwrap();
        }
        let resp = http.delete(self.url("")).send().await.unwrap();
        assert!(
            resp.status().is_success(),
            "delete bucket: {}",
            resp.status()
        );
    }
    async fn come_back(&self) {
        let url = format!(
            "{}/storage/v1/b?project=test-project",
            support::gcs::endpoint()
        );
        let body = serde_json::json!({ "name": self.bucket });
        let resp = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "re-create bucket: {}",
            resp.status()
        );
        let files = self.files.lock().unwrap().clone();
        for (name, data) in &files {
            self.upload(name, data).await;
        }
    }
}

/// An adapter move from `bucket` to a directory; the bucket vanishes once 5 files are copied.
async fn source_bucket_vanishes(
    tag: &str,
    bucket: &dyn Bucket,
    db: &mongodb::Database,
    dir: &Path,
) {
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i:03}.bin")).collect();
    app::seed_items(db, &names).await;
    let mut files = std::collections::BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let data = support::bytes(20_000 + i, i as u64);
        bucket.put(n, &data).await;
        files.insert(n.clone(), data);
    }
    let dest = dir.join("dest");
    let config = dir.join("src.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[source.server]\n{}{}\n[run]\nconcurrency = 2\nselect = \"server\"\ntps_limit = 20\n",
            app::base_tables(db.name(), FILE_KEY),
            bucket.table(),
            app::fs_destination(&dest),
        ),
    )
    .unwrap();
    let child = spawn(&config);
    let copied = || std::fs::read_dir(&dest).map_or(0, |d| d.count());
    for _ in 0..1200 {
        if copied() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(copied() >= 5, "{tag}: the run never started copying");
    bucket.vanish().await;
    let stopped = finish(child).await;
    assert_stopped(
        tag,
        &stopped,
        &["refused the request", "bucket does not exist"],
    );
    let missing = stopped.1["files"]["missing"].as_u64().unwrap();
    if bucket.at_once() {
        assert_eq!(
            missing, 0,
            "{tag}: no file may be recorded missing because its bucket vanished: {}",
            stopped.1
        );
    }
    // The fix: the bucket is back; the re-run copies the rest (and, with --retry-failed, the
    // files whose objects were deleted before their bucket).
    bucket.come_back().await;
    let retry: &[&str] = if missing > 0 {
        &["--retry-failed"]
    } else {
        &[]
    };
    let (code, summary, stderr) = finish(app::spawn_migrate(&config, retry)).await;
    assert_eq!(code, 0, "{tag}: {stderr}\n{summary}");
    assert_eq!(summary["files"]["missing"], 0, "{tag}: {summary}");
    for (n, data) in &files {
        let got = std::fs::read(dest.join(n)).unwrap_or_else(|e| panic!("{tag}: {n}: {e}"));
        assert!(got == *data, "{tag}: {n} differs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_source_bucket_stops_the_run_instead_of_marking_every_file_missing() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = OwnS3::start(&dir.path().join("s3")).await;
    let bucket = s3::fresh_bucket_at(&s3.endpoint(), "vanish-src").await;
    let db = support::mongo_client()
        .await
        .database(&support::unique("vanish_s3src"));
    source_bucket_vanishes("s3 source", &S3Bucket { s3, bucket }, &db, dir.path()).await;

    let dir = tempfile::tempdir().unwrap();
    let gcs = GcsBucket {
        bucket: support::gcs::fresh_bucket("vanish-gcs").await,
        files: Default::default(),
    };
    let db = support::mongo_client()
        .await
        .database(&support::unique("vanish_gcssrc"));
    source_bucket_vanishes("gcs source", &gcs, &db, dir.path()).await;
}
