//! The migration pipeline (`migrate`, `migrate --estimate`, `rebase`): plan → copy → verify →
//! rewrite, with bounded memory end to end, then the string pass.
//!
//! Three stages run at once, joined by bounded channels (backpressure all the way back to the
//! database walk):
//!
//! 1. [`plan`] walks each class page by page, groups the page's references by file name, looks the
//!    names up in the ledger (one round trip per page) and in the run's [`dedup`] table, and
//!    decides per file: copy it, rewrite its references to an already verified copy, or leave
//!    them (missing at the source, outside the shard…). It never writes.
//! 2. The copy stage records the intent to copy (one ledger round trip per batch), then runs up to
//!    `concurrency` [`crate::engine::transfer::copy_verified`] calls at once. A file referenced by many objects
//!    is copied once: later references wait in the dedup table for the first copy's outcome.
//! 3. [`rewrite`] records outcomes and rewrites references in batches of hundreds per round trip,
//!    each statement a compare-and-swap on the old value.
//!
//! Every destructive step goes through the run's [`Effects`], chosen once by the caller
//! ([`crate::engine::live::Live`], [`crate::engine::dry::DryRun`], or [`estimate::Estimator`],
//! which sizes the run and writes nothing).
//!
//! Memory: the walk holds one page; the channels hold `max(concurrency, QUEUE)` jobs and records
//! each; the dedup table holds in-flight files plus a bounded window of recent outcomes; each
//! transfer holds one part.

pub mod checkpoint;
pub mod copies;
pub mod dedup;
pub mod estimate;
pub mod plan;
pub mod rebase;
pub mod rewrite;
pub mod strings;
pub mod unreferenced;

use std::sync::Arc;

use mongodb::Database;
use tokio::sync::mpsc;

use crate::engine::{Effects, FileJob, Limits, RunState, Summary, stopped_by_errors};
use crate::hooks::{Hooks, Phase};
use crate::ledger::Ledger;
use crate::parse::names::{RenamePolicy, Selection, encode_name_path};
use crate::scan::Target;
use copies::{QUEUE, copy_stage};
use rewrite::Record;

/// Files in flight (`--concurrency`, `[run] concurrency`). Typical Parse files are small
/// (photos, thumbnails), where per-request latency dominates: peers with high concurrency win by
/// 10–20× (s5cmd 256, aws-cli 10, parse-files-utils 5). Memory is at most 64 × 2 S3 parts
/// (1 GiB) in the worst case, 64 large uploads to S3 at once; small files hold their own size.
///
/// Chosen for the `cloud` profile (`bench/run --only net`: files 20 ms away, the database 1 ms),
/// 2,000 × 20 KiB HTTP → fs, `--copy-only` / full migration, files/s: 8 in flight 308 / 285,
/// 32: 964 / 783, 64: 1,539 / 853, 128: 1,760 / 924 (curl at the same concurrency 331, 1,122,
/// 2,058, 2,707). Files 80 ms away (`far`): 32: 335 / 325, 64: 590 / 533, 128: 858 / 708. On
/// loopback the rate is flat from 32 to 128. So 64: most of what 128 gains where the network
/// is slow, at half the worst-case memory; a far store is worth `--concurrency 128`.
pub const DEFAULT_CONCURRENCY: usize = 64;

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
            UrlBase::Template(t) => Ok(t.replace("{name}", &encode_name_path(name))),
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
    /// The destination, as the ledger names it: a ledger record of a copy elsewhere does not
    /// count.
    pub destination: crate::storage::StoreName,
    /// The shard scope (`all` or `K/N`): the lease and the walk checkpoint are per scope.
    pub scope: String,
    /// Walk every class from the start, ignoring the walk checkpoint (`--rescan`).
    pub rescan: bool,
    /// `relayout --template`: each file's new name comes from the template and the first
    /// reference met (instead of [`RenamePolicy`]), once per file, and sticks in the ledger.
    pub layout: Option<Arc<crate::parse::layout::Layout>>,
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

/// Run `migrate` over `targets` in `db`: the file pass ([`files`]), then, when the targets search
/// strings and the mode rewrites, the string pass ([`strings`]) unless interrupted; the summary
/// counts both. Each pass is a phase of `hooks` ([`Phase::Files`], [`Phase::Strings`]). The
/// caller decides the exit code and records the end of the run.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: Plan,
    effects: Arc<dyn Effects>,
    ledger: &Ledger,
    db: &Database,
    targets: &[Target],
    state: Arc<RunState>,
    hooks: &Hooks,
) -> anyhow::Result<Summary> {
    let file_pass = files(
        plan.clone(),
        effects.clone(),
        ledger,
        db,
        targets,
        state.clone(),
    );
    let summary = hooks.phase(Phase::Files, file_pass).await?;
    let strings = targets.iter().any(|t| t.strings.is_some());
    if !strings || plan.mode == Mode::CopyOnly || state.is_interrupted() {
        return Ok(summary);
    }
    let pass = strings::Pass {
        plan: &plan,
        ledger,
        db,
        state: &state,
        resolve: strings::Resolve::Migrate {
            dry: effects.dry_run(),
        },
    };
    hooks
        .phase(Phase::Strings, pass.run(&*effects, targets))
        .await?;
    let interrupted = state
        .is_interrupted()
        .then(|| crate::engine::INTERRUPTED.to_string());
    let stopped_by = summary.stopped_by.or(interrupted);
    Ok(state.summary(effects.dry_run(), stopped_by))
}

/// The file pass of the pipeline over `targets` in `db` (plan → copy → verify → rewrite of
/// File references; `migrate --estimate` runs only this). Returns the summary.
pub async fn files(
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
