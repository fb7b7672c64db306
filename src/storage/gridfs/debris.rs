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

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};

use super::{GridFsStore, mongo_error};
use crate::storage::StorageError;
use crate::storage::debris::{Batch, Debris, Owner, Swept, Upload, process_bytes};

/// First chunks checked against the files collection per query.
const PAGE: usize = 500;

const WHAT: &str = "GridFS debris";

#[async_trait]
impl Debris for GridFsStore {
    fn find<'a>(&'a self, owner: &'a Owner) -> BoxStream<'a, Result<Batch, StorageError>> {
        let what = format!("debris of run {}", owner.run);
        let mine = process_bytes(&owner.run);
        let start = (owner.run.timestamp().timestamp_millis() / 1000) as u32;
        let mut lo = [0_u8; 12];
        lo[..4].copy_from_slice(&start.to_be_bytes());
        let first_chunks = async move {
            self.chunks
                .find(doc! {"files_id": {"$gte": ObjectId::from_bytes(lo)}, "n": 0})
                .projection(doc! {"_id": 0, "files_id": 1})
                .await
                .map_err(|e| mongo_error(&what, e))
        };
        futures::stream::once(first_chunks)
            .map_ok(move |cursor| {
                cursor
                    .map_err(|e| mongo_error(WHAT, e))
                    .try_filter_map(move |d| async move {
                        Ok(d.get_object_id("files_id")
                            .ok()
                            .filter(|id| process_bytes(id) == mine))
                    })
                    .try_chunks(PAGE)
                    .map_err(|e| e.1)
            })
            .try_flatten()
            .and_then(move |ids| self.without_files(owner.run, ids))
            .try_filter(|b| futures::future::ready(!b.uploads.is_empty()))
            .boxed()
    }

    async fn measure(&self, batch: &Batch) -> Result<Swept, StorageError> {
        let chunks = self
            .chunks
            .count_documents(chunks_of(batch))
            .await
            .map_err(|e| mongo_error(WHAT, e))?;
        Ok(swept(batch, chunks))
    }

    async fn remove(&self, batch: &Batch) -> Result<Swept, StorageError> {
        let chunks = self
            .chunks
            .delete_many(chunks_of(batch))
            .await
            .map_err(|e| mongo_error(WHAT, e))?
            .deleted_count;
        self.completed_meanwhile(&upload_ids(batch)).await?;
        Ok(swept(batch, chunks))
    }
}

impl GridFsStore {
    /// Of these upload ids, the ones no files document has (the killed uploads).
    async fn without_files(
        &self,
        run: ObjectId,
        ids: Vec<ObjectId>,
    ) -> Result<Batch, StorageError> {
        let ids: Vec<Bson> = ids.into_iter().map(Bson::ObjectId).collect();
        let complete: Vec<Bson> = self
            .files
            .find(doc! {"_id": {"$in": &ids}})
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| mongo_error(WHAT, e))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| mongo_error(WHAT, e))?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        let uploads = ids
            .into_iter()
            .filter(|i| !complete.contains(i))
            .filter_map(|i| i.as_object_id())
            .map(|id| Upload {
                name: String::new(),
                id: id.to_hex(),
            })
            .collect();
        Ok(Batch { run, uploads })
    }
}

/// The `files_id`s of a batch's uploads.
fn upload_ids(batch: &Batch) -> Vec<Bson> {
    batch
        .uploads
        .iter()
        .filter_map(|u| ObjectId::parse_str(&u.id).ok())
        .map(Bson::ObjectId)
        .collect()
}

/// The chunks of a batch's uploads.
fn chunks_of(batch: &Batch) -> Document {
    doc! {"files_id": {"$in": upload_ids(batch)}}
}

fn swept(batch: &Batch, chunks: u64) -> Swept {
    Swept {
        uploads: batch.uploads.len() as u64,
        chunks,
    }
}

impl GridFsStore {
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
