//! Stream helpers for rewriting stored bytes under another key (`rekey`): which of several keys a
//! stored object is ciphertext for (one pass, GHASH only, nothing decrypted), decrypting a stored
//! stream once its `iv ‖ tag` trailer (read first, from the end) is known, and the MD5 of a
//! stream. Memory: one chunk plus 32 bytes, whatever the object size.

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};
use md5::Digest;

use super::{FileKey, IV_LEN, Opener, TRAILER_LEN, Verifier};
use crate::storage::{ByteStream, StorageError};

/// Splits a stream into what certainly precedes the last [`TRAILER_LEN`] bytes, and those.
#[derive(Default)]
struct Tail {
    held: Vec<u8>,
    seen: u64,
}

impl Tail {
    /// Pass `f` every byte of `chunk` (and of earlier chunks) that is not among the last 32.
    fn push(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        self.seen += chunk.len() as u64;
        if chunk.len() >= TRAILER_LEN {
            f(&self.held);
            self.held.clear();
            let split = chunk.len() - TRAILER_LEN;
            f(&chunk[..split]);
            self.held.extend_from_slice(&chunk[split..]);
        } else {
            self.held.extend_from_slice(chunk);
            if self.held.len() > TRAILER_LEN {
                let extra = self.held.len() - TRAILER_LEN;
                f(&self.held[..extra]);
                self.held.drain(..extra);
            }
        }
    }

    fn trailer(&self, name: &str, stored_len: u64) -> Result<[u8; TRAILER_LEN], StorageError> {
        if self.seen != stored_len || self.held.len() != TRAILER_LEN {
            return Err(StorageError::Integrity {
                name: name.to_string(),
                reason: format!(
                    "stored object has {stored_len} bytes but the read returned {}",
                    self.seen
                ),
            });
        }
        let mut t = [0u8; TRAILER_LEN];
        t.copy_from_slice(&self.held);
        Ok(t)
    }
}

/// The index of the first of `keys` that `input` (the `stored_len` stored bytes of `name`) is
/// valid ciphertext for, or `None` (plaintext, another key, or corrupt).
pub async fn which_key(
    keys: &[&FileKey],
    name: &str,
    stored_len: u64,
    mut input: ByteStream,
) -> Result<Option<usize>, StorageError> {
    if keys.is_empty() || stored_len < TRAILER_LEN as u64 {
        return Ok(None);
    }
    let mut verifiers: Vec<Verifier> = keys.iter().map(|k| Verifier::new(k)).collect();
    let mut tail = Tail::default();
    while let Some(chunk) = input.next().await {
        tail.push(&chunk?, |ct| {
            verifiers.iter_mut().for_each(|v| v.update(ct))
        });
    }
    let trailer = tail.trailer(name, stored_len)?;
    Ok(verifiers.into_iter().position(|v| v.finish(&trailer)))
}

/// Read the last [`TRAILER_LEN`] bytes (`input` starts at stored offset `stored_len − 32`).
pub async fn read_trailer(
    name: &str,
    mut input: ByteStream,
) -> Result<[u8; TRAILER_LEN], StorageError> {
    let mut buf = Vec::with_capacity(TRAILER_LEN);
    while let Some(chunk) = input.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > TRAILER_LEN {
            break;
        }
    }
    buf.try_into()
        .map_err(|b: Vec<u8>| StorageError::Integrity {
            name: name.to_string(),
            reason: format!(
                "expected a {TRAILER_LEN}-byte trailer, read {} bytes",
                b.len()
            ),
        })
}

/// Decrypt `input` (all `stored_len` stored bytes, whose trailer is `trailer`) as it arrives.
/// The stream ends with an error, never quietly, when the bytes read do not carry that trailer
/// or the tag does not verify: a consumer must treat everything it got as void then.
pub fn decrypt_stream(
    key: &FileKey,
    trailer: [u8; TRAILER_LEN],
    name: &str,
    stored_len: u64,
    input: ByteStream,
) -> ByteStream {
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&trailer[..IV_LEN]);
    let state = Some((Opener::new(key, &iv), Tail::default(), input));
    let name = name.to_string();
    stream::unfold(state, move |state| {
        let name = name.clone();
        async move {
            let (mut opener, mut tail, mut input) = state?;
            loop {
                match input.next().await {
                    Some(Ok(chunk)) => {
                        let mut out = BytesMut::new();
                        tail.push(&chunk, |ct| out.extend_from_slice(ct));
                        if out.is_empty() {
                            continue;
                        }
                        opener.update(&mut out);
                        return Some((Ok(out.freeze()), Some((opener, tail, input))));
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        let end = tail.trailer(&name, stored_len).and_then(|t| {
                            if t == trailer && opener.finish(&t[IV_LEN..]) {
                                Ok(())
                            } else {
                                Err(StorageError::Integrity {
                                    name: name.clone(),
                                    reason: "GCM tag does not verify: the stored bytes changed \
                                             or are not ciphertext for this key"
                                        .into(),
                                })
                            }
                        });
                        return end.err().map(|e| (Err(e), None));
                    }
                }
            }
        }
    })
    .boxed()
}

/// Size and MD5 (lowercase hex) of everything `input` yields; an error in it is returned.
pub async fn md5_of(mut input: ByteStream) -> Result<(u64, String), StorageError> {
    let mut md5 = md5::Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = input.next().await {
        let chunk: Bytes = chunk?;
        size += chunk.len() as u64;
        md5.update(&chunk);
    }
    Ok((size, hex::encode(md5.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], size: usize) -> ByteStream {
        let parts: Vec<Result<Bytes, StorageError>> = data
            .chunks(size.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts).boxed()
    }

    #[tokio::test]
    async fn classifies_and_decrypts_in_any_chunking() {
        let (a, b) = (FileKey::derive("key-a"), FileKey::derive("key-b"));
        for len in [0usize, 1, 31, 32, 33, 1000, 70_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let stored = super::super::seal(&b, &plain);
            for size in [1, 5, 32, 33, 4096, 1 << 20] {
                let n = stored.len() as u64;
                let got = which_key(&[&a, &b], "x", n, chunks(&stored, size)).await;
                assert_eq!(got.unwrap(), Some(1), "len {len} chunk {size}");
                let none = which_key(&[&a], "x", n, chunks(&stored, size)).await;
                assert_eq!(none.unwrap(), None);
                let trailer = read_trailer("x", chunks(&stored[stored.len() - 32..], size))
                    .await
                    .unwrap();
                let out = md5_of(decrypt_stream(&b, trailer, "x", n, chunks(&stored, size)))
                    .await
                    .unwrap();
                assert_eq!(out.0, len as u64);
                assert_eq!(out.1, hex::encode(md5::Md5::digest(&plain)));
                // The wrong key: the stream ends in an error, never quietly.
                let bad = md5_of(decrypt_stream(&a, trailer, "x", n, chunks(&stored, size)));
                assert!(bad.await.is_err());
            }
        }
        // Plaintext shorter than a trailer is never ciphertext.
        assert_eq!(
            which_key(&[&a], "x", 3, chunks(b"abc", 1)).await.unwrap(),
            None
        );
    }
}
