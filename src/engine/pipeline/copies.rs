//! The copy stage: records intents a batch at a time, runs up to `concurrency` copies at once
//! (each a task of its own), counts each outcome, and hands it with the references that waited
//! for it to the rewrite stage.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::rewrite::Record;
use super::{Plan, StageStopped};
use crate::engine::summary::FileItem;
use crate::engine::{Counters, Effects, FileJob, Outcome, RunState};
use crate::ledger::Intent;

/// A spawned task that is aborted when its handle is dropped: a copy stays cancelled with the
/// stream that awaits it (an error elsewhere in the run), as when it was polled inside it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Jobs the planner may queue ahead of the copies, and records ahead of the rewrite stage. The
/// copy stage records the intents of everything queued in one round trip, the rewrite stage the
/// outcomes of everything ready: a deeper queue means fewer, larger ledger writes, which is what
/// counts when the database is far or charges per command. 2,000 × 20 KiB on secantusd-rs
/// behind a proxy adding ~2.5 ms per round trip, queues of `concurrency` → 256: concurrency 8
/// --copy-only 1,014 round trips in 1.50 s → 175 in 0.75 s, full migration 1,648 in 1.65 s →
/// 169 in 0.76 s; concurrency 32 --copy-only 287 in 0.98 s → 152 in 0.79 s. 256 → 1,024 with
/// [`INTENT_LINGER`]: 17 intent batches for 2,000 files → 2.
pub const QUEUE: usize = 1024;

/// Intent batches recorded at once: the one being copied and the next.
const INTENTS_AHEAD: usize = 2;

/// How long an intent batch waits for more jobs after its first, unless it fills up sooner.
/// Taking whatever was ready wrote a batch per ~120 files when the copies kept up with the walk
/// (17 inserts for 2,000 files); the wait overlaps the previous batch's copies
/// ([`INTENTS_AHEAD`]), so it costs only the first batch. On the Python test server, 2,000 ×
/// 20 KiB full migration, database CPU 2.4 → 1.6 s (`bench/run --only dbcost`).
const INTENT_LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Record intents a batch (up to `queue`, or what came within [`INTENT_LINGER`]) at a time, then copy up to `plan.concurrency` files at
/// once — unless the run has stopped meanwhile ([`RunState::stop`]); hand each outcome, with the
/// references that waited for it, to the rewrite stage.
pub(super) async fn copy_stage(
    rx: mpsc::Receiver<FileJob>,
    effects: Arc<dyn Effects>,
    state: Arc<RunState>,
    records: mpsc::Sender<Record>,
    plan: &Plan,
    queue: usize,
) -> anyhow::Result<()> {
    let (concurrency, destination, limits) = (
        plan.concurrency,
        plan.destination.identity.clone(),
        plan.limits,
    );
    let c = &state.counters;
    tokio_stream::StreamExt::chunks_timeout(ReceiverStream::new(rx), queue, INTENT_LINGER)
        .map(|jobs| {
            let effects = effects.clone();
            let destination = destination.clone();
            async move {
                let intents: Vec<Intent> = jobs.iter().map(|j| j.intent(&destination)).collect();
                effects.plan(&intents).await?;
                Ok::<_, anyhow::Error>(futures::stream::iter(jobs.into_iter().map(Ok)))
            }
        })
        // The next batch's intents are written while this batch's copies run; a batch's copies
        // still start only once its own intents are recorded. One batch at a time, the copies
        // drained during every intent round trip.
        .buffered(INTENTS_AHEAD)
        .try_flatten()
        .map_ok(|job| {
            let effects = effects.clone();
            let state = state.clone();
            async move {
                Counters::add(&c.files_in_flight, 1);
                // Each copy is a task of its own, so the transfers' CPU work (MD5, TLS, body
                // parsing) spreads over every worker thread. Polled inside this stream, all of
                // it ran on the one thread driving the run: 20 × 20 MiB → fs at 145 MB/s with
                // one core busy hashing (bench/run, README "Benchmarks").
                let mut task = AbortOnDrop(tokio::spawn(async move {
                    let outcome = match state.stop(&limits) {
                        Some(why) => {
                            let _ = state.stopped_copies.set(why);
                            Outcome::NotStarted
                        }
                        None => effects.copy(&job, &state.counters).await,
                    };
                    (job, outcome)
                }));
                let joined = (&mut task.0).await;
                c.files_in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                match joined {
                    Ok(done) => Ok::<_, anyhow::Error>(done),
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => Err(anyhow::anyhow!("a copy task was cancelled: {e}")),
                }
            }
        })
        .try_buffer_unordered(concurrency)
        .try_for_each(|(job, outcome)| {
            let records = records.clone();
            let state = state.clone();
            async move {
                let (outcome, refs) = state.dedup.finish(&job.name, &job.target, outcome);
                count(&state, &job.name, &outcome, refs.len() as u64);
                records
                    .send(Record::Copied { job, outcome, refs })
                    .await
                    .map_err(|_| StageStopped("rewrite").into())
            }
        })
        .await
}

/// Count a copy's outcome in the run's counters, log it, and keep the item an operator must look
/// at (missing, failed, collision); a failure that stops the run ([`Outcome::Stopped`]) stops it.
pub(super) fn count(state: &RunState, name: &str, outcome: &Outcome, references: u64) {
    let c = &state.counters;
    let item = |reason: &String| FileItem {
        name: name.to_string(),
        reason: reason.clone(),
        references,
    };
    match outcome {
        Outcome::Verified {
            size,
            skipped: false,
            ..
        } => {
            Counters::add(&c.files_copied, 1);
            Counters::add(&c.bytes_copied, *size);
        }
        Outcome::Verified { skipped: true, .. } => Counters::add(&c.files_skipped, 1),
        Outcome::Missing { reason } => {
            tracing::warn!(file = %name, "missing at the source: {reason}");
            Counters::add(&c.files_missing, 1);
            c.missing(item(reason));
        }
        Outcome::Failed { reason } => {
            tracing::error!(file = %name, "copy failed: {reason}");
            Counters::add(&c.files_failed, 1);
            c.failed(item(reason));
        }
        Outcome::Stopped { reason, why } => {
            tracing::error!(file = %name, "copy failed, stopping the run: {reason}");
            Counters::add(&c.files_failed, 1);
            let _ = state.fatal.set(format!("{why}: {reason}"));
            c.failed(item(reason));
        }
        Outcome::Collision { reason } => {
            tracing::error!(file = %name, "{reason}");
            Counters::add(&c.files_collisions, 1);
            c.collision(item(reason));
        }
        Outcome::Planned | Outcome::NotStarted => {}
    }
}
