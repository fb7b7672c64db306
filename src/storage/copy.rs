//! Server-side copies: a store copies an object of another store of the same service into
//! itself without the bytes passing through the tool (S3 `CopyObject`, GCS `copyTo`), for moves
//! within one service (two prefixes of a bucket, two buckets on one endpoint: `migrate --select
//! all` changing `bucketPrefix`).
//!
//! The source names its object ([`ServerCopy::copy_source`]); the destination decides whether it
//! can copy from there ([`ServerCopy::copy_from`]: the same kind of service at the same endpoint,
//! an object small enough for one copy request, no settings that a copy would not apply) and
//! answers `Ok(None)` when it cannot, so the caller streams instead. The copy honours
//! [`PutMode`] as `put` does: create-only copies are refused by the server when the target
//! exists ([`StorageError::AlreadyExists`]). Verifying the copy is the caller's
//! (`engine::transfer`).

use async_trait::async_trait;

use super::{ObjectMeta, PutMode, StorageError};

/// An object as another store of the same service reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// The service and endpoint (`s3:<endpoint>`, `gs:<endpoint>`): a copy is possible only
    /// between stores with the same one.
    pub service: String,
    pub bucket: String,
    pub key: String,
}

/// A store's server-side copy door ([`super::ObjectStore::server_copy`]).
#[async_trait]
pub trait ServerCopy: Send + Sync {
    /// How `name` of this store is named to a copy.
    fn copy_source(&self, name: &str) -> Result<CopySource, StorageError>;

    /// Copy `source` (whose metadata is `meta`) to `name` here, on the server. `Ok(None)`: this
    /// store cannot copy from there (the caller streams the bytes instead).
    async fn copy_from(
        &self,
        source: &CopySource,
        meta: &ObjectMeta,
        name: &str,
        mode: PutMode,
    ) -> Result<Option<()>, StorageError>;
}
