//! The effects of a real run: copy to the destination, write the ledger, update documents.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::rewrite::{id_key, settle, statement};
use super::transfer::copy_verified;
use super::{Change, Checkpoint, Counters, Effects, FileJob, Outcome, Stores};
use crate::db::{update_batch, update_stmt};
use crate::exit::{Coded, USAGE};
use crate::ledger::{FileResult, FileState, Intent, LeaseHeld, Ledger, RefState};
use crate::retry::RetryPolicy;
use crate::storage::{GetOptions, StorageError};

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
    renewer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether a restore has forgotten the walk checkpoints yet.
    walks_forgotten: tokio::sync::OnceCell<()>,
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
            renewer: Default::default(),
            walks_forgotten: Default::default(),
        }
    }

    /// A run killed between a document update and its record leaves `pending` reference
    /// records. Settle them from the documents: holding the new value → `rewritten`; holding the
    /// old one → left pending (the walk finds and rewrites it again); anything else → `conflict`.
    async fn settle_pending(&self) -> anyhow::Result<()> {
        let mut after: Option<Bson> = None;
        let mut settled = 0u64;
        loop {
            let page = self
                .ledger
                .refs_page(&[RefState::Pending], after.as_ref(), 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.get("_id").cloned();
            let mut by_collection: std::collections::BTreeMap<String, Vec<Change>> =
                Default::default();
            for d in &page {
                let Ok(r) = crate::ledger::ref_change(d) else {
                    continue;
                };
                let shape = if r.old.url.is_none() && r.new.url.is_none() {
                    crate::scan::Shape::BareName
                } else {
                    crate::scan::Shape::Nested
                };
                by_collection
                    .entry(crate::parse::schema::collection_name(
                        &self.prefix,
                        &r.class,
                    ))
                    .or_default()
                    .push(Change { r, shape });
            }
            for (collection, changes) in by_collection {
                let docs = self.read_back(&collection, &changes).await?;
                let states = settle(&changes, &docs, &HashMap::new());
                let marks: Vec<_> = changes
                    .iter()
                    .zip(&states)
                    .filter_map(|(c, (s, _))| {
                        let still_old = docs
                            .get(&id_key(&c.r.id))
                            .and_then(|d| super::rewrite::get_path(d, &c.r.path))
                            .is_some_and(|v| holds(v, &c.r.old.name));
                        (!still_old).then(|| (c.r.key(), *s))
                    })
                    .collect();
                settled += marks.len() as u64;
                self.ledger.mark_refs(&marks).await?;
            }
        }
        if settled > 0 {
            tracing::info!("settled {settled} reference records an interrupted run left pending");
        }
        Ok(())
    }
}

/// Whether a stored File value (bare name or File object) names `name`.
fn holds(v: &Bson, name: &str) -> bool {
    match v {
        Bson::String(s) => s == name,
        Bson::Document(d) => d.get_str("name").ok() == Some(name),
        _ => false,
    }
}

#[async_trait]
impl Effects for Live {
    async fn begin(&self, info: Document) -> anyhow::Result<()> {
        self.ledger
            .lease(&self.scope, &self.host)
            .await
            .map_err(|e| match e.downcast::<LeaseHeld>() {
                Ok(held) => Coded::new(USAGE, held.to_string())
                    .hint(format!(
                        "wait for that run to end; a crashed run's lease expires {} s after its last renewal",
                        self.ledger.lease_duration().as_secs()
                    ))
                    .into(),
                Err(e) => e,
            })?;
        // Renew well before expiry for as long as the run lasts.
        let (ledger, scope, host) = (self.ledger.clone(), self.scope.clone(), self.host.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ledger.lease_duration() / 3).await;
                if let Err(e) = ledger.lease(&scope, &host).await {
                    tracing::error!("renewing the lease on {scope}: {e:#}");
                }
            }
        });
        if let Some(old) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(renewer)
        {
            old.abort();
        }
        self.ledger.ensure_indexes().await?;
        self.ledger.start_run(info).await?;
        self.settle_pending().await
    }

    async fn plan(&self, intents: &[Intent<'_>]) -> anyhow::Result<()> {
        self.ledger.plan(intents).await
    }

    async fn copy(&self, job: &FileJob, counters: &Counters) -> Outcome {
        let Some(source) = self.stores.source_for(job.kind) else {
            return Outcome::Failed {
                reason: format!("no source configured for {} names", job.kind.as_str()),
            };
        };
        let dest = &*self.stores.destination;
        if job.target == job.name
            && source.describe() == dest.describe()
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
            offset: 0,
            url_hint: job.url_hint.clone(),
        };
        // Each attempt starts over from the first byte: the destination's `put` is atomic, so a
        // broken attempt leaves nothing behind to resume from or to clean up.
        let copy = || copy_verified(source, dest, &job.name, &job.target, &get);
        match self.retry.run(&job.name, &counters.retries, copy).await {
            Ok(v) => Outcome::Verified {
                size: v.size,
                md5: Some(v.md5),
                hash_checked: v.hash_checked,
                skipped: false,
            },
            Err(g) if g.error.is_not_found() => Outcome::Missing {
                reason: missing(&g.error),
            },
            Err(g) => Outcome::Failed { reason: g.reason() },
        }
    }

    async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()> {
        // A copy is recorded as verified only once the destination holds it durably.
        if results.iter().any(|r| r.state == FileState::Verified) {
            let dest = &self.stores.destination;
            dest.sync()
                .await
                .with_context(|| format!("making the copies at {} durable", dest.describe()))?;
        }
        self.ledger.record_files(results).await
    }

    async fn rewrite(
        &self,
        collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<Vec<(RefState, Option<String>)>> {
        let records: Vec<_> = changes.iter().map(|c| c.r.clone()).collect();
        self.ledger.record_pending(&records).await?;
        let states = self.apply(collection, changes).await?;
        let outcomes: Vec<_> = changes
            .iter()
            .zip(&states)
            .map(|(c, (s, e))| (&c.r, *s, e.as_deref()))
            .collect();
        self.ledger.record_refs(&outcomes).await?;
        Ok(states)
    }

    async fn restore(
        &self,
        collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<Vec<(RefState, Option<String>)>> {
        // Restored references are to migrate again: an unfinished pass must not resume past them.
        self.walks_forgotten
            .get_or_try_init(|| self.ledger.forget_walks())
            .await?;
        let states = self.apply(collection, changes).await?;
        let states: Vec<_> = states
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
            .map(|(c, (s, _))| (c.r.key(), *s))
            .collect();
        self.ledger.mark_refs(&marks).await?;
        Ok(states)
    }

    async fn delete(&self, target: &str) -> anyhow::Result<()> {
        match self.stores.destination.delete(target).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn checkpoint(&self, checkpoint: Option<&Checkpoint>) -> anyhow::Result<()> {
        self.ledger
            .save_checkpoint(&self.scope, checkpoint.map(Checkpoint::to_document))
            .await
    }

    async fn finish(&self, summary: Document, exit_code: i32) -> anyhow::Result<()> {
        self.ledger.finish_run(summary, exit_code).await?;
        if let Some(r) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
        self.ledger.release(&self.scope).await
    }

    fn dry_run(&self) -> bool {
        false
    }
}

impl Live {
    /// Run the compare-and-swap updates of `changes` in one collection; a state per change.
    async fn apply(
        &self,
        collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<Vec<(RefState, Option<String>)>> {
        let stmts = changes
            .iter()
            .map(|c| {
                let (q, u) = statement(c);
                update_stmt(q, u, false)
            })
            .collect();
        let out = update_batch(&self.db, collection, stmts).await?;
        Ok(
            if out.matched == changes.len() as u64 && out.errors.is_empty() {
                vec![(RefState::Rewritten, None); changes.len()]
            } else {
                let docs = self.read_back(collection, changes).await?;
                let errors: HashMap<usize, String> = out.errors.into_iter().collect();
                settle(changes, &docs, &errors)
            },
        )
    }

    /// The current documents of `changes`, projected on their paths, by `_id` key.
    async fn read_back(
        &self,
        collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<HashMap<String, Document>> {
        let mut ids: Vec<Bson> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut projection = Document::new();
        for c in changes {
            if seen.insert(id_key(&c.r.id)) {
                ids.push(c.r.id.clone());
            }
            // The top-level field: a projection on `gallery.2` would not select array index 2.
            let top = c.r.path.split('.').next().unwrap_or(&c.r.path);
            projection.insert(top, 1);
        }
        let mut cursor = self
            .db
            .collection::<Document>(collection)
            .find(doc! {"_id": {"$in": ids}})
            .projection(projection)
            .await
            .with_context(|| format!("reading back {collection}"))?;
        let mut docs = HashMap::new();
        while let Some(d) = cursor
            .try_next()
            .await
            .with_context(|| format!("reading back {collection}"))?
        {
            if let Some(id) = d.get("_id") {
                docs.insert(id_key(id), d.clone());
            }
        }
        Ok(docs)
    }
}

/// Why a file is missing, without repeating its name.
fn missing(e: &StorageError) -> String {
    match e {
        StorageError::NotFound { location, .. } => format!("not found at {location}"),
        other => other.to_string(),
    }
}
