//! Sweeping the debris of killed runs: at the start of every writing run (after its lease is
//! taken and the interrupted reference batches are settled), the uploads that runs which are gone
//! — no unexpired lease, never finished — left unfinished in this run's destination are removed
//! ([`crate::storage::debris`] says how each store tells them apart from another writer's), and
//! each such run is marked swept in the ledger with what was removed (`status` reports it).
//! A dry run only counts what it would remove.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ledger::Ledger;
use crate::storage::debris::{Owner, Swept, Upload, UploadLog, UploadLogRef};
use crate::storage::{ObjectStore, StorageError};

/// Remove (or, `dry_run`, count) the debris gone runs left in `store`. A store without
/// [`crate::storage::Capabilities::debris`] has nothing to sweep (the fs store removes its dead
/// processes' temp files in its own check).
///
/// Debris costs space, not correctness: a sweep that fails (the store or the ledger refuses) is
/// logged, and the run goes on; the next run tries again.
pub async fn sweep(ledger: &Ledger, store: &dyn ObjectStore, dry_run: bool) -> Swept {
    match try_sweep(ledger, store, dry_run).await {
        Ok(swept) => swept,
        Err(e) => {
            tracing::warn!(
                "removing what killed runs left in {}: {e:#}",
                store.describe()
            );
            Swept::default()
        }
    }
}

async fn try_sweep(
    ledger: &Ledger,
    store: &dyn ObjectStore,
    dry_run: bool,
) -> anyhow::Result<Swept> {
    let mut total = Swept::default();
    let describe = store.describe();
    let gone_runs = ledger.gone_runs(&describe).await?;
    if !store.capabilities().debris {
        // Nothing to sweep here: marked so that `status` does not wait for a sweep.
        if !dry_run {
            for gone in gone_runs {
                ledger.mark_swept(gone.run, 0, 0, false).await?;
            }
        }
        return Ok(total);
    }
    for gone in gone_runs {
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
        let owner = Owner {
            run: gone.run,
            uploads,
        };
        // A store that fails here is tried again by the next run (see `sweep`).
        let swept = match store.clean_debris(&owner, dry_run).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "removing what the killed run {} left in {describe}: {e}",
                    gone.run
                );
                continue;
            }
        };
        if !dry_run {
            ledger
                .mark_swept(gone.run, swept.uploads, swept.chunks, true)
                .await?;
        }
        total.add(swept);
    }
    if !total.is_empty() {
        let verb = if dry_run { "would remove" } else { "removed" };
        tracing::warn!(
            "{verb} {} unfinished uploads ({} GridFS chunks) that killed runs left in {describe}",
            total.uploads,
            total.chunks
        );
    }
    Ok(total)
}

/// The ledger as the destination's [`UploadLog`]: each upload a kill could leave unfinished is
/// recorded before it starts, so a later run can prove it is this run's.
pub fn upload_log(ledger: &Ledger, store: &dyn ObjectStore) -> UploadLogRef {
    UploadLogRef(Some(Arc::new(LedgerUploads {
        ledger: ledger.clone(),
        store: store.describe(),
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
