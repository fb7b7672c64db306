//! The S3 store's debris: multipart uploads a kill cut short (no `AbortMultipartUpload` ran).
//! S3 cannot say who started an incomplete upload (and some S3-compatible servers cannot list
//! them), so only the uploads a gone run recorded ([`Owner::uploads`]) are aborted: never one
//! the tool did not start. An upload already completed or aborted answers `NoSuchUpload` and is
//! not counted; a dry run counts the recorded ones without asking the server.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::S3Store;
use super::errors::classify;
use crate::storage::StorageError;
use crate::storage::debris::{Batch, Debris, Owner, Swept};

#[async_trait]
impl Debris for S3Store {
    /// The recorded uploads, as one batch (they are already in memory, read from the ledger).
    fn find<'a>(&'a self, owner: &'a Owner) -> BoxStream<'a, Result<Batch, StorageError>> {
        let batch = Batch {
            run: owner.run,
            uploads: owner.uploads.clone(),
        };
        futures::stream::iter((!batch.uploads.is_empty()).then_some(Ok(batch))).boxed()
    }

    /// The recorded uploads, counted without asking the server.
    async fn measure(&self, batch: &Batch) -> Result<Swept, StorageError> {
        Ok(Swept {
            uploads: batch.uploads.len() as u64,
            chunks: 0,
        })
    }

    async fn remove(&self, batch: &Batch) -> Result<Swept, StorageError> {
        let mut swept = Swept::default();
        let mut refused = 0_u64;
        let mut last = None;
        for up in &batch.uploads {
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
                batch.run
            );
        }
        Ok(swept)
    }
}
