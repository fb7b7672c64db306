//! Retry policy for storage operations: which failures are worth another attempt, and how long
//! to wait before it.
//!
//! The storage contract says whether an error is retryable ([`StorageError::is_retryable`]);
//! backends never retry on their own beyond one request. This module owns the rest:
//!
//! * **Classification.** Retryable backend errors (timeouts, resets, DNS and connect failures,
//!   5xx, a body cut short) and throttling ([`StorageError::Throttled`]: 429/503) are retried up to
//!   [`RetryPolicy::retries`] times. An integrity mismatch is retried **once** at most: a second
//!   mismatch in a row means the source or destination really disagrees, and more attempts only
//!   move the same bytes again. Everything else — not found (404/403/410), invalid names, other
//!   4xx, unsupported operations — fails at once.
//! * **Waiting.** Exponential backoff with "equal jitter": before retry *n* the wait is
//!   `d/2 + random(0..=d/2)` with `d = min(retry_base · 2ⁿ⁻¹, retry_max)`. Half the wait is
//!   guaranteed (a server that is down gets real breathing room), the other half is random (many
//!   files failing at the same moment do not come back in lockstep). A `Retry-After` from the
//!   server is honoured: the wait is at least that long, capped at `retry_max`.
//!
//! It knows nothing of the engine, the ledger or the configuration file; settings build a
//! [`RetryPolicy`] and the engine calls [`RetryPolicy::run`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use crate::storage::StorageError;

/// Retries per file after the first attempt, for failures a retry can fix (timeouts, resets,
/// 5xx, 429/503, a body cut short). With the backoff below, 4 retries wait about 7.5 s in all
/// (0.5 + 1 + 2 + 4 s, jittered): enough to ride out a load balancer restart or a burst of
/// 5xx, while a host that is really down costs seconds per file, not minutes. Failed files
/// are retried by the next run anyway (the ledger keeps them). rclone's per-operation
/// low-level retries (10) and the AWS SDKs' 3 attempts bracket this.
pub const DEFAULT_RETRIES: u32 = 4;
/// First backoff before jitter; doubles per retry (AWS's "exponential backoff and jitter").
pub const DEFAULT_RETRY_BASE_MS: u64 = 500;
/// Longest single wait, also for a server's `Retry-After`: a throttling host that asks for
/// minutes must not park every transfer slot that long. When the retries run out the file is
/// recorded as failed, and the next run retries it.
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;

/// How often and how patiently to retry. Built from `[run]` in the configuration (the defaults,
/// with their reasoning, are the constants below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = try once).
    pub retries: u32,
    /// Wait before the first retry (before jitter); doubles with each further retry.
    #[serde(rename = "retry_base_ms", serialize_with = "ser_ms")]
    pub base: Duration,
    /// Longest single wait, including one asked for by `Retry-After`.
    #[serde(rename = "retry_max_ms", serialize_with = "ser_ms")]
    pub max: Duration,
    /// Longest one attempt may take, start to end (`[run] file_timeout_secs`); an attempt cut
    /// off is a retryable failure. `None`: no cap (stalls are caught by each store's read-idle
    /// timeout, so a large file may take as long as it needs).
    #[serde(rename = "file_timeout_secs", serialize_with = "ser_secs")]
    pub attempt_timeout: Option<Duration>,
}

fn ser_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
            base: Duration::from_millis(DEFAULT_RETRY_BASE_MS),
            max: Duration::from_millis(DEFAULT_RETRY_MAX_MS),
            attempt_timeout: None,
        }
    }
}

/// An operation that failed for good, with how many attempts it took.
#[derive(Debug)]
pub struct GaveUp {
    pub error: StorageError,
    pub attempts: u32,
}

impl GaveUp {
    /// The error, and the attempt count when there was more than one.
    pub fn reason(&self) -> String {
        if self.attempts > 1 {
            format!("{} (after {} attempts)", self.error, self.attempts)
        } else {
            self.error.to_string()
        }
    }
}

impl RetryPolicy {
    /// Whether to try again after `error`, given how many attempts failed so far and how many
    /// of them were integrity failures (this one included).
    pub fn should_retry(&self, error: &StorageError, failed: u32, integrity_failures: u32) -> bool {
        if failed > self.retries || !error.is_retryable() {
            return false;
        }
        // One more try can cure a transfer that was damaged in flight; a second mismatch is a
        // real disagreement.
        !(matches!(error, StorageError::Integrity { .. }) && integrity_failures > 1)
    }

    /// The wait before retry number `retry` (1-based), at least `hint` (`Retry-After`), never
    /// more than [`RetryPolicy::max`].
    pub fn delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
        let wait = half + Duration::from_millis(jitter_ms);
        wait.max(hint.unwrap_or_default()).min(self.max)
    }

    /// Run `op` until it succeeds, fails with an error that a retry cannot help, or runs out of
    /// retries. `what` names the operation in log lines; `retried` counts the retries made (the
    /// run's summary reports them: a run that needed many is a run on a struggling host).
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        retried: &AtomicU64,
        mut op: F,
    ) -> Result<T, GaveUp>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let mut failed = 0;
        let mut integrity = 0;
        loop {
            let attempt = match self.attempt_timeout {
                None => op().await,
                Some(limit) => tokio::time::timeout(limit, op()).await.unwrap_or_else(|_| {
                    Err(StorageError::message(
                        what,
                        true,
                        format!(
                            "attempt cut off after {} s (file_timeout_secs)",
                            limit.as_secs()
                        ),
                    ))
                }),
            };
            let error = match attempt {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            failed += 1;
            if matches!(error, StorageError::Integrity { .. }) {
                integrity += 1;
            }
            if !self.should_retry(&error, failed, integrity) {
                return Err(GaveUp {
                    error,
                    attempts: failed,
                });
            }
            let wait = self.delay(failed, error.retry_after());
            tracing::info!(
                file = %what,
                attempt = failed,
                "retrying in {} ms: {error}",
                wait.as_millis()
            );
            retried.fetch_add(1, Relaxed);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            base: Duration::from_millis(1),
            max: Duration::from_millis(20),
            attempt_timeout: None,
        }
    }

    fn transient() -> StorageError {
        StorageError::message("f", true, "connection reset")
    }

    fn integrity() -> StorageError {
        StorageError::Integrity {
            name: "f".into(),
            reason: "md5 differs".into(),
        }
    }

    /// Runs an operation that fails with `errors` in turn, then succeeds; returns the outcome
    /// and the number of calls (every call but the last was a counted retry).
    async fn attempts(p: RetryPolicy, errors: Vec<StorageError>) -> (Result<(), GaveUp>, u32) {
        let calls = AtomicU32::new(0);
        let retried = AtomicU64::new(0);
        let errors = std::sync::Mutex::new(errors.into_iter());
        let out = p
            .run("f", &retried, || {
                calls.fetch_add(1, Ordering::Relaxed);
                let next = errors.lock().unwrap().next();
                async move { next.map_or(Ok(()), Err) }
            })
            .await;
        let calls = calls.into_inner();
        assert_eq!(
            retried.into_inner(),
            u64::from(calls - 1),
            "retries counted"
        );
        (out, calls)
    }

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_limit() {
        let (out, calls) = attempts(policy(4), vec![transient(), transient()]).await;
        assert!(out.is_ok());
        assert_eq!(calls, 3);
        let (out, calls) = attempts(policy(2), (0..5).map(|_| transient()).collect()).await;
        let gave_up = out.unwrap_err();
        assert_eq!((calls, gave_up.attempts), (3, 3));
        assert!(
            gave_up.reason().contains("after 3 attempts"),
            "{}",
            gave_up.reason()
        );
        let (out, calls) = attempts(policy(0), vec![transient()]).await;
        assert!(out.is_err());
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn permanent_errors_fail_at_once() {
        for e in [
            StorageError::NotFound {
                name: "f".into(),
                location: "l".into(),
            },
            StorageError::message("f", false, "HTTP 400"),
            StorageError::InvalidName {
                name: "f".into(),
                reason: "r".into(),
            },
        ] {
            let (out, calls) = attempts(policy(4), vec![e]).await;
            assert_eq!(calls, 1);
            assert_eq!(out.unwrap_err().attempts, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_over_the_file_timeout_is_cut_off_and_retried() {
        let p = RetryPolicy {
            attempt_timeout: Some(Duration::from_secs(5)),
            ..policy(1)
        };
        let calls = AtomicU32::new(0);
        let out: Result<(), GaveUp> = p
            .run("f", &AtomicU64::new(0), || {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                async move {
                    if n == 0 {
                        // The first attempt hangs: cut off at 5 s, then retried.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok(())
                }
            })
            .await;
        assert!(out.is_ok());
        assert_eq!(calls.into_inner(), 2);
        let out: Result<(), GaveUp> = p
            .run("f", &AtomicU64::new(0), || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .await;
        let e = out.unwrap_err();
        assert!(e.reason().contains("file_timeout_secs"), "{}", e.reason());
        assert_eq!(e.attempts, 2);
    }

    #[tokio::test]
    async fn integrity_is_retried_once() {
        let (out, calls) = attempts(policy(4), vec![integrity()]).await;
        assert!(out.is_ok());
        assert_eq!(calls, 2);
        let (out, calls) = attempts(policy(4), vec![integrity(), integrity(), integrity()]).await;
        assert!(matches!(
            out.unwrap_err().error,
            StorageError::Integrity { .. }
        ));
        assert_eq!(calls, 2);
        // Other failures in between do not reset the integrity budget.
        let errs = vec![integrity(), transient(), integrity()];
        let (out, calls) = attempts(policy(4), errs).await;
        assert!(out.is_err());
        assert_eq!(calls, 3);
    }

    #[test]
    fn delays_grow_with_jitter_and_honour_retry_after() {
        let p = RetryPolicy {
            retries: 10,
            base: Duration::from_millis(400),
            max: Duration::from_secs(5),
            attempt_timeout: None,
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(200) && d1 <= Duration::from_millis(400));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(800) && d3 <= Duration::from_millis(1600));
            assert!(p.delay(30, None) <= Duration::from_secs(5));
            assert!(p.delay(30, None) >= Duration::from_millis(2500));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5),
            "capped at max"
        );
    }
}
