//! The GCS store's quarantine: the object [`QUARANTINE_ROOT`]` + prefix + name`, at the bucket's
//! root (see that constant for what Parse Server can still reach). A move is a server-side copy
//! that never replaces (`ifGenerationMatch=0`), a check that the copy holds the same bytes (size
//! and MD5), then the delete of the original, only of the generation copied
//! (`ifGenerationMatch`; `storage::keymove`, shared with S3): a crash
//! leaves the original, or both (identical: a repeat sees that and deletes the original), never
//! neither. The same `copyTo`, from any bucket at the endpoint, is the store's server-side copy
//! ([`ServerCopy`]).

use async_trait::async_trait;

use super::{GcsStore, json};
use crate::storage::copy::{CopySource, ServerCopy};
use crate::storage::keymove::{KeyStore, move_key};
use crate::storage::{ObjectMeta, PutMode, QUARANTINE_ROOT, Quarantine, StorageError};

impl GcsStore {
    pub(super) fn quarantine_key(&self, name: &str) -> Result<String, StorageError> {
        let key = format!("{QUARANTINE_ROOT}{}", self.key(name)?);
        if key.len() > 1024 {
            return Err(StorageError::InvalidName {
                name: name.to_string(),
                reason: "the quarantine object name would be longer than 1024 bytes".into(),
            });
        }
        Ok(key)
    }

    /// Move `name` between its object and its quarantine object.
    pub(super) async fn move_quarantine(
        &self,
        name: &str,
        to_quarantine: bool,
    ) -> Result<(), StorageError> {
        let (served, quarantined) = (self.key(name)?, self.quarantine_key(name)?);
        let (from, to) = if to_quarantine {
            (&served, &quarantined)
        } else {
            (&quarantined, &served)
        };
        move_key(self, name, from, to, &quarantined).await
    }

    pub(super) async fn purge_quarantine(&self, name: &str) -> Result<(), StorageError> {
        json::delete(self, name, &self.quarantine_key(name)?).await
    }
}

#[async_trait]
impl KeyStore for GcsStore {
    type Meta = ObjectMeta;

    async fn head_key(&self, name: &str, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match json::stat(self, name, key).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Same size and the same MD5. An object without one (composite objects, XML multipart
    /// uploads) is never taken for the same bytes: a move then refuses and changes nothing,
    /// rather than delete the only copy of other bytes of the same size.
    async fn same_bytes(
        &self,
        _name: &str,
        (_, a): (&str, &ObjectMeta),
        (_, b): (&str, &ObjectMeta),
    ) -> Result<bool, StorageError> {
        Ok(a.size == b.size && a.md5.is_some() && a.md5 == b.md5)
    }

    async fn copy_key_new(&self, name: &str, from: &str, to: &str) -> Result<(), StorageError> {
        json::copy_new(self, name, from, to).await
    }

    /// Only of the generation seen (`ifGenerationMatch`; 412 otherwise).
    async fn remove_key(
        &self,
        name: &str,
        key: &str,
        seen: &ObjectMeta,
    ) -> Result<(), StorageError> {
        json::delete_if(self, name, key, seen.etag.as_deref()).await
    }

    fn key_url(&self, key: &str) -> String {
        self.url(key)
    }
}

#[async_trait]
impl ServerCopy for GcsStore {
    fn copy_source(&self, name: &str) -> Result<CopySource, StorageError> {
        Ok(CopySource {
            service: self.service(),
            bucket: self.bucket.clone(),
            key: self.key(name)?,
        })
    }

    /// `copyTo` from a bucket at the same endpoint, create-only by a look at the target and
    /// `ifGenerationMatch=0`; not taken when this store sets a `cache_control` (a copy keeps the
    /// source's metadata).
    async fn copy_from(
        &self,
        source: &CopySource,
        _meta: &ObjectMeta,
        name: &str,
        mode: PutMode,
    ) -> Result<Option<()>, StorageError> {
        if source.service != self.service() || self.cache_control.is_some() {
            return Ok(None);
        }
        let to = self.key(name)?;
        let create = mode == PutMode::Create;
        // Look first: servers exist that ignore the condition on a copy (fake-gcs-server does);
        // the condition still closes the window on those that honour it.
        if create {
            match json::stat(self, name, &to).await {
                Ok(_) => {
                    return Err(StorageError::AlreadyExists {
                        name: name.to_string(),
                        location: self.url(&to),
                    });
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let from = (source.bucket.as_str(), source.key.as_str());
        json::copy_to(self, name, from, &to, (create, true)).await
    }
}

#[async_trait]
impl Quarantine for GcsStore {
    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.url(&self.quarantine_key(name)?))
    }

    async fn quarantine(&self, name: &str) -> Result<(), StorageError> {
        self.move_quarantine(name, true).await
    }

    async fn unquarantine(&self, name: &str) -> Result<(), StorageError> {
        self.move_quarantine(name, false).await
    }

    async fn purge(&self, name: &str) -> Result<(), StorageError> {
        self.purge_quarantine(name).await
    }
}
