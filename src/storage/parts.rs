//! Stream plumbing shared by the cloud backends (S3, GCS): cutting an upload stream of unknown
//! length into bounded parts, and bounding how long a download may sit idle.
//!
//! This module owns memory bounds, not protocols: it never talks to a server. A
//! [`PartReader`] holds at most one part plus one input chunk, whatever the object size, which
//! is what lets `put` promise memory "bounded by the backend's part size" (see the contract in
//! `storage/mod.rs`).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{ByteStream, StorageError};

/// Reads an upload stream as parts of an exact size.
///
/// Memory held: the part being assembled (`part_size`) plus at most one chunk of the input that
/// straddles a part boundary or was read ahead by [`PartReader::at_end`].
pub struct PartReader {
    inner: ByteStream,
    /// Bytes read from `inner` but not yet handed out (the tail of a chunk that overshot a part,
    /// or a chunk read ahead to detect the end).
    pending: Option<Bytes>,
    finished: bool,
}

impl PartReader {
    pub fn new(inner: ByteStream) -> Self {
        PartReader {
            inner,
            pending: None,
            finished: false,
        }
    }

    /// The next `size` bytes of the stream (fewer only for the last part), or `None` when the
    /// stream is exhausted. An input error is returned as is: the caller must then abandon the
    /// upload, never finish it with what it has.
    pub async fn next_part(&mut self, size: usize) -> Result<Option<Bytes>, StorageError> {
        let size = size.max(1);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match self.pending.take() {
                Some(c) => c,
                None if self.finished => break,
                None => match self.inner.next().await {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        // Never read past an error: a stream that yields more after failing
                        // would otherwise produce an object with a hole in it.
                        self.finished = true;
                        return Err(e);
                    }
                    None => {
                        self.finished = true;
                        break;
                    }
                },
            };
            let room = size - buf.len();
            if chunk.len() >= room && buf.is_empty() {
                // Fast path: the chunk alone fills the part; hand out a slice without copying.
                let mut chunk = chunk;
                let part = chunk.split_to(room);
                if !chunk.is_empty() {
                    self.pending = Some(chunk);
                }
                return Ok(Some(part));
            }
            if chunk.len() >= room {
                let mut chunk = chunk;
                buf.reserve_exact(room);
                buf.extend_from_slice(&chunk.split_to(room));
                if !chunk.is_empty() {
                    self.pending = Some(chunk);
                }
                return Ok(Some(Bytes::from(buf)));
            }
            if buf.capacity() - buf.len() < chunk.len() {
                // Grow by doubling but never past the part size, so a part costs at most
                // `size` bytes of capacity (`Vec::reserve` alone could reach 2 × size).
                let want = (buf.len() * 2).max(buf.len() + chunk.len()).min(size);
                buf.reserve_exact(want - buf.len());
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Bytes::from(buf)))
        }
    }

    /// The next chunk as it comes (no re-cutting), or `None` at the end; the same error rules
    /// as [`PartReader::next_part`].
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        if self.at_end().await? {
            return Ok(None);
        }
        Ok(self.pending.take())
    }

    /// The first part of at most `limit` bytes, and whether it is the whole stream (it came up
    /// short, or nothing follows it): the backends' choice between one request and a multipart
    /// or resumable upload.
    pub async fn first_part(&mut self, limit: usize) -> Result<(Bytes, bool), StorageError> {
        let first = self.next_part(limit).await?.unwrap_or_default();
        let whole = first.len() < limit || self.at_end().await?;
        Ok((first, whole))
    }

    /// Whether the stream has no more bytes. May read one chunk ahead (kept for the next part).
    pub async fn at_end(&mut self) -> Result<bool, StorageError> {
        while self.pending.is_none() && !self.finished {
            match self.inner.next().await {
                Some(Ok(c)) if c.is_empty() => {}
                Some(Ok(c)) => self.pending = Some(c),
                Some(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                None => self.finished = true,
            }
        }
        Ok(self.pending.is_none())
    }
}

/// Fails a download whose body produces nothing for `idle`: SDK read timeouts only cover the
/// wait for response headers, so a connection that stalls mid-body would otherwise hang a copy
/// forever. The error is retryable (the engine resumes with a range read).
pub fn idle_timeout(stream: ByteStream, idle: Duration, name: String) -> ByteStream {
    futures::stream::unfold(Some(stream), move |state| {
        let name = name.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(StorageError::message(
                        name,
                        true,
                        format!("download stalled: no data for {} s", idle.as_secs()),
                    )),
                    None,
                )),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn input(chunks: &[&[u8]]) -> ByteStream {
        let v: Vec<Result<Bytes, StorageError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn cuts_exact_parts_across_chunks() {
        let mut r = PartReader::new(input(&[b"abc", b"defgh", b"", b"ij"]));
        assert_eq!(r.next_part(4).await.unwrap().unwrap(), &b"abcd"[..]);
        assert!(!r.at_end().await.unwrap());
        assert_eq!(r.next_part(4).await.unwrap().unwrap(), &b"efgh"[..]);
        assert_eq!(r.next_part(4).await.unwrap().unwrap(), &b"ij"[..]);
        assert!(r.next_part(4).await.unwrap().is_none());
        assert!(r.at_end().await.unwrap());
    }

    #[tokio::test]
    async fn detects_end_on_a_part_boundary() {
        let mut r = PartReader::new(input(&[b"abcd"]));
        assert_eq!(r.next_part(4).await.unwrap().unwrap(), &b"abcd"[..]);
        assert!(r.at_end().await.unwrap());
        let mut empty = PartReader::new(input(&[]));
        assert!(empty.next_part(4).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stops_at_the_first_error() {
        let s = stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(StorageError::message("x", true, "boom")),
            Ok(Bytes::from_static(b"cd")),
        ])
        .boxed();
        let mut r = PartReader::new(s);
        assert!(r.next_part(4).await.is_err());
        assert!(r.next_part(4).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn idle_timeout_fires() {
        let s = stream::pending::<Result<Bytes, StorageError>>().boxed();
        let mut t = idle_timeout(s, Duration::from_millis(20), "n".into());
        let err = t.next().await.unwrap().unwrap_err();
        assert!(err.is_retryable());
        assert!(t.next().await.is_none());
    }
}
