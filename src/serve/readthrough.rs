//! The read-through: what the gateway does with a file the upstream does not have. The name is
//! resolved to its old store as `migrate` resolves it ([`Stores::source_for`] by its
//! [`NameKind`]; the stores decrypt `fileKey` files and read GridFS's newest revision), and
//! copied into the destination under the same name through the run's [`Effects`] exactly as a
//! `migrate` copy is: intent recorded, create-only and verified copy, outcome recorded — so a
//! later `migrate` skips it, and `verify` and `rollback` see it. One copy per name at a time
//! ([`super::flight`]), at most `max_copies` at once.
//!
//! A DELETE passed on through the gateway leaves a tombstone in the ledger (the file's record
//! set `deleted`, its error [`TOMBSTONE`]; `migrate` leaves it too): a later miss of that name is answered by the
//! upstream's 404, never copied back from the old store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::Semaphore;

use super::flight::{Flights, Landed};
use super::metrics::Metrics;
use crate::engine::pipeline::rewrite::file_result;
use crate::engine::{Counters, Effects, FileJob, Outcome, Stores};
use crate::ledger::{FileResult, FileState, Ledger, TOMBSTONE};
use crate::parse::names::NameKind;
use crate::storage::{GetOptions, GetResult, ObjectMeta, ObjectStore};

/// How a miss ended, for the request(s) waiting on it.
#[derive(Debug, Clone)]
pub enum Miss {
    /// The destination has it now (copied, or found there): ask the upstream again.
    Copied,
    /// The ledger already records it copied here and verified: ask the upstream again (no copy).
    Present,
    /// Not in the old store either, or deleted through the gateway: the upstream's 404 stands.
    Absent,
    /// The old store (or the destination, or the ledger) failed: 502, or 504 on a timeout.
    /// `reason` is for the log (no secret: store descriptions are redacted); clients get a
    /// short sentence of the status.
    Failed { status: StatusCode, reason: String },
    /// `max_copies` copies are running: 503 with `Retry-After`.
    Busy,
}

/// The read-through's state, shared by every request.
pub struct ReadThrough {
    pub effects: Arc<dyn Effects>,
    pub stores: Stores,
    pub ledger: Ledger,
    /// The destination, as the ledger names it.
    pub destination: crate::storage::StoreName,
    /// Retries of the copies (the engine counts them here).
    pub counters: Counters,
    pub flights: Flights<Miss>,
    pub copies: Arc<Semaphore>,
    /// How long a request waits for its file's copy.
    pub wait: Duration,
    pub dry_run: bool,
    pub metrics: Arc<Metrics>,
}

impl ReadThrough {
    /// The old store of `name`, if one is configured for names of its kind.
    pub fn source(&self, name: &str) -> Option<&Arc<dyn ObjectStore>> {
        self.stores.source_for(NameKind::of(name))
    }

    /// Whether `name` was deleted through a gateway (a failure to read the ledger is a 502).
    pub async fn tombstoned(&self, name: &str) -> Result<bool, Miss> {
        Ok(self.known(name).await?.is_some_and(|r| r.is_tombstone()))
    }

    /// The ledger's record of `name`, if any (a failure to read the ledger is a 502).
    async fn known(&self, name: &str) -> Result<Option<crate::ledger::FileRecord>, Miss> {
        let mut known = self
            .ledger
            .lookup(&[name])
            .await
            .map_err(|e| failed(format!("reading the ledger: {e:#}")))?;
        Ok(known.remove(name))
    }

    /// Copy `name` into the destination, or wait for the copy already under way; at most
    /// [`wait`](Self::wait).
    pub async fn copy(self: &Arc<Self>, name: &str) -> Miss {
        // Asked before joining (no flight for a tombstone or a file already here), and again by
        // the flight itself: a copy that landed between this look and the join is then seen.
        if let Err(miss) = self.settled(name).await {
            return miss;
        }
        let me = self.clone();
        let owned = name.to_string();
        let ticket = self.flights.join(name, move || me.copy_once(owned));
        match ticket.wait(self.wait).await {
            Landed::Done(miss) => miss,
            Landed::TimedOut => Miss::Failed {
                status: StatusCode::GATEWAY_TIMEOUT,
                reason: format!(
                    "the copy of this file from the old store takes longer than {} s; it goes \
                     on, try again later",
                    self.wait.as_secs()
                ),
            },
            Landed::Lost => failed("the copy ended without an outcome".into()),
        }
    }

    /// Whether the ledger already settles `name` (`Err`): a tombstone (the upstream's 404
    /// stands), a copy here verified (ask the upstream again), or the ledger failing; else the
    /// copy attempts it recorded before.
    async fn settled(&self, name: &str) -> Result<u32, Miss> {
        match self.known(name).await? {
            Some(r) if r.is_tombstone() => Err(Miss::Absent),
            // Already copied here and verified (by a copy that landed since the upstream
            // answered, or long ago): the upstream's answer to the next ask stands (a Range it
            // cannot serve, a trigger that hides the file); the old store is not read again.
            Some(r)
                if r.state == FileState::Verified
                    && r.target == name
                    && r.destination
                        .as_deref()
                        .is_some_and(|d| self.destination.names(d)) =>
            {
                Err(Miss::Present)
            }
            record => Ok(record.map_or(0, |r| r.attempts)),
        }
    }

    /// The flight's work: one copy through the gate (see the module documentation).
    async fn copy_once(self: Arc<Self>, name: String) -> Miss {
        let Ok(_permit) = self.copies.clone().try_acquire_owned() else {
            return Miss::Busy;
        };
        let attempts = match self.settled(&name).await {
            Ok(attempts) => attempts,
            Err(miss) => return miss,
        };
        let kind = NameKind::of(&name);
        if self.stores.source_for(kind).is_none() {
            tracing::debug!(file = %name, "no old store for {} names: not copied", kind.as_str());
            return Miss::Absent;
        }
        let job = FileJob {
            name: name.clone(),
            target: name.clone(),
            kind,
            url_hint: None,
            field: "(serve)".into(),
            attempts,
        };
        if let Err(e) = self
            .effects
            .plan(&[job.intent(&self.destination.identity)])
            .await
        {
            return failed(format!("recording the intent: {e:#}"));
        }
        let m = &self.metrics;
        Metrics::add(&m.copies_in_flight, 1);
        let started = Instant::now();
        let outcome = self.effects.copy(&job, &self.counters).await;
        m.copies_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let recorded = match file_result(&job.name, &outcome) {
            Some(result) => self.effects.record_files(&[result]).await,
            None => Ok(()),
        };
        let took = started.elapsed();
        Metrics::add(&m.copies, 1);
        Metrics::add(&m.copy_micros, took.as_micros() as u64);
        if let Err(e) = recorded {
            // The bytes may be there, but unrecorded they are not a verified copy yet (the
            // next miss, or `migrate`, finds them and records them).
            return failed(format!("recording the copy: {e:#}"));
        }
        match outcome {
            Outcome::Verified { size, skipped, .. } => {
                if !skipped {
                    Metrics::add(&m.bytes_copied, size);
                }
                tracing::info!(
                    file = %name,
                    bytes = size,
                    ms = took.as_millis() as u64,
                    "{} in flight",
                    if skipped { "found at the destination" } else { "copied" }
                );
                Miss::Copied
            }
            Outcome::Missing { reason } => {
                tracing::info!(file = %name, "asked for, absent from the old store: {reason}");
                Miss::Absent
            }
            Outcome::Failed { reason } | Outcome::Collision { reason } => {
                tracing::error!(file = %name, "copy in flight failed: {reason}");
                failed(reason)
            }
            Outcome::Stopped { reason, .. } => {
                tracing::error!(file = %name, "copy in flight failed: {reason}");
                Miss::Failed {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason,
                }
            }
            Outcome::NotStarted => Miss::Busy,
            // A dry run never copies (the gateway answers from the old store instead).
            Outcome::Planned => Miss::Absent,
        }
    }

    /// `name`'s metadata at its old store (HEAD of a file not copied yet); `Absent` when it has
    /// none.
    pub async fn stat(&self, name: &str) -> Result<ObjectMeta, Miss> {
        if self.tombstoned(name).await? {
            return Err(Miss::Absent);
        }
        let source = self.source(name).ok_or(Miss::Absent)?;
        source.stat(name).await.map_err(from_storage)
    }

    /// `name`'s bytes at its old store (`--dry-run`, `stream_above`).
    pub async fn open(&self, name: &str) -> Result<GetResult, Miss> {
        if self.tombstoned(name).await? {
            return Err(Miss::Absent);
        }
        let source = self.source(name).ok_or(Miss::Absent)?;
        source
            .get(name, &GetOptions::default())
            .await
            .map_err(from_storage)
    }

    /// Record that `name` was deleted through the gateway (its DELETE succeeded upstream).
    pub async fn tombstone(&self, name: &str) -> anyhow::Result<()> {
        let job = FileJob {
            name: name.to_string(),
            target: name.to_string(),
            kind: NameKind::of(name),
            url_hint: None,
            field: "(serve)".into(),
            attempts: 1,
        };
        self.effects
            .plan(&[job.intent(&self.destination.identity)])
            .await?;
        let result = FileResult {
            name,
            state: FileState::Deleted,
            size: None,
            md5: None,
            hash_checked: false,
            error: Some(TOMBSTONE),
            wrote: false,
        };
        self.effects.record_files(&[result]).await
    }
}

/// A 502, or a 504 when `reason` says something timed out.
fn failed(reason: String) -> Miss {
    let lower = reason.to_ascii_lowercase();
    let timeout = ["timed out", "timeout", "cut off after"]
        .iter()
        .any(|t| lower.contains(t));
    Miss::Failed {
        status: if timeout {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        },
        reason,
    }
}

fn from_storage(e: crate::storage::StorageError) -> Miss {
    if e.is_not_found() {
        Miss::Absent
    } else {
        failed(e.to_string())
    }
}
