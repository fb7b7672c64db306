//! The effects of `migrate --estimate`: a dry run that also sizes the work. Nothing is written
//! anywhere; the walk, the ledger reads and the plan are the real ones, so the estimate covers
//! exactly what the next live run would copy (files the ledger already verified are skipped).
//!
//! Sizing: every planned file is probed at its source with `stat` (the run's `--tps-limit`
//! applies: the sources are throttled stores), or with `--sample N` only a uniform random sample
//! of N files (reservoir sampling over the stream of planned files, so memory is O(N), never
//! O(files)), probed after the walk. Totals for a sample are projected from its mean.
//!
//! Rate: unless the operator states one (`--assume-rate`), up to [`RATE_FILES`] of the probed
//! files (a uniform random subset again) are read in full from the source at the run's
//! concurrency, bytes discarded, and the observed files/s and bytes/s give the projected
//! duration of the copy's *read* side. Writing to the destination and rewriting references come
//! on top; the report says so rather than guess them.
//!
//! Memory: the projected peak of a live run at the chosen concurrency is this process's own
//! resident size after the walk (the walk, the ledger and the client pools a live run has too)
//! plus, for the `concurrency` largest files, what each transfer buffers: the destination's
//! [`put_buffer`](crate::storage::ObjectStore::put_buffer), or the file's size when smaller.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::Document;
use rand::Rng;
use serde::Serialize;

use super::checkpoint::Checkpoint;
use crate::engine::cas::Settled;
use crate::engine::{Counters, Effects, FileJob, Outcome, Stores};
use crate::ledger::{FileRecord, FileResult, Intent, RefChange, RefState};
use crate::storage::{GetOptions, StorageError};

/// Files read in full to measure the source's rate.
pub const RATE_FILES: usize = 64;
/// Largest files listed in the report.
pub const LARGEST: usize = 10;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct EstimateOptions {
    /// Probe only a random sample of this many files.
    pub sample: Option<usize>,
    /// A stated rate instead of a measured one.
    pub assume: Option<Rate>,
    /// The run's concurrency (transfers at once).
    pub concurrency: usize,
}

/// A copy rate: files per second, bytes per second, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rate {
    pub files_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
}

impl Rate {
    /// Seconds to copy `files` files of `bytes` bytes: the slower of the two limits.
    pub fn duration(&self, files: u64, bytes: u64) -> Option<f64> {
        let by_files = self.files_per_sec.map(|r| files as f64 / r);
        let by_bytes = self.bytes_per_sec.map(|r| bytes as f64 / r);
        match (by_files, by_bytes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Files and bytes of one group (a class's File field, a kind of name).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub files: u64,
    pub bytes: u64,
    pub missing: u64,
}

/// A file by size (largest-files list): ordered by size, then name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct LargeFile {
    pub size: u64,
    pub name: String,
    pub field: String,
}

/// One file as the estimate remembers it (in the sample or the rate subset).
#[derive(Debug, Clone)]
struct Pick {
    job: FileJob,
    size: Option<u64>,
}

#[derive(Default)]
struct Tally {
    /// Files planned (offered to `copy`).
    seen: u64,
    probed: u64,
    probe_errors: u64,
    by_field: BTreeMap<String, Group>,
    by_kind: BTreeMap<&'static str, Group>,
    /// Min-heap (by `Reverse`) of the largest files seen.
    largest: BinaryHeap<std::cmp::Reverse<LargeFile>>,
    /// `--sample`: the reservoir of jobs still to probe.
    sample: Vec<FileJob>,
    /// Found files a rate measurement may read (a reservoir too).
    readable: Vec<Pick>,
    readable_seen: u64,
}

/// The estimate's findings (see the module documentation).
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Files the run would copy.
    pub files: u64,
    /// Files whose size was probed (all of them, or the sample).
    pub probed: u64,
    pub sampled: bool,
    /// Bytes of the probed files that exist at the source.
    pub probed_bytes: u64,
    /// Projected bytes of all `files` (equal to `probed_bytes` without a sample).
    pub bytes: u64,
    /// Probed files missing at the source.
    pub missing: u64,
    /// Projected missing files among all `files`.
    pub missing_projected: u64,
    /// Probes that failed otherwise (unreachable source...).
    pub probe_errors: u64,
    pub by_field: BTreeMap<String, Group>,
    pub by_kind: BTreeMap<&'static str, Group>,
    pub largest: Vec<LargeFile>,
    /// The rate used: measured or stated.
    pub rate: Option<Rate>,
    pub rate_measured: Option<Measured>,
    pub projected_secs: Option<f64>,
    pub concurrency: usize,
    pub memory: Memory,
}

/// A rate measured by reading files in full.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub files: u64,
    pub bytes: u64,
    pub secs: f64,
    pub failed: u64,
}

/// Projected peak memory of a live run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// This process's resident size after the walk (absent where it cannot be read).
    pub base_bytes: Option<u64>,
    /// What the `concurrency` largest transfers buffer at once.
    pub transfers_bytes: u64,
    /// Per transfer at most (the destination's `put` buffer).
    pub per_transfer_bytes: u64,
}

/// The [`Effects`] of an estimate.
pub struct Estimator {
    stores: Stores,
    opts: EstimateOptions,
    tally: Mutex<Tally>,
}

impl Estimator {
    pub fn new(stores: Stores, opts: EstimateOptions) -> Estimator {
        Estimator {
            stores,
            opts,
            tally: Mutex::new(Tally::default()),
        }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The size of a file at its source: `Ok(None)` when it is not there.
    async fn probe(&self, job: &FileJob) -> Result<Option<u64>, StorageError> {
        let Some(store) = self.stores.source_for(job.kind) else {
            return Err(StorageError::message(
                &job.name,
                false,
                "no source configured",
            ));
        };
        match store.stat(&job.name).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if e.is_not_found() => Ok(None),
            // An HTTP source may only know the file by the url stored beside the name.
            Err(e) if job.url_hint.is_some() => {
                let opts = GetOptions {
                    url_hint: job.url_hint.clone(),
                    ..Default::default()
                };
                match store.get(&job.name, &opts).await {
                    Ok(got) => got.size.map(Some).ok_or(e),
                    Err(g) if g.is_not_found() => Ok(None),
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Count a probed file.
    fn count(&self, job: &FileJob, probed: &Result<Option<u64>, StorageError>) {
        let mut guard = self.tally();
        let t = &mut *guard;
        t.probed += 1;
        let size = match probed {
            Err(_) => {
                t.probe_errors += 1;
                return;
            }
            Ok(size) => *size,
        };
        for g in [
            t.by_field.entry(job.field.clone()).or_default(),
            t.by_kind.entry(job.kind.as_str()).or_default(),
        ] {
            g.files += 1;
            match size {
                Some(s) => g.bytes += s,
                None => g.missing += 1,
            }
        }
        let Some(size) = size else { return };
        t.largest.push(std::cmp::Reverse(LargeFile {
            size,
            name: job.name.clone(),
            field: job.field.clone(),
        }));
        if t.largest.len() > LARGEST.max(self.opts.concurrency) {
            t.largest.pop();
        }
        t.readable_seen += 1;
        let pick = Pick {
            job: job.clone(),
            size: Some(size),
        };
        let seen = t.readable_seen;
        reservoir(&mut t.readable, RATE_FILES, seen, pick);
    }

    /// After the run: probe the sample (if any), measure the rate, and sum it all up.
    pub async fn finish_estimate(&self, files: u64, put_buffer: u64) -> Estimate {
        let sample = std::mem::take(&mut self.tally().sample);
        let concurrency = self.opts.concurrency.max(1);
        futures::stream::iter(sample)
            .for_each_concurrent(concurrency, |job| async move {
                let probed = self.probe(&job).await;
                self.count(&job, &probed);
            })
            .await;
        let measured = match self.opts.assume {
            Some(_) => None,
            None => Some(self.measure(concurrency).await),
        };
        let rate = self.opts.assume.or_else(|| {
            let m = measured.as_ref().filter(|m| m.files > 0 && m.secs > 0.0)?;
            Some(Rate {
                files_per_sec: Some(m.files as f64 / m.secs),
                bytes_per_sec: Some(m.bytes as f64 / m.secs),
            })
        });
        let t = self.tally();
        let probed_bytes: u64 = t.by_kind.values().map(|g| g.bytes).sum();
        let missing: u64 = t.by_kind.values().map(|g| g.missing).sum();
        let found = t.probed.saturating_sub(t.probe_errors);
        let scale = |n: u64| match found {
            0 => 0,
            f => (n as f64 * files as f64 / f as f64).round() as u64,
        };
        let (bytes, missing_projected) = match self.opts.sample {
            Some(_) => (scale(probed_bytes), scale(missing)),
            None => (probed_bytes, missing),
        };
        let mut largest: Vec<LargeFile> = t.largest.iter().map(|r| r.0.clone()).collect();
        largest.sort_by(|a, b| b.cmp(a));
        let transfers_bytes = largest
            .iter()
            .take(concurrency)
            .map(|s| s.size.min(put_buffer))
            .sum();
        largest.truncate(LARGEST);
        let present = files.saturating_sub(missing_projected);
        Estimate {
            files,
            probed: t.probed,
            sampled: self.opts.sample.is_some(),
            probed_bytes,
            bytes,
            missing,
            missing_projected,
            probe_errors: t.probe_errors,
            by_field: t.by_field.clone(),
            by_kind: t.by_kind.clone(),
            largest,
            projected_secs: rate.and_then(|r| r.duration(present, bytes)),
            rate,
            rate_measured: measured,
            concurrency,
            memory: Memory {
                base_bytes: resident_bytes(),
                transfers_bytes,
                per_transfer_bytes: put_buffer,
            },
        }
    }

    /// Read the rate subset in full at `concurrency`, discarding the bytes.
    async fn measure(&self, concurrency: usize) -> Measured {
        let picks = std::mem::take(&mut self.tally().readable);
        let started = Instant::now();
        let results: Vec<Option<u64>> = futures::stream::iter(picks)
            .map(|p| async move { self.read_all(&p).await.ok() })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let secs = started.elapsed().as_secs_f64();
        Measured {
            files: results.iter().flatten().count() as u64,
            bytes: results.iter().flatten().sum(),
            failed: results.iter().filter(|r| r.is_none()).count() as u64,
            secs,
        }
    }

    async fn read_all(&self, pick: &Pick) -> Result<u64, StorageError> {
        let store = self
            .stores
            .source_for(pick.job.kind)
            .ok_or_else(|| StorageError::message(&pick.job.name, false, "no source"))?;
        let opts = GetOptions {
            url_hint: pick.job.url_hint.clone(),
            ..Default::default()
        };
        let got = store.get(&pick.job.name, &opts).await?;
        let read = got
            .stream
            .try_fold(0u64, |n, chunk| async move { Ok(n + chunk.len() as u64) })
            .await?;
        match pick.size {
            Some(s) if s != read => Err(StorageError::message(
                &pick.job.name,
                false,
                format!("read {read} bytes, stat said {s}"),
            )),
            _ => Ok(read),
        }
    }
}

/// Algorithm R: keep a uniform sample of `cap` items of a stream whose `seen`-th item is `item`.
fn reservoir<T>(kept: &mut Vec<T>, cap: usize, seen: u64, item: T) {
    if kept.len() < cap {
        kept.push(item);
        return;
    }
    let j = rand::rng().random_range(0..seen);
    if let Some(slot) = usize::try_from(j).ok().and_then(|j| kept.get_mut(j)) {
        *slot = item;
    }
}

/// This process's resident set size (Linux `/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// An estimate moves no file (the default refuses).
impl crate::engine::quarantine::Relocate for Estimator {}

#[async_trait]
impl Effects for Estimator {
    async fn begin(&self, _info: Document) -> anyhow::Result<()> {
        Ok(())
    }

    async fn plan(&self, _intents: &[Intent<'_>]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn copy(&self, job: &FileJob, _counters: &Counters) -> Outcome {
        if let Some(cap) = self.opts.sample {
            let mut t = self.tally();
            t.seen += 1;
            let seen = t.seen;
            reservoir(&mut t.sample, cap, seen, job.clone());
            return Outcome::Planned;
        }
        let probed = self.probe(job).await;
        self.count(job, &probed);
        match probed {
            Ok(Some(_)) => Outcome::Planned,
            Ok(None) => Outcome::Missing {
                reason: "not found at the source (estimate probe)".into(),
            },
            Err(e) => Outcome::Failed {
                reason: format!("estimate probe: {e}"),
            },
        }
    }

    async fn record_files(&self, _results: &[FileResult<'_>]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn rewrite(&self, _collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled> {
        Ok(vec![(RefState::Pending, None); changes.len()])
    }

    async fn restore(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled> {
        self.rewrite(collection, changes).await
    }

    async fn remove_copies(
        &self,
        files: &[FileRecord],
        _targets: &[crate::scan::Target],
    ) -> anyhow::Result<Vec<bool>> {
        Ok(vec![true; files.len()])
    }

    async fn checkpoint(&self, _checkpoint: Option<&Checkpoint>) -> anyhow::Result<()> {
        Ok(())
    }

    async fn finish(&self, _summary: Document, _exit_code: i32) -> anyhow::Result<()> {
        Ok(())
    }

    fn dry_run(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_takes_the_slower_limit() {
        let r = Rate {
            files_per_sec: Some(10.0),
            bytes_per_sec: Some(1000.0),
        };
        assert_eq!(r.duration(100, 1000), Some(10.0));
        assert_eq!(r.duration(10, 100_000), Some(100.0));
        let files_only = Rate {
            files_per_sec: Some(4.0),
            bytes_per_sec: None,
        };
        assert_eq!(files_only.duration(8, u64::MAX), Some(2.0));
        assert_eq!(Rate::default().duration(1, 1), None);
    }

    #[test]
    fn the_reservoir_keeps_at_most_its_cap_and_every_item_can_be_kept() {
        let mut hits = [0u32; 20];
        for _ in 0..2000 {
            let mut kept = Vec::new();
            for (i, item) in (0..20).enumerate() {
                reservoir(&mut kept, 5, i as u64 + 1, item);
            }
            assert_eq!(kept.len(), 5);
            for k in kept {
                hits[k] += 1;
            }
        }
        // Each item is kept with probability 5/20: 500 of 2000 on average.
        for (item, h) in hits.iter().enumerate() {
            assert!((350..650).contains(h), "item {item} kept {h} times of 2000");
        }
    }
}
