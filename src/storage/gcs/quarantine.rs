//! The GCS store's quarantine: the object [`QUARANTINE_ROOT`]` + prefix + name`, at the bucket's
//! root (see that constant for what Parse Server can still reach). A move is a server-side copy
//! that never replaces (`ifGenerationMatch=0`), a check that the copy holds the same bytes (size
//! and MD5), then the delete of the original: a crash leaves the original, or both (identical:
//! a repeat sees that and deletes the original), never neither.

use super::{GcsStore, json};
use crate::storage::{ObjectMeta, QUARANTINE_ROOT, StorageError};

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

    async fn meta(&self, name: &str, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match json::stat(self, name, key).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Move `name` between its object and its quarantine object.
    pub(super) async fn move_quarantine(
        &self,
        name: &str,
        to_quarantine: bool,
    ) -> Result<(), StorageError> {
        let (served, quarantined) = (self.key(name)?, self.quarantine_key(name)?);
        let (from, to) = if to_quarantine {
            (served, quarantined)
        } else {
            (quarantined, served)
        };
        let src = self.meta(name, &from).await?;
        let dst = self.meta(name, &to).await?;
        let src = match (src, dst) {
            (None, Some(_)) => return Ok(()),
            (None, None) => {
                return Err(StorageError::NotFound {
                    name: name.to_string(),
                    location: self.url(&self.quarantine_key(name)?),
                });
            }
            (Some(s), Some(d)) if same(&s, &d) => return json::delete(self, name, &from).await,
            (Some(_), Some(_)) => {
                return Err(StorageError::AlreadyExists {
                    name: name.to_string(),
                    location: self.url(&to),
                });
            }
            (Some(s), None) => s,
        };
        json::copy_new(self, name, &from, &to).await?;
        match self.meta(name, &to).await? {
            Some(copied) if same(&src, &copied) => json::delete(self, name, &from).await,
            _ => Err(StorageError::Integrity {
                name: name.to_string(),
                reason: format!(
                    "the copy at {} does not match; original kept",
                    self.url(&to)
                ),
            }),
        }
    }

    pub(super) async fn purge_quarantine(&self, name: &str) -> Result<(), StorageError> {
        json::delete(self, name, &self.quarantine_key(name)?).await
    }
}

/// Same size, and the same MD5 where GCS keeps one (composite objects have none).
fn same(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.size == b.size && (a.md5.is_none() || b.md5.is_none() || a.md5 == b.md5)
}
