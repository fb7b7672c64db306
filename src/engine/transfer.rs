//! Copy one file from a source store to a destination store, then verify it there.
//!
//! The bytes stream straight through (source `get` → destination `put`), so memory is bounded by
//! the destination's part buffer, never by the file size. `put` reports the size and MD5 of the
//! bytes that went through the stream (the storage contract), so nothing is hashed twice.
//! Verification is what the contract lets us trust: the source's announced size must match what
//! was streamed, the destination's `stat` must report exactly that many bytes, and, where the
//! destination reports an MD5 of its own, it must equal the stream's. Only a [`Verified`] copy may
//! have references rewritten to it.

use crate::storage::{GetOptions, ObjectStore, PutOptions, StorageError, content_type_for};

/// A copy that was checked at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    /// MD5 of the bytes, computed on the stream (lowercase hex).
    pub md5: String,
    /// Whether the destination's own hash was compared too (not only the size).
    pub hash_checked: bool,
    pub etag: Option<String>,
}

/// Copy `name` from `source` to `target` in `dest`, and verify it.
///
/// Errors: [`StorageError::NotFound`] only when the *source* has no such file (the caller records
/// it as missing); [`StorageError::Integrity`] when the destination disagrees with what was sent.
pub async fn copy_verified(
    source: &dyn ObjectStore,
    dest: &dyn ObjectStore,
    name: &str,
    target: &str,
    get: &GetOptions,
) -> Result<Verified, StorageError> {
    let got = source.get(name, get).await?;
    let content_type = got
        .content_type
        .clone()
        .or_else(|| content_type_for(target));
    let expected_size = got.size;
    let put = dest
        .put(
            target,
            got.stream,
            &PutOptions {
                content_type,
                cache_control: None,
                size_hint: expected_size,
            },
        )
        .await?;
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
        md5,
        hash_checked,
        etag: meta.etag.or(put.etag),
    })
}
