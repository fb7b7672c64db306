//! The S3 store's debris: multipart uploads a kill cut short (no `AbortMultipartUpload` ran).
//! S3 cannot say who started an incomplete upload (and some S3-compatible servers cannot list
//! them), so only the uploads a gone run recorded ([`Owner::uploads`]) are aborted: never one
//! the tool did not start. An upload already completed or aborted answers `NoSuchUpload` and is
//! not counted; a dry run counts the recorded ones without asking the server.

use super::S3Store;
use super::errors::classify;
use crate::storage::StorageError;
use crate::storage::debris::{Owner, Swept};

impl S3Store {
    pub(super) async fn sweep(&self, owner: &Owner, dry_run: bool) -> Result<Swept, StorageError> {
        let mut swept = Swept::default();
        if dry_run {
            swept.uploads = owner.uploads.len() as u64;
            return Ok(swept);
        }
        let mut refused = 0_u64;
        let mut last = None;
        for up in &owner.uploads {
            let key = self.key(&up.name)?;
            let res = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&up.id)
                .send()
                .await;
            match res {
                Ok(_) => swept.uploads += 1,
                Err(e) => {
                    let f = classify(e);
                    if f.status == Some(404) || f.not_found {
                        continue;
                    }
                    let err =
                        f.into_error(&up.name, format!("AbortMultipartUpload {}", self.url(&key)));
                    if err.is_retryable() {
                        // Try the whole run again next time.
                        return Err(err);
                    }
                    tracing::debug!(upload_id = %up.id, "could not abort: {err}");
                    refused += 1;
                    last = Some(err);
                }
            }
        }
        if let Some(err) = last {
            tracing::warn!(
                "{refused} multipart uploads of the killed run {} could not be aborted (already \
                 gone, or not allowed): {err}",
                owner.run
            );
        }
        Ok(swept)
    }
}
