//! The GridFS store's debris: chunks of uploads a kill cut short (the files document is written
//! last, so a killed upload leaves chunks whose `files_id` matches no files document).
//!
//! Which chunks are a gone run's (see [`crate::storage::debris`]): their `files_id` is an
//! ObjectId made by that run's process — bytes 4..9 equal to the run id's — no older than the
//! run. The chunks index (`files_id`, `n`) is read over that range (ObjectIds sort by their
//! time first) for first chunks only (`n: 0`), a page of ids at a time; the ids with the run's
//! bytes and no files document are the killed uploads, and all their chunks go. One index range
//! read per gone run, once: the caller records the run as swept. After the delete, the files are
//! looked up once more: a run taken for gone that was still writing may have completed one of
//! them meanwhile (said as an error; the revision fails `stat`).

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, doc};

use super::{GridFsStore, mongo_error};
use crate::storage::StorageError;
use crate::storage::debris::{Owner, Swept, process_bytes};

/// First chunks checked against the files collection per query.
const PAGE: usize = 500;

impl GridFsStore {
    pub(super) async fn sweep(&self, owner: &Owner, dry_run: bool) -> Result<Swept, StorageError> {
        let what = format!("debris of run {}", owner.run);
        let err = |e| mongo_error(&what, e);
        let mine = process_bytes(&owner.run);
        let start = (owner.run.timestamp().timestamp_millis() / 1000) as u32;
        let mut lo = [0_u8; 12];
        lo[..4].copy_from_slice(&start.to_be_bytes());
        let mut first = self
            .chunks
            .find(doc! {"files_id": {"$gte": ObjectId::from_bytes(lo)}, "n": 0})
            .projection(doc! {"_id": 0, "files_id": 1})
            .await
            .map_err(err)?;
        let mut swept = Swept::default();
        let mut page = Vec::with_capacity(PAGE);
        loop {
            let next = first.try_next().await.map_err(err)?;
            let done = next.is_none();
            if let Some(Ok(id)) = next.as_ref().map(|d| d.get_object_id("files_id"))
                && process_bytes(&id) == mine
            {
                page.push(id);
            }
            if page.len() >= PAGE || (done && !page.is_empty()) {
                swept.add(
                    self.remove_orphans(std::mem::take(&mut page), dry_run)
                        .await?,
                );
            }
            if done {
                return Ok(swept);
            }
        }
    }

    /// Of these upload ids, the ones no files document has: count their chunks and (unless dry)
    /// delete them.
    async fn remove_orphans(
        &self,
        ids: Vec<ObjectId>,
        dry_run: bool,
    ) -> Result<Swept, StorageError> {
        let what = "GridFS debris";
        let ids: Vec<Bson> = ids.into_iter().map(Bson::ObjectId).collect();
        let complete: Vec<Bson> = self
            .files
            .find(doc! {"_id": {"$in": &ids}})
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| mongo_error(what, e))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| mongo_error(what, e))?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        let orphans: Vec<Bson> = ids.into_iter().filter(|i| !complete.contains(i)).collect();
        if orphans.is_empty() {
            return Ok(Swept::default());
        }
        let filter = doc! {"files_id": {"$in": &orphans}};
        let chunks = if dry_run {
            self.chunks.count_documents(filter).await
        } else {
            self.chunks
                .delete_many(filter)
                .await
                .map(|r| r.deleted_count)
        }
        .map_err(|e| mongo_error(what, e))?;
        if !dry_run {
            self.completed_meanwhile(&orphans).await?;
        }
        Ok(Swept {
            uploads: orphans.len() as u64,
            chunks,
        })
    }

    /// Of the uploads whose chunks were just removed, those that got their files document
    /// meanwhile: their run was taken for gone but was still writing (it stalled past its
    /// lease, and has stopped since it cannot renew it). Such a revision has a hole; it fails
    /// `stat` (`check_chunks`), so it is never verified, but the operator is told here, where it
    /// happened.
    async fn completed_meanwhile(&self, ids: &[Bson]) -> Result<(), StorageError> {
        let what = "GridFS debris";
        let broken: Vec<mongodb::bson::Document> = self
            .files
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"_id": 1, "filename": 1})
            .await
            .map_err(|e| mongo_error(what, e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error(what, e))?;
        for d in broken {
            tracing::error!(
                "the upload {} of {:?} was completed while its chunks were removed as debris \
                 (its run was taken for gone while still writing): that revision is broken and is \
                 never verified; delete it, and run again",
                d.get("_id").map(|i| i.to_string()).unwrap_or_default(),
                d.get_str("filename").unwrap_or("?")
            );
        }
        Ok(())
    }
}
