//! The effects of a real run: copy to the destination, write the ledger, update documents.

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::rewrite::{id_key, settle, statement};
use super::transfer::copy_verified;
use super::{Change, Effects, FileJob, Outcome, Stores};
use crate::db::{update_batch, update_stmt};
use crate::ledger::{FileResult, Intent, Ledger, RefState};
use crate::retry::RetryPolicy;
use crate::storage::{GetOptions, StorageError};

pub struct Live {
    pub stores: Stores,
    pub ledger: Ledger,
    /// The app database (documents to rewrite).
    pub db: Database,
    /// How failed transfers are retried (timeouts, 5xx, throttling, a broken stream).
    pub retry: RetryPolicy,
}

#[async_trait]
impl Effects for Live {
    async fn begin(&self, info: Document) -> anyhow::Result<()> {
        self.ledger.start_run(info).await
    }

    async fn plan(&self, intents: &[Intent<'_>]) -> anyhow::Result<()> {
        self.ledger.plan(intents).await
    }

    async fn copy(&self, job: &FileJob) -> Outcome {
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
            return match self.retry.run(&job.name, || dest.stat(&job.target)).await {
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
        let copy = || copy_verified(&**source, dest, &job.name, &job.target, &get);
        match self.retry.run(&job.name, copy).await {
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
        self.ledger.record_files(results).await
    }

    async fn rewrite(
        &self,
        collection: &str,
        changes: &[Change],
    ) -> anyhow::Result<Vec<(RefState, Option<String>)>> {
        let records: Vec<_> = changes.iter().map(|c| c.r.clone()).collect();
        self.ledger.record_pending(&records).await?;
        let stmts = changes
            .iter()
            .map(|c| {
                let (q, u) = statement(c);
                update_stmt(q, u, false)
            })
            .collect();
        let out = update_batch(&self.db, collection, stmts).await?;
        let states = if out.matched == changes.len() as u64 && out.errors.is_empty() {
            vec![(RefState::Rewritten, None); changes.len()]
        } else {
            let docs = self.read_back(collection, changes).await?;
            let errors: HashMap<usize, String> = out.errors.into_iter().collect();
            settle(changes, &docs, &errors)
        };
        let outcomes: Vec<_> = changes
            .iter()
            .zip(&states)
            .map(|(c, (s, e))| (&c.r, *s, e.as_deref()))
            .collect();
        self.ledger.record_refs(&outcomes).await?;
        Ok(states)
    }

    async fn finish(&self, summary: Document, exit_code: i32) -> anyhow::Result<()> {
        self.ledger.finish_run(summary, exit_code).await
    }

    fn dry_run(&self) -> bool {
        false
    }
}

impl Live {
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
            projection.insert(c.r.path.clone(), 1);
        }
        let mut cursor = self
            .db
            .collection::<Document>(collection)
            .find(doc! {"_id": {"$in": ids}})
            .projection(prune(projection))
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

/// A projection without paths that overlap (MongoDB refuses `a` together with `a.b`).
fn prune(projection: Document) -> Document {
    let keys: std::collections::BTreeSet<&str> = projection.keys().map(String::as_str).collect();
    let mut out = Document::new();
    for k in &keys {
        let covered = k.match_indices('.').any(|(i, _)| keys.contains(&k[..i]));
        if !covered {
            out.insert(*k, 1);
        }
    }
    out
}

/// Why a file is missing, without repeating its name.
fn missing(e: &StorageError) -> String {
    match e {
        StorageError::NotFound { location, .. } => format!("not found at {location}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_drop_nested_duplicates() {
        let p = prune(doc! {"a.b": 1, "a": 1, "a-x": 1, "c.0.f": 1, "c.1.f": 1, "ab": 1});
        assert_eq!(p, doc! {"a": 1, "a-x": 1, "ab": 1, "c.0.f": 1, "c.1.f": 1});
    }
}
