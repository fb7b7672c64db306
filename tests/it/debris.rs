//! Debris of killed copies is cleaned up by the tool (issue #20, item 5): a run is killed
//! (`kill -9`) in the middle of a large upload — an S3 multipart upload, a GridFS upload — which
//! leaves an unfinished upload on the server (S3: the upload and its parts; GridFS: chunks with
//! no files document). `migrate --dry-run` and `status` report it, the next run removes it and
//! `status` says what was removed; another writer's upload in flight that the ledger knows
//! nothing about is left as it was; and the migration ends complete and byte-identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Binary, Bson, Document, doc, oid::ObjectId, spec::BinarySubtype};
use parse_files_migrate::storage::{self, StoreConfig, StoreContext};

use crate::support::{self, app};

/// Large files: three parts of an S3 upload, 48 GridFS chunks each.
const SIZE: usize = 12 * 1024 * 1024;
const FILES: usize = 2;
/// Slow enough that a kill lands in the middle of the first file.
const BWLIMIT: &str = "2MiB";

struct Scenario {
    db: Database,
    config: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

impl Scenario {
    /// An app whose GridFS (`fs`) holds [`FILES`] large files, each referenced by an `Item`;
    /// `destination` is the `[destination]` table.
    async fn new(tag: &str, destination: &str) -> Scenario {
        let files: BTreeMap<String, Vec<u8>> = (0..FILES)
            .map(|i| {
                let name = format!("{:032x}_video {i}.mp4", i as u128 * 104_729 + 1);
                (name, support::bytes(SIZE + 1000 * i, i as u64 + 3))
            })
            .collect();
        let (db, config) =
            app::gridfs_items(tag, "debrisApp", "debrisKey", &files, destination).await;
        Scenario { db, config, files }
    }

    fn args(&self) -> Vec<&'static str> {
        vec!["--select", "server", "--concurrency", "1"]
    }

    /// Start a slow run and `kill -9` it once `ready` says an upload is under way.
    async fn kill_mid_upload(&self, what: &str, mut ready: impl AsyncFnMut() -> bool) {
        let mut args = self.args();
        args.extend(["--bwlimit", BWLIMIT]);
        let mut child = app::spawn_migrate(&self.config, &args);
        let started = Instant::now();
        while !ready().await {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before a {what} was under way"
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {what} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Requests the killed process had already sent may still land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!(
            "debris: killed the run {:?} into a {what}",
            started.elapsed()
        );
    }

    /// `migrate --dry-run`'s stderr.
    fn dry_run(&self) -> String {
        let mut args = vec!["--dry-run", "--output", "jsonl"];
        args.extend(self.args());
        let out = app::migrate(&self.config, &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stderr
    }

    /// A run to the end; its stderr.
    fn finish(&self) -> String {
        let mut args = vec!["--yes", "--output", "jsonl"];
        args.extend(self.args());
        let out = app::migrate(&self.config, &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stderr
    }

    /// `status --output json`'s `debris`.
    fn status_debris(&self) -> serde_json::Value {
        let out = app::run([
            "-c",
            self.config.to_str().unwrap(),
            "status",
            "--output",
            "json",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["debris"].clone()
    }

    async fn assert_complete(&self) {
        assert_eq!(
            support::ledger::files_in(&self.db, "verified").await,
            FILES as u64
        );
    }
}

/// The `files_id`s of chunks in `<bucket>.chunks` that no files document has, with their chunk
/// counts.
async fn orphans(db: &Database, bucket: &str) -> BTreeMap<String, u64> {
    let chunks = app::find_all(db, &format!("{bucket}.chunks")).await;
    let files: Vec<Bson> = app::find_all(db, &format!("{bucket}.files"))
        .await
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    let mut out = BTreeMap::new();
    for c in chunks {
        let id = c.get("files_id").unwrap().clone();
        if !files.contains(&id) {
            *out.entry(id.to_string()).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn kill_9_mid_gridfs_upload_the_next_run_removes_its_chunks_only() {
    let s = Scenario::new(
        "debris_gridfs",
        "type = \"gridfs\"\nbucket = \"dest\"\nencryption = \"none\"\n",
    )
    .await;
    let chunks = s.db.collection::<Document>("dest.chunks");
    s.kill_mid_upload("GridFS upload", async || {
        chunks.count_documents(doc! {}).await.unwrap() >= 8
    })
    .await;
    let ours = orphans(&s.db, "dest").await;
    assert!(
        !ours.is_empty(),
        "the kill left chunks without a files document"
    );
    let our_chunks: u64 = ours.values().sum();

    // Another writer's upload in flight (Parse Server's): chunks of an id this process made,
    // with no files document yet.
    let foreign = ObjectId::new();
    let data = Binary {
        subtype: BinarySubtype::Generic,
        bytes: vec![7; 1024],
    };
    chunks
        .insert_many([
            doc! {"files_id": foreign, "n": 0, "data": data.clone()},
            doc! {"files_id": foreign, "n": 1, "data": data},
        ])
        .await
        .unwrap();

    // Reported before anything is removed.
    let debris = s.status_debris();
    assert_eq!(debris["runs_unswept"], 1, "{debris}");
    let dry = s.dry_run();
    let expected = format!(
        "would remove {} unfinished uploads ({our_chunks} GridFS chunks)",
        ours.len()
    );
    assert!(dry.contains(&expected), "{expected:?} in:\n{dry}");
    assert_eq!(
        orphans(&s.db, "dest").await.len(),
        ours.len() + 1,
        "a dry run removes nothing"
    );

    let log = s.finish();
    let expected = format!(
        "removed {} unfinished uploads ({our_chunks} GridFS chunks)",
        ours.len()
    );
    assert!(log.contains(&expected), "{expected:?} in:\n{log}");
    let left = orphans(&s.db, "dest").await;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        vec![&Bson::ObjectId(foreign).to_string()],
        "none of ours left, the other writer's untouched"
    );
    assert_eq!(left.values().sum::<u64>(), 2);
    s.assert_complete().await;
    check_gridfs_bytes(&s).await;

    let debris = s.status_debris();
    assert_eq!(debris["runs_swept"], 1, "{debris}");
    assert_eq!(debris["runs_unswept"], 0, "{debris}");
    assert_eq!(debris["uploads_removed"], ours.len() as u64, "{debris}");
    assert_eq!(debris["chunks_removed"], our_chunks, "{debris}");
    // A later run has nothing more to sweep.
    let again = s.finish();
    assert!(!again.contains("unfinished uploads"), "{again}");
    eprintln!(
        "debris: GridFS: {} killed upload(s), {our_chunks} chunks removed; the other writer's 2 \
         chunks kept",
        ours.len()
    );
}

/// Every file is at the GridFS destination, byte-identical.
async fn check_gridfs_bytes(s: &Scenario) {
    use futures::TryStreamExt;
    let ctx = StoreContext {
        mongo_uri: Some(support::mongo_uri().into()),
        database: Some(s.db.name().to_string()),
        file_key: None,
        app_id: None,
    };
    let cfg: StoreConfig =
        toml::from_str("type = \"gridfs\"\nbucket = \"dest\"\nencryption = \"none\"").unwrap();
    let dest = storage::open(&cfg, &ctx).await.unwrap();
    let ledger = support::ledger::of(&s.db);
    let names: Vec<&str> = s.files.keys().map(String::as_str).collect();
    let records = ledger.lookup(&names).await.unwrap();
    for (n, data) in &s.files {
        let target = &records[n].target;
        let got = dest.get(target, &Default::default()).await.unwrap();
        let bytes: Vec<u8> = got
            .stream
            .map_ok(|b| b.to_vec())
            .try_concat()
            .await
            .unwrap();
        assert!(bytes == *data, "{n}: bytes differ");
    }
}

/// s3s-fs keeps an unfinished multipart upload as files named after its id in its data
/// directory (it cannot list uploads): how many there are of `upload_id`.
fn s3s_upload_files(upload_id: &str) -> usize {
    let dir = Path::new(&support::env("PFM_TEST_SERVICES_DIR")).join("data/s3");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(upload_id))
        .count()
}

#[tokio::test]
async fn kill_9_mid_s3_multipart_upload_the_next_run_aborts_it_only() {
    let bucket = support::s3::fresh_bucket("debris").await;
    let table = support::s3::table(&bucket, &support::s3::endpoint()) + "part_size = 5242880\n";
    let s = Scenario::new("debris_s3", &table).await;
    let uploads = s.db.collection::<Document>("_FileMigration.uploads");
    let mut ours = None;
    s.kill_mid_upload("multipart upload", async || {
        if let Some(d) = uploads.find_one(doc! {}).await.unwrap() {
            let id = d.get_str("id").unwrap().to_string();
            // Created, and its first part stored.
            let ready = s3s_upload_files(&id) >= 2;
            ours = Some(id);
            return ready;
        }
        false
    })
    .await;
    let ours = ours.unwrap();
    let parts = s3s_upload_files(&ours);
    assert!(parts >= 2, "the kill left the upload {ours} unfinished");

    // Another writer's upload in flight, which no ledger record names.
    let client = support::s3::raw_client().await;
    let foreign = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("another-writer.bin")
        .send()
        .await
        .unwrap();
    let foreign = foreign.upload_id().unwrap().to_string();
    client
        .upload_part()
        .bucket(&bucket)
        .key("another-writer.bin")
        .upload_id(&foreign)
        .part_number(1)
        .body(vec![1_u8; 1024].into())
        .send()
        .await
        .unwrap();
    let foreign_files = s3s_upload_files(&foreign);
    assert!(foreign_files >= 2);

    let debris = s.status_debris();
    assert_eq!(debris["runs_unswept"], 1, "{debris}");
    let dry = s.dry_run();
    assert!(dry.contains("would remove 1 unfinished uploads"), "{dry}");
    assert_eq!(s3s_upload_files(&ours), parts, "a dry run removes nothing");

    let log = s.finish();
    assert!(log.contains("removed 1 unfinished uploads"), "{log}");
    assert_eq!(s3s_upload_files(&ours), 0, "our unfinished upload is gone");
    assert_eq!(
        s3s_upload_files(&foreign),
        foreign_files,
        "the other writer's is untouched"
    );
    s.assert_complete().await;
    for (n, data) in &s.files {
        let records = support::ledger::of(&s.db)
            .lookup(&[n.as_str()])
            .await
            .unwrap();
        let got = client
            .get_object()
            .bucket(&bucket)
            .key(&records[n].target)
            .send()
            .await
            .unwrap();
        let got = got.body.collect().await.unwrap().into_bytes();
        assert!(got == data.as_slice(), "{n}: bytes differ");
    }
    let debris = s.status_debris();
    assert_eq!(debris["runs_swept"], 1, "{debris}");
    assert_eq!(debris["uploads_removed"], 1, "{debris}");
    assert_eq!(debris["runs_unswept"], 0, "{debris}");
    // The finished runs forgot their upload records; the swept one's went with the sweep.
    assert_eq!(uploads.count_documents(doc! {}).await.unwrap(), 0);
    client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("another-writer.bin")
        .upload_id(&foreign)
        .send()
        .await
        .unwrap();
    eprintln!(
        "debris: S3: 1 killed multipart upload ({parts} server files) aborted; the other writer's kept"
    );
}

/// A run in progress is not gone: while it is in the middle of a GridFS upload (chunks, no files
/// document yet) and holds its lease, neither `migrate --dry-run` nor `status` takes its chunks
/// for debris; it finishes with every file complete and no orphan chunk.
#[tokio::test]
async fn a_running_runs_upload_is_not_debris() {
    let s = Scenario::new(
        "debris_live",
        "type = \"gridfs\"\nbucket = \"dest\"\nencryption = \"none\"\n",
    )
    .await;
    let chunks = s.db.collection::<Document>("dest.chunks");
    let mut args = s.args();
    args.extend(["--bwlimit", BWLIMIT]);
    let child = app::spawn_migrate(&s.config, &args);
    let started = Instant::now();
    while chunks.count_documents(doc! {}).await.unwrap() < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no upload within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight = orphans(&s.db, "dest").await;
    assert!(!in_flight.is_empty(), "an upload is under way");
    let dry = s.dry_run();
    assert!(!dry.contains("unfinished uploads"), "{dry}");
    assert_eq!(s.status_debris()["runs_unswept"], 0);
    let out = app::wait(child).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(orphans(&s.db, "dest").await.is_empty(), "no orphan chunk");
    s.assert_complete().await;
    check_gridfs_bytes(&s).await;
}

/// A killed run whose destination has nothing to sweep (fs: the store removes its dead
/// processes' temp files itself) is marked by the next run, so `status` does not report it as
/// waiting for a sweep.
#[tokio::test]
async fn a_killed_run_to_fs_is_not_left_waiting_for_a_sweep() {
    let dir = support::temp_path("debris-fs");
    let table = format!(
        "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.display()
    );
    let s = Scenario::new("debris_fs", &table).await;
    let started = Instant::now();
    s.kill_mid_upload("copy to fs", async || {
        started.elapsed() > Duration::from_millis(1500)
    })
    .await;
    assert_eq!(s.status_debris()["runs_unswept"], 1);
    let log = s.finish();
    assert!(!log.contains("unfinished uploads"), "{log}");
    let debris = s.status_debris();
    assert_eq!(debris["runs_unswept"], 0, "{debris}");
    assert_eq!(debris["runs_not_sweepable"], 1, "{debris}");
    assert_eq!(debris["runs_swept"], 0, "{debris}");
    s.assert_complete().await;
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        FILES,
        "the files and nothing else (no temp file): {left:?}"
    );
}
