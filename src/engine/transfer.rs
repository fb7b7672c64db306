//! Copy one file from a source store to a destination store, then verify it there.
//!
//! The bytes stream straight through (source `get` → destination `put`), so memory is bounded by
//! the destination's part buffer, never by the file size. `put` reports the size and MD5 of the
//! bytes that went through the stream (the storage contract), so nothing is hashed twice.
//! Verification is what the contract lets us trust: the source's announced size must match what
//! was streamed, the destination's `stat` must report exactly that many bytes, and, where the
//! destination reports an MD5 of its own, it must equal the stream's. Only a [`Verified`] copy may
//! have references rewritten to it.
//!
//! Between two stores of one service (two prefixes of a bucket, two buckets on one endpoint) the
//! copy is made by the server instead ([`server_side`]) and verified by the sizes and MD5s both
//! ends report: nothing streams through the tool.
//!
//! A source stream that breaks mid-file (a reset, a stall cut by the idle timeout, a body cut
//! short) is continued from the byte where it broke with a range read, when the source supports
//! them — the destination's `put` never notices, and no byte is fetched twice. Up to [`RESUMES`]
//! times per attempt; after that (or on a source without range reads) the error ends the attempt
//! and the retry policy starts the file over.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::storage::{
    ByteStream, GetOptions, HashingStream, ObjectStore, PutMode, PutOptions, StorageError,
    content_type_for,
};

/// Continuations of a broken source stream within one attempt.
pub const RESUMES: u32 = 3;

/// A copy that was checked at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    /// MD5 of the bytes (lowercase hex): computed on the stream; for a server-side copy, what the
    /// stores report (`None` when neither does).
    pub md5: Option<String>,
    /// Whether the destination's own hash was compared too (not only the size).
    pub hash_checked: bool,
    pub etag: Option<String>,
    /// Copied by the store's server ([`server_side`]): no byte went through the tool.
    pub server_side: bool,
}

/// Copy `name` from `source` to `target` in `dest`, and verify it.
///
/// Errors: [`StorageError::NotFound`] only when the *source* has no such file (the caller records
/// it as missing); [`StorageError::Integrity`] when the destination disagrees with what was sent.
/// A source answered "not found" for `name`: is it the file, or the whole store (a deleted
/// bucket on a server that answers `NoSuchKey` for it, an unmounted directory)? One listing
/// request of one object tells, on stores that list; `Some` is the error that stops the run.
/// A transient failure of that request confirms nothing (the file stays missing).
pub async fn store_gone(source: &dyn ObjectStore, name: &str) -> Option<StorageError> {
    if !source.capabilities().list {
        return None;
    }
    let opts = crate::storage::ListOptions {
        prefix: None,
        page_size: Some(1),
    };
    let err = source.list(opts).next().await?.err()?;
    if err.is_retryable() {
        return None;
    }
    Some(match err {
        refused @ StorageError::Refused { .. } => refused,
        other => StorageError::Refused {
            name: name.to_string(),
            store: source.describe(),
            code: "not found".into(),
            fix: format!(
                "files are answered 'not found' and listing the store fails ({other}): the \
                 bucket (or directory) is gone or unreadable; restore it or fix the store's \
                 table, then run again"
            ),
        },
    })
}

pub async fn copy_verified(
    source: &Arc<dyn ObjectStore>,
    dest: &dyn ObjectStore,
    name: &str,
    target: &str,
    get: &GetOptions,
    mode: PutMode,
) -> Result<Verified, StorageError> {
    let uploads = Default::default();
    copy_logged(source, dest, name, target, get, mode, &uploads).await
}

/// [`copy_verified`], telling `uploads` of an upload a kill could leave unfinished.
pub async fn copy_logged(
    source: &Arc<dyn ObjectStore>,
    dest: &dyn ObjectStore,
    name: &str,
    target: &str,
    get: &GetOptions,
    mode: PutMode,
    uploads: &crate::storage::debris::UploadLogRef,
) -> Result<Verified, StorageError> {
    if let Some(v) = server_side(&**source, dest, name, target, mode).await? {
        return Ok(v);
    }
    let got = source.get(name, get).await?;
    let content_type = got
        .content_type
        .clone()
        .or_else(|| content_type_for(target));
    let expected_size = got.size;
    let stream = if source.capabilities().range_reads {
        // Every continuation reads the version the first read began with, or fails.
        let get = GetOptions {
            version: got.version.clone(),
            ..get.clone()
        };
        resuming(source.clone(), name, &get, got.stream, expected_size)
    } else {
        got.stream
    };
    let put = dest
        .put(
            target,
            stream,
            &PutOptions {
                content_type,
                cache_control: None,
                size_hint: expected_size,
                mode,
                uploads: uploads.clone(),
            },
        )
        .await
        .map_err(|e| match e {
            // Not a missing *source* file: a write cannot find its object missing, only the
            // place it writes to (a deleted bucket on a server that does not say so).
            StorageError::NotFound { name, location } => StorageError::Refused {
                name,
                store: dest.describe(),
                code: "not found".into(),
                fix: format!(
                    "a write to {location} was answered 'not found': the bucket (or directory) \
                     no longer exists; create it or fix the store's table, then run again"
                ),
            },
            other => other,
        })?;
    let (size, md5) = (put.size, put.md5);
    if let Some(expected) = expected_size.filter(|e| *e != size) {
        return Err(StorageError::Integrity {
            name: name.to_string(),
            reason: format!("source announced {expected} bytes but sent {size}"),
        });
    }
    let meta = dest.stat(target).await.map_err(|e| match e {
        // Not a missing *source* file: the destination lost what it just accepted.
        StorageError::NotFound { .. } => StorageError::Integrity {
            name: target.to_string(),
            reason: "the destination does not have the object it just accepted".into(),
        },
        other => other,
    })?;
    if meta.size != size {
        return Err(StorageError::Integrity {
            name: target.to_string(),
            reason: format!("destination reports {} bytes, {size} were sent", meta.size),
        });
    }
    let hash_checked = match &meta.md5 {
        Some(remote) if remote != &md5 => {
            return Err(StorageError::Integrity {
                name: target.to_string(),
                reason: format!("destination md5 {remote} differs from the stream's {md5}"),
            });
        }
        Some(_) => true,
        None => false,
    };
    Ok(Verified {
        size,
        md5: Some(md5),
        hash_checked,
        etag: meta.etag.or(put.etag),
        server_side: false,
    })
}

/// Copy `name` to `target` on the server when both stores are of one service at one endpoint
/// (two prefixes of a bucket, two buckets: [`crate::storage::copy`]), and verify it as a
/// streamed copy is: the destination must report the size the source reports, and where both
/// report an MD5, the same one (`hash_checked`). An object whose source reports no MD5 (a
/// multipart upload's ETag) is checked by its size, as a streamed multipart upload is, and
/// recorded with the MD5 the destination computed of its copy. `Ok(None)` when no server-side
/// copy is possible (other services, a copy the server refuses): the caller streams the bytes.
async fn server_side(
    source: &dyn ObjectStore,
    dest: &dyn ObjectStore,
    name: &str,
    target: &str,
    mode: PutMode,
) -> Result<Option<Verified>, StorageError> {
    let (Some(from), Some(to)) = (source.server_copy(), dest.server_copy()) else {
        return Ok(None);
    };
    let src = from.copy_source(name)?;
    if src.service != to.copy_source(target)?.service {
        return Ok(None);
    }
    let meta = source.stat(name).await?;
    if to.copy_from(&src, &meta, target, mode).await?.is_none() {
        return Ok(None);
    }
    let got = dest.stat(target).await.map_err(|e| match e {
        StorageError::NotFound { .. } => StorageError::Integrity {
            name: target.to_string(),
            reason: "the destination does not have the object it just copied".into(),
        },
        other => other,
    })?;
    let differs = |what: String| StorageError::Integrity {
        name: target.to_string(),
        reason: format!("the server-side copy {what}"),
    };
    if got.size != meta.size {
        return Err(differs(format!(
            "holds {} bytes, the source {}",
            got.size, meta.size
        )));
    }
    let (md5, hash_checked) = match (meta.md5, got.md5) {
        (Some(a), Some(b)) if a != b => {
            return Err(differs(format!("has MD5 {b}, the source {a}")));
        }
        (Some(a), Some(_)) => (Some(a), true),
        (a, b) => (a.or(b), false),
    };
    Ok(Some(Verified {
        size: meta.size,
        md5,
        hash_checked,
        etag: got.etag,
        server_side: true,
    }))
}

/// What a create-only copy found at its target: the same bytes as the source (its own copy
/// from a run that stopped before recording it, or an identical file), or other bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Same size and MD5 as the source: counts as copied.
    Same { size: u64, md5: String },
    /// Anything else, described for the report.
    Other(String),
}

/// Compare the object at `target` in `dest` with `name` at the source: sizes first (a `stat`),
/// then MD5s — the destination's own where it reports one, else hashed from a read of it — and
/// the source's hashed from a read. Memory: one chunk at a time.
pub async fn compare_existing(
    source: &Arc<dyn ObjectStore>,
    dest: &dyn ObjectStore,
    name: &str,
    target: &str,
    get: &GetOptions,
) -> Result<Found, StorageError> {
    let meta = dest.stat(target).await?;
    let (size, md5) = hash_of(&**source, name, get).await?;
    if meta.size != size {
        return Ok(Found::Other(format!(
            "{} bytes there, {size} at the source",
            meta.size
        )));
    }
    let theirs = match meta.md5 {
        Some(m) => m,
        None => hash_of(dest, target, &GetOptions::default()).await?.1,
    };
    Ok(if theirs == md5 {
        Found::Same { size, md5 }
    } else {
        Found::Other(format!(
            "same size, MD5 {theirs} there, {md5} at the source"
        ))
    })
}

/// Size and MD5 of `name` in `store`, read through.
async fn hash_of(
    store: &dyn ObjectStore,
    name: &str,
    get: &GetOptions,
) -> Result<(u64, String), StorageError> {
    let got = store.get(name, get).await?;
    let (mut hashing, state) = HashingStream::new(got.stream);
    while let Some(chunk) = hashing.next().await {
        chunk?;
    }
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    Ok((st.size, st.md5_hex()))
}

/// `first`, continued from where it broke by range reads of `name` (see the module
/// documentation). `total` is the size the first read announced: a continuation must announce
/// exactly the rest, or the object changed under us.
fn resuming(
    source: Arc<dyn ObjectStore>,
    name: &str,
    opts: &GetOptions,
    first: ByteStream,
    total: Option<u64>,
) -> ByteStream {
    struct State {
        source: Arc<dyn ObjectStore>,
        name: String,
        opts: GetOptions,
        stream: ByteStream,
        read: u64,
        resumes: u32,
        total: Option<u64>,
    }
    let state = State {
        source,
        name: name.to_string(),
        opts: opts.clone(),
        stream: first,
        read: 0,
        resumes: 0,
        total,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            let error = match st.stream.next().await {
                None => return None,
                Some(Ok(bytes)) => {
                    st.read += bytes.len() as u64;
                    return Some((Ok(bytes), Some(st)));
                }
                Some(Err(e)) => e,
            };
            if !error.is_retryable() || st.read == 0 || st.resumes >= RESUMES {
                return Some((Err(error), None));
            }
            st.resumes += 1;
            tracing::info!(
                file = %st.name,
                "source stream broke after {} bytes ({error}); continuing from there",
                st.read
            );
            tokio::time::sleep(Duration::from_millis(200) * st.resumes).await;
            let opts = GetOptions {
                offset: st.opts.offset + st.read,
                ..st.opts.clone()
            };
            match st.source.get(&st.name, &opts).await {
                Ok(rest) => {
                    if let (Some(total), Some(left)) = (st.total, rest.size)
                        && st.read + left != total
                    {
                        let e = StorageError::Integrity {
                            name: st.name.clone(),
                            reason: format!(
                                "the source changed during the copy: {total} bytes, then {} from byte {}",
                                left, st.read
                            ),
                        };
                        return Some((Err(e), None));
                    }
                    st.stream = rest.stream;
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}
