//! The effects of a dry run: every copy, document update and delete the run would make is
//! handed to a [`PlanSink`] (the command layer supplies one that prints); nothing is written
//! anywhere. Reads still happen (the walk, the ledger), so the plan is the real one.

use std::sync::Mutex;

use async_trait::async_trait;
use mongodb::bson::Document;
use serde::Serialize;

use super::cas::Settled;
use super::pipeline::checkpoint::Checkpoint;
use super::{Counters, Effects, FileJob, Outcome, Stores};
use crate::ledger::{FileRecord, FileResult, Intent, RefChange, RefState, RefValue};

/// A copy the dry run would make.
#[derive(Debug, Serialize)]
pub struct PlannedCopy<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub source: Option<&'a str>,
    pub target: &'a str,
    pub destination: Option<&'a str>,
}

/// A document update the dry run would make.
#[derive(Debug, Serialize)]
pub struct PlannedUpdate<'a> {
    pub class: &'a str,
    pub object_id: String,
    pub path: &'a str,
    pub old: &'a RefValue,
    pub new: &'a RefValue,
}

/// A move or purge the dry run would make (`audit --quarantine / --restore / --purge`).
#[derive(Debug, Serialize)]
pub struct PlannedMove<'a> {
    /// The JSONL line's `action` tag.
    #[serde(skip)]
    pub action: &'a str,
    pub name: &'a str,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub size: u64,
}

/// Where a dry run reports what it would do, one action at a time, in the order decided.
pub trait PlanSink: Send {
    fn copy(&mut self, copy: &PlannedCopy) -> std::io::Result<()>;
    fn update(&mut self, update: &PlannedUpdate) -> std::io::Result<()>;
    /// A stored object that would be deleted, by its location.
    fn deletion(&mut self, location: &str) -> std::io::Result<()>;
    /// An object that would be moved within its store (`audit --quarantine / --restore`), or
    /// deleted from its quarantine (`--purge`: no `to`).
    fn relocate(&mut self, step: &PlannedMove) -> std::io::Result<()>;
}

pub struct DryRun {
    stores: Stores,
    out: Mutex<Box<dyn PlanSink>>,
    /// See [`DryRun::surveying`].
    ledger: Option<crate::ledger::Ledger>,
}

impl DryRun {
    pub fn new(stores: Stores, out: Box<dyn PlanSink>) -> DryRun {
        DryRun {
            stores,
            out: Mutex::new(out),
            ledger: None,
        }
    }

    /// Also say, when the run begins, what debris of killed runs the live run would sweep from
    /// the destination ([`super::debris::survey`]: measured, nothing removed).
    pub fn surveying(mut self, ledger: crate::ledger::Ledger) -> DryRun {
        self.ledger = Some(ledger);
        self
    }

    fn out(&self) -> std::sync::MutexGuard<'_, Box<dyn PlanSink>> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Effects for DryRun {
    async fn begin(&self, _info: Document) -> anyhow::Result<()> {
        if let Some(ledger) = &self.ledger {
            super::debris::survey(ledger, &*self.stores.destination).await;
        }
        Ok(())
    }

    async fn plan(&self, _intents: &[Intent<'_>]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn copy(&self, job: &FileJob, _counters: &Counters) -> Outcome {
        let source = self
            .stores
            .source_for(job.kind)
            .and_then(|s| s.location(&job.name).ok());
        let destination = self.stores.destination.location(&job.target).ok();
        let planned = PlannedCopy {
            name: &job.name,
            kind: job.kind.as_str(),
            source: source.as_deref(),
            target: &job.target,
            destination: destination.as_deref(),
        };
        if let Err(e) = self.out().copy(&planned) {
            return Outcome::Failed {
                reason: format!("writing the plan: {e}"),
            };
        }
        Outcome::Planned
    }

    async fn record_files(&self, _results: &[FileResult<'_>]) -> anyhow::Result<()> {
        Ok(())
    }

    async fn rewrite(&self, _collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled> {
        let mut out = self.out();
        for c in changes {
            out.update(&PlannedUpdate {
                class: &c.class,
                object_id: crate::scan::id_string(&c.id),
                path: &c.path,
                old: &c.old,
                new: &c.new,
            })?;
        }
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
        let mut out = self.out();
        for f in files {
            let location = self.stores.destination.location(&f.target).ok();
            out.deletion(location.as_deref().unwrap_or(&f.target))?;
        }
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

#[async_trait]
impl super::quarantine::Relocate for DryRun {
    async fn relocate(
        &self,
        store: &dyn crate::storage::ObjectStore,
        steps: &[super::quarantine::Step],
    ) -> anyhow::Result<Vec<super::quarantine::Outcome>> {
        use super::quarantine::Action;
        let mut out = self.out();
        for step in steps {
            let served = store
                .location(&step.name)
                .unwrap_or_else(|_| step.name.clone());
            let quarantined = store
                .quarantine()
                .ok_or_else(|| crate::storage::unsupported(store, "quarantine"))?
                .location(&step.name)?;
            let (from, to) = match step.action {
                Action::Quarantine => (served.as_str(), Some(quarantined.as_str())),
                Action::Restore => (quarantined.as_str(), Some(served.as_str())),
                Action::Purge => (quarantined.as_str(), None),
                Action::PurgeSuperseded => (served.as_str(), None),
            };
            out.relocate(&PlannedMove {
                action: step.action.as_str(),
                name: &step.name,
                from,
                to,
                size: step.size,
            })?;
        }
        Ok(vec![super::quarantine::Outcome::Planned; steps.len()])
    }
}
