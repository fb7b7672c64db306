//! The progress display of `migrate` on a terminal: the phase, one bar for the walk (objects scanned of the
//! estimated total, with an ETA) and a line of counts — files copied, bytes and rate, in flight,
//! references rewritten, missing, failed, conflicts — and, while the database guard holds the
//! run back, why ("throttled: db latency 340ms > 200ms"). It reads the engine's live counters;
//! the engine knows nothing of it.

use std::sync::Arc;
use std::time::Duration;

use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::style::ProgressStyle;

use super::migrate::human_bytes;
use crate::engine::{Counters, RunState};

/// Redraw interval.
const TICK: Duration = Duration::from_millis(200);

/// Show progress until the returned task is aborted. `total_objects` is the estimated number of
/// objects the walk will read (0 when unknown).
pub fn spawn(state: Arc<RunState>, total_objects: u64) -> tokio::task::JoinHandle<()> {
    let span = tracing::info_span!("migrate", indicatif.pb_show = tracing::field::Empty);
    let style = ProgressStyle::with_template(
        "{spinner} [{bar:30}] {pos}/{len} objects · ETA {eta} · {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    span.pb_set_style(&style);
    span.pb_set_length(total_objects);
    let entered = span.clone();
    tokio::spawn(async move {
        let _guard = entered.enter();
        loop {
            draw(&span, &state);
            tokio::time::sleep(TICK).await;
        }
    })
}

fn draw(span: &Span, state: &RunState) {
    let c = &state.counters;
    let g = Counters::get;
    let secs = state.started.elapsed().as_secs_f64().max(0.001);
    let bytes = g(&c.bytes_copied);
    span.pb_set_position(g(&c.objects));
    let phase = match (
        state.is_interrupted(),
        state.walked.load(std::sync::atomic::Ordering::Relaxed),
    ) {
        (true, _) => "stopping: finishing what is in flight",
        (false, false) => "scanning, copying, rewriting",
        (false, true) => "scan done; finishing copies and rewrites",
    };
    let throttled = state.db.status();
    // On a line of its own: it can be long.
    let phase = match &throttled {
        Some(t) => format!("{phase}\n  {t}"),
        None => phase.to_string(),
    };
    span.pb_set_message(&format!(
        "{phase}\n  files: {} copied ({}, {}/s), {} in flight, {} done before, {} missing, {} failed · references: {} rewritten, {} conflicts",
        g(&c.files_copied),
        human_bytes(bytes),
        human_bytes((bytes as f64 / secs) as u64),
        g(&c.files_in_flight),
        g(&c.files_skipped),
        g(&c.files_missing),
        g(&c.files_failed),
        g(&c.refs_rewritten),
        g(&c.refs_conflict),
    ));
}
