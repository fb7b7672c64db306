//! The shared state of one run: its counters, interrupt flag and stop rules ([`RunState`],
//! [`Limits`]), used by every command that runs through the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipeline::{checkpoint, dedup};
use super::{Counters, MAX_ERRORS, Summary};

/// Where a run stops early: cron cutoffs (a re-run continues), and the error budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_files: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_duration: Option<Duration>,
    /// Files and reference updates that failed for good (not missing files, not conflicts):
    /// past this many, something is broken (a destination down, bad credentials) and going on
    /// only records more failures.
    pub max_errors: Option<u64>,
}

/// Shared state of one run.
pub struct RunState {
    pub counters: Counters,
    pub started: Instant,
    pub dedup: dedup::Dedup,
    /// Settled pages of the walk (the walk checkpoint).
    pub walk: checkpoint::Tracker,
    /// Set when the walk has read its last page (what is left: copies and rewrites in flight).
    pub walked: std::sync::atomic::AtomicBool,
    /// Set when the operator interrupts: no new work starts; what is in flight finishes.
    interrupted: std::sync::atomic::AtomicBool,
    /// Why the copy stage left queued copies unstarted ([`RunState::stop`]), if it did.
    pub(crate) stopped_copies: std::sync::OnceLock<String>,
    /// A failure that stops the run ([`super::Outcome::Stopped`]), as `stopped_by` says it.
    pub fatal: std::sync::OnceLock<String>,
    /// Throttles the walk (and, through [`super::live::Live`], the writes) by the database's health.
    pub db: Arc<crate::dbhealth::Guard>,
}

impl RunState {
    pub fn new() -> Arc<RunState> {
        Self::guarded(Default::default())
    }

    /// A run whose database work `db` throttles (`--max-db-latency`, `--max-repl-lag`).
    pub fn guarded(db: Arc<crate::dbhealth::Guard>) -> Arc<RunState> {
        Arc::new(RunState {
            db,
            counters: Counters::default(),
            started: Instant::now(),
            dedup: dedup::Dedup::new(dedup::WINDOW),
            walk: checkpoint::Tracker::default(),
            walked: Default::default(),
            interrupted: Default::default(),
            stopped_copies: Default::default(),
            fatal: Default::default(),
        })
    }

    /// Stop taking new work (Ctrl-C, SIGTERM).
    pub fn interrupt(&self) {
        self.interrupted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why no further copy may start, if one of these stops the run: an interrupt, the error
    /// budget, `--max-bytes`, `--max-duration` (`stopped_by` wording). Checked by the planner
    /// before it queues a copy and by the copy stage before it starts one, so nothing queued
    /// runs past a stop. (`--max-files` counts planned files, so only the planner checks it.)
    pub fn stop(&self, limits: &Limits) -> Option<String> {
        if self.is_interrupted() {
            return Some(INTERRUPTED.to_string());
        }
        if let Some(fatal) = self.fatal.get() {
            return Some(fatal.clone());
        }
        let c = &self.counters;
        if let Some(max) = limits.max_errors {
            let errors = Counters::get(&c.files_failed) + Counters::get(&c.refs_failed);
            if errors >= max {
                return Some(format!("{MAX_ERRORS} {max}"));
            }
        }
        if let Some(max) = limits.max_bytes
            && Counters::get(&c.bytes_copied) >= max
        {
            return Some(format!("--max-bytes {max}"));
        }
        if let Some(max) = limits.max_duration
            && self.started.elapsed() >= max
        {
            return Some(format!(
                "--max-duration {}",
                humantime::format_duration(max)
            ));
        }
        None
    }
}

impl RunState {
    /// The summary of the run so far, with what the database guard measured.
    pub fn summary(&self, dry_run: bool, stopped_by: Option<String>) -> Summary {
        let mut s = self
            .counters
            .summary(self.started.elapsed(), dry_run, stopped_by);
        s.database = self.db.report();
        s
    }
}

/// What `stopped_by` says when the run was interrupted.
pub const INTERRUPTED: &str = "interrupt";
