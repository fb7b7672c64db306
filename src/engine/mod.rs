//! The migration pipeline: plan → copy → verify → rewrite, with bounded memory end to end.
//!
//! Three stages run at once, joined by bounded channels (backpressure all the way back to the
//! database walk):
//!
//! 1. [`plan`] walks each class page by page, groups the page's references by file name, looks the
//!    names up in the ledger (one round trip per page) and in the run's [`dedup`] table, and
//!    decides per file: copy it, rewrite its references to an already verified copy, or leave
//!    them (missing at the source, outside the shard…). It never writes.
//! 2. The copy stage records the intent to copy (one ledger round trip per batch), then runs up to
//!    `concurrency` [`transfer::copy_verified`] calls at once. A file referenced by many objects
//!    is copied once: later references wait in the dedup table for the first copy's outcome.
//! 3. [`rewrite`] records outcomes and rewrites references in batches of hundreds per round trip,
//!    each statement a compare-and-swap on the old value.
//!
//! Every destructive step (destination writes and deletes, ledger writes, document updates and
//! restores) goes through one [`Effects`] value, chosen once: [`live::Live`] does them,
//! [`dry::DryRun`] reports them to a [`dry::PlanSink`] the caller supplies, and
//! [`estimate::Estimator`] sizes them (no write either). That is the only dry-run gate; nothing
//! else in the engine asks whether a run is dry. [`rollback`] drives the same gate backwards.
//!
//! Memory: the walk holds one page; the channels hold `max(concurrency, QUEUE)` jobs and records
//! each; the dedup table holds in-flight files plus a bounded window of recent outcomes; each
//! transfer holds one part.

pub mod cas;
pub mod checkpoint;
pub mod copies;
pub mod debris;
pub mod dedup;
pub mod dry;
pub mod estimate;
pub mod live;
pub mod plan;
pub mod quarantine;
pub mod rebase;
pub mod rekey;
pub mod removal;
pub mod rewrite;
pub mod rollback;
pub mod strings;
pub mod summary;
pub mod transfer;
pub mod unreferenced;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mongodb::Database;
use mongodb::bson::Document;
use tokio::sync::mpsc;

use crate::ledger::{FileRecord, FileResult, Intent, Ledger, RefChange};
use crate::parse::names::{NameKind, RenamePolicy, Selection, encode_uri_component};
use crate::scan::Target;
use crate::storage::ObjectStore;
use cas::Settled;
use checkpoint::Checkpoint;
use copies::{QUEUE, copy_stage};
use rewrite::Record;

pub use summary::{Counters, Summary};

/// Files in flight (`--concurrency`, `[run] concurrency`). Typical Parse files are small
/// (photos, thumbnails), where per-request latency dominates: peers with high concurrency win by 10–20× (s5cmd 256, aws-cli 10,
/// parse-files-utils 5). 32 keeps memory at 32 × part size in the worst case.
///
/// Measured: 2,000 × 20 KiB HTTP → fs at 32 peaked at 27–28 MiB RSS, and curl at the same 32
/// fetched them in 0.5–1.8 s; the tool's own limit there is the ledger's per-file writes on
/// the test server (its CPU was busy 85–92 % of the run), not the number of transfers, so
/// more in flight buys nothing on it, while fewer would leave a real database's
/// round-trip latency (ms) uncovered. 20 × 20 MiB → fs at 20 in flight: 33–37 MiB.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// What a run does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy, verify, rewrite (the default).
    Full,
    /// Copy and verify; leave every reference alone (`--copy-only`).
    CopyOnly,
    /// Rewrite references of files already verified; copy nothing (`--rewrite-only`).
    RewriteOnly,
}

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

/// How nested File `url`s are rebuilt for a new name.
#[derive(Debug, Clone)]
pub enum UrlBase {
    /// `<public_server_url>/files/<app_id>/<encoded name>` (Parse Server serves the file).
    Server {
        public_server_url: String,
        app_id: String,
    },
    /// A template with `{name}` (the URL-encoded name), for direct-access CDNs.
    Template(String),
    /// Not configured: nested references cannot be rewritten.
    None { why: String },
}

impl UrlBase {
    pub fn url(&self, name: &str) -> Result<String, String> {
        match self {
            UrlBase::Server {
                public_server_url,
                app_id,
            } => Ok(crate::parse::names::parse_server_file_url(
                public_server_url,
                app_id,
                name,
            )),
            UrlBase::Template(t) => Ok(t.replace("{name}", &encode_uri_component(name))),
            UrlBase::None { why } => Err(why.clone()),
        }
    }
}

/// Everything a run needs besides the database walk.
#[derive(Clone)]
pub struct Plan {
    pub select: Selection,
    pub rename: RenamePolicy,
    pub concurrency: usize,
    pub shard: Option<Shard>,
    pub mode: Mode,
    /// Also retry files recorded as missing (`--retry-failed`).
    pub retry_missing: bool,
    pub limits: Limits,
    pub urls: UrlBase,
    /// `prefix` of class collections.
    pub collection_prefix: String,
    /// Documents per page of the walk.
    pub page_size: u32,
    /// The app's fileKey, kept out of everything recorded or printed.
    pub file_key: Option<crate::secret::Secret>,
    /// The destination's description: a ledger record of a copy elsewhere does not count.
    pub destination: String,
    /// The shard scope (`all` or `K/N`): the lease and the walk checkpoint are per scope.
    pub scope: String,
    /// Walk every class from the start, ignoring the walk checkpoint (`--rescan`).
    pub rescan: bool,
}

/// `--shard K/N`: this process takes the files whose name hashes to K modulo N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `K/N` with `0 <= K < N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 0/4")?;
        let index: u32 = k.trim().parse().map_err(|_| "K must be a whole number")?;
        let count: u32 = n.trim().parse().map_err(|_| "N must be a whole number")?;
        if count == 0 || index >= count {
            return Err(format!("need 0 <= K < N, got {index}/{count}"));
        }
        Ok(Shard { index, count })
    }
}

/// The scope name of a shard (`all` without one).
pub fn scope_of(shard: Option<Shard>) -> String {
    shard.map_or_else(|| "all".to_string(), |s| format!("{}/{}", s.index, s.count))
}

impl Plan {
    fn secret(&self) -> Option<&str> {
        self.file_key.as_ref().map(|k| k.expose())
    }
}

/// The stores a run reads and writes.
#[derive(Clone)]
pub struct Stores {
    /// Bytes of hosted-Parse names.
    pub hosted: Option<Arc<dyn ObjectStore>>,
    /// Bytes of every other name.
    pub server: Option<Arc<dyn ObjectStore>>,
    pub destination: Arc<dyn ObjectStore>,
}

impl Stores {
    /// The store that holds the bytes of a name of this kind.
    pub fn source_for(&self, kind: NameKind) -> Option<&Arc<dyn ObjectStore>> {
        if kind.is_hosted() {
            self.hosted.as_ref()
        } else {
            self.server.as_ref()
        }
    }
}

/// One file to move.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub name: String,
    pub target: String,
    pub kind: NameKind,
    /// A stored `url` of one of its references (an HTTP source may need it).
    pub url_hint: Option<String>,
    pub field: String, // `Class.field` of the first reference to it (how reports group files)
    /// Copy attempts the ledger recorded before (0: it has no record of the file).
    pub attempts: u32,
}

impl FileJob {
    /// The intent to copy it to `destination`, as the ledger records it before the copy.
    pub fn intent<'a>(&'a self, destination: &'a str) -> Intent<'a> {
        Intent {
            name: &self.name,
            target: &self.target,
            kind: self.kind.as_str(),
            destination,
            attempts: self.attempts,
        }
    }
}

/// How a file ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Copied (or found in place) and verified.
    Verified {
        size: u64,
        md5: Option<String>,
        hash_checked: bool,
        /// Already at the destination before this run (ledger or same store): nothing moved.
        skipped: bool,
    },
    /// Not at the source.
    Missing { reason: String },
    /// Could not be copied or verified.
    Failed { reason: String },
    /// The destination already holds other bytes under the target name: left alone, not
    /// copied (the reason starts with `collision:`).
    Collision { reason: String },
    /// Failed in a way that stops the run (the destination is full, a store refuses every
    /// request): every later copy would fail the same way. Recorded as failed; `why` is how
    /// `stopped_by` starts ([`NO_SPACE`], [`REFUSED`]).
    Stopped { reason: String, why: &'static str },
    /// Dry run: would be copied.
    Planned,
    /// Queued, but the run stopped (interrupt, error budget, `--max-bytes`, `--max-duration`)
    /// before its copy began: nothing was written; the next run copies it.
    NotStarted,
}

impl Outcome {
    /// Whether references may point at the target.
    pub fn usable(&self) -> bool {
        matches!(self, Outcome::Verified { .. } | Outcome::Planned)
    }
}

/// The destructive side of a run, chosen once (see the module documentation).
#[async_trait]
pub trait Effects: Send + Sync + quarantine::Relocate {
    /// Record the start of the run.
    async fn begin(&self, info: Document) -> anyhow::Result<()>;
    /// Record the intent to copy these files.
    async fn plan(&self, intents: &[Intent<'_>]) -> anyhow::Result<()>;
    /// Copy one file and verify it at the destination (counting retries in `counters`).
    async fn copy(&self, job: &FileJob, counters: &Counters) -> Outcome;
    /// Record file outcomes (before any reference to them is rewritten).
    async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()>;
    /// Rewrite references in one collection, compare-and-swap each ([`cas`]); returns a state
    /// per change (and the server's reason for refused ones).
    async fn rewrite(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled>;
    /// Put recorded old values back (`rollback`): `changes` go from the value the migration
    /// wrote to the old one, compare-and-swap each; records each reference as `rolled-back`.
    async fn restore(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled>;
    /// Delete copies this tool made at the destination (`rollback --delete-copies`), each only
    /// if, right before, no reference is recorded as pointing at it; records them `deleted`.
    /// Returns, per file, whether it was (or would be) deleted.
    async fn remove_copies(&self, files: &[FileRecord]) -> anyhow::Result<Vec<bool>>;
    /// Write the walk checkpoint (`None`: the pass is over; see [`checkpoint`]).
    async fn checkpoint(&self, checkpoint: Option<&Checkpoint>) -> anyhow::Result<()>;
    /// Record the end of the run.
    async fn finish(&self, summary: Document, exit_code: i32) -> anyhow::Result<()>;
    /// Whether this is a dry run: for the summary's wording only, never to decide what to do
    /// (that is what the two implementations are for).
    fn dry_run(&self) -> bool;
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
    stopped_copies: std::sync::OnceLock<String>,
    /// A failure that stops the run ([`Outcome::Stopped`]), as `stopped_by` says it.
    pub fatal: std::sync::OnceLock<String>,
    /// Throttles the walk (and, through [`live::Live`], the writes) by the database's health.
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

/// Run the pipeline over `targets` in `db`. Returns the summary; the caller decides the exit
/// code and records the end of the run.
pub async fn run(
    plan: Plan,
    effects: Arc<dyn Effects>,
    ledger: &Ledger,
    db: &Database,
    targets: &[Target],
    state: Arc<RunState>,
) -> anyhow::Result<Summary> {
    let queue = plan.concurrency.max(QUEUE);
    let (copy_tx, copy_rx) = mpsc::channel::<FileJob>(queue);
    let (rec_tx, rec_rx) = mpsc::channel::<Record>(queue);
    let planner = plan::Planner {
        plan: &plan,
        effects: effects.clone(),
        state: state.clone(),
        ledger,
        copies: copy_tx,
        records: rec_tx.clone(),
    };
    let walk = planner.walk(db, targets);
    let copies = copy_stage(
        copy_rx,
        effects.clone(),
        state.clone(),
        rec_tx,
        &plan,
        queue,
    );
    let rewrites = rewrite::stage(rec_rx, effects.clone(), state.clone(), plan.clone());
    // Each stage ends when its input closes, and a failing stage drops its receiver so the
    // others stop too: join them all, then report the first error.
    let (walked, copied, rewritten) = tokio::join!(walk, copies, rewrites);
    let ended = match (walked, copied, rewritten) {
        // The walk may have queued everything before a stop that left copies unstarted.
        (Ok(stopped_by), Ok(()), Ok(())) => {
            Ok(stopped_by.or_else(|| state.stopped_copies.get().cloned()))
        }
        (w, c, r) => Err(cause([w.err(), c.err(), r.err()])),
    };
    let stopped_by = match ended {
        // The walk reached the end of every class: this pass is over; the next run walks all.
        Ok(None) => {
            effects.checkpoint(None).await?;
            None
        }
        // Stopped by failures: the next run walks from the start, so that what failed here is
        // retried at once rather than a pass later (the ledger makes the done part cheap).
        Ok(Some(stop)) if stopped_by_errors(&stop) => {
            effects.checkpoint(None).await?;
            Some(stop)
        }
        Ok(Some(stop)) => {
            save_checkpoint(&state, &*effects, true).await?;
            Some(stop)
        }
        Err(e) => {
            // What is settled stays settled: keep it for the next run, but report `e`.
            if let Err(f) = save_checkpoint(&state, &*effects, true).await {
                tracing::warn!("writing the walk checkpoint: {f:#}");
            }
            return Err(e);
        }
    };
    Ok(state.summary(effects.dry_run(), stopped_by))
}

/// A stage could not hand work on because the next one stopped (its own error is the cause).
#[derive(Debug, thiserror::Error)]
#[error("the {0} stage stopped")]
pub struct StageStopped(pub &'static str);

/// Of the stages' errors, the one that caused the others ([`StageStopped`] are consequences).
fn cause(errors: [Option<anyhow::Error>; 3]) -> anyhow::Error {
    let mut errors: Vec<anyhow::Error> = errors.into_iter().flatten().collect();
    let first = errors
        .iter()
        .position(|e| e.downcast_ref::<StageStopped>().is_none());
    errors.swap_remove(first.unwrap_or(0))
}

/// Write the walk checkpoint if it moved since the last write (and `force`, or it is due).
pub(crate) async fn save_checkpoint(
    state: &RunState,
    effects: &dyn Effects,
    force: bool,
) -> anyhow::Result<()> {
    let mut saved = state.walk.saving.lock().await;
    if let Some((version, checkpoint)) = state.walk.due(*saved, force) {
        effects.checkpoint(Some(&checkpoint)).await?;
        *saved = version;
    }
    Ok(())
}
