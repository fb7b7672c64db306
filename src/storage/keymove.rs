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
//!    does not match is removed and the original kept ([`StorageError::Integrity`]);
//! 4. every delete names the version it saw ([`KeyStore::remove_key`]: S3 `If-Match` with the
//!    ETag, GCS `ifGenerationMatch`): an object written under the key since the look (the app
//!    uploading again under that name) is kept, and the move reports it.
//!
//! A crash anywhere leaves the original, or both (identical), never neither.

use async_trait::async_trait;

use super::StorageError;

/// What a bucket store gives the move.
#[async_trait]
pub(crate) trait KeyStore: Send + Sync {
    /// What a look at one key tells.
    type Meta: Send + Sync + PartialEq;

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

    /// Delete `key` only while it holds the object `seen` describes, by a condition the server
    /// checks (nothing there is fine); another object there since is kept, and the answer is
    /// [`changed`]. [`move_key`] looks first too, for servers that ignore the condition.
    async fn remove_key(
        &self,
        name: &str,
        key: &str,
        seen: &Self::Meta,
    ) -> Result<(), StorageError>;

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
            return remove_seen(s, name, from, &a).await;
        }
        (Some(a), None) => a,
    };
    s.copy_key_new(name, from, to).await?;
    let copied = s.head_key(name, to).await?;
    let verified = match &copied {
        Some(copied) => s.same_bytes(name, (from, &src), (to, copied)).await?,
        None => false,
    };
    if !verified {
        if let Some(copied) = &copied {
            remove_seen(s, name, to, copied).await?;
        }
        return Err(StorageError::Integrity {
            name: name.to_string(),
            reason: format!(
                "the copy at {} does not match; original kept",
                s.key_url(to)
            ),
        });
    }
    remove_seen(s, name, from, &src).await
}

/// Delete `key` if it still holds `seen`: a look, then the conditional delete.
async fn remove_seen<S: KeyStore + ?Sized>(
    s: &S,
    name: &str,
    key: &str,
    seen: &S::Meta,
) -> Result<(), StorageError> {
    match s.head_key(name, key).await? {
        None => Ok(()),
        Some(now) if now != *seen => Err(changed(name, &s.key_url(key))),
        Some(_) => s.remove_key(name, key, seen).await,
    }
}

/// What [`KeyStore::remove_key`] answers when the object at `location` is no longer the one
/// the move looked at: it was kept, and so was the copy.
pub(crate) fn changed(name: &str, location: &str) -> StorageError {
    StorageError::Integrity {
        name: name.to_string(),
        reason: format!(
            "{location} was written again while it was being moved; both it and the copy are kept"
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The algorithm over a bucket kept in memory, with the app writing at chosen moments: the
    //! stores' own primitives are tested against the real servers (`tests/it/quarantine.rs`).

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Objects by key: bytes and generation. `after_copy` is written under its key right after
    /// the next copy, as an app uploading again under the name would.
    #[derive(Default)]
    struct Bucket {
        objects: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        after_copy: Mutex<Option<(String, Vec<u8>)>>,
        generation: Mutex<u64>,
    }

    impl Bucket {
        fn put(&self, key: &str, bytes: &[u8]) {
            let mut g = self.generation.lock().unwrap();
            *g += 1;
            let objects = &mut self.objects.lock().unwrap();
            objects.insert(key.to_string(), (bytes.to_vec(), *g));
        }

        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.objects.lock().unwrap().get(key).map(|o| o.0.clone())
        }
    }

    #[async_trait]
    impl KeyStore for Bucket {
        type Meta = (Vec<u8>, u64);

        async fn head_key(&self, _: &str, key: &str) -> Result<Option<Self::Meta>, StorageError> {
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }

        async fn same_bytes(
            &self,
            _: &str,
            a: (&str, &Self::Meta),
            b: (&str, &Self::Meta),
        ) -> Result<bool, StorageError> {
            Ok(a.1.0 == b.1.0)
        }

        async fn copy_key_new(&self, name: &str, from: &str, to: &str) -> Result<(), StorageError> {
            if self.get(to).is_some() {
                return Err(StorageError::AlreadyExists {
                    name: name.into(),
                    location: to.into(),
                });
            }
            let bytes = self.get(from).expect("the original");
            self.put(to, &bytes);
            if let Some((key, bytes)) = self.after_copy.lock().unwrap().take() {
                self.put(&key, &bytes);
            }
            Ok(())
        }

        async fn remove_key(
            &self,
            name: &str,
            key: &str,
            seen: &Self::Meta,
        ) -> Result<(), StorageError> {
            let mut objects = self.objects.lock().unwrap();
            match objects.get(key) {
                None => Ok(()),
                Some(now) if now.1 != seen.1 => Err(changed(name, key)),
                Some(_) => {
                    objects.remove(key);
                    Ok(())
                }
            }
        }

        fn key_url(&self, key: &str) -> String {
            key.to_string()
        }
    }

    #[tokio::test]
    async fn a_move_copies_then_deletes_the_original() {
        let b = Bucket::default();
        b.put("a", b"bytes");
        move_key(&b, "a", "a", "q/a", "q/a").await.unwrap();
        assert_eq!(b.get("a"), None);
        assert_eq!(b.get("q/a").as_deref(), Some(&b"bytes"[..]));
        // A repeat finds the move done.
        move_key(&b, "a", "a", "q/a", "q/a").await.unwrap();
        assert_eq!(b.get("q/a").as_deref(), Some(&b"bytes"[..]));
    }

    #[tokio::test]
    async fn an_original_written_again_during_the_move_is_kept() {
        let b = Bucket::default();
        b.put("a", b"old");
        *b.after_copy.lock().unwrap() = Some(("a".into(), b"new".to_vec()));
        let e = move_key(&b, "a", "a", "q/a", "q/a").await.unwrap_err();
        assert!(
            matches!(&e, StorageError::Integrity { reason, .. } if reason.contains("written again")),
            "{e}"
        );
        assert_eq!(
            b.get("a").as_deref(),
            Some(&b"new"[..]),
            "the app's new bytes"
        );
        assert_eq!(b.get("q/a").as_deref(), Some(&b"old"[..]), "the copy");
        // A repeat sees two different objects: a collision, and both stay.
        let e = move_key(&b, "a", "a", "q/a", "q/a").await.unwrap_err();
        assert!(matches!(e, StorageError::AlreadyExists { .. }), "{e}");
        assert_eq!(b.get("a").as_deref(), Some(&b"new"[..]));
    }
}
