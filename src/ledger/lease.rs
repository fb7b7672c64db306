//! The leases (`<collection>.locks`): one per shard scope, held by the run that writes it, so two
//! runs never work on the same files at once.
//!
//! A lease ends when its run gives it back, when it expires (`[ledger] lease_secs` after its last
//! renewal), at once when its holder ran on this machine and is certainly gone (see
//! [`holder`](super::holder): a `kill -9`, a crash), or when the operator breaks it
//! (`--break-lease`). Taking a lease over is a compare-and-swap on the previous holder: the
//! lease document is removed only if it still names that holder, then taken as a free one, so of
//! two runs racing for a crashed run's lease exactly one gets it.

use anyhow::Context;
use mongodb::bson::{DateTime, doc};

use super::holder::{Holder, this_process};
use super::{Ledger, VERSION};
use crate::db::DUPLICATE_KEY;

/// Another run holds the lease.
#[derive(Debug, thiserror::Error)]
#[error(
    "another run holds the lease on {} ({}); two runs over the same files at once are refused",
    .0.scope, .0.describe()
)]
pub struct LeaseHeld(pub Holder);

/// How a lease was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// It was free, expired, or already ours.
    Free,
    /// It was held by a run on this machine that is certainly gone (the reason), and taken over.
    TookOver(Holder, &'static str),
}

impl Ledger {
    /// Take (or renew) the lease on `scope` for this run. A lease held by a run of this machine
    /// that is gone is taken over at once ([`Taken::TookOver`]); otherwise fails with
    /// [`LeaseHeld`] in the chain while another run holds an unexpired one.
    pub async fn lease(&self, scope: &str, host: &str) -> anyhow::Result<Taken> {
        match self.try_lease(scope, host).await? {
            None => Ok(Taken::Free),
            Some(holder) => match holder.gone_here() {
                Some(why) if self.remove_lease(&holder).await? => {
                    match self.try_lease(scope, host).await? {
                        None => Ok(Taken::TookOver(holder, why)),
                        Some(other) => Err(LeaseHeld(other).into()),
                    }
                }
                _ => Err(LeaseHeld(holder).into()),
            },
        }
    }

    /// One attempt: the holder when another run holds an unexpired lease on `scope`.
    async fn try_lease(&self, scope: &str, host: &str) -> anyhow::Result<Option<Holder>> {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + self.lease.as_millis() as i64);
        let locks = self.coll(&self.locks);
        let mut set = doc! {"run": self.run, "host": host, "until": until, "v": VERSION};
        set.extend(this_process());
        let taken = locks
            .update_one(
                doc! {"_id": scope, "$or": [{"run": self.run}, {"until": {"$lt": now}}]},
                doc! {"$set": set},
            )
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(None),
            Err(e) if is_duplicate_key(&e) => {
                let holder = locks
                    .find_one(doc! {"_id": scope})
                    .await
                    .with_context(|| format!("reading {}", self.locks))?
                    .unwrap_or_else(|| doc! {"_id": scope});
                Ok(Some(Holder::from_doc(&holder)))
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("taking the lease in {}", self.locks)))
            }
        }
    }

    /// Take the lease on `scope` as [`lease`](Self::lease) does, and refuse (giving it back)
    /// while another run holds an unexpired lease on any other scope: for work that spans every
    /// shard (`rollback`). Other scopes' leases whose holders are gone from this machine are
    /// removed.
    pub async fn lease_exclusive(&self, scope: &str, host: &str) -> anyhow::Result<Taken> {
        let taken = self.lease(scope, host).await?;
        for holder in self.holders(None).await? {
            if holder.scope == scope {
                continue;
            }
            if holder.gone_here().is_some() && self.remove_lease(&holder).await? {
                tracing::warn!(
                    "removed the lease on {} of a run that is gone ({})",
                    holder.scope,
                    holder.describe()
                );
                continue;
            }
            self.release(scope).await?;
            return Err(LeaseHeld(holder).into());
        }
        Ok(taken)
    }

    /// The unexpired leases held by other runs: on `scope`, or on any scope (`None`).
    pub async fn holders(&self, scope: Option<&str>) -> anyhow::Result<Vec<Holder>> {
        use futures::TryStreamExt;
        let mut filter = doc! {"run": {"$ne": self.run}, "until": {"$gte": DateTime::now()}};
        if let Some(s) = scope {
            filter.insert("_id", s);
        }
        let docs: Vec<_> = self
            .coll(&self.locks)
            .find(filter)
            .await
            .with_context(|| format!("reading {}", self.locks))?
            .try_collect()
            .await
            .with_context(|| format!("reading {}", self.locks))?;
        Ok(docs.iter().map(Holder::from_doc).collect())
    }

    /// Break `holder`'s lease (`--break-lease`, after the operator confirmed): removed only if
    /// that run still holds it. Whether it was removed.
    /// Only the run is compared: a live holder renews its lease while the operator reads the
    /// question.
    pub async fn break_lease(&self, holder: &Holder) -> anyhow::Result<bool> {
        let gone = self
            .coll(&self.locks)
            .delete_one(doc! {"_id": &holder.scope, "run": holder.run})
            .await
            .with_context(|| format!("breaking the lease in {}", self.locks))?;
        Ok(gone.deleted_count == 1)
    }

    /// The compare-and-swap at the heart of a takeover: remove the lease document of `scope`
    /// only while it names the same run, process and renewal as `holder`.
    async fn remove_lease(&self, holder: &Holder) -> anyhow::Result<bool> {
        let gone = self
            .coll(&self.locks)
            .delete_one(doc! {"_id": &holder.scope, "run": holder.run, "until": holder.until})
            .await
            .with_context(|| format!("taking over the lease in {}", self.locks))?;
        Ok(gone.deleted_count == 1)
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

/// An upsert that lost to an existing `_id`: the lease is held (the filter did not match it).
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}
