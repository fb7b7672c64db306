//! The S3 store's quarantine: the key [`QUARANTINE_ROOT`]` + prefix + name`, at the bucket's
//! root (see that constant for what Parse Server can still reach). A move is a server-side
//! `CopyObject`, a check that the copy holds the same bytes (size, then ETag, else the MD5 of
//! both read back), then `DeleteObject` of the original (`storage::keymove`, shared with GCS): a crash leaves the original, or both
//! (identical: a repeat sees that and deletes the original), never neither. The copy is
//! create-only (`If-None-Match: *`, like a create-only `put`), so it never replaces an object
//! that appeared since the check. `CopyObject` takes objects up to 5 GiB; a bigger one fails the
//! move and stays where it is.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use md5::Digest;

use super::S3Store;
use super::errors::classify;
use crate::storage::keymove::{KeyStore, changed, move_key};
use crate::storage::{QUARANTINE_ROOT, Quarantine, StorageError};

/// What `HeadObject` says of one key.
#[derive(Debug, PartialEq)]
pub(crate) struct Head {
    size: i64,
    etag: Option<String>,
}

/// Characters kept as they are in `CopySource` (a key, `/` included, percent-encoded).
pub(super) const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl S3Store {
    pub(super) fn quarantine_key(&self, name: &str) -> Result<String, StorageError> {
        let key = format!("{QUARANTINE_ROOT}{}", self.key(name)?);
        if key.len() > super::MAX_KEY_BYTES {
            return Err(StorageError::InvalidName {
                name: name.to_string(),
                reason: "the quarantine key would be longer than 1024 bytes".into(),
            });
        }
        Ok(key)
    }

    pub(super) async fn head(&self, name: &str, key: &str) -> Result<Option<Head>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(h) => Ok(Some(Head {
                size: h.content_length().unwrap_or(0),
                etag: h.e_tag().map(|t| t.trim_matches('"').to_string()),
            })),
            Err(e) => match classify(e) {
                f if f.not_found => Ok(None),
                f => Err(f.into_error(name, format!("HeadObject {}", self.url(key)))),
            },
        }
    }

    async fn md5_of(&self, name: &str, key: &str) -> Result<String, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fail("GetObject", name, key, classify(e)))?;
        let mut body: ByteStream = out.body;
        let mut md5 = md5::Md5::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StorageError::backend(name, true, e))?;
            md5.update(&chunk);
        }
        Ok(hex::encode(md5.finalize()))
    }

    /// Whether `a` and `b` hold the same bytes.
    async fn same(
        &self,
        name: &str,
        a: (&str, &Head),
        b: (&str, &Head),
    ) -> Result<bool, StorageError> {
        if a.1.size != b.1.size {
            return Ok(false);
        }
        if a.1.etag.is_some() && a.1.etag == b.1.etag {
            return Ok(true);
        }
        Ok(self.md5_of(name, a.0).await? == self.md5_of(name, b.0).await?)
    }

    /// `DeleteObject`; with `etag`, only of that version (`If-Match`, 412 otherwise: AWS
    /// honours it on every bucket since September 2025).
    async fn delete_key(
        &self,
        name: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(etag.map(|t| format!("\"{t}\"")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e) {
                f if f.not_found => Ok(()),
                f if f.status == Some(412) => Err(changed(name, &self.url(key))),
                f => Err(f.into_error(name, format!("DeleteObject {}", self.url(key)))),
            },
        }
    }

    /// Move `name` between its key and its quarantine key (see the module documentation).
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
        self.delete_key(name, &self.quarantine_key(name)?, None)
            .await
    }
}

#[async_trait]
impl KeyStore for S3Store {
    type Meta = Head;

    async fn head_key(&self, name: &str, key: &str) -> Result<Option<Head>, StorageError> {
        self.head(name, key).await
    }

    async fn same_bytes(
        &self,
        name: &str,
        a: (&str, &Head),
        b: (&str, &Head),
    ) -> Result<bool, StorageError> {
        self.same(name, a, b).await
    }

    /// `CopyObject`, create-only (`If-None-Match: *`: a key taken since the look is refused, 412).
    async fn copy_key_new(&self, name: &str, from: &str, to: &str) -> Result<(), StorageError> {
        let source = format!(
            "{}/{}",
            self.bucket,
            percent_encoding::utf8_percent_encode(from, KEY_SET)
        );
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .if_none_match("*")
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .set_storage_class(self.storage_class.clone())
            .send()
            .await;
        match copied.map_err(classify) {
            Ok(_) => Ok(()),
            Err(f) if f.status == Some(412) => Err(StorageError::AlreadyExists {
                name: name.to_string(),
                location: self.url(to),
            }),
            Err(f) => Err(self.fail("CopyObject", name, from, f)),
        }
    }

    /// Only of the ETag seen (`If-Match`).
    async fn remove_key(&self, name: &str, key: &str, seen: &Head) -> Result<(), StorageError> {
        self.delete_key(name, key, seen.etag.as_deref()).await
    }

    fn key_url(&self, key: &str) -> String {
        self.url(key)
    }
}

#[async_trait]
impl Quarantine for S3Store {
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
