//! What a run did: live counters (read by the progress display), and the end-of-run summary with
//! the items an operator must look at (missing, failed, conflicting), capped so memory stays
//! bounded; the ledger keeps them all.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Items of each kind kept for the report (the ledger has every one).
pub const MAX_ITEMS: usize = 1000;

/// Live counts, updated by every stage.
#[derive(Debug, Default)]
pub struct Counters {
    pub objects: AtomicU64,
    pub references: AtomicU64,
    pub malformed: AtomicU64,
    pub files_planned: AtomicU64,
    pub files_copied: AtomicU64,
    pub files_skipped: AtomicU64,
    pub files_missing: AtomicU64,
    pub files_failed: AtomicU64,
    /// Targets already holding other bytes at the destination (left alone).
    pub files_collisions: AtomicU64,
    /// Of the copies, those a store's server made (no byte through the tool).
    pub files_server_side: AtomicU64,
    pub files_in_flight: AtomicU64,
    /// Copy attempts that failed and were made again (see `retry`).
    pub retries: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub refs_rewritten: AtomicU64,
    pub refs_unchanged: AtomicU64,
    pub refs_conflict: AtomicU64,
    pub refs_failed: AtomicU64,
    /// References left alone because their file is missing, failed, or not copied.
    pub refs_left: AtomicU64,
    /// References outside `--select` or the shard.
    pub refs_not_selected: AtomicU64,
    /// References outside `--select` or the shard that name a file this tool copied (the target
    /// of a verified copy): migrated by an earlier run, not counted in `refs_not_selected`.
    pub refs_migrated_before: AtomicU64,
    items: Mutex<Items>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Items {
    pub missing: Vec<FileItem>,
    pub failed: Vec<FileItem>,
    /// Targets the destination already holds with other bytes: never overwritten.
    pub collisions: Vec<FileItem>,
    pub conflicts: Vec<RefItem>,
    pub failed_references: Vec<RefItem>,
    /// Items not kept because of [`MAX_ITEMS`] (see the ledger for all).
    pub truncated: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileItem {
    pub name: String,
    pub reason: String,
    /// References to it seen so far in this run.
    pub references: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefItem {
    pub class: String,
    pub object_id: String,
    pub path: String,
    pub name: String,
    pub reason: String,
}

impl RefItem {
    /// A reference as the walk found it.
    pub fn of_ref(r: &crate::scan::FileRef, reason: String) -> RefItem {
        RefItem {
            class: r.class.clone(),
            object_id: r.object_id(),
            path: r.path.clone(),
            name: r.name.clone(),
            reason,
        }
    }

    /// A reference change, by its old value.
    pub fn of_change(c: &crate::ledger::RefChange, reason: String) -> RefItem {
        RefItem {
            class: c.class.clone(),
            object_id: crate::scan::id_string(&c.id),
            path: c.path.clone(),
            name: c.old.name.clone(),
            reason,
        }
    }
}

fn push<T>(v: &mut Vec<T>, truncated: &mut u64, item: T) {
    if v.len() < MAX_ITEMS {
        v.push(item);
    } else {
        *truncated += 1;
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    fn items(&self) -> std::sync::MutexGuard<'_, Items> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn missing(&self, item: FileItem) {
        let mut i = self.items();
        let Items {
            missing, truncated, ..
        } = &mut *i;
        push(missing, truncated, item);
    }

    pub fn failed(&self, item: FileItem) {
        let mut i = self.items();
        let Items {
            failed, truncated, ..
        } = &mut *i;
        push(failed, truncated, item);
    }

    pub fn collision(&self, item: FileItem) {
        let mut i = self.items();
        let Items {
            collisions,
            truncated,
            ..
        } = &mut *i;
        push(collisions, truncated, item);
    }

    pub fn conflict(&self, item: RefItem) {
        let mut i = self.items();
        let Items {
            conflicts,
            truncated,
            ..
        } = &mut *i;
        push(conflicts, truncated, item);
    }

    pub fn failed_reference(&self, item: RefItem) {
        let mut i = self.items();
        let Items {
            failed_references,
            truncated,
            ..
        } = &mut *i;
        push(failed_references, truncated, item);
    }

    /// Count how a reference change settled, keeping the conflict (with `conflict`, the pass's
    /// words for it) or the failure for the report.
    pub fn settled(
        &self,
        change: &crate::ledger::RefChange,
        state: crate::ledger::RefState,
        error: Option<String>,
        conflict: &str,
    ) {
        use crate::ledger::RefState;
        match state {
            RefState::Rewritten | RefState::Pending | RefState::RolledBack => {
                Self::add(&self.refs_rewritten, 1)
            }
            RefState::Conflict => {
                Self::add(&self.refs_conflict, 1);
                self.conflict(RefItem::of_change(change, conflict.to_string()));
            }
            RefState::Failed => {
                Self::add(&self.refs_failed, 1);
                let reason = error.unwrap_or_else(|| "update refused".into());
                self.failed_reference(RefItem::of_change(change, reason));
            }
        }
    }

    /// The summary of the run so far.
    pub fn summary(&self, elapsed: Duration, dry_run: bool, stopped_by: Option<String>) -> Summary {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| {
            if secs > 0.0 {
                (n as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let copied = g(&self.files_copied);
        let bytes = g(&self.bytes_copied);
        Summary {
            dry_run,
            objects_scanned: g(&self.objects),
            references_found: g(&self.references),
            malformed_values: g(&self.malformed),
            files: FileCounts {
                planned: g(&self.files_planned),
                copied,
                skipped: g(&self.files_skipped),
                missing: g(&self.files_missing),
                failed: g(&self.files_failed),
                collisions: g(&self.files_collisions),
                server_side: g(&self.files_server_side),
                retries: g(&self.retries),
            },
            references: RefCounts {
                rewritten: g(&self.refs_rewritten),
                unchanged: g(&self.refs_unchanged),
                conflicts: g(&self.refs_conflict),
                failed: g(&self.refs_failed),
                left_untouched: g(&self.refs_left),
                not_selected: g(&self.refs_not_selected),
                migrated_before: g(&self.refs_migrated_before),
            },
            bytes_copied: bytes,
            duration_secs: (secs * 1000.0).round() / 1000.0,
            files_per_sec: per_sec(copied),
            bytes_per_sec: per_sec(bytes),
            stopped_by,
            database: Default::default(),
            items: self.items().clone(),
        }
    }
}

/// The end-of-run summary (printed, and written as JSON by `--output json` / `--report`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    pub objects_scanned: u64,
    pub references_found: u64,
    pub malformed_values: u64,
    pub files: FileCounts,
    pub references: RefCounts,
    pub bytes_copied: u64,
    pub duration_secs: f64,
    pub files_per_sec: f64,
    pub bytes_per_sec: f64,
    /// The cutoff that stopped the run early, if any.
    pub stopped_by: Option<String>,
    /// Write round trips timed, their latency, and the time throttled by the database's health
    /// (`--max-db-latency`, `--max-repl-lag`).
    pub database: crate::dbhealth::Report,
    #[serde(flatten)]
    pub items: Items,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileCounts {
    /// Copies started (dry run: copies that would be made).
    pub planned: u64,
    pub copied: u64,
    /// Already verified at the destination (earlier run, or the source is the destination).
    pub skipped: u64,
    pub missing: u64,
    pub failed: u64,
    /// The destination already held other bytes under the target name: not overwritten
    /// (`--overwrite` allows it), recorded `failed` in the ledger with a `collision:` reason.
    pub collisions: u64,
    /// Of `copied`, those the store's server made (a move within one service: S3 `CopyObject`,
    /// GCS `copyTo`), no byte going through the tool.
    #[serde(skip_serializing_if = "is_zero")]
    pub server_side: u64,
    /// Attempts that failed and were made again (timeouts, resets, 5xx, throttling): the copies
    /// above succeeded or failed in the end, but a high count says the source or destination is
    /// struggling.
    pub retries: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefCounts {
    pub rewritten: u64,
    /// Already holding the final value (e.g. a kept name at the top level).
    pub unchanged: u64,
    pub conflicts: u64,
    pub failed: u64,
    /// Not rewritten because their file is missing, failed, or (`--copy-only`) by choice.
    pub left_untouched: u64,
    /// Outside `--select` or `--shard`.
    pub not_selected: u64,
    /// Outside `--select` or `--shard` because an earlier run migrated them: they name the
    /// target of a verified copy (a re-run of a hosted-Parse migration finds the references it
    /// rewrote under Parse-Server-style names, which `--select hosted` does not take).
    pub migrated_before: u64,
}

impl Summary {
    /// The exit code this summary means (README "Exit codes"): interrupted 130; destination full
    /// 7; a store refused every request 4; stopped by the
    /// error budget 3 (something is failing: not a cutoff to continue from); another cutoff 8;
    /// incomplete (missing, failed, conflicts) 3; else 0.
    pub fn exit_code(&self) -> i32 {
        use crate::exit::{CUTOFF, INCOMPLETE, INTERRUPTED, OK};
        if self.stopped_by.as_deref() == Some(super::INTERRUPTED) {
            INTERRUPTED
        } else if self
            .stopped_by
            .as_deref()
            .is_some_and(|s| s.starts_with(super::NO_SPACE))
        {
            crate::exit::NO_SPACE
        } else if self
            .stopped_by
            .as_deref()
            .is_some_and(|s| s.starts_with(super::REFUSED))
        {
            crate::exit::UNREACHABLE
        } else if self.stopped_by_errors() {
            INCOMPLETE
        } else if self.stopped_by.is_some() {
            CUTOFF
        } else if self.incomplete() && !self.dry_run {
            INCOMPLETE
        } else {
            OK
        }
    }

    /// Whether the error budget (`--max-errors`) stopped the run.
    pub fn stopped_by_errors(&self) -> bool {
        self.stopped_by
            .as_deref()
            .is_some_and(super::stopped_by_errors)
    }

    /// Whether anything needs a re-run (exit 3).
    pub fn incomplete(&self) -> bool {
        self.files.missing > 0
            || self.files.failed > 0
            || self.files.collisions > 0
            || self.references.conflicts > 0
            || self.references.failed > 0
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How `stopped_by` starts when the error budget (`--max-errors`) stopped the run.
pub const MAX_ERRORS: &str = "--max-errors";

/// How `stopped_by` starts when the destination ran out of space.
pub const NO_SPACE: &str = "destination full";

/// How `stopped_by` starts when a store refused every request (credentials, a deleted bucket).
pub const REFUSED: &str = "store refused";

/// Whether a `stopped_by` value means the error budget stopped the run (not a cutoff).
pub fn stopped_by_errors(stop: &str) -> bool {
    stop.starts_with(MAX_ERRORS)
}
