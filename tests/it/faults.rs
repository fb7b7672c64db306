//! Reliability under faults: the HTTP source misbehaving in every way a flaky host does (5xx,
//! throttling with `Retry-After`, resets and stalls mid-body, bodies shorter than announced,
//! 404s), and the destination dying mid-run. Each migration is checked file by file and reference
//! by reference; the figures are printed (`--nocapture`) so they can be quoted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::parse_server_name;
use parse_files_migrate::storage::http::{HttpConfig, HttpStore};
use parse_files_migrate::storage::{self, GetOptions, ObjectStore, StorageError, StoreContext};

use crate::support::app::{self, Hosted};
use crate::support::faulty::{Fault, FaultyServer, Options, Request, Schedule};
use crate::support::{self, fnv1a};

const FILE_KEY: &str = "fk-faults-SECRET";

/// The transient faults a migration must ride out (404 is not one: it means "missing").
const TRANSIENT: [Fault; 7] = [
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::Throttle,
    Fault::Reset,
    Fault::Stall,
    Fault::ShortBody,
];

/// 45 % of files fail their first request, 12 % their second too (with another fault); the third
/// request always succeeds, well within the retry budget.
fn transient(r: &Request<'_>) -> Option<Fault> {
    let h = fnv1a(r.name);
    let pick = |salt: u64| TRANSIENT[((h / salt) % TRANSIENT.len() as u64) as usize];
    match r.attempt {
        0 if h % 100 < 45 => Some(pick(100)),
        1 if h % 100 < 12 => Some(pick(1000)),
        _ => None,
    }
}

fn ctx() -> StoreContext {
    StoreContext {
        file_key: Some(FILE_KEY.into()),
        ..Default::default()
    }
}

fn http_store(server: &FaultyServer, timeout_secs: u64) -> HttpStore {
    let cfg = HttpConfig {
        tfss_base_url: Some(format!("{}/tfss/{{file_key}}/", server.url())),
        timeout_secs: Some(timeout_secs),
        ..Default::default()
    };
    HttpStore::new(&cfg, &ctx()).unwrap()
}

async fn read(store: &HttpStore, name: &str) -> Result<Vec<u8>, StorageError> {
    let got = store.get(name, &GetOptions::default()).await?;
    let chunks: Vec<bytes::Bytes> = got.stream.try_collect().await?;
    Ok(chunks.concat())
}

/// Each fault, once, straight through the HTTP store: how it is classified, and that a stall is
/// cut by the idle timeout rather than waited out.
#[tokio::test]
async fn each_fault_is_classified() {
    let data = support::bytes(100_000, 1);
    let cases: Vec<(Fault, &str)> = TRANSIENT
        .iter()
        .map(|f| (*f, "retryable"))
        .chain([
            (Fault::StallBeforeHeaders, "retryable"),
            (Fault::NotFound, "not found"),
            (Fault::Status(400), "permanent"),
        ])
        .collect();
    let names: Vec<String> = (0..cases.len())
        .map(|i| format!("tfss-{}-f.bin", app::uuid(i as u64)))
        .collect();
    let by_name: std::collections::HashMap<String, Fault> = names
        .iter()
        .cloned()
        .zip(cases.iter().map(|c| c.0))
        .collect();
    let schedule: Schedule = Box::new(move |r| {
        (r.attempt == 0)
            .then(|| by_name.get(r.name).copied())
            .flatten()
    });
    let server = FaultyServer::start(
        names.iter().map(|n| (n.clone(), data.clone())),
        schedule,
        Options {
            stall: Duration::from_secs(10),
            ..Default::default()
        },
    );
    let store = http_store(&server, 1);
    for ((fault, want), name) in cases.iter().zip(&names) {
        let started = Instant::now();
        let err = read(&store, name)
            .await
            .expect_err(&format!("{fault:?} must fail the read"));
        let took = started.elapsed();
        let got = if err.is_not_found() {
            "not found"
        } else if err.is_retryable() {
            "retryable"
        } else {
            "permanent"
        };
        eprintln!("{:>16}: {got:<9} in {took:>6.2?}: {err}", fault.kind());
        assert_eq!(got, *want, "{fault:?}: {err}");
        assert!(!err.to_string().contains(FILE_KEY), "{err}");
        match fault {
            Fault::Throttle => assert_eq!(err.retry_after(), Some(Duration::from_secs(1))),
            Fault::Stall | Fault::StallBeforeHeaders => {
                assert!(took < Duration::from_secs(5), "stall not cut: {took:?}")
            }
            _ => {}
        }
        // The second request is served normally: a retry gets the whole file.
        assert!(read(&store, name).await.unwrap() == data, "{fault:?}");
    }
    assert_eq!(server.faults_total(), cases.len() as u64);
}

/// A config for `h`'s database reading from `server` into the fs directory `dest`.
fn config(db_name: &str, server: &FaultyServer, dest: &Path, run: &str) -> PathBuf {
    let text = format!(
        "{}{}{}\n[run]\n{run}\n",
        app::base_tables(db_name, FILE_KEY),
        app::hosted_table(&server.url(), 1),
        app::fs_destination(dest)
    );
    let path = support::temp_path("faults-cfg").with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One migration: a fresh database seeded with `files` hosted-era files, a host serving them by
/// `schedule`, and a config (`run`: its `[run]` table) moving them into a fresh fs directory.
struct Rig {
    db: mongodb::Database,
    h: Hosted,
    server: FaultyServer,
    dest: PathBuf,
    cfg: PathBuf,
}

impl Rig {
    async fn new(tag: &str, files: usize, schedule: Schedule, opts: Options, run: &str) -> Rig {
        let db_name = support::unique(tag);
        let db = support::mongo_client().await.database(&db_name);
        let h = Hosted::seed(&db, files, 0, FILE_KEY).await;
        let server = FaultyServer::start(h.files.clone(), schedule, opts);
        let dest = support::temp_path(&format!("{tag}-dest"));
        let cfg = config(&db_name, &server, &dest, run);
        Rig {
            db,
            h,
            server,
            dest,
            cfg,
        }
    }

    /// Migrate with `args` (the rig's server stays up as long as the rig), expect exit 0 and
    /// every file byte-identical at the destination; the run's output.
    fn migrate_all(&self, args: &[&str]) -> app::Out {
        let out = app::migrate(&self.cfg, args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            self.h.check_fs_destination(&self.dest, parse_server_name),
            self.h.files.len()
        );
        out
    }
}

fn no_secret(out: &app::Out) {
    out.assert_hides("fileKey", FILE_KEY);
}

/// 120 files behind a host that fails more than a third of all requests, with every transient
/// fault: the migration still completes (exit 0), every file arrives byte-identical, every
/// reference is rewritten.
#[tokio::test]
async fn migration_rides_out_transient_faults() {
    let Rig {
        db,
        h,
        server,
        dest,
        cfg,
    } = Rig::new(
        "faults",
        120,
        Box::new(transient),
        Options {
            stall: Duration::from_secs(4),
            ..Default::default()
        },
        "concurrency = 16\nretries = 4\nretry_base_ms = 50\nretry_max_ms = 2000",
    )
    .await;

    let started = Instant::now();
    let out = app::migrate(&cfg, &["--yes", "--output", "jsonl"]);
    let took = started.elapsed();
    no_secret(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.summary();
    assert_eq!(s["files"]["copied"], 120, "{s}");
    assert_eq!(s["files"]["failed"], 0, "{s}");

    let correct = h.check_fs_destination(&dest, parse_server_name);
    let rewritten = h.check_references(&db, parse_server_name).await;
    assert_eq!(s["references"]["rewritten"], rewritten as u64, "{s}");
    // Every retry answered a fault; a broken stream continued with a range read is no retry.
    let retries = s["files"]["retries"].as_u64().unwrap();
    assert!(
        retries > 0 && retries <= server.faults_total(),
        "retries {retries}, faults {}",
        server.faults_total()
    );
    let faults = server.faults();
    let kinds: BTreeSet<String> = faults.keys().cloned().collect();
    let want: BTreeSet<String> = TRANSIENT.iter().map(Fault::kind).collect();
    assert_eq!(kinds, want, "every transient fault kind was injected");
    let (total, requests) = (server.faults_total(), server.requests());
    assert!(
        total * 10 >= requests,
        "at least 10% of requests faulted: {total}/{requests}"
    );
    // Requests beyond the scheduled faults' retries: failures nobody injected (e.g. an idle
    // timeout on a loaded machine). Reported, not failed on: retries exist for them.
    let extra: Vec<(String, u32)> = server
        .attempts()
        .into_iter()
        .filter(|(name, n)| {
            let scheduled = (0..*n)
                .filter(|a| {
                    transient(&Request {
                        name,
                        attempt: *a,
                        n: 0,
                    })
                    .is_some()
                })
                .count() as u32;
            *n > scheduled + 1
        })
        .collect();
    eprintln!(
        "faults: {requests} requests, {total} faulted ({:.0}%): {faults:?}; unplanned extra requests: {extra:?}",
        100.0 * total as f64 / requests as f64
    );
    eprintln!(
        "result: exit 0, {correct}/{} files byte-identical, {rewritten}/{} references rewritten, {took:.1?}",
        h.files.len(),
        h.refs.len()
    );

    // Nothing hosted is left: the CI gate passes.
    let list = app::run([
        "-c",
        cfg.to_str().unwrap(),
        "list",
        "--fail-on",
        "parse-hosted,parse-legacy",
        "--output",
        "jsonl",
    ]);
    assert_eq!(list.code, 0, "{}", list.stderr);
}

/// A host that fails every request: `--max-errors` stops the run once that many files failed
/// (their retries spent) instead of failing every file of the database one by one; exit 3, not
/// the cutoff's 8; no document changes; the walk checkpoint is cleared so that the next run
/// retries them at once.
#[tokio::test]
async fn max_errors_stops_a_run_that_only_fails() {
    let Rig {
        db, server, cfg, ..
    } = Rig::new(
        "faults_budget",
        40,
        Box::new(|_| Some(Fault::Status(500))),
        Options::default(),
        "concurrency = 2\nretries = 1\nretry_base_ms = 10\nretry_max_ms = 20",
    )
    .await;
    let before = app::snapshot(&db).await;
    assert!(!before.keys().any(|c| c.starts_with("_FileMigration")));

    let out = app::migrate(&cfg, &["--yes", "--output", "jsonl", "--max-errors", "3"]);
    no_secret(&out);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let s = out.summary();
    assert_eq!(s["stopped_by"], "--max-errors 3", "{s}");
    let failed = s["files"]["failed"].as_u64().unwrap();
    let planned = s["files"]["planned"].as_u64().unwrap();
    // The budget, plus at most the copies already running when it ran out (concurrency 2):
    // queued copies are not started past it.
    assert!((3..=5).contains(&failed), "{s}");
    assert!(planned >= failed, "{s}");
    assert_eq!(
        s["files"]["retries"], failed,
        "one retry per failed file: {s}"
    );
    assert_eq!(server.requests(), 2 * failed, "nothing else was fetched");
    let mut after = app::snapshot(&db).await;
    after.retain(|c, _| !c.starts_with("_FileMigration"));
    assert_eq!(after, before, "no document changed");
    let walk = db.collection::<Document>("_FileMigration.walk");
    assert_eq!(
        walk.count_documents(doc! {}).await.unwrap(),
        0,
        "no checkpoint kept"
    );

    // The text summary says why it stopped and that it is not a cutoff to continue from.
    let out = app::migrate(&cfg, &["--yes", "--output", "text", "--max-errors", "2"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("stopped at --max-errors 2: too many failures"),
        "{}",
        out.stderr
    );
    eprintln!(
        "error budget: stopped after {failed} failed files of 40 ({} requests), exit 3",
        2 * failed
    );
}

/// Files the host answers with 404 (permanently) are reported missing: exit 3, their references
/// untouched, everything else migrated despite transient faults around them.
#[tokio::test]
async fn files_that_404_leave_references_untouched() {
    let db_name = support::unique("faults404");
    let db = support::mongo_client().await.database(&db_name);
    let mut h = Hosted::seed(&db, 40, 2, FILE_KEY).await;
    // Two files the host has but answers 404 for, as a host that lost them would.
    let gone: BTreeSet<String> = h.files.keys().step_by(9).take(2).cloned().collect();
    let served = h.files.clone();
    for g in &gone {
        h.files.remove(g);
        h.missing.push(g.clone());
    }
    let gone_s = gone.clone();
    let server = FaultyServer::start(
        served,
        Box::new(move |r| {
            if gone_s.contains(r.name) {
                Some(Fault::NotFound)
            } else {
                transient(r)
            }
        }),
        Options::default(),
    );
    let dest = support::temp_path("faults404-dest");
    let cfg = config(
        &db_name,
        &server,
        &dest,
        "retry_base_ms = 50\nretry_max_ms = 2000",
    );
    let before = app::snapshot(&db).await;

    let out = app::migrate(&cfg, &["--yes", "--output", "jsonl"]);
    no_secret(&out);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let s = out.summary();
    assert_eq!(s["files"]["missing"], 4, "{s}");
    assert_eq!(s["files"]["failed"], 0, "{s}");
    assert_eq!(s["files"]["copied"], 38, "{s}");
    let reported: BTreeSet<&str> = s["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = h.missing.iter().map(String::as_str).collect();
    assert_eq!(reported, want);
    assert!(
        out.stderr.contains("missing at the source"),
        "{}",
        out.stderr
    );

    h.check_fs_destination(&dest, parse_server_name);
    let rewritten = h.check_references(&db, parse_server_name).await;
    let untouched = h.refs.len() - rewritten;
    assert!(untouched >= 4, "{untouched}");
    // Untouched means untouched: documents whose only files are missing did not change at all.
    let after = app::snapshot(&db).await;
    for d in &before["Photo"] {
        let id = d.get_str("_id").unwrap();
        if id.starts_with('m') {
            assert!(after["Photo"].contains(d), "{id} changed");
        }
    }
    for g in &gone {
        let rec = support::ledger::file(&db, g).await.unwrap();
        assert_eq!(rec.state.as_str(), "missing", "{rec:?}");
    }
    eprintln!(
        "404s: {} files missing (2 never existed, 2 answered 404), {rewritten} references rewritten, \
         {untouched} untouched; faults {:?}",
        h.missing.len(),
        server.faults()
    );
}

/// The S3 destination is killed (SIGKILL) mid-run: the run ends cleanly with exit 3 (no panic),
/// nothing points at an object that is not there; once S3 is back, a re-run completes and
/// everything is correct.
#[tokio::test]
async fn destination_killed_mid_run_then_rerun_completes() {
    let db_name = support::unique("faults_s3");
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, 40, 0, FILE_KEY).await;
    // A slow source keeps the run going long enough to kill S3 in the middle of it.
    let server = FaultyServer::slow(h.files.clone(), Duration::from_millis(60));
    let s3_dir = support::temp_path("own-s3");
    let mut s3 = support::s3::OwnS3::start(&s3_dir).await;
    let bucket = support::s3::fresh_bucket_at(&s3.endpoint(), "kill").await;
    let text = format!(
        "{}{}\n[destination]\n{}\n[run]\nconcurrency = 4\nretries = 1\nretry_base_ms = 50\n",
        app::base_tables(&db_name, FILE_KEY),
        app::hosted_table(&server.url(), 2),
        support::s3::table(&bucket, &s3.endpoint()),
    );
    let cfg = support::temp_path("faults-s3").with_extension("toml");
    std::fs::write(&cfg, text).unwrap();

    // Run in the background; kill S3 once a quarter of the files were fetched.
    let started = Instant::now();
    let cfg2 = cfg.clone();
    let run =
        tokio::task::spawn_blocking(move || app::migrate(&cfg2, &["--yes", "--output", "jsonl"]));
    while server.requests() < 10 {
        assert!(
            !run.is_finished(),
            "the run ended before S3 could be killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s3.kill();
    let killed_at = started.elapsed();
    let out = run.await.unwrap();
    let took = started.elapsed();
    no_secret(&out);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let s = out.summary();
    let (copied, failed) = (
        s["files"]["copied"].as_u64().unwrap(),
        s["files"]["failed"].as_u64().unwrap(),
    );
    assert!(failed > 0, "{s}");
    assert_eq!(copied + failed, 40, "{s}");
    eprintln!(
        "S3 killed after {killed_at:.1?}: exit 3 after {took:.1?}, {copied} files copied, {failed} failed; \
         first failure: {}",
        s["failed"][0]["reason"]
    );

    // S3 back: whatever was rewritten points at a complete object.
    s3.restart().await;
    let mut dest_cfg = support::s3::config(&bucket);
    dest_cfg.endpoint = Some(s3.endpoint());
    let dest = storage::open(
        &storage::StoreConfig::S3(dest_cfg),
        &StoreContext::default(),
    )
    .await
    .unwrap();
    for r in &h.refs {
        let id = if r.class == "_GlobalConfig" {
            mongodb::bson::Bson::Int32(1)
        } else {
            r.id.clone().into()
        };
        let now = app::name_at(&app::find(&db, r.class, id).await, &r.path).unwrap();
        if now != r.name {
            let got = support::conformance::read_all(&*dest, &now).await.unwrap();
            assert!(got == h.files[&r.name], "{now}: rewritten onto bad bytes");
        }
    }

    let out = app::migrate(&cfg, &["--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = out.summary();
    // A write S3 stored as it was killed, whose answer was lost, is found there (same bytes)
    // and counted as already done rather than copied again (create-only writes).
    assert_eq!(s["files"]["planned"], failed, "{s}");
    assert!(s["files"]["copied"].as_u64().unwrap() <= failed, "{s}");
    assert_eq!(s["files"]["collisions"], 0, "{s}");
    assert_eq!(s["files"]["failed"], 0, "{s}");
    for (name, data) in &h.files {
        let got = support::conformance::read_all(&*dest, &parse_server_name(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name}: bytes differ");
    }
    let rewritten = h.check_references(&db, parse_server_name).await;
    eprintln!("re-run: exit 0, 40/40 files byte-identical in S3, {rewritten} references rewritten");
}

/// Throttling: `--tps-limit` and `--bwlimit` hold the reads to those rates, and one 429 with
/// `Retry-After: 1` holds back every transfer for that second, not only the one that got it.
#[tokio::test]
async fn throttling_limits_rates_and_one_429_pauses_every_transfer() {
    // 1. --tps-limit 20 over 40 files: a burst of 20, then 20 a second: ≥ 1 s from first to last.
    let Rig {
        h,
        server,
        dest,
        cfg,
        ..
    } = Rig::new(
        "faults_tps",
        40,
        Box::new(|_| None),
        Options::default(),
        "concurrency = 16",
    )
    .await;
    let out = app::migrate(&cfg, &["--yes", "--output", "jsonl", "--tps-limit", "20"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    h.check_fs_destination(&dest, parse_server_name);
    let log = server.log();
    assert_eq!(log.len(), 40);
    let span = log.last().unwrap().at - log[0].at;
    eprintln!("--tps-limit 20: 40 requests over {span:.2?}");
    assert!(span >= Duration::from_millis(950), "{span:?}");

    // 2. --bwlimit 1MiB: the bytes take at least (total − the quarter-second burst) / rate.
    let rig = Rig::new(
        "faults_bw",
        40,
        Box::new(|_| None),
        Options::default(),
        "concurrency = 16",
    )
    .await;
    let total: usize = rig.h.files.values().map(Vec::len).sum();
    let started = Instant::now();
    rig.migrate_all(&["--yes", "--output", "jsonl", "--bwlimit", "1MiB"]);
    let took = started.elapsed();
    let rate = 1024.0 * 1024.0;
    let floor = Duration::from_secs_f64((total as f64 - rate / 4.0) / rate * 0.95);
    eprintln!("--bwlimit 1MiB: {total} bytes in {took:.2?} (floor {floor:.2?})");
    assert!(took >= floor, "{took:?} < {floor:?}");

    // 3. The 6th request is answered 429 + Retry-After: 1. Requests that start after the
    // client has seen it wait out that second.
    let rig = Rig::new(
        "faults_429",
        40,
        Box::new(|r| (r.n == 5).then_some(Fault::Throttle)),
        Options {
            delay: Duration::from_millis(30),
            ..Default::default()
        },
        "concurrency = 4\nretry_base_ms = 10",
    )
    .await;
    rig.migrate_all(&["--yes", "--output", "jsonl"]);
    let server = &rig.server;
    let log = server.log();
    let t429 = log
        .iter()
        .find(|l| l.fault == Some(Fault::Throttle))
        .expect("the 429 was sent")
        .at;
    // The answer leaves 30 ms after arrival; allow the client 200 ms to see it.
    let quiet_from = t429 + Duration::from_millis(250);
    let quiet_to = t429 + Duration::from_millis(950);
    let during: Vec<Duration> = log
        .iter()
        .filter(|l| l.at > quiet_from && l.at < quiet_to)
        .map(|l| l.at - t429)
        .collect();
    let after = log.iter().filter(|l| l.at >= quiet_to).count();
    eprintln!(
        "429 at request 6: {} requests in all, {} during the pause window, {after} after it",
        log.len(),
        during.len()
    );
    assert!(during.is_empty(), "requests during the pause: {during:?}");
    assert!(after >= 20, "the run went on after the pause: {after}");
}

/// A source stream broken mid-body (reset, stall, short body) is continued from the byte where
/// it broke with a `Range` read: the second request of each such file starts past 0, nothing is
/// fetched twice, and every file arrives byte-identical.
#[tokio::test]
async fn broken_streams_continue_from_where_they_broke() {
    let kinds = [Fault::Reset, Fault::ShortBody, Fault::Stall];
    let rig = Rig::new(
        "faults_range",
        12,
        Box::new(move |r| (r.attempt == 0).then(|| kinds[(fnv1a(r.name) % 3) as usize])),
        Options {
            stall: Duration::from_secs(4),
            ..Default::default()
        },
        "concurrency = 4",
    )
    .await;
    rig.migrate_all(&["--yes", "--output", "jsonl"]);
    let (h, server) = (&rig.h, &rig.server);
    let log = server.log();
    let mut resumed = 0;
    for (name, data) in &h.files {
        let reqs: Vec<_> = log.iter().filter(|l| &l.name == name).collect();
        if data.len() < 2 {
            continue; // no body to break
        }
        assert!(
            reqs[0].fault.is_some() && reqs[0].range.is_none(),
            "{name}: {reqs:?}"
        );
        assert_eq!(
            reqs.len(),
            2,
            "{name}: one continuation, no restart: {reqs:?}"
        );
        let from = reqs[1].range.expect("the second request is a range read");
        assert!(from > 0 && from <= data.len() / 2, "{name}: from {from}");
        resumed += 1;
    }
    let fetched: usize = log
        .iter()
        .map(|l| h.files[&l.name].len() - l.range.unwrap_or(0))
        .sum();
    let total: usize = h.files.values().map(Vec::len).sum();
    eprintln!(
        "{resumed} broken streams continued by range reads; {fetched} bytes requested for {total} bytes of files"
    );
    assert!(resumed >= 10, "{resumed}");
}

/// The app writes a file again while the tool is reading it, and the stream breaks: the
/// continuation asks for the rest only of the version it began with (`If-Range`), gets the whole
/// new object instead, and the copy starts over. Every destination file holds exactly one
/// version's bytes, the new one here, never the old one's first half joined to the new one's
/// rest (review §15).
#[tokio::test]
async fn a_file_replaced_mid_read_is_copied_whole_never_spliced() {
    let rig = Rig::new(
        "faults_ifrange",
        10,
        Box::new(|r| (r.attempt == 0).then_some(Fault::ResetAndChange)),
        Options::default(),
        "concurrency = 4",
    )
    .await;
    let out = app::migrate(&rig.cfg, &["--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut replaced = Hosted::default();
    for (name, data) in &rig.h.files {
        replaced
            .files
            .insert(name.clone(), support::faulty::changed(data));
    }
    assert_eq!(
        replaced.check_fs_destination(&rig.dest, parse_server_name),
        rig.h.files.len()
    );
    let log = rig.server.log();
    for (name, data) in &rig.h.files {
        if data.len() < 2 {
            continue; // no body to break
        }
        let reqs: Vec<_> = log.iter().filter(|l| &l.name == name).collect();
        assert!(
            reqs.len() >= 2 && reqs[1..].iter().all(|l| l.range.is_none()),
            "{name}: the new version is read from its first byte: {reqs:?}"
        );
    }
}
