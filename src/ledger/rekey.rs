//! The rekey records (`<collection>.rekey`): one per file a `rekey` run rewrites, so a run
//! killed at any point is finished by the next one, and every rewrite can be audited.
//!
//! A record is written **before** the new version is (`staged`: the name, the version that was
//! read, the id the new version will have, the mode), and gets its outcome after (`done`,
//! `superseded` when Parse Server wrote a newer version meanwhile, `failed` with the reason).
//! A `staged` record found by a later run is settled from the store before that run rewrites
//! anything (`settled`, with what was found): see `engine::rekey`. No key is ever recorded, only
//! which of the run's keys (`plain`, `current`, `new`) a file was and is in.

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use super::{Ledger, VERSION};

/// A rewrite begun and not finished by its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyRecord {
    pub id: ObjectId,
    pub name: String,
    /// The version that was read (and is removed once the new one is verified).
    pub old: String,
    /// The id of the version being written.
    pub new: String,
}

impl Ledger {
    fn rekey_coll(&self) -> String {
        format!("{}.rekey", self.files)
    }

    /// Record that version `new` of `name` is about to be written in place of `old`, in the
    /// store whose identity is `store` ([`ObjectStore::identity`](crate::storage::ObjectStore::identity)).
    #[allow(clippy::too_many_arguments)]
    pub async fn rekey_intent(
        &self,
        store: &str,
        name: &str,
        old: &str,
        new: &str,
        mode: &str,
        from: &str,
        to: &str,
    ) -> anyhow::Result<ObjectId> {
        // `rekey` writes the store through the ledger's records, not the engine's gate: its
        // intent is where a lost lease stops it (see `tenure`).
        self.holding().await?;
        let id = ObjectId::new();
        let d = doc! {
            "_id": id, "v": VERSION, "run": self.run, "store": store, "n": name, "old": old, "new": new,
            "mode": mode, "from": from, "to": to, "state": "staged", "at": DateTime::now(),
        };
        self.insert_one(&self.rekey_coll(), d).await?;
        Ok(id)
    }

    /// Record how a rewrite ended (`done`, `superseded`, `failed`, `settled`) with `extra`.
    pub async fn rekey_outcome(
        &self,
        id: ObjectId,
        state: &str,
        mut extra: Document,
    ) -> anyhow::Result<()> {
        extra.insert("state", state);
        extra.insert("ended", DateTime::now());
        let coll = self.rekey_coll();
        self.coll(&coll)
            .update_one(doc! {"_id": id}, doc! {"$set": extra})
            .await
            .with_context(|| format!("writing the ledger {coll}"))?;
        Ok(())
    }

    /// Rewrites a run began in the store whose identity is `store` and never finished (a crash,
    /// `kill -9`): to settle before any new one starts. A rekey of another store leaves them to
    /// a rekey of theirs. Records of versions before the store was recorded have none and are
    /// settled by any (a version id is unique to its run: in another store nothing is found
    /// under it). Only call while holding the exclusive lease (no other run is writing).
    pub async fn rekey_unfinished(&self, store: &str) -> anyhow::Result<Vec<RekeyRecord>> {
        let coll = self.rekey_coll();
        let docs: Vec<Document> = self
            .coll(&coll)
            .find(doc! {
                "state": "staged",
                "run": {"$ne": self.run},
                "$or": [{"store": store}, {"store": {"$exists": false}}],
            })
            .await
            .with_context(|| format!("reading {coll}"))?
            .try_collect()
            .await
            .with_context(|| format!("reading {coll}"))?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                Some(RekeyRecord {
                    id: d.get_object_id("_id").ok()?,
                    name: d.get_str("n").ok()?.to_string(),
                    old: d.get_str("old").ok()?.to_string(),
                    new: d.get_str("new").ok()?.to_string(),
                })
            })
            .collect())
    }

    /// Count of this ledger's rekey records by state (for tests and `status`-like checks).
    pub async fn rekey_states(&self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let coll = self.rekey_coll();
        let docs: Vec<Document> = self
            .coll(&coll)
            .aggregate([doc! {"$group": {"_id": "$state", "n": {"$sum": 1}}}])
            .await
            .with_context(|| format!("reading {coll}"))?
            .try_collect()
            .await
            .with_context(|| format!("reading {coll}"))?;
        Ok(docs
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_string(), crate::db::count(d, "n"))))
            .collect())
    }

    /// The index the start of every rekey run queries (`state`), created if missing.
    pub async fn rekey_index(&self) -> anyhow::Result<()> {
        let coll = self.rekey_coll();
        self.coll(&coll)
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(doc! {"state": 1})
                    .build(),
            )
            .await
            .with_context(|| format!("creating the index {{state: 1}} on {coll}"))?;
        Ok(())
    }
}
