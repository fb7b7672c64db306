//! The leases (`<collection>.locks`): one per shard scope, held by the run that writes it, so two
//! runs never work on the same files at once.

use anyhow::Context;
use mongodb::bson::{DateTime, doc};

use super::{Ledger, VERSION};
use crate::db::DUPLICATE_KEY;

/// Another run holds the lease.
#[derive(Debug, thiserror::Error)]
#[error(
    "another run holds the lease on {scope} (host {host:?}, pid {pid}, run {run}) until {until}; \
     two runs over the same files at once are refused"
)]
pub struct LeaseHeld {
    pub scope: String,
    pub host: String,
    pub pid: i64,
    pub run: String,
    pub until: String,
}

impl Ledger {
    /// Take (or renew) the lease on `scope` for this run. Fails with [`LeaseHeld`] in the chain
    /// when another run holds an unexpired one.
    pub async fn lease(&self, scope: &str, host: &str) -> anyhow::Result<()> {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + self.lease.as_millis() as i64);
        let locks = self.coll(&self.locks);
        let taken = locks
            .update_one(
                doc! {"_id": scope, "$or": [{"run": self.run}, {"until": {"$lt": now}}]},
                doc! {"$set": {"run": self.run, "host": host, "pid": std::process::id() as i64,
                "until": until, "v": VERSION}},
            )
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                let holder = locks
                    .find_one(doc! {"_id": scope})
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Err(held(scope, &holder).into())
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("taking the lease in {}", self.locks)))
            }
        }
    }

    /// Take the lease on `scope` as [`lease`](Self::lease) does, and refuse (giving it back)
    /// while another run holds an unexpired lease on any other scope: for work that spans every
    /// shard (`rollback`).
    pub async fn lease_exclusive(&self, scope: &str, host: &str) -> anyhow::Result<()> {
        self.lease(scope, host).await?;
        let other = self
            .coll(&self.locks)
            .find_one(doc! {"_id": {"$ne": scope}, "run": {"$ne": self.run},
            "until": {"$gte": DateTime::now()}})
            .await
            .with_context(|| format!("reading {}", self.locks))?;
        if let Some(holder) = other {
            self.release(scope).await?;
            let scope = holder.get_str("_id").unwrap_or("?").to_string();
            return Err(held(&scope, &holder).into());
        }
        Ok(())
    }

    /// The runs other than this one that hold an unexpired lease, on any scope: alive, or not
    /// yet known to be dead. Their open batches are theirs to finish; settling them from here
    /// would race their own outcomes (a shard running beside this one).
    pub async fn live_runs(&self) -> anyhow::Result<Vec<mongodb::bson::Bson>> {
        use futures::TryStreamExt;
        let holders: Vec<mongodb::bson::Document> = self
            .coll(&self.locks)
            .find(doc! {"run": {"$ne": self.run}, "until": {"$gte": DateTime::now()}})
            .await
            .with_context(|| format!("reading {}", self.locks))?
            .try_collect()
            .await
            .with_context(|| format!("reading {}", self.locks))?;
        Ok(holders
            .into_iter()
            .filter_map(|h| h.get("run").cloned())
            .collect())
    }

    /// Give the lease on `scope` back (only if this run holds it).
    pub async fn release(&self, scope: &str) -> anyhow::Result<()> {
        self.coll(&self.locks)
            .delete_one(doc! {"_id": scope, "run": self.run})
            .await
            .with_context(|| format!("releasing the lease in {}", self.locks))?;
        Ok(())
    }
}

fn held(scope: &str, holder: &mongodb::bson::Document) -> LeaseHeld {
    LeaseHeld {
        scope: scope.to_string(),
        host: holder.get_str("host").unwrap_or("?").to_string(),
        pid: holder.get_i64("pid").unwrap_or(0),
        run: holder
            .get_object_id("run")
            .map(|o| o.to_hex())
            .unwrap_or_default(),
        until: holder
            .get_datetime("until")
            .ok()
            .and_then(|d| d.try_to_rfc3339_string().ok())
            .unwrap_or_default(),
    }
}

/// An upsert that lost to an existing `_id`: the lease is held (the filter did not match it).
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}
