//! GCS uploads through `write_object(..).send_buffered()`, and mapping the crate's errors.
//!
//! The first `resumable_threshold` bytes are read ahead. If the stream ends within them, the
//! crate is told the exact size and sends one request; otherwise the size is unknown and the
//! crate runs a resumable upload in `chunk_size` requests. Either way the object only appears
//! when the upload is finalized, and a failing input stream fails the upload before that: a
//! failed write leaves nothing visible (GCS resumable-upload semantics).
//!
//! **Memory bound of a `put`:** `resumable_threshold + chunk_size + one input chunk` (the
//! read-ahead, which the crate slices without copying, plus the crate's buffer of unacknowledged
//! bytes), about 16 MiB plus a chunk with the defaults.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use google_cloud_storage::streaming_source::{SizeHint, StreamingSource};

use super::GcsStore;
use super::json::retryable_status;
use crate::storage::parts::PartReader;
use crate::storage::{
    ByteStream, HashingStream, PutMode, PutOptions, PutResult, StorageError, error_chain,
};

pub(super) async fn put(
    store: &GcsStore,
    name: &str,
    body: ByteStream,
    opts: &PutOptions,
) -> Result<PutResult, StorageError> {
    let key = store.key(name)?;
    let (hashing, state) = HashingStream::new(body);
    let mut reader = PartReader::new(hashing.boxed());
    let (first, whole) = reader.first_part(store.threshold).await?;
    let exact = whole.then_some(first.len() as u64);
    let failure = Arc::new(Mutex::new(None));
    let source = Source {
        first: Some(first),
        rest: Mutex::new(reader),
        exact,
        failure: failure.clone(),
    };

    let mut req = store.client.write_object(store.bucket_path(), &key, source);
    if let Some(ct) = &opts.content_type {
        req = req.set_content_type(ct);
    }
    if let Some(cc) = opts.cache_control.as_ref().or(store.cache_control.as_ref()) {
        req = req.set_cache_control(cc);
    }
    if let Some(acl) = &store.predefined_acl {
        req = req.set_predefined_acl(acl);
    }
    if opts.mode == PutMode::Create {
        // Generation 0: only if no live object has the name; decided by the server when the
        // upload is finalized (412 otherwise).
        req = req.set_if_generation_match(0_i64);
    }
    let what = format!("upload {}", store.url(&key));
    let result = req.send_buffered().await;
    // The input's own error, if it is what stopped the upload, says more than the crate's
    // wrapper of it (and keeps its retryability).
    if let Some(original) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(original);
    }
    let acl = store.predefined_acl.as_deref();
    let object = result.map_err(|e| map_error(name, &what, &store.url(&key), acl, e))?;
    if let Some(ct) = opts
        .content_type
        .as_deref()
        .filter(|ct| *ct != object.content_type)
    {
        tracing::debug!(name, stored = %object.content_type, "server dropped the content type");
        super::json::patch_content_type(store, name, &key, ct, object.generation).await?;
    }
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    Ok(PutResult {
        size: st.size,
        md5: st.md5_hex(),
        etag: Some(object.generation.to_string()),
    })
}

/// The upload body handed to the crate: the read-ahead, then the rest of the input.
struct Source {
    first: Option<Bytes>,
    /// A `Mutex` only to make the source `Sync` as the crate requires; `next` has `&mut self`
    /// and uses `get_mut`, so it is never locked.
    rest: Mutex<PartReader>,
    /// The total size, when the whole input fit in the read-ahead.
    exact: Option<u64>,
    /// Where the input's error is kept for `put` to return.
    failure: Arc<Mutex<Option<StorageError>>>,
}

impl StreamingSource for Source {
    type Error = std::io::Error;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        if let Some(first) = self.first.take().filter(|f| !f.is_empty()) {
            return Some(Ok(first));
        }
        if self.exact.is_some() {
            return None;
        }
        let reader = self.rest.get_mut().unwrap_or_else(|e| e.into_inner());
        match reader.next_chunk().await {
            Ok(chunk) => chunk.map(Ok),
            Err(e) => {
                let msg = e.to_string();
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                // The crate does not retry serialization errors, so the upload stops here
                // without finalizing (google-cloud-storage `retry_policy.rs`).
                Some(Err(std::io::Error::other(msg)))
            }
        }
    }

    async fn size_hint(&self) -> Result<SizeHint, Self::Error> {
        Ok(match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::new(),
        })
    }
}

/// A crate error as a [`StorageError`]: 404 is NotFound, 408/429/5xx, timeouts and I/O are
/// retryable, the rest is permanent.
pub(super) fn map_error(
    name: &str,
    what: &str,
    location: &str,
    store_acl: Option<&str>,
    err: google_cloud_storage::Error,
) -> StorageError {
    use google_cloud_gax::error::rpc::Code;
    let status = err.http_status_code();
    let code = err.status().map(|s| s.code);
    if status == Some(412) || code == Some(Code::FailedPrecondition) {
        // Only a create-only write sends a precondition.
        return StorageError::AlreadyExists {
            name: name.to_string(),
            location: location.to_string(),
        };
    }
    if status == Some(404) || code == Some(Code::NotFound) {
        return StorageError::NotFound {
            name: name.to_string(),
            location: location.to_string(),
        };
    }
    let retryable = match (status, code) {
        (Some(s), _) => retryable_status(s),
        (None, Some(c)) => matches!(
            c,
            Code::Unavailable | Code::Internal | Code::ResourceExhausted | Code::DeadlineExceeded
        ),
        (None, None) => {
            err.is_timeout()
                || err.is_io()
                || err.is_connect()
                || err.is_transport()
                || err.is_exhausted()
        }
    };
    if status == Some(401) {
        return super::json::refused(name, what, "401", super::json::CREDENTIALS);
    }
    let chain = error_chain(&err);
    if let Some(acl) = store_acl.filter(|_| chain.contains("uniform bucket-level access")) {
        return StorageError::message(
            name,
            false,
            format!("{what}: {}", super::json::ubla_fix(acl)),
        );
    }
    let mut message = format!("{what}: {}", error_chain(&err));
    if let Some(s) = status {
        message = format!("{what}: HTTP {s}: {}", error_chain(&err));
    }
    StorageError::Backend {
        name: name.to_string(),
        message,
        retryable,
        source: Some(Box::new(err)),
    }
}
