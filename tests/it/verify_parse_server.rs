//! `verify --via-server` against a real Parse Server (issue #20 item 9): after each
//! `parse_server` scenario's migration, `verify` downloads every file through the Parse Server
//! that now serves the destination — the way the app's clients will get it — and must find every
//! one byte-identical; and a Parse Server whose files adapter cannot read the destination (the
//! FS adapter without the key the files were encrypted with) must make it report
//! `served-mismatch` for every file and exit 5, with the destination itself still found intact.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::app::bin;

/// What one `verify --via-server` run said.
pub(crate) struct Verified {
    pub(crate) code: Option<i32>,
    /// The summary's counts (`{"action":"summary","verify":{…}}`).
    pub(crate) counts: Value,
    /// `(problem, name)` of every finding.
    pub(crate) findings: Vec<(String, String)>,
    pub(crate) stderr: String,
}

/// `verify --via-server <server>` with JSON lines on stdout (stdout is a pipe). It covers every
/// copy the ledger recorded, so a `migrate --select all` is covered without the same flag.
pub(crate) fn verify_via(cfg: &Path, server: &str) -> Verified {
    let mut c = bin();
    c.args([
        "-c",
        cfg.to_str().unwrap(),
        "verify",
        "--via-server",
        server,
    ]);
    let out = c.timeout(Duration::from_secs(300)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut counts = Value::Null;
    let mut findings = Vec::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("verify printed a line that is not JSON ({e}): {line}"));
        if v["action"] == "summary" {
            counts = v["verify"].clone();
        } else {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            findings.push((s("problem"), s("name")));
        }
    }
    Verified {
        code: out.status.code(),
        counts,
        findings,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file served byte-identical: exit 0, no finding, and as many files downloaded through
/// the server as the destination holds distinct migrated files (`files`).
pub(crate) fn assert_all_served(label: &str, v: &Verified, files: usize) {
    assert!(
        v.code == Some(0) && v.findings.is_empty(),
        "{label}: verify --via-server exited {:?} with findings {:?}\nstderr: {}",
        v.code,
        v.findings,
        v.stderr
    );
    let served = v.counts["served_checked"].as_u64().unwrap_or(0);
    let problems = v.counts["problems"].as_u64();
    assert!(
        served as usize == files && problems == Some(0),
        "{label}: verify --via-server downloaded {served} files through Parse Server, expected \
         {files}; counts {}",
        v.counts
    );
}

/// A server that serves other bytes: every file downloaded is a `served-mismatch`, none is a
/// destination problem, and the run exits 5 (verify mismatch).
pub(crate) fn assert_all_mismatched(label: &str, v: &Verified, files: usize) {
    let mismatched = v
        .findings
        .iter()
        .filter(|(p, _)| p == "served-mismatch")
        .count();
    let other: Vec<_> = v
        .findings
        .iter()
        .filter(|(p, _)| p != "served-mismatch")
        .collect();
    assert!(
        v.code == Some(5) && other.is_empty() && mismatched >= files,
        "{label}: through a Parse Server without the FS adapter's key, verify --via-server \
         exited {:?} with {mismatched} served-mismatch findings (expected >= {files}) and \
         other findings {other:?}\nstderr: {}",
        v.code,
        v.stderr
    );
}
