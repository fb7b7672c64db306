//! A crash must not lock the operator out (issue #20, item 1): `kill -9` at random instants of
//! a run lasting several seconds, each followed at once by a re-run that must proceed (the
//! crashed run's lease is taken over on the same machine instead of waiting for it to expire),
//! for a legacy (HTTP) → fs migration and a GridFS → S3 adapter move, with kills landing in the
//! copy and in the rewrite phase; then the end state is complete, byte-identical, with no orphan
//! and no dangling reference. And a lease held by a live process is still refused, until
//! `--break-lease --yes`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::{encode_uri_component, parse_server_name};

use crate::support::{self, app};

const KILLS: usize = 20;
/// About how long a run takes to connect and take its lease: the least delay before a kill.
const START: Duration = Duration::from_millis(250);
const FILE_KEY: &str = "crashKey";
const OLD_URL: &str = "http://old-host:1337/parse/files/crashApp/";

/// Where a run was when it was killed, read from the ledger afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Some files not yet verified.
    Copy,
    /// Every file verified, some references not yet rewritten.
    Rewrite,
    /// Nothing left (the kill came after the last write).
    Done,
}

/// One app to migrate: `files` source files, `Item` objects referencing one each (top level)
/// and `refs` `Post` objects (walked after `Item`) referencing them again, so the end of the run
/// is rewrites only.
struct Scenario {
    db: Database,
    config: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
    /// References the run rewrites (ledger `rewritten` at the end).
    rewrites: u64,
    args: Vec<&'static str>,
    /// The fs destination's directory, to check after each kill that nothing is stored without
    /// an intent in the ledger (None: the destination is a bucket).
    dest: Option<PathBuf>,
}

impl Scenario {
    async fn phase(&self) -> Phase {
        let verified = support::ledger::files_in(&self.db, "verified").await;
        if verified < self.files.len() as u64 {
            return Phase::Copy;
        }
        if support::ledger::refs_in(&self.db, Some("rewritten")).await < self.rewrites {
            Phase::Rewrite
        } else {
            Phase::Done
        }
    }

    /// Intent before copy: every file the killed run left at the destination has its record in
    /// the ledger (in whatever state: planned if the kill came before its outcome was recorded),
    /// so a re-run knows it and nothing is orphaned; and verification before rewrite. Returns how
    /// many stored files and rewritten files it checked.
    async fn assert_write_order(&self) -> (usize, usize) {
        let Some(dir) = &self.dest else {
            return (0, 0);
        };
        // The stored (encoded, renamed) name of each source file → its source name.
        let source_of: BTreeMap<String, &str> = self
            .files
            .keys()
            .map(|n| (encode_uri_component(&parse_server_name(n)), n.as_str()))
            .collect();
        let stored: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.')) // a named temp file (filesystems without O_TMPFILE)
                .collect(),
            Err(_) => Vec::new(), // nothing stored yet
        };
        let names: Vec<&str> = stored
            .iter()
            .map(|n| {
                *source_of
                    .get(n)
                    .unwrap_or_else(|| panic!("{n} at the destination is no file of this app"))
            })
            .collect();
        let recorded = support::ledger::of(&self.db).lookup(&names).await.unwrap();
        for n in &names {
            assert!(
                recorded.contains_key(*n),
                "{n} is at the destination with no intent in the ledger"
            );
        }
        (
            names.len(),
            self.assert_rewrites_follow_verification().await,
        )
    }

    /// Verification before rewrite: every reference the killed run already rewrote (it names a
    /// renamed target) is to a file the ledger records verified. Returns how many such files.
    async fn assert_rewrites_follow_verification(&self) -> usize {
        let source_of: BTreeMap<String, &str> = self
            .files
            .keys()
            .map(|n| (parse_server_name(n), n.as_str()))
            .collect();
        let mut rewritten: BTreeSet<&str> = BTreeSet::new();
        for class in ["Item", "Post"] {
            for d in app::find_all(&self.db, class).await {
                if let Some(source) = d.get_str("file").ok().and_then(|f| source_of.get(f)) {
                    rewritten.insert(source);
                }
            }
        }
        let names: Vec<&str> = rewritten.into_iter().collect();
        let recorded = support::ledger::of(&self.db).lookup(&names).await.unwrap();
        for n in &names {
            let state = recorded.get(*n).map(|r| r.state);
            assert_eq!(
                state,
                Some(parse_files_migrate::ledger::FileState::Verified),
                "a reference to {n} was rewritten before its copy was recorded verified"
            );
        }
        names.len()
    }

    fn spawn(&self, log: &Path) -> std::process::Child {
        let mut c = app::command();
        c.arg("-c")
            .arg(&self.config)
            .arg("migrate")
            .args(["--yes", "--output", "jsonl"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        c.spawn().unwrap()
    }

    /// Kill runs at random instants until [`KILLS`] have landed, each followed at once by the
    /// next run; then a last run to the end. Each delay is [`START`] plus a random part of the
    /// current phase's length (from an uninterrupted run, `probe`); once half the kills have
    /// landed in the copy phase, a run is let through to its rewrites before it is killed.
    /// Returns the phase of each kill.
    async fn kill_repeatedly(&self, tag: &str, probe: Timing) -> Vec<Phase> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("{tag}: kill delays from seed {seed}");
        let mut rng = support::fnv1a(seed.to_string()) | 1;
        let mut random = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 10_000) as f64 / 10_000.0
        };
        let log = support::temp_path(tag).with_extension("log");
        let (mut phases, mut takeovers, mut runs) = (Vec::new(), 0, 0);
        let (mut stored_checked, mut rewritten_checked) = (0, 0);
        while phases.len() < KILLS {
            runs += 1;
            assert!(runs < KILLS * 3, "runs kept finishing before the kill");
            let copy_kills = phases.iter().filter(|p| **p == Phase::Copy).count();
            let mut child = self.spawn(&log);
            let phase = match self.phase().await {
                // Enough kills in the copy phase: let this run copy, kill it once it rewrites.
                Phase::Copy if copy_kills >= KILLS / 2 => {
                    while child.try_wait().unwrap().is_none() && self.phase().await == Phase::Copy {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Duration::ZERO
                }
                Phase::Copy => probe.copy / (KILLS / 2 + 2) as u32,
                _ => (probe.rewrite + probe.startup) / (KILLS + 2) as u32,
            };
            let delay = START + phase.mul_f64(2.0 * random());
            tokio::time::sleep(delay).await;
            let exited = child.try_wait().unwrap();
            if exited.is_none() {
                child.kill().unwrap(); // SIGKILL
            }
            let status = child.wait().unwrap();
            let stderr = read(&log);
            assert!(
                !stderr.contains("another run holds the lease") && !stderr.contains("panicked"),
                "run {runs} after a kill was refused or failed:\n{stderr}"
            );
            takeovers += stderr.matches("took over the lease").count();
            match exited {
                None => {
                    let (stored, rewritten) = self.assert_write_order().await;
                    stored_checked += stored;
                    rewritten_checked += rewritten;
                    phases.push(self.phase().await)
                }
                Some(_) if status.success() => break,
                Some(_) => panic!("run {runs} failed ({status}):\n{stderr}"),
            }
        }
        let mut last = self.spawn(&log);
        let status = last.wait().unwrap();
        let stderr = read(&log);
        assert!(status.success(), "the final run: {stderr}");
        if !phases.is_empty() {
            takeovers += stderr.matches("took over the lease").count();
        }
        let count = |p| phases.iter().filter(|q| **q == p).count();
        eprintln!(
            "{tag}: {} kills survived ({} in the copy phase, {} in the rewrite phase, {} after \
             the last write) over {runs} runs; {takeovers} crashed runs' leases taken over at once",
            phases.len(),
            count(Phase::Copy),
            count(Phase::Rewrite),
            count(Phase::Done)
        );
        assert_eq!(phases.len(), KILLS, "every kill landed mid-run");
        if self.dest.is_some() {
            eprintln!(
                "{tag}: after the kills, {stored_checked} stored files had their intent and \
                 {rewritten_checked} files with rewritten references were verified"
            );
            assert!(stored_checked > 0, "the kills left files to check");
            assert!(rewritten_checked > 0, "the kills left rewrites to check");
        }
        assert!(
            count(Phase::Copy) >= 2,
            "kills in the copy phase: {phases:?}"
        );
        assert!(
            count(Phase::Rewrite) >= 2,
            "kills in the rewrite phase: {phases:?}"
        );
        assert!(
            takeovers >= KILLS / 2,
            "most kills left a lease to take over ({takeovers})"
        );
        phases
    }
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// `n` files of a few tens of KB, with their bytes.
fn files(n: usize, name: impl Fn(usize) -> String) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| (name(i), support::bytes(20_000 + 97 * i, i as u64 + 11)))
        .collect()
}

/// `Item` objects (one per file) and `refs` `Post` objects whose `file` / nested `meta.f`
/// reference the last ten files in turn (copied last: the rest of the run after the last copy is
/// rewrites only).
async fn seed_objects(db: &Database, names: &[String], refs: usize, nested: bool) {
    db.collection::<Document>("_SCHEMA")
        .insert_many([
            doc! {"_id": "Item", "objectId": "string", "file": "file"},
            doc! {"_id": "Post", "objectId": "string", "file": "file", "meta": "object"},
        ])
        .await
        .unwrap();
    let items: Vec<Document> = names
        .iter()
        .enumerate()
        .map(|(i, n)| doc! {"_id": format!("i{i:05}"), "file": n})
        .collect();
    db.collection::<Document>("Item")
        .insert_many(items)
        .await
        .unwrap();
    let posts: Vec<Document> = (0..refs)
        .map(|j| {
            let n = &names[names.len() - 1 - j % 10];
            if nested {
                let url = format!("{OLD_URL}{}", encode_uri_component(n));
                doc! {"_id": format!("p{j:05}"), "meta": {"f": {"__type": "File", "name": n, "url": url}}}
            } else {
                doc! {"_id": format!("p{j:05}"), "file": n}
            }
        })
        .collect();
    db.collection::<Document>("Post")
        .insert_many(posts)
        .await
        .unwrap();
}

fn write_config(tag: &str, db: &str, source: &str, destination: &str) -> PathBuf {
    app::write_config(
        tag,
        db,
        "crashApp",
        FILE_KEY,
        "page_size = 20",
        source,
        destination,
    )
}

/// How long the phases of an uninterrupted run take.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// A run with nothing left to do (start-up and a walk of every object).
    startup: Duration,
    copy: Duration,
    rewrite: Duration,
}

/// Time an uninterrupted run of `s` (a copy of the scenario the kills go to), watching the
/// ledger for the end of the copy phase, and a second run that finds nothing to do.
async fn measure(s: &Scenario) -> Timing {
    let log = support::temp_path("crash-probe").with_extension("log");
    let started = Instant::now();
    let mut child = s.spawn(&log);
    let mut copy = None;
    while child.try_wait().unwrap().is_none() {
        if copy.is_none() && s.phase().await != Phase::Copy {
            copy = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    assert!(child.wait().unwrap().success(), "{}", read(&log));
    let again = Instant::now();
    assert!(s.spawn(&log).wait().unwrap().success(), "{}", read(&log));
    let startup = again.elapsed();
    let copy = copy.unwrap_or(total);
    let t = Timing {
        startup,
        copy: copy.saturating_sub(startup),
        rewrite: total.saturating_sub(copy),
    };
    eprintln!("crash: an uninterrupted run: {total:?} ({t:?})");
    t
}

async fn legacy_to_fs(tag: &str) -> (Scenario, PathBuf) {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let http_dir = support::unique(tag);
    let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT"))
        .join(&http_dir)
        .join(FILE_KEY);
    std::fs::create_dir_all(&root).unwrap();
    let files = files(60, |i| {
        format!("tfss-3f2504e0-4f89-11d3-9a0c-{i:012x}-c{i}.bin")
    });
    for (name, data) in &files {
        std::fs::write(root.join(name), data).unwrap();
    }
    let names: Vec<String> = files.keys().cloned().collect();
    let refs = 8000;
    seed_objects(&db, &names, refs, false).await;
    let dest = support::temp_path(&format!("{tag}-dest"));
    let source = format!(
        "[source.hosted]\ntype = \"http\"\ntfss_base_url = \"{}/{http_dir}/{{file_key}}/\"\n",
        support::env("PFM_TEST_HTTP_URL")
    );
    let destination = format!("type = \"fs\"\npath = \"{}\"\n", dest.display());
    let config = write_config(tag, &db_name, &source, &destination);
    let s = Scenario {
        db,
        config,
        files,
        rewrites: (names.len() + refs) as u64,
        args: vec!["--bwlimit", "200KiB", "--concurrency", "4"],
        dest: Some(dest.clone()),
    };
    (s, dest)
}

/// The end state of the legacy → fs migration: every reference names its renamed target, the
/// directory holds exactly the targets (no temp file, no orphan), byte-identical, and the
/// ledger agrees.
async fn assert_fs_complete(s: &Scenario, dest: &Path) {
    let targets: BTreeMap<String, &Vec<u8>> = s
        .files
        .iter()
        .map(|(n, d)| (parse_server_name(n), d))
        .collect();
    let mut checked = 0;
    for class in ["Item", "Post"] {
        for d in app::find_all(&s.db, class).await {
            let name = d.get_str("file").unwrap();
            assert!(targets.contains_key(name), "dangling or not rewritten: {d}");
            checked += 1;
        }
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = targets.keys().map(|t| encode_uri_component(t)).collect();
    assert_eq!(
        on_disk, expected,
        "no orphan, no temp file, nothing missing"
    );
    for (t, data) in &targets {
        let got = std::fs::read(dest.join(encode_uri_component(t))).unwrap();
        assert!(got == **data, "{t}: bytes differ");
    }
    assert_eq!(
        support::ledger::files_in(&s.db, "verified").await,
        s.files.len() as u64
    );
    let st = support::ledger::of(&s.db).status(0).await.unwrap();
    assert_eq!(
        support::ledger::refs_in(&s.db, Some("rewritten")).await,
        s.rewrites,
        "{:?}",
        st.references
    );
    eprintln!(
        "crash: legacy → fs: {checked} references and {} files checked, lost 0",
        targets.len()
    );
}

#[tokio::test]
async fn kill_9_twenty_times_legacy_to_fs_every_rerun_proceeds() {
    let (probe, _) = legacy_to_fs("crash_fs_probe").await;
    let span = measure(&probe).await;
    let (s, dest) = legacy_to_fs("crash_fs").await;
    s.kill_repeatedly("crash: legacy → fs", span).await;
    assert_fs_complete(&s, &dest).await;
}

async fn gridfs_to_s3(tag: &str) -> (Scenario, String) {
    use parse_files_migrate::storage::{self, StoreConfig, StoreContext};
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let bucket = support::s3::fresh_bucket("crash").await;
    let ctx = StoreContext {
        mongo_uri: Some(support::mongo_uri().into()),
        database: Some(db_name.clone()),
        file_key: None,
        app_id: Some("crashApp".into()),
    };
    let gridfs: StoreConfig = toml::from_str("type = \"gridfs\"").unwrap();
    let source_store = storage::open(&gridfs, &ctx).await.unwrap();
    let files = files(60, |i| format!("{:032x}_photo {i}.jpg", i as u128 * 7919));
    support::conformance::put_all(&*source_store, &files).await;
    let names: Vec<String> = files.keys().cloned().collect();
    let refs = 8000;
    seed_objects(&db, &names, refs, true).await;
    let destination = support::s3::table(&bucket, &support::s3::endpoint());
    let config = write_config(
        tag,
        &db_name,
        "[source.server]\ntype = \"gridfs\"\n",
        &destination,
    );
    let s = Scenario {
        db,
        config,
        files,
        rewrites: refs as u64,
        args: vec![
            "--select",
            "server",
            "--bwlimit",
            "200KiB",
            "--concurrency",
            "4",
        ],
        dest: None,
    };
    (s, bucket)
}

#[tokio::test]
async fn kill_9_twenty_times_gridfs_to_s3_every_rerun_proceeds() {
    let (probe, _) = gridfs_to_s3("crash_s3_probe").await;
    let span = measure(&probe).await;
    let (s, bucket) = gridfs_to_s3("crash_s3").await;
    s.kill_repeatedly("crash: GridFS → S3", span).await;

    // Every reference names a file that is in the bucket, byte-identical; nested URLs rebased;
    // the bucket holds exactly the files (no orphan, no unfinished upload visible).
    let client = support::s3::raw_client().await;
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: BTreeSet<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = s.files.keys().cloned().collect();
    assert_eq!(keys, expected, "no orphan, nothing missing");
    for (n, data) in &s.files {
        let got = client
            .get_object()
            .bucket(&bucket)
            .key(n)
            .send()
            .await
            .unwrap();
        let got = got.body.collect().await.unwrap().into_bytes();
        assert!(got == data.as_slice(), "{n}: bytes differ");
    }
    // (The files are below the multipart threshold: each upload is one PUT, nothing to abort;
    // s3s-fs does not list multipart uploads.)
    let mut checked = 0;
    for d in app::find_all(&s.db, "Item").await {
        assert!(s.files.contains_key(d.get_str("file").unwrap()), "{d}");
        checked += 1;
    }
    for d in app::find_all(&s.db, "Post").await {
        let f = d.get_document("meta").unwrap().get_document("f").unwrap();
        let name = f.get_str("name").unwrap();
        assert!(s.files.contains_key(name), "{d}");
        let url = f.get_str("url").unwrap();
        assert!(
            url.starts_with(app::SERVER_URL) && url.ends_with(&encode_uri_component(name)),
            "not rebased: {d}"
        );
        checked += 1;
    }
    assert_eq!(
        support::ledger::files_in(&s.db, "verified").await,
        s.files.len() as u64
    );
    let st = support::ledger::of(&s.db).status(0).await.unwrap();
    assert_eq!(
        support::ledger::refs_in(&s.db, Some("rewritten")).await,
        s.rewrites,
        "{:?}",
        st.references
    );
    eprintln!(
        "crash: GridFS → S3: {checked} references and {} files checked, lost 0",
        s.files.len()
    );
}

/// A lease held by a live process of this machine (this test process) is refused, with the
/// holder named; `--break-lease` without a terminal needs `--yes`; with it the run proceeds.
#[tokio::test]
async fn a_live_holder_is_refused_until_break_lease_yes() {
    let (s, dest) = legacy_to_fs("crash_live").await;
    let ledger = support::ledger::of(&s.db);
    ledger.lease("all", "this-test").await.unwrap();
    let config = s.config.to_str().unwrap();
    let out = app::run(["-c", config, "migrate", "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("another run holds the lease") && out.stderr.contains("this-test"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--break-lease"),
        "the hint: {}",
        out.stderr
    );
    assert!(!dest.exists() || std::fs::read_dir(&dest).unwrap().count() == 0);

    let out = app::run(["-c", config, "migrate", "--break-lease"]);
    assert_eq!(out.code, 2, "no terminal, no --yes: {}", out.stderr);
    let still = support::ledger::of(&s.db)
        .holders(Some("all"))
        .await
        .unwrap();
    assert_eq!(still.len(), 1, "not broken without consent");
    assert_eq!(still[0].host, "this-test");

    let out = app::run(["-c", config, "migrate", "--break-lease", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("broke the lease"), "{}", out.stderr);
    assert_fs_complete(&s, &dest).await;
    let left = support::ledger::of(&s.db).holders(None).await.unwrap();
    assert!(left.is_empty(), "released at the end: {left:?}");
}
