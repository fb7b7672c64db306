//! The effects of a real run: copy to the destination, write the ledger, update documents.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::rewrite::{id_key, settle, statement};
use super::transfer::copy_verified;
use super::{Change, Effects, FileJob, Outcome, Stores};
use crate::db::{update_batch, update_stmt};
use crate::exit::{Coded, USAGE};
use crate::ledger::{FileResult, Intent, LEASE, LeaseHeld, Ledger, RefState};
use crate::storage::{GetOptions, StorageError};

/// Attempts per file for errors a retry can fix (timeouts, 5xx, a broken stream).
pub const ATTEMPTS: u32 = 3;

pub struct Live {
    pub stores: Stores,
    pub ledger: Ledger,
    /// The app database (documents to rewrite).
    pub db: Database,
    /// What this run leases: `all`, or the shard `K/N`.
    pub scope: String,
    pub host: String,
    renewer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Live {
    pub fn new(stores: Stores, ledger: Ledger, db: Database, scope: String, host: String) -> Live {
        Live {
            stores,
            ledger,
            db,
            scope,
            host,
            renewer: Default::default(),
        }
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
                        LEASE.as_secs()
                    ))
                    .into(),
                Err(e) => e,
            })?;
        // Renew well before expiry for as long as the run lasts.
        let (ledger, scope, host) = (self.ledger.clone(), self.scope.clone(), self.host.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
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
            return match dest.stat(&job.target).await {
                Ok(meta) => Outcome::Verified {
                    size: meta.size,
                    md5: meta.md5,
                    hash_checked: false,
                    skipped: true,
                },
                Err(e) if e.is_not_found() => Outcome::Missing {
                    reason: missing(&e),
                },
                Err(e) => Outcome::Failed {
                    reason: e.to_string(),
                },
            };
        }
        let get = GetOptions {
            offset: 0,
            url_hint: job.url_hint.clone(),
        };
        let mut attempt = 1;
        loop {
            match copy_verified(&**source, dest, &job.name, &job.target, &get).await {
                Ok(v) => {
                    return Outcome::Verified {
                        size: v.size,
                        md5: Some(v.md5),
                        hash_checked: v.hash_checked,
                        skipped: false,
                    };
                }
                Err(e) if e.is_not_found() => {
                    return Outcome::Missing {
                        reason: missing(&e),
                    };
                }
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    let wait = backoff(attempt);
                    tracing::info!(
                        file = %job.name,
                        attempt,
                        "retrying in {} ms: {e}",
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Outcome::Failed {
                        reason: failure(&e, attempt),
                    };
                }
            }
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

/// Exponential backoff with jitter: ~0.5 s, ~1 s, ~2 s …
fn backoff(attempt: u32) -> Duration {
    let base = 500u64 << (attempt - 1).min(6);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter + base / 4)
}

/// Why a file is missing, without repeating its name.
fn missing(e: &StorageError) -> String {
    match e {
        StorageError::NotFound { location, .. } => format!("not found at {location}"),
        other => other.to_string(),
    }
}

fn failure(e: &StorageError, attempts: u32) -> String {
    if attempts > 1 {
        format!("{e} (after {attempts} attempts)")
    } else {
        e.to_string()
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

    #[test]
    fn backoff_grows() {
        assert!(backoff(1) < Duration::from_millis(800));
        assert!(backoff(3) >= Duration::from_millis(1500));
    }
}
