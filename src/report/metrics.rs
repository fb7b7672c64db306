//! `--metrics-file`: a run's counters in the Prometheus text exposition format, for cron jobs and
//! Kubernetes Jobs scraped by node_exporter's textfile collector (or any agent reading that
//! format). The file is written whole to a temporary file beside it and renamed over it, so a
//! reader never sees half of it; it is refreshed every [`REFRESH`] during the run and written a
//! last time at the end with the exit code. `pfm_last_success_timestamp_seconds` survives runs
//! that do not succeed (it is carried over from the file being replaced), so an alert can say
//! "no successful pass in two days".

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dbhealth::Report;
use crate::engine::RunState;
use crate::engine::summary::Counters;

/// How often the file is rewritten during a run.
pub const REFRESH: Duration = Duration::from_secs(10);

const LAST_SUCCESS: &str = "pfm_last_success_timestamp_seconds";

/// How a run ended: its exit code, and whether it counts as a successful pass (exit 0 and not a
/// dry run, which changes nothing).
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub code: i32,
    pub success: bool,
}

/// Start writing `path` (if given) for a run of `command` on `shard`: the file is refreshed from
/// `state` until [`Refreshing::finish`].
pub fn start(
    path: Option<&Path>,
    command: &str,
    shard: &str,
    state: &Arc<RunState>,
) -> Option<Refreshing> {
    let file = Arc::new(MetricsFile::new(path?, command, shard));
    let (f, s) = (file.clone(), state.clone());
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = f.write(&s.counters, s.started.elapsed(), None, &s.db.report()) {
                tracing::warn!("writing the metrics file {}: {e}", f.path.display());
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
    Some(Refreshing {
        file,
        task,
        state: state.clone(),
    })
}

/// A metrics file being refreshed during a run.
pub struct Refreshing {
    file: Arc<MetricsFile>,
    task: tokio::task::JoinHandle<()>,
    state: Arc<RunState>,
}

impl Refreshing {
    /// Stop refreshing and write the final file: `result` is the run's summary, or the exit
    /// code of the error that ended it.
    pub fn finish(self, result: Result<&crate::engine::summary::Summary, i32>) {
        self.task.abort();
        let code = result.map_or_else(|code| code, |s| s.exit_code());
        let success = code == crate::exit::OK && result.is_ok_and(|s| !s.dry_run);
        let end = End { code, success };
        let (c, elapsed) = (&self.state.counters, self.state.started.elapsed());
        let db = self.state.db.report();
        if let Err(e) = self.file.write(c, elapsed, Some(end), &db) {
            tracing::warn!("writing the metrics file {}: {e}", self.file.path.display());
        }
    }
}

/// Write `path` once, at the end of a run of `command` on `shard` that counts no files or
/// references (`verify`, `audit`, `rollback`, `rekey`; a `migrate` or `rebase` that stopped
/// before it began): its exit code, duration and last success.
pub fn write_final(path: &Path, command: &str, shard: &str, elapsed: Duration, end: End) {
    let file = MetricsFile::new(path, command, shard);
    if let Err(e) = file.write_counts(None, elapsed, Some(end), None) {
        tracing::warn!("writing the metrics file {}: {e}", path.display());
    }
}

const HOOKS: &str = "pfm_hooks_total";
const EXIT_CODE: &str = "pfm_exit_code";

/// Add the run's hook outcomes (`pfm_hooks_total`, by event and result) to the metrics file
/// at `path`, once every hook has run, and set its exit code to `code` (a failed `after` hook
/// changes it: README "Hooks"). Nothing when the run wrote no file, or ran no hook.
pub fn record_hooks(path: &Path, counts: &[(&str, &str, u64)], code: i32) {
    let Ok(old) = std::fs::read_to_string(path) else {
        return;
    };
    if counts.is_empty() {
        return;
    }
    if let Err(e) = super::output::write_atomic(path, with_hooks(&old, counts, code).as_bytes()) {
        tracing::warn!("writing the metrics file {}: {e}", path.display());
    }
}

/// `text` with its hook family replaced by `counts` and its exit code sample by `code`.
fn with_hooks(text: &str, counts: &[(&str, &str, u64)], code: i32) -> String {
    // The labels every sample of this file carries (`command`, `shard`).
    let labels = text
        .lines()
        .find(|l| l.starts_with("pfm_run_running{"))
        .and_then(|l| l.split_once('{')?.1.split_once('}'))
        .map_or("", |(labels, _)| labels);
    let mut out = String::new();
    for line in text.lines() {
        let family = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if family.starts_with(HOOKS) {
            continue;
        }
        if line.starts_with(EXIT_CODE) && !line.starts_with('#') {
            let _ = writeln!(out, "{EXIT_CODE}{{{labels}}} {code}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP {HOOKS} Hooks run, by event and result (README \"Hooks\")."
    );
    let _ = writeln!(out, "# TYPE {HOOKS} counter");
    for (event, result, n) in counts {
        let _ = writeln!(
            out,
            "{HOOKS}{{{labels},event=\"{event}\",result=\"{result}\"}} {n}"
        );
    }
    out
}

/// Where the metrics go, and the labels every sample carries.
#[derive(Debug, Clone)]
pub struct MetricsFile {
    path: PathBuf,
    labels: String,
}

impl MetricsFile {
    /// `command` (`migrate`, …) and `shard` (`all`, `0/4`, …) label every sample.
    pub fn new(path: &Path, command: &str, shard: &str) -> Self {
        MetricsFile {
            path: path.to_path_buf(),
            labels: format!(
                "command=\"{}\",shard=\"{}\"",
                escape(command),
                escape(shard)
            ),
        }
    }

    /// Write the counters; `end` once the run has ended (`None`: running).
    pub fn write(
        &self,
        c: &Counters,
        elapsed: Duration,
        end: Option<End>,
        db: &Report,
    ) -> std::io::Result<()> {
        self.write_counts(Some(c), elapsed, end, Some(db))
    }

    /// [`Self::write`], the file and reference counters and the database's figures only when
    /// given.
    fn write_counts(
        &self,
        c: Option<&Counters>,
        elapsed: Duration,
        end: Option<End>,
        db: Option<&Report>,
    ) -> std::io::Result<()> {
        let mut text = self.render(c, elapsed, end, now_secs(), self.previous_success());
        if let Some(db) = db {
            text.push_str(&self.render_db(db));
        }
        super::output::write_atomic(&self.path, text.as_bytes())
    }

    /// The last success recorded in the file this one replaces, if any.
    fn previous_success(&self) -> Option<f64> {
        let old = std::fs::read_to_string(&self.path).ok()?;
        old.lines()
            .find(|l| l.starts_with(LAST_SUCCESS))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn render(
        &self,
        c: Option<&Counters>,
        elapsed: Duration,
        end: Option<End>,
        now: f64,
        previous_success: Option<f64>,
    ) -> String {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        let l = &self.labels;
        let mut out = String::new();
        // A family of samples; a sample's `Some(outcome)` adds the label `outcome`.
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(Option<&str>, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (outcome, value) in samples {
                match outcome {
                    Some(o) => writeln!(out, "{name}{{{l},outcome=\"{o}\"}} {value}"),
                    None => writeln!(out, "{name}{{{l}}} {value}"),
                }
                .unwrap_or_default();
            }
        };
        let by_outcome = |counts: &[(&'static str, &std::sync::atomic::AtomicU64)]| {
            let samples: Vec<(Option<&str>, f64)> = counts
                .iter()
                .map(|(o, n)| (Some(*o), g(n) as f64))
                .collect();
            samples
        };
        if let Some(c) = c {
            family(
                "pfm_files_total",
                "counter",
                "Files of this run by outcome (planned: copies started).",
                &by_outcome(&[
                    ("planned", &c.files_planned),
                    ("copied", &c.files_copied),
                    ("skipped", &c.files_skipped),
                    ("missing", &c.files_missing),
                    ("failed", &c.files_failed),
                    ("collision", &c.files_collisions),
                ]),
            );
            family(
                "pfm_references_total",
                "counter",
                "File references of this run by outcome.",
                &by_outcome(&[
                    ("rewritten", &c.refs_rewritten),
                    ("unchanged", &c.refs_unchanged),
                    ("conflict", &c.refs_conflict),
                    ("failed", &c.refs_failed),
                    ("left_untouched", &c.refs_left),
                    ("not_selected", &c.refs_not_selected),
                    ("migrated_before", &c.refs_migrated_before),
                ]),
            );
            for (name, help, v) in [
                (
                    "pfm_objects_scanned_total",
                    "Objects the walk read.",
                    g(&c.objects),
                ),
                (
                    "pfm_bytes_copied_total",
                    "Bytes copied and verified.",
                    g(&c.bytes_copied),
                ),
                (
                    "pfm_retries_total",
                    "Copy attempts made again.",
                    g(&c.retries),
                ),
            ] {
                family(name, "counter", help, &[(None, v as f64)]);
            }
        }
        family(
            "pfm_run_duration_seconds",
            "gauge",
            "Time since the run started.",
            &[(None, (elapsed.as_secs_f64() * 1000.0).round() / 1000.0)],
        );
        family(
            "pfm_run_running",
            "gauge",
            "1 while the run goes on, 0 once it has ended.",
            &[(None, if end.is_some() { 0.0 } else { 1.0 })],
        );
        family(
            "pfm_run_timestamp_seconds",
            "gauge",
            "When this file was written (Unix time).",
            &[(None, now)],
        );
        if let Some(End { code, .. }) = end {
            family(
                "pfm_exit_code",
                "gauge",
                "The run's exit code (README \"Exit codes\").",
                &[(None, f64::from(code))],
            );
        }
        let success = if end.is_some_and(|e| e.success) {
            Some(now)
        } else {
            previous_success
        };
        if let Some(t) = success {
            family(
                LAST_SUCCESS,
                "gauge",
                "When a run last ended with exit code 0 (Unix time).",
                &[(None, t)],
            );
        }
        out
    }
}

impl MetricsFile {
    /// The database guard's figures ([`crate::dbhealth`]).
    fn render_db(&self, db: &Report) -> String {
        let l = &self.labels;
        let t = &db.throttled_secs;
        format!(
            "# HELP pfm_db_throttled_seconds_total Time the run slowed its database work down, by reason.\n\
             # TYPE pfm_db_throttled_seconds_total counter\n\
             pfm_db_throttled_seconds_total{{{l},reason=\"db_latency\"}} {}\n\
             pfm_db_throttled_seconds_total{{{l},reason=\"repl_lag\"}} {}\n\
             # HELP pfm_db_write_batches_total Write round trips timed (updates, ledger batches).\n\
             # TYPE pfm_db_write_batches_total counter\n\
             pfm_db_write_batches_total{{{l}}} {}\n\
             # HELP pfm_db_write_latency_seconds Write round-trip latency (quantiles within 25 %).\n\
             # TYPE pfm_db_write_latency_seconds gauge\n\
             pfm_db_write_latency_seconds{{{l},quantile=\"0.5\"}} {}\n\
             pfm_db_write_latency_seconds{{{l},quantile=\"0.9\"}} {}\n\
             pfm_db_write_latency_seconds{{{l},quantile=\"1\"}} {}\n",
            t.db_latency,
            t.repl_lag,
            db.write_batches,
            db.latency_ms_p50 / 1000.0,
            db.latency_ms_p90 / 1000.0,
            db.latency_ms_max / 1000.0,
        )
    }
}

fn now_secs() -> f64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_outcomes_are_added_and_the_exit_code_follows_the_hooks() {
        let m = MetricsFile::new(Path::new("x"), "migrate", "all");
        let end = Some(End {
            code: 0,
            success: true,
        });
        let text = m.render(None, Duration::from_secs(1), end, 1.0, None);
        let counts = [("after", "failed", 1), ("before", "ok", 1)];
        let once = with_hooks(&text, &counts, 9);
        let twice = with_hooks(&once, &counts, 9);
        assert_eq!(once, twice, "the family is replaced, not repeated");
        let l = "command=\"migrate\",shard=\"all\"";
        assert!(
            once.contains(&format!("pfm_exit_code{{{l}}} 9\n")),
            "{once}"
        );
        let sample = format!("pfm_hooks_total{{{l},event=\"after\",result=\"failed\"}} 1");
        assert!(once.contains(&sample), "{once}");
        assert_eq!(once.matches("# TYPE pfm_exit_code").count(), 1);
    }

    #[test]
    fn samples_carry_the_labels_and_a_last_success_survives_failed_and_dry_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pfm.prom");
        let m = MetricsFile::new(&path, "migrate", "0/\"2\"");
        let c = Counters::default();
        c.files_copied.store(7, Relaxed);
        let end = |code| {
            Some(End {
                code,
                success: code == 0,
            })
        };
        let mut db = Report::default();
        db.throttled_secs.db_latency = 1.5;
        m.write(&c, Duration::from_secs(3), end(0), &db).unwrap();
        let ok = std::fs::read_to_string(&path).unwrap();
        let throttled = "pfm_db_throttled_seconds_total{command=\"migrate\",shard=\"0/\\\"2\\\"\",reason=\"db_latency\"} 1.5";
        assert!(ok.contains(throttled), "{ok}");
        let copied =
            "pfm_files_total{command=\"migrate\",shard=\"0/\\\"2\\\"\",outcome=\"copied\"} 7";
        assert!(ok.contains(copied), "{ok}");
        let success = m.previous_success().expect("recorded");
        m.write(&c, Duration::from_secs(3), end(3), &db).unwrap();
        let failed = std::fs::read_to_string(&path).unwrap();
        assert!(failed.contains("pfm_exit_code{command=\"migrate\",shard=\"0/\\\"2\\\"\"} 3"));
        assert_eq!(m.previous_success(), Some(success), "{failed}");
        std::thread::sleep(Duration::from_millis(5));
        let dry = Some(End {
            code: 0,
            success: false,
        });
        m.write(&c, Duration::from_secs(1), dry, &db).unwrap();
        assert_eq!(
            m.previous_success(),
            Some(success),
            "a dry run is not a pass"
        );
        assert!(!dir.path().join(".pfm.prom.tmp").exists());
    }
}
