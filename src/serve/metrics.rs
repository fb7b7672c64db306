//! The gateway's counters, and the separate listener that shows them: `GET /metrics`
//! (Prometheus text format) and `GET /healthz` (200 while serving, 503 once draining). Off
//! unless `--metrics-listen` is given, so two gateways on one host never fight over a port.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the gateway counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests that are not file reads (passed through as they are).
    pub passed: AtomicU64,
    /// File reads the upstream answered without a copy (hits, and its own errors).
    pub hits: AtomicU64,
    /// Misses answered after a copy (or after finding the file copied meanwhile).
    pub copied: AtomicU64,
    /// Misses absent from the old store too (or deleted through the gateway): the upstream's 404.
    pub absent: AtomicU64,
    /// Misses that could not be copied: 502 / 504.
    pub failed: AtomicU64,
    /// Misses refused because `max_copies` copies were running: 503.
    pub busy: AtomicU64,
    /// Answers from the old store itself (HEAD of a file not copied yet, `--dry-run`,
    /// `stream_above`).
    pub from_source: AtomicU64,
    /// DELETEs passed on and recorded.
    pub deleted: AtomicU64,
    /// The upstream could not be reached: 502.
    pub upstream_errors: AtomicU64,
    pub bytes_copied: AtomicU64,
    /// Copies finished, and their total duration in microseconds.
    pub copies: AtomicU64,
    pub copy_micros: AtomicU64,
    pub copies_in_flight: AtomicU64,
    /// Set when the gateway stops accepting requests.
    pub draining: AtomicBool,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Metrics {
    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// The share of file reads answered without a copy: the cut-over signal (1 once every file
    /// asked for is in the new store).
    pub fn served_without_copy(&self) -> f64 {
        let hits = get(&self.hits) as f64;
        let all = hits + (get(&self.copied) + get(&self.from_source) + get(&self.failed)) as f64;
        if all == 0.0 { 1.0 } else { hits / all }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP pfm_serve_requests_total Requests through the gateway, by outcome.\n\
             # TYPE pfm_serve_requests_total counter"
        );
        for (outcome, n) in [
            ("passed_through", &self.passed),
            ("hit", &self.hits),
            ("copied_in_flight", &self.copied),
            ("absent", &self.absent),
            ("failed", &self.failed),
            ("busy", &self.busy),
            ("from_source", &self.from_source),
            ("deleted", &self.deleted),
            ("upstream_error", &self.upstream_errors),
        ] {
            let _ = writeln!(
                out,
                "pfm_serve_requests_total{{outcome=\"{outcome}\"}} {}",
                get(n)
            );
        }
        let secs = get(&self.copy_micros) as f64 / 1e6;
        let _ = write!(
            out,
            "# HELP pfm_serve_bytes_copied_total Bytes copied from the old store to the new one.\n\
             # TYPE pfm_serve_bytes_copied_total counter\n\
             pfm_serve_bytes_copied_total {}\n\
             # HELP pfm_serve_copy_seconds Duration of the copies made on a miss.\n\
             # TYPE pfm_serve_copy_seconds summary\n\
             pfm_serve_copy_seconds_count {}\n\
             pfm_serve_copy_seconds_sum {secs}\n\
             # HELP pfm_serve_copies_in_flight Copies running now.\n\
             # TYPE pfm_serve_copies_in_flight gauge\n\
             pfm_serve_copies_in_flight {}\n\
             # HELP pfm_serve_served_without_copy_ratio Share of file reads the new store answered.\n\
             # TYPE pfm_serve_served_without_copy_ratio gauge\n\
             pfm_serve_served_without_copy_ratio {}\n\
             # EOF\n",
            get(&self.bytes_copied),
            get(&self.copies),
            get(&self.copies_in_flight),
            self.served_without_copy(),
        );
        out
    }

    /// The summary recorded with the run when the gateway stops.
    pub fn summary(&self) -> mongodb::bson::Document {
        let n = |a: &AtomicU64| get(a) as i64;
        mongodb::bson::doc! {
            "serve": {
                "passed_through": n(&self.passed),
                "hits": n(&self.hits),
                "copied_in_flight": n(&self.copied),
                "absent": n(&self.absent),
                "failed": n(&self.failed),
                "busy": n(&self.busy),
                "from_source": n(&self.from_source),
                "deleted": n(&self.deleted),
                "upstream_errors": n(&self.upstream_errors),
                "bytes_copied": n(&self.bytes_copied),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_outcome_and_the_share() {
        let m = Metrics::default();
        Metrics::add(&m.hits, 3);
        Metrics::add(&m.copied, 1);
        let text = m.render();
        assert!(
            text.contains("pfm_serve_requests_total{outcome=\"hit\"} 3"),
            "{text}"
        );
        assert!(text.contains("pfm_serve_requests_total{outcome=\"copied_in_flight\"} 1"));
        assert!(
            text.contains("pfm_serve_served_without_copy_ratio 0.75"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
