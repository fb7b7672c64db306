//! The one door for removing stored bytes. Every place that deletes, moves or hides what a store
//! holds calls a function here, one per kind of removal, and nothing else in `src/` calls a
//! store's delete or move (`scripts/check-layers` enforces it): `rollback --delete-copies`
//! ([`delete_copies`]), the quarantine's moves, restores and purges and the deletes of superseded
//! GridFS revisions ([`relocate`]), the debris sweep ([`remove_debris`]), and rekey's
//! replacement and removal of old versions ([`commit_version`], [`discard_version`],
//! [`remove_stale_versions`]).
//!
//! Callers reach it only through the live gate ([`super::live::Live`], and rekey's live path):
//! a dry run never gets here. Each function records what it is about to do before the store is
//! touched where the ledger keeps such records, and re-checks right before acting that nothing
//! points at what it removes, so the guards of a new destructive command come by construction.
//!
//! What stays inside a store is the clean-up of its own write in progress (an aborted multipart
//! upload, a temp file of a dead writer of this machine, the older revisions a GridFS `put`
//! replaces): those are part of the store's atomic `put`, not removals of stored objects.

use mongodb::Database;
use mongodb::bson::oid::ObjectId;

use super::quarantine::{Action, Outcome, Step};
use crate::ledger::{FileRecord, FileState, Ledger, QuarantineIntent, QuarantineState as S};
use crate::scan::Target;
use crate::scan::lookup::referenced_top_level;
use crate::storage::debris::{Batch, Debris, Swept};
use crate::storage::rekey::{Outcome as VersionOutcome, Version, Versioned};
use crate::storage::{ObjectStore, Quarantine, StorageError, unsupported};

/// The app whose references protect what a removal would remove.
pub struct App<'a> {
    pub db: &'a Database,
    /// What to ask the database about (every class with a File field, `_GlobalConfig`).
    pub targets: &'a [Target],
    /// The store the originals are in (`[source.server]`), for copies under unchanged names.
    pub source: Option<&'a dyn ObjectStore>,
}

/// `rollback --delete-copies`: delete the copies of `files` from `store` (the destination) that
/// nothing points at right before the delete: no ledger record of a reference still rewritten to
/// it, and no top-level File field of the app's database (asked here, one query per class for
/// the batch; nested Files, Parse Config and strings are checked by the caller's walk, started
/// after the references were restored). Each file is recorded `deleting` before its delete and
/// `deleted` after, so a crash or a store error in between never leaves a deleted copy recorded
/// as verified. One flag per file: deleted (or already gone), or kept.
pub async fn delete_copies(
    ledger: &Ledger,
    app: &App<'_>,
    store: &dyn ObjectStore,
    files: &[FileRecord],
) -> anyhow::Result<Vec<bool>> {
    // Renamed copies: the app's references name the copy itself.
    let names: Vec<&str> = files
        .iter()
        .filter(|f| f.name != f.target)
        .map(|f| f.target.as_str())
        .collect();
    let taken = referenced_top_level(app.db, app.targets, &names).await?;
    let mut doomed = Vec::with_capacity(files.len());
    let mut removed = Vec::with_capacity(files.len());
    for f in files {
        let keep = if f.name == f.target {
            // Names unchanged: the references are the original's as much as this copy's, so
            // the copy goes only while the original is where Parse Server goes back to.
            !original_is_there(app.source, f).await
        } else {
            taken.contains(&f.target) || ledger.still_referenced(&f.name).await?
        };
        if keep {
            tracing::info!(file = %f.target, "referenced right before the delete: kept");
        } else {
            doomed.push(f);
        }
        removed.push(!keep);
    }
    ledger.mark_files(&doomed, FileState::Deleting).await?;
    let mut deleted = Vec::with_capacity(doomed.len());
    let mut failed = None;
    for f in doomed {
        // Under the run's lease, checked before every delete: a run that lost it stops here.
        if let Err(lost) = ledger.holding().await {
            ledger.mark_files(&deleted, FileState::Deleted).await?;
            return Err(lost);
        }
        match store.delete(&f.target).await {
            Ok(()) => deleted.push(f),
            Err(e) if e.is_not_found() => deleted.push(f),
            // Left `deleting`: the copy may or may not be there; the next migrate copies it
            // again (create-only: it compares what it finds), and a re-run of the rollback
            // finds nothing recorded verified to delete.
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    ledger.mark_files(&deleted, FileState::Deleted).await?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(removed),
    }
}

/// Whether the original of a copy under an unchanged name is in `source`, the same size.
async fn original_is_there(source: Option<&dyn ObjectStore>, f: &FileRecord) -> bool {
    let Some(source) = source else {
        return false;
    };
    match source.stat(&f.name).await {
        Ok(meta) => f.size.is_none_or(|size| size == meta.size),
        Err(e) => {
            tracing::info!(file = %f.name, "the original is not readable ({e}): its copy is kept");
            false
        }
    }
}

/// Remove one batch of a gone run's debris ([`Debris::remove`]).
pub async fn remove_debris(debris: &dyn Debris, batch: &Batch) -> Result<Swept, StorageError> {
    debris.remove(batch).await
}

/// Rekey: make `new` the version readers see in place of `old`, removing `old`.
pub async fn commit_version(
    store: &dyn Versioned,
    old: &Version,
    new: &Version,
) -> Result<VersionOutcome, StorageError> {
    store.commit(old, new).await
}

/// Rekey: remove version `id` of `name` (a staged version that is not to be used, or an old one
/// a crash left after its replacement was committed).
pub async fn discard_version(
    store: &dyn Versioned,
    name: &str,
    id: &str,
) -> Result<(), StorageError> {
    store.discard(name, id).await
}

/// Rekey: remove the versions of `v.name` older than `v` (never served again).
pub async fn remove_stale_versions(
    store: &dyn Versioned,
    v: &Version,
) -> Result<u64, StorageError> {
    store.remove_stale(v).await
}

/// Store operations of a batch at once.
const AT_ONCE: usize = 16;

/// `audit --quarantine / --restore / --purge` steps on `store`: recorded in the ledger, done
/// (a batch at a time), made durable, recorded again (see [`super::quarantine`]).
pub async fn relocate(
    ledger: &Ledger,
    store: &dyn ObjectStore,
    steps: &[Step],
) -> anyhow::Result<Vec<Outcome>> {
    let identity = store.identity();
    let quarantine = store
        .quarantine()
        .ok_or_else(|| unsupported(store, "quarantine"))?;
    let locations: Vec<String> = steps
        .iter()
        .map(|s| quarantine.location(&s.name).unwrap_or_default())
        .collect();
    let intents: Vec<QuarantineIntent> = steps
        .iter()
        .zip(&locations)
        .filter(|(s, _)| s.record.is_none())
        .map(|(s, location)| QuarantineIntent {
            store: &identity,
            name: &s.name,
            location,
            size: s.size,
            modified: s.modified,
            version: s.version.as_deref(),
        })
        .collect();
    let mut new_ids = ledger.quarantine_intents(&intents).await?.into_iter();
    let ids: Vec<ObjectId> = steps
        .iter()
        .map(|s| s.record.or_else(|| new_ids.next()))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow::anyhow!("the ledger returned fewer ids than intents"))?;
    let during: Vec<_> = steps
        .iter()
        .zip(&ids)
        .filter(|(s, _)| s.record.is_some())
        .map(|(s, id)| (*id, states_of(s.action).0))
        .collect();
    ledger.quarantine_marks(&during).await?;
    let mut results: Vec<Result<(), StorageError>> = Vec::with_capacity(steps.len());
    for chunk in steps.chunks(AT_ONCE) {
        let acts: Vec<_> = chunk.iter().map(|s| act(quarantine, s)).collect();
        results.extend(futures::future::join_all(acts).await);
    }
    // Nothing is recorded as moved before the store holds the moves durably (fs: one syncfs).
    if results.iter().any(Result::is_ok) {
        store.sync().await?;
    }
    let mut marks = Vec::with_capacity(steps.len());
    let mut outcomes = Vec::with_capacity(steps.len());
    for ((step, id), result) in steps.iter().zip(&ids).zip(results) {
        let (state, outcome) = match result {
            Ok(()) => (states_of(step.action).1, Outcome::Done),
            Err(e @ (StorageError::AlreadyExists { .. } | StorageError::InvalidName { .. })) => {
                (refused_state(step.action), Outcome::Refused(e.to_string()))
            }
            Err(e) if e.is_not_found() => (S::Gone, Outcome::Gone(e.to_string())),
            // Left in its in-flight state: the next run repeats it (or takes a move back).
            Err(e) => {
                outcomes.push(Outcome::Failed(e.to_string()));
                continue;
            }
        };
        marks.push((*id, state));
        outcomes.push(outcome);
    }
    ledger.quarantine_marks(&marks).await?;
    Ok(outcomes)
}

/// A step's record state while it runs, and after it succeeded.
fn states_of(action: Action) -> (S, S) {
    match action {
        Action::Quarantine => (S::Moving, S::Quarantined),
        Action::Restore => (S::Restoring, S::Restored),
        Action::Purge | Action::PurgeSuperseded => (S::Purging, S::Purged),
    }
}

/// One step's store operation.
async fn act(quarantine: &dyn Quarantine, step: &Step) -> Result<(), StorageError> {
    let name = step.name.as_str();
    match step.action {
        Action::Quarantine => quarantine.quarantine(name).await,
        Action::Restore => quarantine.unquarantine(name).await,
        Action::Purge => quarantine.purge(name).await,
        Action::PurgeSuperseded => {
            let version = step.version.as_deref().unwrap_or_default();
            quarantine.delete_superseded(name, version).await
        }
    }
}

/// Where a refused step leaves its record: where it was before the step.
fn refused_state(action: Action) -> S {
    match action {
        Action::Quarantine => S::Refused,
        Action::Restore | Action::Purge => S::Quarantined,
        Action::PurgeSuperseded => S::Refused,
    }
}
