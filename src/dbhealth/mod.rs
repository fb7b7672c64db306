//! "Do no harm to the production database" (gh-ost's lesson): the run slows its database work
//! down by the database's own health, read two ways.
//!
//! * **Write latency** (`--max-db-latency`, `[run] max_db_latency`): every write round trip the
//!   run makes anyway (a batch of compare-and-swap updates, a ledger batch, a checkpoint) is
//!   timed — no extra round trip, a clock read before and after a batch of up to hundreds of
//!   files, nothing per file. A batch slower than the limit means the server is loaded.
//! * **Replication lag** (`--max-repl-lag`, `[run] max_repl_lag`): read by a probe once a
//!   second from `replSetGetStatus` (see [`lag`]); a server that does not report it is named once
//!   at start-up, and the run throttles by latency only.
//!
//! **What slows down.** Every database round trip of the bulk work passes [`Guard::admit`] first:
//! write batches (document updates, ledger records) *and* the pages of the walk (scans). Copies
//! of bytes are not database work and go on, until the bounded queues fill and backpressure
//! holds them too.
//!
//! **How (latency): pacing, proportional and multiplicative.** While the latency is within
//! the limit nothing waits (`admit` is one atomic load with no limit set, one lock otherwise).
//! The signal is the median latency of the last [`WINDOW`] write round trips, not each one: a
//! batch of hundreds of updates may be slow on its own on a quiet server, and one such batch is
//! no sign of load. The first time that median exceeds the limit, a *gap* is set between round
//! trips: twice the mean interval at which they were admitted so far (half the rate). From then
//! on, each reading from a round trip that *started after* the last change (so the round trips
//! already in flight count once, as TCP halves its window once per round trip) multiplies the
//! gap by `median / limit`, bounded to ×½…×2: slower than the limit, fewer round trips; faster,
//! more; near it, about as many — the latency settles near the limit. The gap stays below
//! [`MAX_GAP`], and below [`MIN_GAP`] the pacing ends. The paced round trip itself is the
//! periodic probe: while throttled one still goes out per gap (at least one per [`MAX_GAP`]),
//! and its latency says whether the server recovered. When no write was timed for a while (a
//! walk over work already done), the gap halves.
//!
//! **How (lag): pause and probe.** Lag does not follow from this run's own round trips (the
//! secondaries apply what everyone wrote), so while the last probe read a lag above the limit,
//! every round trip waits, and the probe keeps reading it every [`LAG_PROBE`].
//!
//! The progress display reads [`Guard::status`] ("throttled: db latency 340ms > 200ms"); the
//! summary and the metrics file read [`Guard::report`]: the write-batch latency distribution and
//! the time spent throttled by each reason.

pub mod lag;
mod stats;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Tokio's clock (the real one outside tests; a paused one in the unit tests).
use tokio::time::Instant;

use serde::Serialize;

pub use stats::{Clock, Latencies, Report};

/// Largest gap between paced round trips (also how often, at least, a throttled run probes).
pub const MAX_GAP: Duration = Duration::from_secs(1);
/// Below this gap the pacing ends.
pub const MIN_GAP: Duration = Duration::from_millis(2);
/// How often the replication lag is read.
pub const LAG_PROBE: Duration = Duration::from_secs(1);
/// With no write timed for this long (or 4 gaps), the gap shrinks as after a fast batch.
const STALE: Duration = Duration::from_secs(2);
/// Write latencies the signal is the median of.
pub const WINDOW: usize = 8;

/// The limits (`None`: not set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Limits {
    #[serde(serialize_with = "ser_ms")]
    pub max_db_latency: Option<Duration>,
    #[serde(serialize_with = "ser_ms")]
    pub max_repl_lag: Option<Duration>,
}

fn ser_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
        None => s.serialize_none(),
    }
}

/// Why the run was throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    DbLatency,
    ReplLag,
}

impl Reason {
    /// The label of the metric and the key of the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DbLatency => "db_latency",
            Reason::ReplLag => "repl_lag",
        }
    }
}

/// Pacing state (see the module documentation).
#[derive(Debug)]
struct Pace {
    /// 0: not throttled by latency.
    gap: Duration,
    /// When the next round trip may go.
    next: Instant,
    /// When the gap last grew: batches started before are not new evidence.
    changed: Instant,
    /// Round trips admitted since `since` (the rate before throttling).
    admitted: u64,
    since: Instant,
    /// When a write was last timed.
    observed: Instant,
    /// The last [`WINDOW`] write latencies (µs), whose median is the signal.
    recent: [u64; WINDOW],
    seen: usize,
}

impl Pace {
    /// Add a latency; the median of the recent ones.
    fn median(&mut self, latency: Duration) -> Duration {
        self.recent[self.seen % WINDOW] = latency.as_micros() as u64;
        self.seen += 1;
        let mut r: Vec<u64> = self.recent[..self.seen.min(WINDOW)].to_vec();
        r.sort_unstable();
        Duration::from_micros(r[r.len() / 2])
    }
}

/// The run's database guard: shared by every stage (see the module documentation).
#[derive(Debug)]
pub struct Guard {
    limits: Limits,
    pace: Mutex<Pace>,
    /// The signal: median latency of the recent writes, in microseconds.
    last_us: AtomicU64,
    /// Last replication lag read, in milliseconds, and whether it is above the limit.
    lag_ms: AtomicU64,
    lagging: AtomicBool,
    pub latencies: Latencies,
    pub clock: Clock,
    probe: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(Limits::default())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.probe.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.abort();
        }
    }
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        let now = Instant::now();
        Guard {
            limits,
            pace: Mutex::new(Pace {
                gap: Duration::ZERO,
                next: now,
                changed: now,
                admitted: 0,
                since: now,
                observed: now,
                recent: [0; WINDOW],
                seen: 0,
            }),
            last_us: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            lagging: AtomicBool::new(false),
            latencies: Latencies::default(),
            clock: Clock::default(),
            probe: Mutex::new(None),
        }
    }

    /// A guard for a run on `db`'s server: with `--max-repl-lag`, reads the lag once (saying at
    /// start-up how it is read, or that it cannot be) and keeps reading it in the background.
    pub async fn start(limits: Limits, db: &mongodb::Database) -> Arc<Guard> {
        let guard = Arc::new(Guard::new(limits));
        if let Some(max) = limits.max_db_latency {
            tracing::info!(
                "--max-db-latency {}: write batches slower than that slow the run's writes and \
                 scans down until they are faster again",
                fmt_ms(max)
            );
        }
        let Some(max) = limits.max_repl_lag else {
            return guard;
        };
        let admin = db.client().database("admin");
        match lag::read(&admin).await {
            Ok(r) => {
                tracing::info!(
                    "--max-repl-lag {}: reading replication lag from replSetGetStatus every {} s \
                     ({}; now {})",
                    fmt_ms(max),
                    LAG_PROBE.as_secs(),
                    r.describe(),
                    fmt_ms(r.lag)
                );
                guard.set_lag(r.lag);
            }
            Err(why) => {
                tracing::warn!(
                    "--max-repl-lag {}: the server does not report replication lag ({why}); \
                     throttling by write latency only{}",
                    fmt_ms(max),
                    if limits.max_db_latency.is_none() {
                        " (--max-db-latency is not set: not throttling)"
                    } else {
                        ""
                    }
                );
                return guard;
            }
        }
        let weak = Arc::downgrade(&guard);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LAG_PROBE).await;
                let r = lag::read(&admin).await;
                let Some(g) = weak.upgrade() else { return };
                match r {
                    Ok(r) => g.set_lag(r.lag),
                    // Keep the last reading; a lost connection shows in the writes anyway.
                    Err(why) => tracing::debug!("reading replication lag: {why}"),
                }
            }
        });
        *guard.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        guard
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn set_lag(&self, lag: Duration) {
        self.lag_ms.store(lag.as_millis() as u64, Relaxed);
        let over = self.limits.max_repl_lag.is_some_and(|m| lag > m);
        if self.lagging.swap(over, Relaxed) != over {
            self.clock.set(Reason::ReplLag, over);
            if over {
                tracing::warn!("throttled: replication lag {} > limit", fmt_ms(lag));
            } else {
                tracing::info!("replication lag {} within the limit again", fmt_ms(lag));
            }
        }
    }

    /// Wait until this run may make its next bulk database round trip (a write batch, a page of
    /// the walk).
    pub async fn admit(&self) {
        if self.limits.max_db_latency.is_none() && self.limits.max_repl_lag.is_none() {
            return;
        }
        while self.lagging.load(Relaxed) {
            tokio::time::sleep(LAG_PROBE / 4).await;
        }
        if self.limits.max_db_latency.is_none() {
            return;
        }
        let wait = {
            let mut p = self.pace.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            p.admitted += 1;
            if p.gap.is_zero() {
                return;
            }
            if now.duration_since(p.observed) > STALE.max(p.gap * 4) {
                p.observed = now;
                self.shrink(&mut p, 0.5);
            }
            let wait = p.next.saturating_duration_since(now);
            p.next = p.next.max(now) + p.gap;
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A write round trip that started at `started` has ended: time it.
    pub fn observe(&self, started: Instant) {
        let now = Instant::now();
        let latency = now.duration_since(started);
        self.latencies.record(latency);
        let Some(max) = self.limits.max_db_latency else {
            return;
        };
        let mut p = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        p.observed = now;
        let latency = p.median(latency);
        self.last_us.store(latency.as_micros() as u64, Relaxed);
        if started < p.changed {
            // In flight before the last change: not evidence about the current pace.
            return;
        }
        // How far off the limit, at most a factor of two a step.
        let ratio = (latency.as_secs_f64() / max.as_secs_f64()).clamp(0.5, 2.0);
        if latency > max {
            let gap = if p.gap.is_zero() {
                // Half the rate at which round trips went out so far.
                let interval = now.duration_since(p.since).as_secs_f64() / p.admitted.max(1) as f64;
                self.clock.set(Reason::DbLatency, true);
                Duration::from_secs_f64(interval * 2.0).max(MIN_GAP * 2)
            } else {
                p.gap.mul_f64(ratio)
            };
            p.gap = gap.min(MAX_GAP);
            p.changed = now;
        } else if !p.gap.is_zero() {
            self.shrink(&mut p, ratio);
            p.changed = now;
        }
    }

    /// Shrink the gap by `ratio` (< 1); end the pacing below [`MIN_GAP`].
    fn shrink(&self, p: &mut Pace, ratio: f64) {
        p.gap = p.gap.mul_f64(ratio);
        if p.gap < MIN_GAP {
            p.gap = Duration::ZERO;
            p.admitted = 0;
            p.since = Instant::now();
            self.clock.set(Reason::DbLatency, false);
        }
    }

    /// Time one write round trip (admitted first).
    pub async fn write<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.admit().await;
        let started = Instant::now();
        let r = f.await;
        self.observe(started);
        r
    }

    /// What the progress display says while throttled.
    pub fn status(&self) -> Option<String> {
        if self.lagging.load(Relaxed) {
            let max = self.limits.max_repl_lag.unwrap_or_default();
            let lag = Duration::from_millis(self.lag_ms.load(Relaxed));
            return Some(format!(
                "throttled: replication lag {} > {}",
                fmt_ms(lag),
                fmt_ms(max)
            ));
        }
        let max = self.limits.max_db_latency?;
        let gap = self.pace.lock().unwrap_or_else(|e| e.into_inner()).gap;
        if gap.is_zero() {
            return None;
        }
        let last = Duration::from_micros(self.last_us.load(Relaxed));
        let rel = if last > max { ">" } else { "≤" };
        Some(format!(
            "throttled: db latency {} {rel} {}, one round trip per {}",
            fmt_ms(last),
            fmt_ms(max),
            fmt_ms(gap)
        ))
    }

    /// The figures for the summary and the metrics file.
    pub fn report(&self) -> Report {
        Report::of(self)
    }
}

/// `340ms`, `1.5s`.
pub fn fmt_ms(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{}s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests;
