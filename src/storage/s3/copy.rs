//! The S3 store's server-side copies ([`ServerCopy`]): `CopyObject` from a bucket on the same
//! endpoint (another prefix of this bucket, or another bucket), create-only with
//! `If-None-Match: *` as a create-only `put` is, after a look at the target (some servers ignore
//! the condition on a copy). Not taken (the caller streams instead) for an
//! object over 5 GiB (one `CopyObject`'s limit; `UploadPartCopy` is not used yet), when this
//! store sets a `cache_control` a copy would not apply, or when the server refuses the copy
//! itself (no read access to the source bucket from these credentials, a server without
//! `CopyObject`).

use async_trait::async_trait;

use super::S3Store;
use super::errors::classify;
use crate::storage::copy::{CopySource, ServerCopy};
use crate::storage::{ObjectMeta, PutMode, StorageError};

/// The most one `CopyObject` copies.
const MAX_COPY: u64 = 5 << 30;

#[async_trait]
impl ServerCopy for S3Store {
    fn copy_source(&self, name: &str) -> Result<CopySource, StorageError> {
        Ok(CopySource {
            service: self.service(),
            bucket: self.bucket.clone(),
            key: self.key(name)?,
        })
    }

    async fn copy_from(
        &self,
        source: &CopySource,
        meta: &ObjectMeta,
        name: &str,
        mode: PutMode,
    ) -> Result<Option<()>, StorageError> {
        if source.service != self.service() || self.cache_control.is_some() || meta.size > MAX_COPY
        {
            return Ok(None);
        }
        let key = self.key(name)?;
        // Look first: servers exist that ignore the condition on a copy (s3s-fs does); the
        // condition still closes the window on those that honour it.
        if mode == PutMode::Create && self.head(name, &key).await?.is_some() {
            return Err(StorageError::AlreadyExists {
                name: name.to_string(),
                location: self.url(&key),
            });
        }
        let from = format!(
            "{}/{}",
            source.bucket,
            percent_encoding::utf8_percent_encode(&source.key, super::quarantine::KEY_SET)
        );
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(&key)
            .copy_source(from)
            .set_if_none_match((mode == PutMode::Create).then(|| "*".to_string()))
            .set_acl(self.acl.clone())
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .set_storage_class(self.storage_class.clone())
            .send()
            .await;
        match copied.map_err(classify) {
            Ok(_) => Ok(Some(())),
            Err(f) if f.status == Some(412) => Err(StorageError::AlreadyExists {
                name: name.to_string(),
                location: self.url(&key),
            }),
            // The copy itself refused (no read access to the source bucket, no CopyObject):
            // the bytes can still be streamed.
            Err(f) if matches!(f.status, Some(403 | 501)) => {
                tracing::debug!(name, status = ?f.status, "CopyObject refused; streaming instead");
                Ok(None)
            }
            Err(f) if f.not_found => Err(StorageError::NotFound {
                name: name.to_string(),
                location: format!("s3://{}/{}", source.bucket, source.key),
            }),
            Err(f) => Err(self.fail("CopyObject", name, &key, f)),
        }
    }
}
