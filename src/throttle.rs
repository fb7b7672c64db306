//! Throttling of source reads, shared by every transfer of a run:
//!
//! * `--tps-limit N`: at most N requests per second to the sources (each `get` and `stat`,
//!   retries included) — a token bucket with a one-second burst;
//! * `--bwlimit RATE`: at most RATE bytes per second read from the sources, paced chunk by chunk
//!   as the bytes stream through (rclone's `--bwlimit`);
//! * **slowing down on overload**: when a source answers 429 or 503, *every* transfer waits
//!   before its next request to that source — as long as `Retry-After` asked, or one second — not
//!   only the one that was told. 32 transfers hammering a throttling host with their own retries
//!   would keep it throttled.
//!
//! [`Throttled`] applies all three to one store, as a decorator of the storage contract; the
//! engine wraps each source in it. Destinations are not throttled (their SDKs handle their own
//! throttling, and writes follow reads anyway).

use std::sync::{Arc, Mutex};
use std::time::Duration;

// Tokio's clock (the real one outside tests; a paused one in the unit tests below).
use tokio::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;

use crate::storage::{
    ByteStream, Capabilities, GetOptions, GetResult, ListOptions, ListStream, ObjectMeta,
    ObjectStore, PutOptions, PutResult, StorageError,
};

/// How long every transfer pauses after a 429/503 that did not say (`Retry-After`).
pub const OVERLOAD_PAUSE: Duration = Duration::from_secs(1);

/// The run's limits (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Requests per second to the sources.
    #[serde(rename = "tps_limit")]
    pub tps: Option<f64>,
    /// Bytes per second read from the sources.
    #[serde(rename = "bwlimit", serialize_with = "ser_rate")]
    pub bytes_per_sec: Option<u64>,
}

/// A byte rate as the string `bwlimit` accepts (a plain number of bytes).
fn ser_rate<S: serde::Serializer>(b: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&b.to_string()),
        None => s.serialize_none(),
    }
}

/// A token bucket that may go into debt: a caller takes what it needs at once and sleeps off
/// the deficit, so large takes (a 1 MiB chunk under a 100 KiB/s limit) are paced, not refused,
/// and the long-run rate is exact.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Take `n` tokens; returns how long to wait before using them.
    fn take(&self, n: f64) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *s;
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst) - n;
        *s = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }
}

/// The shared state behind [`Throttled`] stores.
#[derive(Debug, Default)]
pub struct Throttle {
    requests: Option<Bucket>,
    bytes: Option<Bucket>,
    /// No request starts before this (set by a 429/503).
    pause_until: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Arc<Throttle> {
        Arc::new(Throttle {
            requests: limits
                .tps
                .filter(|t| *t > 0.0)
                .map(|t| Bucket::new(t, t.max(1.0))),
            // A burst of a quarter second: smooth pacing, chunks of any size allowed.
            bytes: limits
                .bytes_per_sec
                .filter(|b| *b > 0)
                .map(|b| Bucket::new(b as f64, (b as f64 / 4.0).max(1.0))),
            pause_until: Mutex::new(None),
        })
    }

    /// Wait until a request may start.
    pub async fn request(&self) {
        let pause = *self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = pause {
            tokio::time::sleep_until(until).await;
        }
        if let Some(b) = &self.requests {
            let wait = b.take(1.0);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// A source said it is overloaded: hold every new request for `wait`.
    pub fn overloaded(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|old| old < until) {
            *p = Some(until);
        }
    }

    /// Pace `stream` to the byte-rate limit (unchanged without one).
    pub fn pace(self: &Arc<Self>, stream: ByteStream) -> ByteStream {
        if self.bytes.is_none() {
            return stream;
        }
        let me = self.clone();
        stream
            .then(move |chunk| {
                let me = me.clone();
                async move {
                    if let (Ok(bytes), Some(b)) = (&chunk, &me.bytes) {
                        let wait = b.take(bytes.len() as f64);
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    chunk
                }
            })
            .boxed()
    }

    /// Note an error answer: 429/503 slow every transfer down.
    fn observe<T>(&self, result: &Result<T, StorageError>) {
        if let Err(e @ StorageError::Throttled { .. }) = result {
            self.overloaded(e.retry_after().unwrap_or(OVERLOAD_PAUSE));
        }
    }
}

/// A store whose reads go through a [`Throttle`]. Writes and everything else pass straight on.
#[derive(Debug)]
pub struct Throttled {
    pub inner: Arc<dyn ObjectStore>,
    pub throttle: Arc<Throttle>,
}

// A wrapper forwards every method: a trait default (`sync` does nothing) would silently drop the
// wrapped store's behaviour — the fs destination's durability, before this lint.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl ObjectStore for Throttled {
    fn put_buffer(&self) -> u64 {
        self.inner.put_buffer()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn identity(&self) -> String {
        self.inner.identity()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn location(&self, name: &str) -> Result<String, StorageError> {
        self.inner.location(name)
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta, StorageError> {
        self.throttle.request().await;
        let r = self.inner.stat(name).await;
        self.throttle.observe(&r);
        r
    }

    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError> {
        self.throttle.request().await;
        let r = self.inner.get(name, opts).await;
        self.throttle.observe(&r);
        let mut got = r?;
        got.stream = self.throttle.pace(got.stream);
        Ok(got)
    }

    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult, StorageError> {
        self.inner.put(name, body, opts).await
    }

    async fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync().await
    }

    fn list(&self, opts: ListOptions) -> ListStream<'_> {
        self.inner.list(opts)
    }

    fn quarantine(&self) -> Option<&dyn crate::storage::Quarantine> {
        self.inner.quarantine()
    }

    fn debris(&self) -> Option<&dyn crate::storage::debris::Debris> {
        self.inner.debris()
    }

    // A server-side copy moves no byte through the tool: nothing to throttle.
    fn server_copy(&self) -> Option<&dyn crate::storage::copy::ServerCopy> {
        self.inner.server_copy()
    }

    // Version-level access (rekey) bypasses the read throttle, as every write does.
    fn versioned(self: Arc<Self>) -> Option<Arc<dyn crate::storage::rekey::Versioned>> {
        self.inner.clone().versioned()
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        self.inner.delete(name).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_paces_to_its_rate_and_allows_its_burst() {
        let b = Bucket::new(100.0, 100.0);
        // The burst is free; then each token costs 10 ms.
        for _ in 0..100 {
            assert_eq!(b.take(1.0), Duration::ZERO);
        }
        let w = b.take(1.0);
        assert!(
            w > Duration::from_millis(8) && w <= Duration::from_millis(11),
            "{w:?}"
        );
        let w = b.take(50.0);
        assert!(w > Duration::from_millis(500), "debt accumulates: {w:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_limited_per_second_and_overload_pauses_everyone() {
        let t = Throttle::new(Limits {
            tps: Some(10.0),
            bytes_per_sec: None,
        });
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            t.request().await;
        }
        // 10 in the burst, 20 more at 10/s: about 2 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(2300),
            "{took:?}"
        );

        let t = Throttle::new(Limits::default());
        t.overloaded(Duration::from_secs(3));
        t.overloaded(Duration::from_secs(1)); // a shorter pause does not shorten it
        let start = tokio::time::Instant::now();
        t.request().await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn streams_are_paced_to_the_byte_rate() {
        let t = Throttle::new(Limits {
            tps: None,
            bytes_per_sec: Some(1000),
        });
        let chunks: Vec<Result<bytes::Bytes, StorageError>> = (0..10)
            .map(|_| Ok(bytes::Bytes::from(vec![0u8; 500])))
            .collect();
        let start = tokio::time::Instant::now();
        let n: usize = t
            .pace(futures::stream::iter(chunks).boxed())
            .map(|c| c.unwrap().len())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(n, 5000);
        // 5000 bytes at 1000 B/s with a 250 B burst: about 4.75 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(4500) && took < Duration::from_millis(5100),
            "{took:?}"
        );
    }
}
