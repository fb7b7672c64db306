//! Version-level access to the stores that keep Parse's encrypted files (GridFS, FS), for
//! `rekey`: a file is rewritten as a *new version* next to the one readers see, read back, and
//! only then does the new version replace the old one.
//!
//! * GridFS: a version is one files document. [`Versioned::stage`] writes a new revision with
//!   the same `filename` and a newer `uploadDate` (readers switch to it as soon as its files
//!   document exists, complete); [`Versioned::commit`] removes exactly the old revision (and
//!   revisions older than it, which nobody sees).
//! * FS: a version is the file at its path (identified by inode, size and modification time).
//!   `stage` writes a hidden temp file; `commit` renames it over the path only while the path
//!   still holds the version that was read.
//!
//! A version that appeared meanwhile (Parse Server uploading under the same name) is never
//! replaced: `stage`/`commit` answer [`Outcome::Superseded`] and leave it.

use std::fmt;

use async_trait::async_trait;

use super::crypto::FileKey;
use super::{ByteStream, StorageError};

/// One stored version of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub name: String,
    /// The store's id of this version (GridFS `_id` hex; FS `inode:size:mtime` or the temp id).
    pub id: String,
    /// Stored bytes (ciphertext and trailer when encrypted).
    pub size: u64,
    /// GridFS: the revision's `chunkSize` (0 elsewhere, or when not read yet).
    pub chunk_size: u64,
    /// GridFS: the revision's `uploadDate` in ms (`None` elsewhere, or when not read yet).
    pub uploaded_ms: Option<i64>,
}

/// What a `stage` or `commit` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the staged version (for `stage`).
    Done(Version),
    /// A newer version of the name appeared meanwhile: it was left as it is, and what this call
    /// would have written was removed.
    Superseded,
}

#[async_trait]
pub trait Versioned: Send + Sync + fmt::Debug {
    /// A human-readable location with no secrets.
    fn describe(&self) -> String;

    /// Where the bytes live ([`ObjectStore::identity`](super::ObjectStore::identity)).
    fn identity(&self) -> String;

    /// The key the store is configured with (`encryption_key`, else the app's `fileKey`).
    fn key(&self) -> Option<&FileKey>;

    /// Up to `limit` names after `after`, in name order (each once).
    async fn names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError>;

    /// About how many names there are (for the progress bar; 0 when unknown).
    async fn estimate(&self) -> u64;

    /// The version readers see now, if the name exists.
    async fn current(&self, name: &str) -> Result<Option<Version>, StorageError>;

    /// Version `id` of `name` if it exists, visible or staged.
    async fn find(&self, name: &str, id: &str) -> Result<Option<Version>, StorageError>;

    /// The stored bytes of `v` from stored offset `offset`.
    async fn open(&self, v: &Version, offset: u64) -> Result<ByteStream, StorageError>;

    /// A fresh id for the next staged version (recorded in the ledger before it is written).
    fn new_id(&self) -> String;

    /// Write `stored` (already in its final stored form) as version `id` of `old.name`.
    async fn stage(
        &self,
        old: &Version,
        id: &str,
        stored: ByteStream,
    ) -> Result<Outcome, StorageError>;

    /// Make `new` the version readers see in place of `old`, and remove `old`.
    async fn commit(&self, old: &Version, new: &Version) -> Result<Outcome, StorageError>;

    /// Remove version `id` of `name` and anything a broken `stage` of it left (no error when
    /// there is nothing).
    async fn discard(&self, name: &str, id: &str) -> Result<(), StorageError>;

    /// Before the first write: what the store needs to find versions fast (GridFS: the
    /// standard indexes every driver creates before its first upload, if missing).
    async fn prepare(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// How many versions of `v.name` are older than `v` (GridFS revisions readers no longer see:
    /// old forms of the file, maybe under an old key).
    async fn stale(&self, v: &Version) -> Result<u64, StorageError> {
        let _ = v;
        Ok(0)
    }

    /// Remove the versions [`Versioned::stale`] counts; how many went.
    async fn remove_stale(&self, v: &Version) -> Result<u64, StorageError> {
        let _ = v;
        Ok(0)
    }
}
