//! Sweeping the debris of killed runs: at the start of every writing run (after its lease is
//! taken and the interrupted reference batches are settled), the uploads that runs which are gone
//! — no unexpired lease, never finished — left unfinished in this run's destination are removed
//! ([`crate::storage::debris`] says how each store tells them apart from another writer's), and
//! each such run is marked swept in the ledger with what was removed (`status` reports it).
//!
//! The live gate calls [`sweep`], which removes through the removal door; a dry run calls
//! [`survey`], which only measures and writes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;

use crate::ledger::{GoneRun, Ledger};
use crate::storage::debris::{Debris, Owner, Swept, Upload, UploadLog, UploadLogRef};
use crate::storage::{ObjectStore, StorageError, StoreName};

/// Remove the debris gone runs left in `store`, and mark each run swept. A store without the
/// debris capability has nothing to sweep (the fs store removes its dead processes' temp files
/// in its own check).
///
/// Debris costs space, not correctness: a sweep that fails (the store or the ledger refuses) is
/// logged, and the run goes on; the next run tries again.
pub async fn sweep(ledger: &Ledger, store: &dyn ObjectStore) -> Swept {
    logged(store, "removed", try_sweep(ledger, store).await)
}

/// What [`sweep`] would remove, measured without changing anything (a dry run).
pub async fn survey(ledger: &Ledger, store: &dyn ObjectStore) -> Swept {
    logged(store, "would remove", try_survey(ledger, store).await)
}

fn logged(store: &dyn ObjectStore, verb: &str, result: anyhow::Result<Swept>) -> Swept {
    match result {
        Ok(total) => {
            if !total.is_empty() {
                tracing::warn!(
                    "{verb} {} unfinished uploads ({} GridFS chunks) that killed runs left in {}",
                    total.uploads,
                    total.chunks,
                    store.describe()
                );
            }
            total
        }
        Err(e) => {
            tracing::warn!(
                "removing what killed runs left in {}: {e:#}",
                store.describe()
            );
            Swept::default()
        }
    }
}

async fn try_sweep(ledger: &Ledger, store: &dyn ObjectStore) -> anyhow::Result<Swept> {
    let mut total = Swept::default();
    let gone_runs = ledger.gone_runs(&StoreName::of(store).all()).await?;
    let Some(debris) = store.debris() else {
        // Nothing to sweep here: marked so that `status` does not wait for a sweep.
        for gone in gone_runs {
            ledger.mark_swept(gone.run, 0, 0, false).await?;
        }
        return Ok(total);
    };
    for gone in gone_runs {
        let owner = owner_of(ledger, &gone).await?;
        // A store that fails here is tried again by the next run (see `sweep`).
        match for_each_batch(debris, &owner, Act::Remove).await {
            Ok(swept) => {
                ledger
                    .mark_swept(gone.run, swept.uploads, swept.chunks, true)
                    .await?;
                total.add(swept);
            }
            Err(e) => warn_run(store, &gone, &e),
        }
    }
    Ok(total)
}

async fn try_survey(ledger: &Ledger, store: &dyn ObjectStore) -> anyhow::Result<Swept> {
    let mut total = Swept::default();
    let Some(debris) = store.debris() else {
        return Ok(total);
    };
    for gone in ledger.gone_runs(&StoreName::of(store).all()).await? {
        let owner = owner_of(ledger, &gone).await?;
        match for_each_batch(debris, &owner, Act::Measure).await {
            Ok(swept) => total.add(swept),
            Err(e) => warn_run(store, &gone, &e),
        }
    }
    Ok(total)
}

/// What is done with each batch: chosen by [`sweep`] (the live gate) or [`survey`] (a dry run).
#[derive(Clone, Copy)]
enum Act {
    Measure,
    Remove,
}

/// `act` on every batch of `owner`'s debris, adding up what it reports.
async fn for_each_batch(
    debris: &dyn Debris,
    owner: &Owner,
    act: Act,
) -> Result<Swept, StorageError> {
    let mut swept = Swept::default();
    let mut batches = debris.find(owner);
    while let Some(batch) = batches.try_next().await? {
        swept.add(match act {
            Act::Measure => debris.measure(&batch).await?,
            Act::Remove => super::removal::remove_debris(debris, &batch).await?,
        });
    }
    Ok(swept)
}

/// A gone run and its recorded uploads that never completed.
async fn owner_of(ledger: &Ledger, gone: &GoneRun) -> anyhow::Result<Owner> {
    // A recorded upload whose file is verified was completed: nothing of it is left
    // (`by_target` returns verified records only).
    let names: Vec<&str> = gone.uploads.iter().map(|(n, _)| n.as_str()).collect();
    let done = ledger.by_target(&names).await?;
    let uploads = gone
        .uploads
        .iter()
        .filter(|(name, _)| !done.contains_key(name))
        .map(|(name, id)| Upload {
            name: name.clone(),
            id: id.clone(),
        })
        .collect();
    Ok(Owner {
        run: gone.run,
        uploads,
    })
}

fn warn_run(store: &dyn ObjectStore, gone: &GoneRun, e: &StorageError) {
    tracing::warn!(
        "removing what the killed run {} left in {}: {e}",
        gone.run,
        store.describe()
    );
}

/// The ledger as the destination's [`UploadLog`]: each upload a kill could leave unfinished is
/// recorded before it starts, so a later run can prove it is this run's.
pub fn upload_log(ledger: &Ledger, store: &dyn ObjectStore) -> UploadLogRef {
    UploadLogRef(Some(Arc::new(LedgerUploads {
        ledger: ledger.clone(),
        store: store.identity(),
    })))
}

struct LedgerUploads {
    ledger: Ledger,
    store: String,
}

#[async_trait]
impl UploadLog for LedgerUploads {
    async fn started(&self, name: &str, upload_id: &str) -> Result<(), StorageError> {
        self.ledger
            .record_upload(&self.store, name, upload_id)
            .await
            .map_err(|e| StorageError::message(name, true, format!("recording the upload: {e:#}")))
    }
}
