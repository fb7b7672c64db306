//! Debris of killed writers: what a `put` cut short by a `kill -9` leaves in a store that its
//! own failure handling (abort on error, on drop) never got to remove, and how a later run finds
//! it and removes it: the [`Debris`] capability, reached through
//! [`ObjectStore::debris`](super::ObjectStore::debris) on the stores that have it.
//!
//! The capability has no dry-run switch: [`Debris::find`] and [`Debris::measure`] only read, and
//! [`Debris::remove`] removes. Which of the two a run calls is the engine's gate's business (a dry
//! run measures, a live run removes through the engine's removal door).
//!
//! A store only ever removes debris it can prove is the tool's own, of a run that is gone (the
//! caller decides *which* runs are gone: those that hold no unexpired lease and never finished,
//! see `crate::engine::debris`):
//!
//! * **GridFS** needs no record: every revision the tool uploads gets a `files_id` made by the
//!   writing process ([`ObjectId::new`]), whose bytes 4..9 are that process's unique random value
//!   — the same bytes as the run's own id, made by the same process. Chunks whose `files_id`
//!   carries a gone run's bytes, was made after that run started, and matches no files document
//!   are that run's killed uploads. Another writer's upload in flight (Parse Server's) has its
//!   own process value (a 2^-40 chance of sharing ours) and is never touched.
//! * **S3** cannot show who started an incomplete multipart upload (and some S3-compatible
//!   servers cannot list them at all): a multipart upload (files above one part) is announced to
//!   the caller's [`UploadLog`] before its first part is sent — the ledger records its upload id —
//!   and a gone run's recorded uploads are aborted. Uploads nobody recorded are not the tool's.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use mongodb::bson::oid::ObjectId;
use serde::Serialize;

use super::StorageError;

/// A store's debris of killed writers (see the module documentation).
///
/// # Contract
///
/// A store removes only what it can prove the gone run `owner` wrote, never another writer's
/// upload in flight. [`Debris::find`] yields what it found a page at a time (memory bounded by
/// the page, whatever the run left); [`Debris::measure`] counts a batch without changing
/// anything; [`Debris::remove`] removes it. Idempotent: what is already gone is not counted.
#[async_trait]
pub trait Debris: Send + Sync {
    /// What the gone run `owner` left unfinished here, a batch at a time.
    fn find<'a>(&'a self, owner: &'a Owner) -> BoxStream<'a, Result<Batch, StorageError>>;

    /// What removing `batch` would remove (what a dry run reports).
    async fn measure(&self, batch: &Batch) -> Result<Swept, StorageError>;

    /// Remove `batch`.
    async fn remove(&self, batch: &Batch) -> Result<Swept, StorageError>;
}

/// Unfinished uploads of one gone run that a store found ([`Debris::find`]): each with the name
/// it was writing where the store knows it (S3), and the store's id of the upload (S3: the
/// multipart upload id; GridFS: the `files_id` of the chunks, as hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub run: ObjectId,
    pub uploads: Vec<Upload>,
}

/// A run that is gone, and what it recorded of its unfinished uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The run's id, made by the run's process (see the module documentation).
    pub run: ObjectId,
    /// Multipart/resumable uploads the run announced through its [`UploadLog`].
    pub uploads: Vec<Upload>,
}

/// One upload a run announced: the Parse name it was writing and the store's upload id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub name: String,
    pub id: String,
}

/// What [`Debris::remove`] removed (or [`Debris::measure`] found).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Unfinished uploads: S3 multipart uploads aborted, GridFS uploads whose chunks went.
    pub uploads: u64,
    /// GridFS chunks deleted (0 elsewhere).
    pub chunks: u64,
}

impl Swept {
    pub fn add(&mut self, other: Swept) {
        self.uploads += other.uploads;
        self.chunks += other.chunks;
    }

    pub fn is_empty(&self) -> bool {
        self.uploads == 0 && self.chunks == 0
    }
}

/// Told of every upload a `put` starts that a kill could leave behind unfinished (S3: a
/// multipart upload), before its first byte is sent. A failure fails the `put` (and the upload
/// is aborted): an upload nobody recorded would be debris nobody can prove is ours.
#[async_trait]
pub trait UploadLog: Send + Sync {
    async fn started(&self, name: &str, upload_id: &str) -> Result<(), StorageError>;
}

/// An optional [`UploadLog`] in [`PutOptions`](super::PutOptions).
#[derive(Clone, Default)]
pub struct UploadLogRef(pub Option<Arc<dyn UploadLog>>);

impl fmt::Debug for UploadLogRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "UploadLog"
        } else {
            "None"
        })
    }
}

impl UploadLogRef {
    /// Announce an upload, when someone listens.
    pub async fn started(&self, name: &str, upload_id: &str) -> Result<(), StorageError> {
        match &self.0 {
            Some(log) => log.started(name, upload_id).await,
            None => Ok(()),
        }
    }
}

/// The process-unique bytes (4..9) of an id made by [`ObjectId::new`].
pub fn process_bytes(id: &ObjectId) -> [u8; 5] {
    let b = id.bytes();
    [b[4], b[5], b[6], b[7], b[8]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What GridFS's attribution rests on: two ids made by one process share bytes 4..9, and
    /// an id of another time carries them too (bson's `ObjectId::new`: time, process, counter).
    #[test]
    fn ids_of_one_process_share_their_process_bytes() {
        let run = ObjectId::new();
        let upload = ObjectId::new();
        assert_eq!(process_bytes(&run), process_bytes(&upload));
        assert_ne!(run, upload);
        let foreign = ObjectId::from_bytes([0, 0, 0, 1, 9, 9, 9, 9, 9, 0, 0, 1]);
        assert_ne!(process_bytes(&run), process_bytes(&foreign));
    }
}
