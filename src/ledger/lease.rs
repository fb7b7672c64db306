//! The leases (`<collection>.locks`): one document per scope (`all` or `K/N`), held by the run
//! that writes it, so two runs never work on the same files at once, from their start to their
//! end.
//!
//! A lease ends when its run gives it back, when it expires (`[ledger] lease_secs` after its last
//! renewal, by the database server's clock: [`super::clock`]), at once when its holder ran on
//! this machine and is certainly gone (see [`holder`](super::holder): a `kill -9`, a crash), or
//! when the operator breaks it (`--break-lease`). Taking a lease over is a compare-and-swap on the
//! previous holder: the lease document is removed only if it still names that holder, then taken
//! as a free one, so of two runs racing for a crashed run's lease exactly one gets it.
//!
//! # Scopes exclude each other
//!
//! Two scopes *conflict* when their runs may touch the same files: `all` and any shard, two
//! shards of different counts (`0/2` and `1/3` overlap), and any scope beside a run that holds
//! its lease *exclusively* (`rollback`, `audit --quarantine`, `rekey`, `rebase`: work that spans
//! every shard). Shards of one count (`0/2`, `1/2`) never conflict. A run starts only while no
//! other run holds a conflicting lease, and checks again at every renewal: a conflicting lease
//! that appears while it runs (one that could only be taken while this run's looked expired)
//! makes it stop ([`LeaseLost`]).
//!
//! Taking is "write mine, then look for conflicting ones", on both sides. A run writes its
//! document marked `taking`, reads the other live leases, and only then unmarks it and starts.
//! Of two runs that start at the same moment, at least one sees the other (each wrote before it
//! read), so they never both start. When both see each other, both still `taking`, the run with
//! the smaller run id wins (ObjectIds start with their creation time, and both sides compare the
//! same two ids, so they agree): the other gives its lease back and is refused, and the winner
//! waits for that (a few round trips, at most [`RIVAL_WAIT`]) before it starts. A running run
//! ignores leases still `taking` at its renewals: such a newcomer has seen its lease and backs
//! off.
//!
//! # The database's clock
//!
//! "Now" is read from the server right before each operation, so it is one round trip old when
//! the write it decides lands. That errs on the safe side everywhere but one place: a renewal
//! landing within that round trip of its lease's expiry (only after the run stalled for most of
//! a lease: the renewer runs every third) still renews it, although another run may have just
//! read it as expired, and swept this run's upload in flight as debris. Verification catches
//! that upload (a GridFS revision with a hole fails `stat`; an aborted S3 upload cannot
//! complete), so nothing broken is recorded verified. A `$$NOW` pipeline update would close the
//! window, at the cost of the protocol subset the README promises.

use std::time::{Duration, Instant};

use anyhow::Context;
use mongodb::bson::{DateTime, Document, doc};

use super::clock::plus;
use super::holder::{Holder, this_process};
use super::{Ledger, VERSION};
use crate::db::DUPLICATE_KEY;

/// How long a run that won the tie-break against a rival starting at the same moment waits
/// for the rival to give its lease back (a few round trips) before it is refused itself (at
/// most a third of the lease).
const RIVAL_WAIT: Duration = Duration::from_secs(5);

/// How often the winner of a tie-break looks whether its rival gave its lease back.
const RIVAL_POLL: Duration = Duration::from_millis(50);

/// Another run holds the lease, or a lease that conflicts with the one asked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "another run holds the lease on {} ({}){}; two runs over the same files at once are refused",
    .0.scope, .0.describe(),
    if .0.taking { ", and was starting at the same moment as this one" } else { "" }
)]
pub struct LeaseHeld(pub Holder);

/// This run's lease is no longer certainly its own: it must not write anything more.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseLost {
    #[error(
        "the lease on {scope} expired (by the database server's clock) before this run renewed \
         it: the run stalled or could not reach the database, and another run may have taken \
         over"
    )]
    Expired { scope: String },
    #[error("the lease on {scope} is no longer this run's ({})", match .by {
        Some(h) => format!("now held by {}", h.describe()),
        None => "it was broken or taken over, and given back".to_string(),
    })]
    Taken { scope: String, by: Option<Holder> },
    #[error(
        "another run holds a lease on {} that covers the same files as this run's on {scope} ({})",
        .other.scope, .other.describe()
    )]
    Conflict { scope: String, other: Holder },
    #[error("the lease on {scope} could not be renewed for {secs} s: {reason}")]
    Unrenewed {
        scope: String,
        secs: u64,
        reason: String,
    },
}

/// How a lease was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// It was free, expired, or already ours.
    Free,
    /// It was held by a run on this machine that is certainly gone (the reason), and taken over.
    TookOver(Holder, &'static str),
}

/// How the lease scope of a `serve` gateway starts (`serve@<host>:<port>`).
pub const SERVE_SCOPE: &str = "serve@";

/// Whether a run on `scope` (holding it exclusively or not) and the run holding `other` may
/// touch the same files (see the module documentation). A scope that is not `K/N` overlaps
/// everything, except a gateway's ([`SERVE_SCOPE`]): it copies files create-only under their
/// own names and rewrites no reference, so beside `migrate` (the drain) or another gateway the
/// worst case is two copies of one file racing, which the create-only write settles (one
/// lands; the other finds the same bytes there). Exclusive runs still exclude it.
pub fn conflicts(scope: &str, exclusive: bool, other: &Holder) -> bool {
    if other.scope == scope {
        // The same document: one holder at a time, decided by the take itself.
        return false;
    }
    if !exclusive
        && !other.exclusive
        && (scope.starts_with(SERVE_SCOPE) || other.scope.starts_with(SERVE_SCOPE))
    {
        return false;
    }
    let count = |s: &str| {
        s.split_once('/')
            .and_then(|(_, n)| n.trim().parse::<u32>().ok())
    };
    exclusive
        || other.exclusive
        || match (count(scope), count(&other.scope)) {
            (Some(a), Some(b)) => a != b,
            _ => true,
        }
}

impl Ledger {
    /// Take the lease on `scope` for this run. A lease held by a run of this machine that is
    /// gone is taken over at once ([`Taken::TookOver`]); otherwise fails with [`LeaseHeld`] in
    /// the chain while another run holds an unexpired one, on `scope` or on a conflicting scope.
    pub async fn lease(&self, scope: &str, host: &str) -> anyhow::Result<Taken> {
        self.take(scope, host, false).await
    }

    /// Take the lease on `scope` as [`lease`](Self::lease) does, exclusively: refused while
    /// another run holds an unexpired lease on any other scope, and every later run of any other
    /// scope is refused while this one holds it (work that spans every shard: `rollback`).
    pub async fn lease_exclusive(&self, scope: &str, host: &str) -> anyhow::Result<Taken> {
        self.take(scope, host, true).await
    }

    /// Take the lease (see the module documentation).
    pub(super) async fn take(
        &self,
        scope: &str,
        host: &str,
        exclusive: bool,
    ) -> anyhow::Result<Taken> {
        let taken = self.take_scope(scope, host, exclusive).await?;
        if let Err(e) = self.yield_to_conflicts(scope, exclusive).await {
            if let Err(r) = self.release(scope).await {
                tracing::warn!("giving back the lease on {scope}: {r:#}");
            }
            return Err(e);
        }
        // Taken: from now on running runs count it (they ignore a lease still being taken).
        let marked = self
            .coll(&self.locks)
            .update_one(
                doc! {"_id": scope, "run": self.run},
                doc! {"$unset": {"taking": ""}},
            )
            .await
            .with_context(|| format!("taking the lease in {}", self.locks))?;
        if marked.matched_count == 0 {
            // Broken (and maybe taken) by another run between the two writes.
            return Err(match self.lease_doc(scope).await? {
                Some(holder) => LeaseHeld(holder).into(),
                None => anyhow::anyhow!("the lease on {scope} was broken while this run took it"),
            });
        }
        Ok(taken)
    }

    /// The document of `scope` itself: free, expired, ours, or taken over from a gone run.
    async fn take_scope(&self, scope: &str, host: &str, exclusive: bool) -> anyhow::Result<Taken> {
        match self.try_lease(scope, host, exclusive).await? {
            Ok(()) => Ok(Taken::Free),
            Err(holder) => match holder.gone_here() {
                Some(why) if self.remove_lease(&holder).await? => {
                    match self.try_lease(scope, host, exclusive).await? {
                        Ok(()) => Ok(Taken::TookOver(holder, why)),
                        Err(other) => Err(LeaseHeld(other).into()),
                    }
                }
                _ => Err(LeaseHeld(holder).into()),
            },
        }
    }

    /// One attempt at `scope`'s document, marked `taking`: `Err` with the holder when another
    /// run holds an unexpired lease on it.
    async fn try_lease(
        &self,
        scope: &str,
        host: &str,
        exclusive: bool,
    ) -> anyhow::Result<Result<(), Holder>> {
        let now = self.server_now().await?;
        let until = plus(now, self.lease);
        let mut lease = doc! {"_id": scope, "run": self.run, "host": host, "until": until,
        "v": VERSION, "taking": true};
        if exclusive {
            lease.insert("exclusive", true);
        }
        lease.extend(this_process());
        // A replacement, not a `$set`: nothing of an expired holder's document stays.
        let taken = self
            .coll(&self.locks)
            .replace_one(
                doc! {"_id": scope, "$or": [{"run": self.run}, {"until": {"$lt": now}}]},
                lease,
            )
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(Ok(())),
            Err(e) if is_duplicate_key(&e) => {
                let holder = self.lease_doc(scope).await?;
                Ok(Err(
                    holder.unwrap_or_else(|| Holder::from_doc(&doc! {"_id": scope}))
                ))
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("taking the lease in {}", self.locks)))
            }
        }
    }

    /// Refuse while another run holds a lease conflicting with this one's on `scope` (leases of
    /// runs of this machine that are gone are removed); wait out a rival starting at the same
    /// moment that loses the tie-break (see the module documentation).
    async fn yield_to_conflicts(&self, scope: &str, exclusive: bool) -> anyhow::Result<()> {
        // Never longer than a third of the lease: this run's own lease is not renewed yet.
        let patience = RIVAL_WAIT.min(self.lease / 3);
        let waiting_since = Instant::now();
        loop {
            let mut rival = None;
            for holder in self.holders(None).await? {
                if !conflicts(scope, exclusive, &holder) || self.gone(&holder).await? {
                    continue;
                }
                if holder.taking && self.run < holder.run {
                    // It sees this run's lease too, loses, and gives its own back.
                    rival = Some(holder);
                    continue;
                }
                return Err(LeaseHeld(holder).into());
            }
            match rival {
                None => return Ok(()),
                Some(holder) if waiting_since.elapsed() >= patience => {
                    return Err(LeaseHeld(holder).into());
                }
                Some(_) => tokio::time::sleep(RIVAL_POLL).await,
            }
        }
    }

    /// Whether `holder` ran on this machine, is certainly gone, and its lease was removed now.
    async fn gone(&self, holder: &Holder) -> anyhow::Result<bool> {
        if holder.gone_here().is_some() && self.remove_lease(holder).await? {
            tracing::warn!(
                "removed the lease on {} of a run that is gone ({})",
                holder.scope,
                holder.describe()
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Renew this run's lease on `scope`: until the server's now plus the lease, if it still
    /// holds it unexpired. Then look again for conflicting leases. A [`LeaseLost`] in the chain
    /// when the lease is no longer certainly this run's, any other error when the database could
    /// not say.
    pub(super) async fn renew(&self, scope: &str, exclusive: bool) -> anyhow::Result<()> {
        let now = self.server_now().await?;
        let until = plus(now, self.lease);
        let renewed = self
            .coll(&self.locks)
            .update_one(
                doc! {"_id": scope, "run": self.run, "until": {"$gte": now}},
                doc! {"$set": {"until": until}},
            )
            .await
            .with_context(|| format!("renewing the lease in {}", self.locks))?;
        if renewed.matched_count == 0 {
            let scope = scope.to_string();
            return Err(match self.lease_doc(&scope).await? {
                Some(h) if h.run == self.run => LeaseLost::Expired { scope },
                by => LeaseLost::Taken { scope, by },
            }
            .into());
        }
        for holder in self.holders_at(None, now).await? {
            if holder.taking || !conflicts(scope, exclusive, &holder) || self.gone(&holder).await? {
                continue;
            }
            return Err(LeaseLost::Conflict {
                scope: scope.to_string(),
                other: holder,
            }
            .into());
        }
        Ok(())
    }

    /// The holder recorded in `scope`'s lease document, expired or not.
    async fn lease_doc(&self, scope: &str) -> anyhow::Result<Option<Holder>> {
        let d = self
            .coll(&self.locks)
            .find_one(doc! {"_id": scope})
            .await
            .with_context(|| format!("reading {}", self.locks))?;
        Ok(d.as_ref().map(Holder::from_doc))
    }

    /// The leases held by other runs that are unexpired by the server's clock: on `scope`, or on
    /// any scope (`None`).
    pub async fn holders(&self, scope: Option<&str>) -> anyhow::Result<Vec<Holder>> {
        self.holders_at(scope, self.server_now().await?).await
    }

    /// The leases held by other runs that keep a run on `scope` from starting: on `scope`
    /// itself, or on a conflicting scope (what `migrate --break-lease` offers to break).
    pub async fn in_the_way(&self, scope: &str) -> anyhow::Result<Vec<Holder>> {
        let all = self.holders(None).await?;
        Ok(all
            .into_iter()
            .filter(|h| h.scope == scope || conflicts(scope, false, h))
            .collect())
    }

    /// [`holders`](Self::holders) whose leases are unexpired at `now` (server time).
    async fn holders_at(&self, scope: Option<&str>, now: DateTime) -> anyhow::Result<Vec<Holder>> {
        use futures::TryStreamExt;
        let mut filter = doc! {"run": {"$ne": self.run}, "until": {"$gte": now}};
        if let Some(s) = scope {
            filter.insert("_id", s);
        }
        let docs: Vec<Document> = self
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
        Ok(self
            .holders(None)
            .await?
            .into_iter()
            .map(|h| h.run.into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    fn holder(scope: &str, exclusive: bool) -> Holder {
        let mut d = doc! {"_id": scope, "run": ObjectId::new()};
        if exclusive {
            d.insert("exclusive", true);
        }
        Holder::from_doc(&d)
    }

    #[test]
    fn scopes_that_may_touch_the_same_files_conflict() {
        // `all` against any shard, both ways.
        assert!(conflicts("0/2", false, &holder("all", false)));
        assert!(conflicts("all", false, &holder("1/2", false)));
        // Shards of one count are disjoint; of different counts they overlap.
        assert!(!conflicts("0/2", false, &holder("1/2", false)));
        assert!(conflicts("0/2", false, &holder("1/3", false)));
        // An exclusive run conflicts with every other scope, both ways.
        assert!(conflicts("0/2", true, &holder("1/2", false)));
        assert!(conflicts("0/2", false, &holder("1/2", true)));
        // The same scope is one document: decided by the take, not here.
        assert!(!conflicts("all", true, &holder("all", true)));
        // Anything unreadable overlaps everything.
        assert!(conflicts("0/2", false, &holder("?", false)));
        // A gateway works beside migrate and other gateways, never beside an exclusive run.
        assert!(!conflicts("serve@h:8080", false, &holder("all", false)));
        assert!(!conflicts("all", false, &holder("serve@h:8080", false)));
        assert!(!conflicts("serve@a:1", false, &holder("serve@b:1", false)));
        assert!(conflicts("serve@h:8080", false, &holder("all", true)));
        assert!(conflicts("all", true, &holder("serve@h:8080", false)));
    }
}
