//! The encryption read/write paths the GridFS and FS stores share: sealing a `put` stream, and on
//! `get`/`stat` deciding whether stored bytes are ciphertext for the key (then decrypting them) or
//! plaintext written before the key was set (then passing them through).
//!
//! A store describes its stored object by its length and a function that opens the stored bytes
//! at an offset; nothing here knows about files or GridFS. Memory stays bounded: objects up to
//! [`IN_MEMORY_LIMIT`] are read once into memory and decrypted there; larger ones are read twice,
//! first to verify the tag (no plaintext is released before the tag is known good), then to
//! decrypt as a stream.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};

use super::{FileKey, IV_LEN, Opener, Sealer, TAG_LEN, TRAILER_LEN, Verifier};
use crate::storage::{ByteStream, StorageError};

/// Stored objects up to this size are decrypted in memory in one read.
pub const IN_MEMORY_LIMIT: u64 = 8 * 1024 * 1024;

/// Size of the pieces an in-memory plaintext is handed out in (zero-copy slices).
const PIECE: usize = 1024 * 1024;

/// The plaintext of a stored object.
pub struct Plaintext {
    /// Plaintext size of the whole object (not of the part after the offset).
    pub size: u64,
    /// Whether the stored bytes were ciphertext for the key.
    pub encrypted: bool,
    /// The plaintext from the requested offset on.
    pub stream: ByteStream,
}

impl Plaintext {
    /// The read as the contract's [`GetResult`](crate::storage::GetResult): the size is what the stream yields from
    /// `offset` (already checked to be within the object). GridFS and FS store no content type.
    pub fn into_get_result(self, offset: u64, version: Option<String>) -> super::super::GetResult {
        super::super::GetResult {
            size: Some(self.size.saturating_sub(offset)),
            content_type: None,
            version,
            stream: self.stream,
        }
    }
}

/// Encrypt `input` into Parse's stored layout as it arrives: ciphertext chunk for chunk, then the
/// 32-byte `iv ‖ tag` trailer. A failing input ends the output with that error (no trailer).
pub fn seal_stream(key: &FileKey, input: ByteStream) -> ByteStream {
    let state = Some((Sealer::new(key), input));
    stream::unfold(state, |state| async move {
        let (mut sealer, mut input) = state?;
        match input.next().await {
            Some(Ok(chunk)) => {
                let mut buf = BytesMut::from(&chunk[..]);
                sealer.update(&mut buf);
                Some((Ok(buf.freeze()), Some((sealer, input))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => Some((Ok(Bytes::copy_from_slice(&sealer.finish())), None)),
        }
    })
    .boxed()
}

/// Open the plaintext of a stored object of `stored_len` bytes, from plaintext `offset` on.
/// `open(n)` must stream the stored bytes from stored offset `n` to the end. Without a key, or
/// when the bytes are not ciphertext for it, the stored bytes are the plaintext.
pub async fn read_stored<F, Fut>(
    key: Option<&FileKey>,
    name: &str,
    stored_len: u64,
    offset: u64,
    open: F,
) -> Result<Plaintext, StorageError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<ByteStream, StorageError>>,
{
    let Some(key) = key.filter(|_| stored_len >= TRAILER_LEN as u64) else {
        return plain(name, stored_len, offset, open(offset)).await;
    };
    if stored_len <= IN_MEMORY_LIMIT {
        let stored = collect(name, stored_len, open(0).await?).await?;
        let (data, encrypted) = match super::open(key, &stored) {
            Some(plaintext) => (Bytes::from(plaintext), true),
            None => (Bytes::from(stored), false),
        };
        check_offset(name, offset, data.len() as u64)?;
        return Ok(Plaintext {
            size: data.len() as u64,
            encrypted,
            stream: pieces(data.slice(offset as usize..)),
        });
    }
    match verify(key, name, stored_len, open(0).await?).await? {
        Some(iv) => {
            let size = stored_len - TRAILER_LEN as u64;
            check_offset(name, offset, size)?;
            let state = OpenState {
                split: Split::new(stored_len),
                opener: Some(Opener::new(key, &iv)),
                skip: offset,
                name: name.to_string(),
                input: open(0).await?,
            };
            Ok(Plaintext {
                size,
                encrypted: true,
                stream: state.into_stream(),
            })
        }
        None => plain(name, stored_len, offset, open(offset)).await,
    }
}

/// Stored bytes that are the plaintext (no key, or not ciphertext for it).
async fn plain(
    name: &str,
    size: u64,
    offset: u64,
    open: impl Future<Output = Result<ByteStream, StorageError>>,
) -> Result<Plaintext, StorageError> {
    check_offset(name, offset, size)?;
    Ok(Plaintext {
        size,
        encrypted: false,
        stream: open.await?,
    })
}

/// The plaintext size of a stored object: `stored_len − 32` when it is ciphertext for the key,
/// else `stored_len`. Deciding that needs the tag, hence a read of the object (bounded memory).
pub async fn stored_plain_size<F, Fut>(
    key: Option<&FileKey>,
    name: &str,
    stored_len: u64,
    open: F,
) -> Result<u64, StorageError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<ByteStream, StorageError>>,
{
    match key.filter(|_| stored_len >= TRAILER_LEN as u64) {
        None => Ok(stored_len),
        Some(key) => Ok(match verify(key, name, stored_len, open(0).await?).await? {
            Some(_) => stored_len - TRAILER_LEN as u64,
            None => stored_len,
        }),
    }
}

/// Drop the first `n` bytes of a stream (for stores that cannot start a read mid-object).
pub fn skip_prefix(input: ByteStream, n: u64) -> ByteStream {
    if n == 0 {
        return input;
    }
    stream::unfold((input, n), |(mut input, mut left)| async move {
        loop {
            let chunk = match input.next().await? {
                Ok(c) => c,
                Err(e) => return Some((Err(e), (input, 0))),
            };
            if left >= chunk.len() as u64 {
                left -= chunk.len() as u64;
                continue;
            }
            let out = chunk.slice(left as usize..);
            return Some((Ok(out), (input, 0)));
        }
    })
    .boxed()
}

fn check_offset(name: &str, offset: u64, size: u64) -> Result<(), StorageError> {
    if offset > size {
        return Err(StorageError::message(
            name,
            false,
            format!("read offset {offset} is beyond the end of the object ({size} bytes)"),
        ));
    }
    Ok(())
}

fn pieces(data: Bytes) -> ByteStream {
    let n = data.len().div_ceil(PIECE);
    let chunks: Vec<Result<Bytes, StorageError>> = (0..n)
        .map(|i| Ok(data.slice(i * PIECE..((i + 1) * PIECE).min(data.len()))))
        .collect();
    stream::iter(chunks).boxed()
}

/// Read exactly `len` bytes; a different count means the object changed or the read broke.
async fn collect(name: &str, len: u64, mut input: ByteStream) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(len as usize);
    while let Some(chunk) = input.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() as u64 > len {
            return Err(length_changed(name, len, out.len() as u64));
        }
    }
    if out.len() as u64 != len {
        return Err(length_changed(name, len, out.len() as u64));
    }
    Ok(out)
}

fn length_changed(name: &str, want: u64, got: u64) -> StorageError {
    StorageError::Integrity {
        name: name.to_string(),
        reason: format!("stored object has {want} bytes but the read returned {got}+"),
    }
}

/// First pass over a large object: the IV if the tag verifies, `None` if it is not ciphertext.
async fn verify(
    key: &FileKey,
    name: &str,
    stored_len: u64,
    mut input: ByteStream,
) -> Result<Option<[u8; IV_LEN]>, StorageError> {
    let mut split = Split::new(stored_len);
    let mut verifier = Verifier::new(key);
    while let Some(chunk) = input.next().await {
        let chunk = chunk?;
        verifier.update(split.take(name, &chunk)?);
    }
    split.check_complete(name)?;
    let ok = verifier.finish(&split.trailer);
    Ok(ok.then(|| split.iv()))
}

/// Splits stored bytes into the ciphertext (returned) and the trailer (kept).
struct Split {
    ct_len: u64,
    stored_len: u64,
    seen: u64,
    trailer: [u8; TRAILER_LEN],
}

impl Split {
    fn new(stored_len: u64) -> Self {
        Split {
            ct_len: stored_len.saturating_sub(TRAILER_LEN as u64),
            stored_len,
            seen: 0,
            trailer: [0; TRAILER_LEN],
        }
    }

    /// The ciphertext part of `chunk`; its trailer part is copied aside.
    fn take<'a>(&mut self, name: &str, chunk: &'a [u8]) -> Result<&'a [u8], StorageError> {
        let end = self.seen + chunk.len() as u64;
        if end > self.stored_len {
            return Err(length_changed(name, self.stored_len, end));
        }
        let ct = self
            .ct_len
            .saturating_sub(self.seen)
            .min(chunk.len() as u64) as usize;
        if ct < chunk.len() {
            // Past the ciphertext, so `seen + ct >= ct_len`.
            let at = (self.seen + ct as u64 - self.ct_len) as usize;
            self.trailer[at..at + chunk.len() - ct].copy_from_slice(&chunk[ct..]);
        }
        self.seen = end;
        Ok(&chunk[..ct])
    }

    fn check_complete(&self, name: &str) -> Result<(), StorageError> {
        if self.seen != self.stored_len {
            return Err(length_changed(name, self.stored_len, self.seen));
        }
        Ok(())
    }

    fn iv(&self) -> [u8; IV_LEN] {
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&self.trailer[..IV_LEN]);
        iv
    }
}

/// Second pass over a large object: decrypts, drops the first `skip` plaintext bytes, and checks
/// the tag again at the end (the object may have been replaced between the passes).
struct OpenState {
    input: ByteStream,
    split: Split,
    opener: Option<Opener>,
    skip: u64,
    name: String,
}

impl OpenState {
    fn into_stream(self) -> ByteStream {
        stream::unfold(Some(self), |st| async move {
            let mut st = st?;
            loop {
                let result = match st.input.next().await {
                    Some(Ok(chunk)) => st.absorb(&chunk).transpose(),
                    Some(Err(e)) => Some(Err(e)),
                    None => st.finish().err().map(Err),
                };
                match result {
                    Some(Ok(bytes)) => return Some((Ok(bytes), Some(st))),
                    Some(Err(e)) => return Some((Err(e), None)),
                    None if st.opener.is_none() => return None,
                    None => continue,
                }
            }
        })
        .boxed()
    }

    fn absorb(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let ct = self.split.take(&self.name, chunk)?;
        let mut buf = BytesMut::from(ct);
        if let Some(opener) = &mut self.opener {
            opener.update(&mut buf);
        }
        let drop = self.skip.min(buf.len() as u64) as usize;
        self.skip -= drop as u64;
        let out = buf.split_off(drop).freeze();
        Ok((!out.is_empty()).then_some(out))
    }

    fn finish(&mut self) -> Result<(), StorageError> {
        self.split.check_complete(&self.name)?;
        let ok = self
            .opener
            .take()
            .is_some_and(|o| o.finish(&self.split.trailer[IV_LEN..IV_LEN + TAG_LEN]));
        if !ok {
            return Err(StorageError::Integrity {
                name: self.name.clone(),
                reason: "GCM tag no longer verifies: the object changed while it was read".into(),
            });
        }
        Ok(())
    }
}
