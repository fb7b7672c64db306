//! What the guard measured, in constant memory: the write-batch latency distribution (a
//! histogram of log-spaced buckets) and the time spent throttled by each reason.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Guard, Reason};

/// Buckets of the histogram: bucket `i` holds latencies up to `FIRST_US × 1.25^i`.
const BUCKETS: usize = 64;
/// Upper bound of the first bucket, in microseconds (100 µs … 100 µs × 1.25^63 ≈ 13 min).
const FIRST_US: f64 = 100.0;
const GROWTH: f64 = 1.25;

/// Write round-trip latencies.
#[derive(Debug)]
pub struct Latencies {
    counts: [AtomicU64; BUCKETS],
    max_us: AtomicU64,
    total_us: AtomicU64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            max_us: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if (us as f64) <= FIRST_US {
        return 0;
    }
    let i = ((us as f64 / FIRST_US).ln() / GROWTH.ln()).ceil() as usize;
    i.min(BUCKETS - 1)
}

fn upper_us(i: usize) -> f64 {
    FIRST_US * GROWTH.powi(i as i32)
}

impl Latencies {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        self.counts[bucket_of(us)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
        self.total_us.fetch_add(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket (within 25 %), never above
    /// the largest latency seen; `None` before any.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let us = upper_us(i).min(self.max_us.load(Relaxed) as f64);
                return Some(Duration::from_micros(us as u64));
            }
        }
        None
    }
}

/// Time throttled, per reason.
#[derive(Debug, Default)]
pub struct Clock {
    /// Finished stretches, in microseconds: latency, lag.
    total_us: [AtomicU64; 2],
    /// Start of the stretch in progress, per reason.
    since: Mutex<[Option<Instant>; 2]>,
}

fn slot(r: Reason) -> usize {
    match r {
        Reason::DbLatency => 0,
        Reason::ReplLag => 1,
    }
}

impl Clock {
    /// Start (`on`) or end a throttled stretch.
    pub fn set(&self, r: Reason, on: bool) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut since[slot(r)];
        match (on, *s) {
            (true, None) => *s = Some(Instant::now()),
            (false, Some(t)) => {
                self.total_us[slot(r)].fetch_add(t.elapsed().as_micros() as u64, Relaxed);
                *s = None;
            }
            _ => {}
        }
    }

    /// Time throttled for `r` so far, the stretch in progress included.
    pub fn throttled(&self, r: Reason) -> Duration {
        let since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let now = since[slot(r)].map_or(Duration::ZERO, |t| t.elapsed());
        Duration::from_micros(self.total_us[slot(r)].load(Relaxed)) + now
    }
}

/// The guard's figures, as the summary has them (`database`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Write round trips timed (document updates, ledger batches, checkpoints).
    pub write_batches: u64,
    /// Their latency: median, 90th percentile (each within 25 %), mean and largest.
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_mean: f64,
    pub latency_ms_max: f64,
    /// Seconds the run was slowed down, by reason.
    pub throttled_secs: Throttled,
    /// The limits in force.
    #[serde(flatten)]
    pub limits: super::Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throttled {
    pub db_latency: f64,
    pub repl_lag: f64,
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| (d.as_secs_f64() * 10_000.0).round() / 10.0)
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl Report {
    pub(super) fn of(g: &Guard) -> Report {
        let l = &g.latencies;
        let n = l.count();
        let mean = (n > 0).then(|| Duration::from_micros(l.total_us.load(Relaxed) / n));
        Report {
            write_batches: n,
            latency_ms_p50: ms(l.quantile(0.5)),
            latency_ms_p90: ms(l.quantile(0.9)),
            latency_ms_mean: ms(mean),
            latency_ms_max: ms((n > 0).then(|| Duration::from_micros(l.max_us.load(Relaxed)))),
            throttled_secs: Throttled {
                db_latency: secs(g.clock.throttled(Reason::DbLatency)),
                repl_lag: secs(g.clock.throttled(Reason::ReplLag)),
            },
            limits: g.limits,
        }
    }

    /// Whether anything was throttled.
    pub fn throttled(&self) -> bool {
        self.throttled_secs.db_latency > 0.0 || self.throttled_secs.repl_lag > 0.0
    }
}
