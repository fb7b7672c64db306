//! The steps of `audit --quarantine / --restore / --purge` on one store: move an orphan into the
//! store's quarantine, move it back, delete it for good, or delete a superseded GridFS revision.
//! Each goes through the run's [`Effects`] like every other write (the one dry-run gate): a dry
//! run prints it, a live run records it in the ledger *before* it touches the store and again
//! after ([`crate::ledger::QuarantineRecord`]), under the run's lease. The store's moves are
//! idempotent, so a step a crash interrupted is finished by doing it again (the paging in
//! [`restore_all`] / [`orphans::Orphans::purge_unreferenced`]), or, for a move into quarantine, undone
//! ([`take_back_unfinished`]) and judged again.
//!
//! Which orphans may move is decided by [`orphans`] (the listing, a walk, and a second walk
//! started after it); this module carries out steps, each through the removal door
//! ([`crate::engine::removal::relocate`]) on a live run.

pub mod orphans;

use std::time::SystemTime;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use serde::Serialize;

use super::Effects;
use crate::ledger::{Ledger, QuarantineState as S};
use crate::storage::{ListOptions, ObjectStore};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Quarantine,
    Restore,
    Purge,
    PurgeSuperseded,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Quarantine => "quarantine",
            Action::Restore => "restore",
            Action::Purge => "purge",
            Action::PurgeSuperseded => "purge-superseded",
        }
    }
}

/// One step on one object.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub name: String,
    /// Stored bytes, as listed (or recorded).
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// The superseded revision to delete ([`Action::PurgeSuperseded`]).
    pub version: Option<String>,
    /// The ledger record this step continues (restore, purge, a move a crash interrupted).
    pub record: Option<ObjectId>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "kebab-case")]
pub enum Outcome {
    /// Done (recorded).
    Done,
    /// A dry run printed it.
    Planned,
    /// Left as it was, and why (the name holds another object; the newest revision…).
    Refused(String),
    /// Neither place holds the object any more.
    Gone(String),
    /// The store failed; a re-run repeats the step.
    Failed(String),
}

/// Counts of a clean-up run, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub done: u64,
    pub bytes: u64,
    pub planned: u64,
    /// Orphans a walk started after the listing found referenced again: not moved.
    pub kept: u64,
    pub refused: u64,
    pub gone: u64,
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, step: &Step, outcome: &Outcome) {
        match outcome {
            Outcome::Done => {
                self.done += 1;
                self.bytes += step.size;
            }
            Outcome::Planned => self.planned += 1,
            Outcome::Refused(_) => self.refused += 1,
            Outcome::Gone(_) => self.gone += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    /// Whether something was left undone that a re-run or the operator should look at.
    pub fn incomplete(&self) -> bool {
        self.refused + self.failed > 0
    }
}

/// The clean-up side of [`Effects`] (every `Effects` is one): a batch of steps on objects of
/// `store`, an outcome per step in order. [`super::live::Live`] records them in the ledger
/// before (one round trip) and after (one more) it touches the store; [`super::dry::DryRun`]
/// prints them. Other effects (none run a clean-up) keep the default, which refuses.
#[async_trait::async_trait]
pub trait Relocate {
    async fn relocate(
        &self,
        store: &dyn ObjectStore,
        steps: &[Step],
    ) -> anyhow::Result<Vec<Outcome>> {
        let _ = (store, steps);
        anyhow::bail!("moving files is not possible in this kind of run")
    }
}

/// Records of `store` per page.
const PAGE: i64 = 256;

/// Run `step` for each record of `store` in `states` (and `keep`), reporting each outcome.
async fn for_records(
    effects: &dyn Effects,
    ledger: &Ledger,
    store: &dyn ObjectStore,
    states: &[S],
    action: Action,
    keep: &dyn Fn(&crate::ledger::QuarantineRecord) -> bool,
    report: &mut dyn FnMut(&Step, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = crate::storage::StoreName::of(store);
    let mut after = None;
    loop {
        let page = ledger
            .quarantine_records(&name.all(), states, after, PAGE)
            .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.id);
        let steps: Vec<Step> = page
            .iter()
            .filter(|r| keep(r))
            .map(|r| Step {
                action: if r.version.is_some() {
                    Action::PurgeSuperseded
                } else {
                    action
                },
                name: r.name.clone(),
                size: r.size,
                modified: r.modified,
                version: r.version.clone(),
                record: Some(r.id),
            })
            .collect();
        run_steps(effects, store, &steps, report).await?;
    }
}

/// Hand `steps` to the gate as one batch and report each outcome.
pub async fn run_steps(
    effects: &dyn Effects,
    store: &dyn ObjectStore,
    steps: &[Step],
    report: &mut dyn FnMut(&Step, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let outcomes = effects.relocate(store, steps).await?;
    for (step, outcome) in steps.iter().zip(&outcomes) {
        report(step, outcome)?;
    }
    Ok(())
}

/// Take back the moves into quarantine a crash (or a store failure) interrupted: records left
/// `moving`. Undoing is always safe (the store's moves are idempotent and never replace), and the
/// files are then judged afresh (still unreferenced after both walks, old enough) like any other.
/// Finishing them instead would move a file whose re-check is as old as the interrupted run.
pub async fn take_back_unfinished(
    effects: &dyn Effects,
    ledger: &Ledger,
    store: &dyn ObjectStore,
    report: &mut dyn FnMut(&Step, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for_records(
        effects,
        ledger,
        store,
        &[S::Moving],
        Action::Restore,
        &|_| true,
        report,
    )
    .await
}

/// `--restore`: put every quarantined object of `store` back (and finish interrupted moves
/// either way: a `moving` record is taken back too).
pub async fn restore_all(
    effects: &dyn Effects,
    ledger: &Ledger,
    store: &dyn ObjectStore,
    report: &mut dyn FnMut(&Step, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let states = [S::Moving, S::Quarantined, S::Restoring];
    for_records(
        effects,
        ledger,
        store,
        &states,
        Action::Restore,
        &|_| true,
        report,
    )
    .await
}

/// `--purge --superseded`: every superseded revision the listing reports (never the newest: the
/// store refuses that, whatever the listing said).
pub async fn purge_superseded(
    effects: &dyn Effects,
    store: &dyn ObjectStore,
    report: &mut dyn FnMut(&Step, &Outcome) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pages = store.list(ListOptions::default());
    while let Some(page) = pages.try_next().await? {
        let steps: Vec<Step> = page
            .into_iter()
            .filter(|o| o.superseded)
            .map(|o| Step {
                action: Action::PurgeSuperseded,
                name: o.name,
                size: o.size,
                modified: o.modified,
                version: o.version,
                record: None,
            })
            .collect();
        run_steps(effects, store, &steps, report).await?;
    }
    Ok(())
}
