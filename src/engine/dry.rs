//! The effects of a dry run: every planned copy and document update is handed to a
//! [`PlanWriter`]; nothing is written anywhere.

use std::sync::Mutex;

use async_trait::async_trait;
use mongodb::bson::Document;

use super::{Change, Checkpoint, Counters, Effects, FileJob, Outcome, Stores};
use crate::ledger::{FileResult, Intent, RefState};
use crate::report::migrate::{PlanWriter, PlannedCopy, PlannedUpdate};

pub struct DryRun {
    pub stores: Stores,
    pub out: Mutex<PlanWriter>,
}

impl DryRun {
    fn out(&self) -> std::sync::MutexGuard<'_, PlanWriter> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Effects for DryRun {
    async fn begin(&self, _info: Document) -> anyhow::Result<()> {
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

    async fn rewrite(
        &self,
        _collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<Vec<(RefState, Option<String>)>> {
        let mut out = self.out();
        for c in changes {
            out.update(&PlannedUpdate {
                class: &c.r.class,
                object_id: crate::scan::id_string(&c.r.id),
                path: &c.r.path,
                old: &c.r.old,
                new: &c.r.new,
            })?;
        }
        Ok(vec![(RefState::Pending, None); changes.len()])
    }

    async fn restore(
        &self,
        collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<Vec<(RefState, Option<String>)>> {
        self.rewrite(collection, changes).await
    }

    async fn delete(&self, target: &str) -> anyhow::Result<()> {
        let location = self.stores.destination.location(target).ok();
        self.out().delete(location.as_deref().unwrap_or(target))?;
        Ok(())
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
