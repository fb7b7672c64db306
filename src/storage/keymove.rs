//! Moving one object between two keys of a bucket by a server-side copy, for the stores whose
//! only move is a copy (S3, GCS): the quarantine and its undoing. One algorithm for both, over
//! the few primitives each store provides ([`KeyStore`]):
//!
//! 1. both keys are looked at: only the destination holding the object means the move is done
//!    (a repeat); neither means the object is gone ([`StorageError::NotFound`]); both holding the
//!    same bytes means a crash struck after the copy (the original is deleted now); both holding
//!    different bytes is a collision, left alone ([`StorageError::AlreadyExists`]);
//! 2. the copy is create-only, so it never replaces an object that appeared since the look;
//! 3. the copy is checked against the original, and only then the original deleted. A copy that
//!    does not match is removed and the original kept ([`StorageError::Integrity`]).
//!
//! A crash anywhere leaves the original, or both (identical), never neither.

use async_trait::async_trait;

use super::StorageError;

/// What a bucket store gives the move.
#[async_trait]
pub(crate) trait KeyStore: Send + Sync {
    /// What a look at one key tells.
    type Meta: Send + Sync;

    /// The object at `key`, if there is one.
    async fn head_key(&self, name: &str, key: &str) -> Result<Option<Self::Meta>, StorageError>;

    /// Whether the objects at two keys hold the same bytes.
    async fn same_bytes(
        &self,
        name: &str,
        a: (&str, &Self::Meta),
        b: (&str, &Self::Meta),
    ) -> Result<bool, StorageError>;

    /// Copy `from` to `to` on the server, only if `to` holds nothing
    /// ([`StorageError::AlreadyExists`] otherwise).
    async fn copy_key_new(&self, name: &str, from: &str, to: &str) -> Result<(), StorageError>;

    /// Delete `key` (nothing there is fine).
    async fn remove_key(&self, name: &str, key: &str) -> Result<(), StorageError>;

    /// Where `key` is, for messages.
    fn key_url(&self, key: &str) -> String;
}

/// Move the object of `name` from `from` to `to` (see the module documentation); `missing`
/// is the key named when neither holds it.
pub(crate) async fn move_key<S: KeyStore + ?Sized>(
    s: &S,
    name: &str,
    from: &str,
    to: &str,
    missing: &str,
) -> Result<(), StorageError> {
    let src = match (s.head_key(name, from).await?, s.head_key(name, to).await?) {
        (None, Some(_)) => return Ok(()),
        (None, None) => {
            return Err(StorageError::NotFound {
                name: name.to_string(),
                location: s.key_url(missing),
            });
        }
        (Some(a), Some(b)) => {
            if !s.same_bytes(name, (from, &a), (to, &b)).await? {
                return Err(StorageError::AlreadyExists {
                    name: name.to_string(),
                    location: s.key_url(to),
                });
            }
            return s.remove_key(name, from).await;
        }
        (Some(a), None) => a,
    };
    s.copy_key_new(name, from, to).await?;
    let verified = match s.head_key(name, to).await? {
        Some(copied) => s.same_bytes(name, (from, &src), (to, &copied)).await?,
        None => false,
    };
    if !verified {
        s.remove_key(name, to).await?;
        return Err(StorageError::Integrity {
            name: name.to_string(),
            reason: format!(
                "the copy at {} does not match; original kept",
                s.key_url(to)
            ),
        });
    }
    s.remove_key(name, from).await
}
