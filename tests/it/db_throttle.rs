//! Do no harm to the production database (#20 item 6), against the real MongoDB-wire server
//! behind a TCP tap that makes it a loaded server: every request waits longer the more the
//! requests are in flight ([`Tap::load_latency`]). The same migration runs twice, each
//! on its own database and tap: without a limit its write batches are slow (the load it makes
//! itself); with `--max-db-latency` its write rate drops and the latency stays near the limit,
//! the throttled time is in the summary and the metrics file — and both complete: every file
//! byte-identical at the destination, every reference rewritten to its copy.
//!
//! The limited run also sets `--max-repl-lag`: the test server is a one-node replica set
//! (`secantus`), which reports its members through `replSetGetStatus` with no secondary to lag;
//! the run says so at start-up and is never held for lag.
//!
//! In a terminal (a tmux pane), the progress display says why the run is slowed down
//! ("throttled: db latency 125ms > 50ms, …") and the text summary gives the throttled time.

use std::time::Duration;

use parse_files_migrate::parse::names::parse_server_name;
use serde_json::Value;

use crate::support::app::{self, Hosted};
use crate::support::faulty::FaultyServer;
use crate::support::tmux::Pane;
use crate::support::wiretap::Tap;
use crate::support::{self};

const FILE_KEY: &str = "dbThrottleKey";
const FILES: usize = 240;
/// The limit of the limited run.
const LIMIT_MS: f64 = 150.0;
/// The loaded server: 5 ms, plus 100 ms per request already in flight. (The run writes one
/// rewrite batch at a time, each as large as what arrived meanwhile, so it keeps few requests
/// in flight: at 80 ms per request its own load stayed near 130 ms. One request in flight stays
/// under the limit, two are over it.)
const LOAD: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(100));

/// What one run measured (all printed for the figures; not all asserted on).
#[derive(Debug)]
#[allow(dead_code)]
struct Figures {
    secs: f64,
    /// Bytes the tool sent to the database per second (through the tap).
    sent_per_sec: f64,
    batches: u64,
    p50: f64,
    p90: f64,
    max: f64,
    throttled: f64,
    tap_mean_delay: Duration,
}

async fn migrate(tag: &str, args: &[&str]) -> (Figures, Value, String, String) {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, FILES, 0, FILE_KEY).await;
    let server = FaultyServer::slow(h.files.clone(), Duration::from_millis(5));
    let tap = Tap::start(&support::mongo_hosts()).await;
    tap.stop_recording();
    tap.load_latency(Some(LOAD));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let metrics = dir.path().join("pfm.prom");
    let config = dir.path().join("throttle.toml");
    let uri = format!("mongodb://{}/?directConnection=true", tap.host_port());
    let tables = app::base_tables(&db_name, FILE_KEY).replace(&support::mongo_uri(), &uri);
    std::fs::write(
        &config,
        format!(
            "{tables}{}{}\n[run]\nconcurrency = 16\n",
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dest),
        ),
    )
    .unwrap();
    let mut all = vec!["--metrics-file", metrics.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = app::wait(app::spawn_migrate(&config, &all)).await;
    assert_eq!(out.code, 0, "{tag}: the run completes:\n{}", out.stderr);
    // Everything migrated, under load or throttled.
    assert_eq!(h.check_fs_destination(&dest, parse_server_name), FILES);
    let rewritten = h.check_references(&db, parse_server_name).await;
    assert_eq!(rewritten, h.refs.len(), "{tag}: every reference rewritten");
    let summary = out.summary();
    assert_eq!(summary["references"]["conflicts"], 0, "{summary}");
    let d = &summary["database"];
    let f = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k} in {d}"));
    let secs = summary["duration_secs"].as_f64().unwrap();
    let figures = Figures {
        secs,
        sent_per_sec: tap.forwarded() as f64 / secs,
        batches: d["write_batches"].as_u64().unwrap(),
        p50: f("latency_ms_p50"),
        p90: f("latency_ms_p90"),
        max: f("latency_ms_max"),
        throttled: d["throttled_secs"]["db_latency"].as_f64().unwrap(),
        tap_mean_delay: tap.delays().1,
    };
    eprintln!(
        "{tag}: {} references rewritten; {figures:?}",
        summary["references"]["rewritten"]
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    (figures, summary.clone(), out.stderr, prom)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loaded_database_slows_the_run_down_to_its_latency_limit() {
    let limit = format!("{LIMIT_MS}ms");
    // One after the other: the two runs share the database server.
    let (free, _, _, _) = migrate("thr_free", &[]).await;
    let (limited, summary, stderr, prom) = migrate(
        "thr_limit",
        &["--max-db-latency", &limit, "--max-repl-lag", "2s"],
    )
    .await;
    // Without a limit, the load the run makes keeps its slow write batches well above the
    // limit, and the delay its own queue adds at the server is above it on average. (Its median
    // batch is not: one rewrite batch at a time, a write often has the server to itself.)
    assert!(free.p90 > 1.5 * LIMIT_MS, "unlimited: {free:?}");
    assert!(
        free.tap_mean_delay.as_secs_f64() * 1000.0 > LIMIT_MS,
        "{free:?}"
    );
    assert_eq!(free.throttled, 0.0, "{free:?}");
    // With it: throttled, fewer bytes per second, for longer…
    assert!(limited.throttled > 0.0, "{limited:?}");
    assert!(
        limited.sent_per_sec < 0.8 * free.sent_per_sec,
        "the write rate drops: {limited:?} vs {free:?}"
    );
    assert!(limited.secs > free.secs, "{limited:?}");
    assert!(free.batches >= 20 && limited.batches >= 20, "{limited:?}");
    // …and the latency its own load adds stays within the limit, the latency it sees drops.
    // (The test server is shared with other tests, whose load no limit of this run controls:
    // the median it sees is reported, the delay of the proxy's queue is asserted.)
    assert!(
        limited.tap_mean_delay.as_secs_f64() * 1000.0 <= LIMIT_MS,
        "{limited:?}"
    );
    assert!(limited.p50 < free.p50, "{limited:?} vs {free:?}");
    assert_eq!(summary["database"]["max_db_latency"], "150ms", "{summary}");
    // The metrics file counts the throttled time.
    let line = prom
        .lines()
        .find(|l| l.starts_with("pfm_db_throttled_seconds_total") && l.contains("db_latency"))
        .unwrap_or_else(|| panic!("no throttled time in\n{prom}"));
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 0.0, "{line}");
    // Replication lag: read, one member, nothing to lag; never held for it.
    assert!(
        stderr.contains("reading replication lag from replSetGetStatus")
            && stderr.contains("no secondary to lag"),
        "{stderr}"
    );
    assert_eq!(summary["database"]["throttled_secs"]["repl_lag"], 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_progress_display_says_why_the_run_is_throttled() {
    let db_name = support::unique("thr_tty");
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, 60, 0, FILE_KEY).await;
    let server = FaultyServer::slow(h.files.clone(), Duration::from_millis(5));
    let tap = Tap::start(&support::mongo_hosts()).await;
    tap.stop_recording();
    tap.load_latency(Some(LOAD));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tty.toml");
    let uri = format!("mongodb://{}/?directConnection=true", tap.host_port());
    let tables = app::base_tables(&db_name, FILE_KEY).replace(&support::mongo_uri(), &uri);
    std::fs::write(
        &config,
        format!(
            "{tables}{}{}\n[run]\nconcurrency = 16\nmax_db_latency = \"50ms\"\n",
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dir.path().join("dest")),
        ),
    )
    .unwrap();
    let pane = Pane::migrate("pfm-tmux-thr", dir.path(), &config, 200);
    let mut throttled = None;
    let last = pane
        .watch(Duration::from_secs(120), |screen| {
            if let Some(l) = screen.lines().find(|l| l.contains("throttled: db latency")) {
                throttled = Some(l.trim().to_string());
            }
        })
        .await;
    drop(pane);
    let line = throttled.unwrap_or_else(|| panic!("never said it was throttled:\n{last}"));
    eprintln!("{line}");
    assert!(line.contains("> 50ms") || line.contains("≤ 50ms"), "{line}");
    assert!(last.contains("EXIT=0"), "{last}");
    // The text summary has the throttled time.
    assert!(
        last.contains("throttled") && last.contains("(db latency)"),
        "{last}"
    );
}
