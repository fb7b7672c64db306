//! Which orphans `audit --quarantine` moves: those of the store's listing that the walk after it
//! found no reference to, last modified at least `--min-age` ago, and that a *second* walk,
//! started after the first one ended, still finds no reference to; that second join is done
//! right before the moves, in bounded memory like the audit itself (both sides sorted on disk).
//! Right before each batch of moves the database is asked whether a top-level File field names
//! one of them now ([`referenced_top_level`]).

use std::time::{Duration, SystemTime};

use mongodb::Database;

use super::{Action, Outcome, Step};
use crate::audit::{Audit, Finding, Options, join, sort::Sorter};
use crate::engine::Effects;
use crate::ledger::Ledger;
use crate::scan::Target;
use crate::scan::lookup::referenced_top_level;
use crate::scan::refs::for_each_ref;
use crate::storage::ObjectStore;

/// Confirmed orphans per database check and batch of moves.
const BATCH: usize = 256;

type Report<'r> = dyn FnMut(&Step, &Outcome) -> anyhow::Result<()> + 'r;

/// The orphans of one store, checked against the app's references.
pub struct Orphans<'a> {
    pub db: &'a Database,
    pub targets: &'a [Target],
    /// Documents per page of the walks.
    pub page_size: u32,
    pub effects: &'a dyn Effects,
    pub ledger: &'a Ledger,
    pub store: &'a dyn ObjectStore,
    pub min_age: Duration,
    pub run_bytes: usize,
}

impl Orphans<'_> {
    /// Take back interrupted moves, then move every confirmed orphan. Returns how many orphans the
    /// second walk found referenced again (kept).
    pub async fn run(&self, report: &mut Report<'_>) -> anyhow::Result<u64> {
        super::take_back_unfinished(self.effects, self.ledger, self.store, report).await?;
        let opts = Options {
            run_bytes: self.run_bytes,
            ..Options::default()
        };
        let cutoff = SystemTime::now()
            .checked_sub(self.min_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut first = Audit::new(&opts);
        let mut recheck = Audit::new(&opts);
        tracing::info!("listing {}", self.store.describe());
        first.list(self.store, &mut |_| Ok(())).await?;
        for_each_ref(self.db, self.targets, self.page_size, |r| {
            Ok(first.add_ref(r)?)
        })
        .await?;
        let mut young = 0u64;
        first.finish(&mut |f| match f {
            // An unknown age is never old enough.
            Finding::Orphan {
                name,
                size,
                modified,
            } if modified.is_some_and(|m| m <= cutoff) => {
                recheck.add_stored(name, *size, *modified)
            }
            Finding::Orphan { .. } => {
                young += 1;
                Ok(())
            }
            _ => Ok(()),
        })?;
        let (candidates, _, _) = recheck.counts();
        tracing::info!(
            "{candidates} orphans older than {}, {young} younger (left alone); walking again",
            humantime::format_duration(self.min_age)
        );
        pause_for_tests("PFM_TEST_PAUSE_BEFORE_RECHECK").await;
        for_each_ref(self.db, self.targets, self.page_size, |r| {
            Ok(recheck.add_ref(r)?)
        })
        .await?;
        let mut confirmed = Sorter::new(&opts.temp_dir, self.run_bytes);
        recheck.finish(&mut |f| match f {
            Finding::Orphan {
                name,
                size,
                modified,
            } => confirmed.push(name, &join::stored_payload(*size, *modified)),
            _ => Ok(()),
        })?;
        let mut kept = candidates - confirmed.len();
        pause_for_tests("PFM_TEST_PAUSE_BEFORE_MOVES").await;
        let mut batch = Vec::with_capacity(BATCH);
        for rec in confirmed.finish()? {
            batch.push(rec?);
            if batch.len() == BATCH {
                kept += self.move_batch(&mut batch, report).await?;
            }
        }
        kept += self.move_batch(&mut batch, report).await?;
        Ok(kept)
    }

    /// Move a batch of confirmed orphans, asking the database right before whether a top-level
    /// File field names one of them now (those are kept). Returns how many were kept.
    async fn move_batch(
        &self,
        batch: &mut Vec<crate::audit::sort::Record>,
        report: &mut Report<'_>,
    ) -> anyhow::Result<u64> {
        let names: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
        let taken = referenced_top_level(self.db, self.targets, &names).await?;
        let mut steps = Vec::with_capacity(batch.len());
        for rec in batch.drain(..) {
            if taken.contains(&rec.key) {
                tracing::info!(file = %rec.key, "referenced again right before the move: kept");
                continue;
            }
            let (size, modified) = join::decode_stored(&rec.payload)?;
            steps.push(Step {
                action: Action::Quarantine,
                name: rec.key,
                size,
                modified,
                version: None,
                record: None,
            });
        }
        super::run_steps(self.effects, self.store, &steps, report).await?;
        Ok(taken.len() as u64)
    }
}

/// For tests only, and the one place outside `settings` that reads the environment: with
/// `<var>=<path>` (`PFM_TEST_PAUSE_BEFORE_RECHECK`: the orphans are chosen,
/// the re-check walk not started; `PFM_TEST_PAUSE_BEFORE_MOVES`: walked again, nothing moved),
/// create `<path>.ready` and wait (at most a minute) for `<path>` to exist, so a test can add a
/// reference exactly between the listing and the move.
async fn pause_for_tests(var: &str) {
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    let go = std::path::PathBuf::from(path);
    let mut ready = go.clone().into_os_string();
    ready.push(".ready");
    let _ = std::fs::write(&ready, b"");
    for _ in 0..600 {
        if go.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
