//! S3 uploads from a stream of unknown length, in bounded memory.
//!
//! The first part (`part_size` bytes) is buffered. If the stream ends within it, the object goes
//! up in one `PutObject`; otherwise as a multipart upload of `part_size` parts, where the next
//! part is read from the input while the current one uploads (one upload in flight).
//!
//! **Memory bound of a `put`:** `2 × part_size + one input chunk` (the part uploading, the part
//! being read, and the chunk straddling a boundary), i.e. about 16 MiB plus a chunk with the
//! default 8 MiB parts. When the caller announces a size (`size_hint`) above
//! `10 000 × part_size`, the part size grows to fit S3's 10 000-part limit, and the bound with it.
//!
//! Every request body carries one transit checksum the server verifies: CRC32 flexible checksums
//! (computed by the SDK, a fraction of MD5's cost), or `Content-MD5` where those are off
//! (`request_checksum_calculation = when_required`: every S3-compatible server verifies
//! `Content-MD5`, and R2 rejects the two together). Not both: the MD5 of every part on top of
//! the MD5 of the whole stream doubled the tool's hashing (bench: 1.77 s of CPU for 400 MB where
//! the raw SDK client spent 0.55 s). A multipart upload that fails for any reason — input error, server error,
//! the `put` future being dropped — is aborted, so no object and no billed parts are left.

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use md5::Digest;

use super::S3Store;
use super::errors::{Failure, classify};
use crate::storage::parts::PartReader;
use crate::storage::{ByteStream, HashingStream, PutMode, PutOptions, PutResult, StorageError};

/// S3's limit on the number of parts of one upload.
const MAX_PARTS: u64 = 10_000;

/// Headers that both `PutObject` and `CreateMultipartUpload` carry (the builders are distinct
/// types with the same setter names).
macro_rules! with_object_headers {
    ($req:expr, $store:expr, $opts:expr) => {
        $req.set_content_type($opts.content_type.clone())
            .set_cache_control(
                $opts
                    .cache_control
                    .clone()
                    .or_else(|| $store.cache_control.clone()),
            )
            .set_acl($store.acl.clone())
            .set_storage_class($store.storage_class.clone())
            .set_server_side_encryption($store.sse.clone())
            .set_ssekms_key_id($store.sse_kms_key_id.clone())
    };
}

pub(super) async fn put(
    store: &S3Store,
    name: &str,
    body: ByteStream,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    let key = store.key(name)?;
    let (hashing, state) = HashingStream::new(body);
    let mut reader = PartReader::new(hashing.boxed());
    let part_size = part_size_for(store.part_size, opts.size_hint);
    let (first, whole) = reader.first_part(part_size).await?;
    let put = if whole {
        put_single(store, name, &key, first, opts).await
    } else {
        put_multipart(store, name, &key, first, &mut reader, part_size, opts).await
    };
    let etag = match put {
        // A server may refuse a create-only write (412) before it has read the body, and close
        // the connection while the body is still being sent (s3s-fs does): the client sees a
        // broken pipe, not the 412. Or the write succeeded and its answer was lost. Either way
        // an object under the key now means "taken": the caller compares it with what it was
        // writing, so its own lost write counts as done and anything else is never replaced.
        Err(e) if opts.mode == PutMode::Create && e.is_retryable() => {
            let head = store.client.head_object().bucket(&store.bucket).key(&key);
            if head.send().await.is_ok() {
                return Err(StorageError::AlreadyExists {
                    name: name.to_string(),
                    location: store.url(&key),
                });
            }
            return Err(e);
        }
        other => other?,
    };
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    Ok(PutResult {
        size: st.size,
        md5: st.md5_hex(),
        etag,
    })
}

/// The configured part size, raised when a known size would need more than 10 000 parts.
fn part_size_for(configured: u64, size_hint: Option<u64>) -> usize {
    let needed = size_hint.map_or(0, |s| s.div_ceil(MAX_PARTS));
    let size = configured.max(needed.next_multiple_of(1024 * 1024));
    usize::try_from(size.min(super::MAX_PART_SIZE)).unwrap_or(usize::MAX)
}

/// `If-None-Match: *` for [`PutMode::Create`]: S3 refuses (412) to complete a write over an
/// existing key, atomically with the write (a multipart upload is checked when completed).
fn create_only(opts: &PutOptions) -> Option<String> {
    (opts.mode == PutMode::Create).then(|| "*".to_string())
}

/// A failed write: 412 to a create-only write is the key already taken.
fn put_error(f: Failure, name: &str, what: &str, location: &str) -> StorageError {
    if f.status == Some(412) {
        return StorageError::AlreadyExists {
            name: name.to_string(),
            location: location.to_string(),
        };
    }
    f.into_error(name, format!("{what} {location}"))
}

/// `Content-MD5` for a body, only where no CRC32 checksum goes with it (see the module docs).
fn transit_md5(store: &S3Store, data: &[u8]) -> Option<String> {
    (!store.crc32).then(|| content_md5(data))
}

fn content_md5(data: &[u8]) -> String {
    base64::prelude::BASE64_STANDARD.encode(md5::Md5::digest(data))
}

fn unquote(etag: Option<&str>) -> Option<String> {
    etag.map(|t| t.trim_matches('"').to_string())
}

async fn put_single(
    store: &S3Store,
    name: &str,
    key: &str,
    data: Bytes,
    opts: &PutOptions,
) -> Result<Option<String>, StorageError> {
    let req = store.client.put_object().bucket(&store.bucket).key(key);
    let out = with_object_headers!(req, store, opts)
        .set_content_md5(transit_md5(store, &data))
        .set_if_none_match(create_only(opts))
        .body(SdkBody::from(data))
        .send()
        .await
        .map_err(|e| put_error(classify(e), name, "PutObject", &store.url(key)))?;
    Ok(unquote(out.e_tag()))
}

async fn put_multipart(
    store: &S3Store,
    name: &str,
    key: &str,
    first: Bytes,
    reader: &mut PartReader,
    part_size: usize,
    opts: &PutOptions,
) -> Result<Option<String>, StorageError> {
    let req = store
        .client
        .create_multipart_upload()
        .bucket(&store.bucket)
        .key(key);
    let mut req = with_object_headers!(req, store, opts);
    if store.crc32 {
        // Declare the algorithm up front: AWS rejects parts carrying a checksum the upload was
        // not created with ("Checksum Type mismatch", apache/arrow-rs#6793).
        req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
    }
    let created = req.send().await.map_err(|e| {
        classify(e).into_error(name, format!("CreateMultipartUpload {}", store.url(key)))
    })?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| StorageError::message(name, true, "CreateMultipartUpload: no upload id"))?
        .to_string();
    let mut guard = AbortGuard {
        client: store.client.clone(),
        bucket: store.bucket.clone(),
        key: key.to_string(),
        upload_id: Some(upload_id.clone()),
    };
    // Recorded before the first part: a kill from here on leaves an upload a later run can prove
    // is ours (`debris`). Failing to record it fails the put (and aborts the upload).
    if let Err(e) = opts.uploads.started(name, &upload_id).await {
        guard.abort().await;
        return Err(e);
    }
    let result = match upload_parts(store, name, key, &upload_id, first, reader, part_size).await {
        Ok(parts) => complete(store, name, key, &upload_id, parts, opts).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(etag) => {
            guard.upload_id = None;
            Ok(etag)
        }
        Err(e) => {
            guard.abort().await;
            Err(e)
        }
    }
}

async fn upload_parts(
    store: &S3Store,
    name: &str,
    key: &str,
    upload_id: &str,
    first: Bytes,
    reader: &mut PartReader,
    part_size: usize,
) -> Result<Vec<CompletedPart>, StorageError> {
    let mut completed = Vec::new();
    let mut part = first;
    let mut number = 1_i32;
    loop {
        // Upload this part while reading the next one: at most two parts in memory.
        let upload = upload_part(store, name, key, upload_id, number, part);
        let (done, next) = tokio::join!(upload, reader.next_part(part_size));
        completed.push(done?);
        match next? {
            Some(p) if u64::try_from(number).unwrap_or(u64::MAX) >= MAX_PARTS => {
                drop(p);
                return Err(StorageError::message(
                    name,
                    false,
                    format!(
                        "object exceeds S3's {MAX_PARTS} parts of {part_size} bytes: \
                         raise part_size"
                    ),
                ));
            }
            Some(p) => {
                part = p;
                number += 1;
            }
            None => break,
        }
    }
    Ok(completed)
}

/// Complete the upload: the object appears (create-only: unless the key is taken by then).
async fn complete(
    store: &S3Store,
    name: &str,
    key: &str,
    upload_id: &str,
    completed: Vec<CompletedPart>,
    opts: &PutOptions,
) -> Result<Option<String>, StorageError> {
    let out = store
        .client
        .complete_multipart_upload()
        .bucket(&store.bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .set_if_none_match(create_only(opts))
        .send()
        .await
        .map_err(|e| {
            put_error(
                classify(e),
                name,
                "CompleteMultipartUpload",
                &store.url(key),
            )
        })?;
    Ok(unquote(out.e_tag()))
}

async fn upload_part(
    store: &S3Store,
    name: &str,
    key: &str,
    upload_id: &str,
    number: i32,
    data: Bytes,
) -> Result<CompletedPart, StorageError> {
    let mut req = store
        .client
        .upload_part()
        .bucket(&store.bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .set_content_md5(transit_md5(store, &data))
        .body(SdkBody::from(data));
    if store.crc32 {
        req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
    }
    let out = req.send().await.map_err(|e| {
        classify(e).into_error(name, format!("UploadPart {number} {}", store.url(key)))
    })?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_string))
        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
        .build())
}

/// Aborts a multipart upload unless disarmed (`upload_id = None`): explicitly on error, or from
/// `Drop` when the `put` future is cancelled midway.
struct AbortGuard {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortGuard {
    async fn abort(&mut self) {
        if let Some(id) = self.upload_id.take() {
            abort(&self.client, &self.bucket, &self.key, &id).await;
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(id) = self.upload_id.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (client, bucket, key) =
                    (self.client.clone(), self.bucket.clone(), self.key.clone());
                rt.spawn(async move { abort(&client, &bucket, &key, &id).await });
            } else {
                tracing::warn!(bucket = %self.bucket, key = %self.key, upload_id = %id,
                    "multipart upload left incomplete (no runtime to abort it)");
            }
        }
    }
}

async fn abort(client: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) {
    let res = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if res.is_ok() {
        tracing::debug!(bucket, key, upload_id, "aborted multipart upload");
    }
    if let Err(e) = res {
        // Nothing is visible either way (an incomplete upload is not an object); a bucket
        // lifecycle rule (AbortIncompleteMultipartUpload) reclaims the parts.
        let err = classify(e).into_error(key, String::from("AbortMultipartUpload"));
        tracing::warn!(
            bucket,
            key,
            upload_id,
            "could not abort multipart upload: {err}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_for_huge_objects() {
        let p = 8 * 1024 * 1024;
        assert_eq!(part_size_for(p, None), 8 * 1024 * 1024);
        assert_eq!(part_size_for(p, Some(1 << 30)), 8 * 1024 * 1024);
        let big = 200 * 1024 * 1024 * 1024_u64;
        let size = part_size_for(p, Some(big)) as u64;
        assert!(size * MAX_PARTS >= big && size.is_multiple_of(1024 * 1024));
    }
}
