//! `migrate --include-unreferenced`: copy files that no reference names ([`find_and_copy`]: the
//! listing of `[source.server]` joined with every reference, whatever `--class` / `--field` say,
//! in bounded memory: [`crate::audit`]) to the destination under their own name, through the run's [`Effects`] like every copy: intents recorded before the copies,
//! outcomes after, counted in the run's summary (files copied, skipped, missing, failed,
//! collisions). There are no references to rewrite. A file the ledger already records as
//! verified at this destination is not copied again. Memory: one batch of names at a time.

use std::sync::Arc;

use futures::StreamExt;

use mongodb::Database;

use super::Shard;
use super::plan::in_shard;
use crate::audit::{Audit, DEFAULT_RUN_BYTES, Finding, Options, sort::Sorter};
use crate::engine::{Counters, Effects, FileJob, Outcome, RunState};
use crate::ledger::{FileState, Intent, Ledger};
use crate::parse::names::NameKind;
use crate::scan::Target;
use crate::scan::refs::for_each_ref;
use crate::storage::ObjectStore;
use crate::storage::StoreName;

/// Where the unreferenced files are looked for, and what they are joined with.
pub struct Unreferenced<'a> {
    /// The listed store (`[source.server]`).
    pub server: &'a dyn ObjectStore,
    pub db: &'a Database,
    /// Every target of the app (whatever the filters), nested Files included.
    pub targets: &'a [Target],
    pub page_size: u32,
    /// This shard's names only (the same split as the referenced files).
    pub shard: Option<Shard>,
    pub concurrency: usize,
}

/// Find the files `u.server` holds that no reference names, and copy them.
pub async fn find_and_copy(
    u: &Unreferenced<'_>,
    effects: &Arc<dyn Effects>,
    state: &Arc<RunState>,
    ledger: &Ledger,
    destination: &StoreName,
) -> anyhow::Result<()> {
    let mut audit = Audit::new(&Options::default());
    audit.list(u.server, &mut |_| Ok(())).await?;
    for_each_ref(u.db, u.targets, u.page_size, |r| Ok(audit.add_ref(r)?)).await?;
    let mut orphans = Sorter::new(&std::env::temp_dir(), DEFAULT_RUN_BYTES);
    audit.finish(&mut |f| match f {
        Finding::Orphan { name, .. } if in_shard(name, u.shard) => orphans.push(name, &[]),
        _ => Ok(()),
    })?;
    tracing::info!(
        "copying {} unreferenced files of {}",
        orphans.len(),
        u.server.describe()
    );
    let names = orphans.finish()?.map(|r| r.map(|r| r.key));
    copy_all(effects, state, ledger, destination, names, u.concurrency).await
}

/// Names per ledger round trip.
const BATCH: usize = 256;

/// Copy every name of `names` (see the module documentation).
pub async fn copy_all(
    effects: &Arc<dyn Effects>,
    state: &Arc<RunState>,
    ledger: &Ledger,
    destination: &StoreName,
    names: impl Iterator<Item = std::io::Result<String>>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    for name in names {
        batch.push(name?);
        if batch.len() == BATCH {
            copy_batch(effects, state, ledger, destination, &batch, concurrency).await?;
            batch.clear();
        }
        if state.is_interrupted() {
            return Ok(());
        }
    }
    copy_batch(effects, state, ledger, destination, &batch, concurrency).await
}

async fn copy_batch(
    effects: &Arc<dyn Effects>,
    state: &Arc<RunState>,
    ledger: &Ledger,
    destination: &StoreName,
    names: &[String],
    concurrency: usize,
) -> anyhow::Result<()> {
    let c = &state.counters;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let known = ledger.lookup(&refs).await?;
    let mut jobs = Vec::new();
    for name in names {
        let record = known.get(name);
        if record.is_some_and(|r| {
            r.state == FileState::Verified
                && r.destination
                    .as_deref()
                    .is_some_and(|d| destination.names(d))
        }) {
            Counters::add(&c.files_skipped, 1);
            continue;
        }
        let kind = NameKind::of(name);
        if kind.is_hosted() {
            // Its bytes would be looked for at the hosted-Parse hosts, not in this store.
            tracing::warn!(file = %name, "unreferenced file with a hosted-Parse name: not copied");
            continue;
        }
        jobs.push(FileJob {
            name: name.clone(),
            target: name.clone(),
            kind,
            url_hint: None,
            field: "(unreferenced)".into(),
            attempts: record.map_or(0, |r| r.attempts),
        });
    }
    if jobs.is_empty() {
        return Ok(());
    }
    Counters::add(&c.files_planned, jobs.len() as u64);
    let intents: Vec<Intent> = jobs
        .iter()
        .map(|j| j.intent(&destination.identity))
        .collect();
    effects.plan(&intents).await?;
    let outcomes: Vec<(FileJob, Outcome)> = futures::stream::iter(jobs)
        .map(|job| async move {
            let outcome = effects.copy(&job, c).await;
            (job, outcome)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (job, outcome) in &outcomes {
        super::copies::count(state, &job.name, outcome, 0);
    }
    let results: Vec<_> = outcomes
        .iter()
        .filter_map(|(job, o)| super::rewrite::file_result(&job.name, o))
        .collect();
    effects.record_files(&results).await
}
