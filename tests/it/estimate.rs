//! `migrate --estimate` on the real servers: every planned file is sized at its source (a missing
//! one found and named), the rate is measured by reading files, and nothing is written; with
//! `--sample N` only N files are probed and the totals projected; with `--assume-rate` no file is
//! read in full.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::app::{self, Hosted};
use crate::support::faulty::FaultyServer;
use crate::support::{self};

const FILE_KEY: &str = "estimateKey";

struct Fixture {
    db: mongodb::Database,
    h: Hosted,
    server: FaultyServer,
    config: PathBuf,
    dest: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(tag: &str) -> Fixture {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, 40, 1, FILE_KEY).await;
    let server = FaultyServer::healthy(h.files.clone());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let config = dir.path().join("estimate.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}{}\n[run]\nconcurrency = 4\n",
            app::base_tables(&db_name, FILE_KEY),
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dest)
        ),
    )
    .unwrap();
    Fixture {
        db,
        h,
        server,
        config,
        dest,
        _dir: dir,
    }
}

fn estimate(config: &Path, args: &[&str]) -> (i32, Value, Value, String) {
    let out = app::migrate(
        config,
        &[&["--estimate", "--output", "jsonl"], args].concat(),
    );
    let lines = out.jsonl();
    let est = lines
        .iter()
        .find(|l| l["action"] == "estimate")
        .unwrap_or_else(|| panic!("no estimate line: {}", out.stderr))
        .clone();
    (out.code, est, out.summary(), out.stderr)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_is_sized_the_missing_one_named_and_nothing_written() {
    let f = fixture("est_all").await;
    let before = app::snapshot(&f.db).await;
    let (code, e, summary, stderr) = estimate(&f.config, &[]);
    assert_eq!(code, 0, "a dry run, like --dry-run: {stderr}");

    let present: u64 = f.h.files.values().map(|b| b.len() as u64).sum();
    assert_eq!(u(&e["files"]), 41, "{e}");
    assert_eq!(u(&e["probed"]), 41);
    assert_eq!(e["sampled"], false);
    assert_eq!(
        u(&e["bytes"]),
        present,
        "the exact bytes of every present file"
    );
    assert_eq!(u(&e["missing"]), 1);
    assert_eq!(u(&e["probe_errors"]), 0);
    // Groups add up to the totals.
    for group in ["by_field", "by_kind"] {
        let g = e[group].as_object().unwrap();
        let files: u64 = g.values().map(|v| u(&v["files"])).sum();
        let bytes: u64 = g.values().map(|v| u(&v["bytes"])).sum();
        assert_eq!((files, bytes), (41, present), "{group}: {g:?}");
    }
    assert!(e["by_field"]["Photo.image"]["files"].as_u64().unwrap() > 0);
    assert_eq!(u(&e["by_field"]["Photo.image"]["missing"]), 1);
    // The largest files, largest first, the first being the largest there is.
    let largest = e["largest"].as_array().unwrap();
    let max = f.h.files.values().map(|b| b.len() as u64).max().unwrap();
    assert_eq!(u(&largest[0]["size"]), max);
    assert!(
        largest
            .windows(2)
            .all(|w| u(&w[0]["size"]) >= u(&w[1]["size"]))
    );
    // The rate was measured by reading files in full; a duration and a memory projected.
    let m = &e["rate_measured"];
    assert_eq!(u(&m["files"]), 40, "{m}");
    assert_eq!(u(&m["failed"]), 0);
    assert_eq!(
        u(&m["bytes"]),
        present,
        "every present file read once, in full"
    );
    assert!(e["projected_secs"].as_f64().unwrap() > 0.0);
    let mem = &e["memory"];
    assert_eq!(
        u(&mem["per_transfer_bytes"]),
        256 * 1024,
        "the fs store's put buffer"
    );
    assert!(u(&e["memory_projected_bytes"]) > u(&mem["transfers_bytes"]));
    // The summary names the missing file, as a live run would.
    assert_eq!(summary["dry_run"], true);
    assert_eq!(u(&summary["files"]["missing"]), 1);
    assert_eq!(summary["missing"][0]["name"], f.h.missing[0].as_str());
    // Nothing written: not the database, not the destination.
    assert_eq!(app::snapshot(&f.db).await, before);
    let written = std::fs::read_dir(&f.dest).map_or(0, |d| d.count());
    assert_eq!(written, 0, "the destination got files");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_probes_n_files_and_an_assumed_rate_reads_none() {
    let f = fixture("est_sample").await;
    let (code, e, summary, stderr) = estimate(&f.config, &["--sample", "10", "--assume-rate", "4"]);
    assert_eq!(
        code, 0,
        "the sample cannot see what it did not probe: {stderr}"
    );
    assert_eq!(u(&e["files"]), 41);
    assert_eq!(u(&e["probed"]), 10);
    assert_eq!(e["sampled"], true);
    assert_eq!(u(&summary["files"]["planned"]), 41);
    // Projected from the sample's mean, over every planned file.
    let probed_bytes = u(&e["probed_bytes"]) as f64;
    let found = 10 - u(&e["probe_errors"]);
    assert_eq!(
        u(&e["bytes"]),
        (probed_bytes * 41.0 / found as f64).round() as u64
    );
    // Only the stated rate: no file was read, only sized (one request per sampled file).
    assert!(e["rate_measured"].is_null());
    assert_eq!(e["rate"]["files_per_sec"], 4.0);
    let present = 41 - u(&e["missing_projected"]);
    let secs = e["projected_secs"].as_f64().unwrap();
    assert!((secs - present as f64 / 4.0).abs() < 1e-6, "{secs}");
    assert_eq!(f.server.requests(), 10, "one HEAD per sampled file, no GET");
    assert!(
        f.server.log().iter().all(|l| l.range.is_none()),
        "no ranged reads"
    );

    // A byte rate too: the slower of the two decides.
    let (_, e, _, _) = estimate(&f.config, &["--sample", "5", "--assume-rate", "1000,1KiB"]);
    let (files, bytes) = (u(&e["files"]) - u(&e["missing_projected"]), u(&e["bytes"]));
    let expect = (files as f64 / 1000.0).max(bytes as f64 / 1024.0);
    assert!((e["projected_secs"].as_f64().unwrap() - expect).abs() < 1e-6);

    // Usage errors: a rate that is not one, a sample without --estimate.
    let out = app::migrate(&f.config, &["--estimate", "--assume-rate", "fast"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--assume-rate"), "{}", out.stderr);
    let out = app::migrate(&f.config, &["--dry-run", "--sample", "3"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_text_report_reads_for_a_person() {
    let f = fixture("est_text").await;
    let out = app::migrate(&f.config, &["--estimate", "--output", "text"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = &out.stdout;
    for want in [
        "Estimate (a dry run: nothing was written)",
        "files to copy:    41 (every one probed)",
        "missing already:  1",
        "Photo.image",
        "largest files:",
        "rate measured:    40 files",
        "projected copy:",
        "memory needed:    about",
        "at concurrency 4",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert!(!text.contains(FILE_KEY), "the fileKey never shows");
}
