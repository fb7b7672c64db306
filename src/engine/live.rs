//! The effects of a real run: copy to the destination, write the ledger, update documents.

use anyhow::Context;
use async_trait::async_trait;
use mongodb::Database;
use mongodb::bson::Document;

use super::cas::{self, Settled};
use super::pipeline::checkpoint::Checkpoint;
use super::transfer::{Found, compare_existing, copy_logged, store_gone};
use super::{Counters, Effects, FileJob, Outcome, Stores};
use crate::exit::{Coded, USAGE};
use crate::ledger::{
    FileRecord, FileResult, FileState, Holder, Intent, LEASE_LOST, LeaseHeld, Ledger, RefChange,
    RefState, Taken,
};
use crate::retry::RetryPolicy;
use crate::storage::{GetOptions, PutMode, StorageError};

/// How long a run that took over a crashed run's lease waits before its first write.
const TAKEOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Live {
    pub stores: Stores,
    pub ledger: Ledger,
    /// The app database (documents to rewrite).
    pub db: Database,
    /// What this run leases: `all`, or the shard `K/N`.
    pub scope: String,
    pub host: String,
    /// `collectionPrefix` of the class collections.
    pub prefix: String,
    /// How failed transfers are retried (timeouts, 5xx, throttling, a broken stream).
    pub retry: RetryPolicy,
    /// Whether a restore has forgotten the walk checkpoints yet.
    walks_forgotten: tokio::sync::OnceCell<()>,
    /// See [`Live::exclusive`].
    exclusive: bool,
    /// See [`Live::breaking`].
    breaking: Vec<Holder>,
    /// See [`Live::overwrite`].
    overwrite: bool,
    /// See [`Live::guard`].
    guard: std::sync::Arc<crate::dbhealth::Guard>,
}

impl Live {
    pub fn new(
        stores: Stores,
        ledger: Ledger,
        db: Database,
        scope: String,
        host: String,
        prefix: String,
        retry: RetryPolicy,
    ) -> Live {
        Live {
            stores,
            ledger,
            db,
            scope,
            host,
            prefix,
            retry,
            walks_forgotten: Default::default(),
            exclusive: false,
            breaking: Vec::new(),
            overwrite: false,
            guard: Default::default(),
        }
    }

    /// Time every bulk write round trip (document updates, ledger batches, checkpoints) and
    /// hold it back while the database is unhealthy ([`crate::dbhealth`]).
    pub fn guard(mut self, guard: std::sync::Arc<crate::dbhealth::Guard>) -> Live {
        self.guard = guard;
        self
    }

    /// Replace what the destination already holds under a target name (`--overwrite`); by
    /// default copies are create-only, and an existing object is compared instead.
    pub fn overwrite(mut self, overwrite: bool) -> Live {
        self.overwrite = overwrite;
        self
    }

    /// Break these leases (`--break-lease`, confirmed by the operator) before taking this run's:
    /// each only if the same run still holds it.
    pub fn breaking(mut self, holders: Vec<Holder>) -> Live {
        self.breaking = holders;
        self
    }

    /// Hold the lease exclusively: refuse to start while any other scope's lease is held, and
    /// make every run of another scope refuse while this one runs (`rollback`: it restores
    /// references of every shard, so no shard's run may be rewriting them meanwhile).
    pub fn exclusive(mut self) -> Live {
        self.exclusive = true;
        self
    }
}

#[async_trait]
impl Effects for Live {
    async fn begin(&self, mut info: Document) -> anyhow::Result<()> {
        for h in &self.breaking {
            if self.ledger.break_lease(h).await? {
                tracing::warn!(
                    "--break-lease: broke the lease on {} ({})",
                    h.scope,
                    h.describe()
                );
            }
        }
        // Held (and renewed) until `finish`; every write below checks it first (`holding`).
        let taken = self
            .ledger
            .hold(&self.scope, &self.host, self.exclusive)
            .await;
        let taken = taken.map_err(|e| match e.downcast::<LeaseHeld>() {
            Ok(held) => Coded::new(USAGE, held.to_string())
                .hint(format!(
                    "wait for that run to end; a crashed run's lease is taken over at once \
                         on the same machine, and expires {} s after its last renewal for \
                         others; if you know that run is gone, --break-lease",
                    self.ledger.lease_duration().as_secs()
                ))
                .into(),
            Err(e) => e,
        })?;
        if let Taken::TookOver(h, why) = &taken {
            tracing::warn!(
                "took over the lease on {} of a crashed run on this machine ({why}; {})",
                h.scope,
                h.describe()
            );
            // The killed process's last requests, already sent, may still be carried out by
            // the server: give them a moment before this run reads and writes the same records
            // (references they rewrite late are settled exactly anyway: `cas::settle_pending`).
            tokio::time::sleep(TAKEOVER_GRACE).await;
            info.insert(
                "took_over",
                mongodb::bson::doc! {"scope": &h.scope, "run": h.run, "pid": h.pid, "why": *why},
            );
        }
        let converted = self.ledger.upgrade().await?;
        if converted > 0 {
            tracing::info!(
                "converted {converted} ledger records of the first format into batch records"
            );
        }
        self.ledger.ensure_indexes().await?;
        self.ledger.start_run(info).await?;
        let settled = cas::settle_pending(&self.db, &self.ledger, &self.prefix).await?;
        if settled > 0 {
            tracing::info!("settled {settled} reference records an interrupted run left pending");
        }
        super::debris::sweep(&self.ledger, &*self.stores.destination).await;
        Ok(())
    }

    async fn plan(&self, intents: &[Intent<'_>]) -> anyhow::Result<()> {
        self.ledger.holding().await?;
        self.guard.write(self.ledger.plan(intents)).await
    }

    async fn copy(&self, job: &FileJob, counters: &Counters) -> Outcome {
        // A lost lease stops the run before this copy writes anything (the outcome's record,
        // which would be the next write, is refused too).
        if let Err(lost) = self.ledger.holding().await {
            return Outcome::Stopped {
                reason: format!("{lost:#}"),
                why: LEASE_LOST,
            };
        }
        let Some(source) = self.stores.source_for(job.kind) else {
            return Outcome::Failed {
                reason: format!("no source configured for {} names", job.kind.as_str()),
            };
        };
        let dest = &*self.stores.destination;
        if job.target == job.name
            && source.identity() == dest.identity()
            && source.location(&job.name).ok() == dest.location(&job.target).ok()
        {
            // Nothing to move: check it is there, so references are only rebased onto real bytes.
            return match self
                .retry
                .run(&job.name, &counters.retries, || dest.stat(&job.target))
                .await
            {
                Ok(meta) => Outcome::Verified {
                    size: meta.size,
                    md5: meta.md5,
                    hash_checked: false,
                    skipped: true,
                },
                Err(g) if g.error.is_not_found() => Outcome::Missing {
                    reason: missing(&g.error),
                },
                Err(g) => Outcome::Failed { reason: g.reason() },
            };
        }
        let get = GetOptions {
            url_hint: job.url_hint.clone(),
            ..GetOptions::default()
        };
        // Each attempt starts over from the first byte: the destination's `put` is atomic, so a
        // broken attempt leaves nothing behind to resume from or to clean up. Create-only
        // unless `--overwrite`: what is already under the target is compared, never replaced.
        let mode = if self.overwrite {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        let uploads = super::debris::upload_log(&self.ledger, dest);
        let copy = || copy_logged(source, dest, &job.name, &job.target, &get, mode, &uploads);
        match self.retry.run(&job.name, &counters.retries, copy).await {
            Ok(v) => {
                if v.server_side {
                    Counters::add(&counters.files_server_side, 1);
                }
                Outcome::Verified {
                    size: v.size,
                    md5: v.md5,
                    hash_checked: v.hash_checked,
                    skipped: false,
                }
            }
            Err(g) if g.error.is_not_found() => match store_gone(&**source, &job.name).await {
                Some(gone) => Outcome::Stopped {
                    reason: gone.to_string(),
                    why: super::REFUSED,
                },
                None => Outcome::Missing {
                    reason: missing(&g.error),
                },
            },
            Err(g) if g.error.is_already_exists() => {
                let compare = || compare_existing(source, dest, &job.name, &job.target, &get);
                match self.retry.run(&job.name, &counters.retries, compare).await {
                    Ok(Found::Same { size, md5 }) => Outcome::Verified {
                        size,
                        md5: Some(md5),
                        hash_checked: true,
                        skipped: true,
                    },
                    Ok(Found::Other(how)) => Outcome::Collision {
                        reason: format!(
                            "collision: {} already holds other bytes ({how}); not overwritten \
                             (migrate --overwrite replaces it)",
                            dest.location(&job.target)
                                .unwrap_or_else(|_| job.target.clone())
                        ),
                    },
                    Err(g) => Outcome::Failed { reason: g.reason() },
                }
            }
            Err(g) if g.error.is_no_space() => Outcome::Stopped {
                reason: g.reason(),
                why: super::NO_SPACE,
            },
            Err(g) if g.error.is_refused() => Outcome::Stopped {
                reason: g.reason(),
                why: super::REFUSED,
            },
            Err(g) => Outcome::Failed { reason: g.reason() },
        }
    }

    async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()> {
        // Never `verified` after a lost lease: another run may have swept the upload meanwhile.
        self.ledger.holding().await?;
        // A copy is recorded as verified only once the destination holds it durably.
        if results.iter().any(|r| r.state == FileState::Verified) {
            let dest = &self.stores.destination;
            dest.sync()
                .await
                .with_context(|| format!("making the copies at {} durable", dest.describe()))?;
        }
        self.guard.write(self.ledger.record_files(results)).await
    }

    async fn rewrite(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled> {
        let g = &self.guard;
        self.ledger.holding().await?;
        g.write(self.ledger.record_pending(changes)).await?;
        let states = g.write(cas::apply(&self.db, collection, changes)).await?;
        let outcomes: Vec<_> = changes
            .iter()
            .zip(&states)
            .map(|(c, (s, e))| (c, *s, e.as_deref()))
            .collect();
        g.write(self.ledger.record_refs(&outcomes)).await?;
        Ok(states)
    }

    async fn restore(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled> {
        self.ledger.holding().await?;
        // Restored references are to migrate again: an unfinished pass must not resume past them.
        self.walks_forgotten
            .get_or_try_init(|| self.ledger.forget_walks())
            .await?;
        let states: Settled = self
            .guard
            .write(cas::apply(&self.db, collection, changes))
            .await?
            .into_iter()
            .map(|(s, e)| match s {
                RefState::Rewritten => (RefState::RolledBack, e),
                other => (other, e),
            })
            .collect();
        let marks: Vec<_> = changes
            .iter()
            .zip(&states)
            .filter(|(_, (s, _))| *s == RefState::RolledBack)
            .map(|(c, (s, _))| (c, *s))
            .collect();
        self.guard.write(self.ledger.mark_refs(&marks)).await?;
        Ok(states)
    }

    async fn remove_copies(
        &self,
        files: &[FileRecord],
        targets: &[crate::scan::Target],
    ) -> anyhow::Result<Vec<bool>> {
        let destination = &*self.stores.destination;
        let app = super::removal::App {
            db: &self.db,
            targets,
            source: self.stores.server.as_deref(),
        };
        super::removal::delete_copies(&self.ledger, &app, destination, files).await
    }

    async fn checkpoint(&self, checkpoint: Option<&Checkpoint>) -> anyhow::Result<()> {
        self.ledger.holding().await?;
        let doc = checkpoint.map(Checkpoint::to_document);
        self.guard
            .write(self.ledger.save_checkpoint(&self.scope, doc))
            .await
    }

    async fn finish(&self, summary: Document, exit_code: i32) -> anyhow::Result<()> {
        self.ledger.finish_run(summary, exit_code).await?;
        self.ledger.forget_uploads().await?;
        self.ledger.let_go().await
    }

    fn dry_run(&self) -> bool {
        false
    }
}

/// Why a file is missing, without repeating its name.
fn missing(e: &StorageError) -> String {
    match e {
        StorageError::NotFound { location, .. } => format!("not found at {location}"),
        other => other.to_string(),
    }
}

#[async_trait]
impl super::quarantine::Relocate for Live {
    async fn relocate(
        &self,
        store: &dyn crate::storage::ObjectStore,
        steps: &[super::quarantine::Step],
    ) -> anyhow::Result<Vec<super::quarantine::Outcome>> {
        self.ledger.holding().await?;
        super::removal::relocate(&self.ledger, store, steps).await
    }
}
