//! The quarantine records (`<collection>.quarantine`): one document per object `audit
//! --quarantine` moved (or `--purge --superseded` deleted), written *before* the store is
//! touched and updated after, so a crash leaves a record that names what was in flight and
//! everything needed to finish or undo it: the store (its description), the name, where the
//! quarantined bytes are, the size and modification time the listing reported.
//!
//! States: `moving` → `quarantined` → (`restoring` → `restored`) | (`purging` → `purged`); a
//! superseded GridFS revision: `purging` → `purged` with its `version`. A record left `restoring`
//! or `purging` by a crash is finished by the next run of the same direction (the store's moves
//! are idempotent); one left `moving` is taken back (`restoring` → `restored`) by the next
//! `--quarantine` or `--restore`, and its file judged afresh. Moves are rare
//! next to copies, so each is one small document rather than an entry of a batch document.

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use std::time::SystemTime;

use super::{Ledger, VERSION};
use crate::db::update_stmt;

/// Where one quarantined object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineState {
    Moving,
    Quarantined,
    Restoring,
    Restored,
    Purging,
    Purged,
    /// Neither place held the object any more.
    Gone,
    /// The store refused (the quarantine held other bytes; the newest revision).
    Refused,
}

impl QuarantineState {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineState::Moving => "moving",
            QuarantineState::Quarantined => "quarantined",
            QuarantineState::Restoring => "restoring",
            QuarantineState::Restored => "restored",
            QuarantineState::Purging => "purging",
            QuarantineState::Purged => "purged",
            QuarantineState::Gone => "gone",
            QuarantineState::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Option<QuarantineState> {
        use QuarantineState::*;
        [
            Moving,
            Quarantined,
            Restoring,
            Restored,
            Purging,
            Purged,
            Gone,
            Refused,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One quarantine record.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRecord {
    pub id: ObjectId,
    /// The store's description (no secrets).
    pub store: String,
    pub name: String,
    /// Where the quarantined bytes are (the store's quarantine location).
    pub location: String,
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub state: QuarantineState,
    /// When the move finished (state `quarantined` and later).
    pub quarantined_at: Option<SystemTime>,
    /// A superseded GridFS revision deleted by `--purge --superseded` (its id).
    pub version: Option<String>,
}

/// What is about to be moved or deleted.
#[derive(Debug, Clone)]
pub struct QuarantineIntent<'a> {
    pub store: &'a str,
    pub name: &'a str,
    pub location: &'a str,
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub version: Option<&'a str>,
}

impl Ledger {
    fn quarantine_coll(&self) -> mongodb::Collection<Document> {
        self.coll(&format!("{}.quarantine", self.files))
    }

    /// Record moves (or superseded revisions' deletions) before they happen, in one round trip;
    /// returns the records' ids, in order.
    pub async fn quarantine_intents(
        &self,
        intents: &[QuarantineIntent<'_>],
    ) -> anyhow::Result<Vec<ObjectId>> {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        let now = DateTime::now();
        let mut ids = Vec::with_capacity(intents.len());
        let docs: Vec<Document> = intents
            .iter()
            .map(|i| {
                let id = ObjectId::new();
                ids.push(id);
                let state = if i.version.is_some() {
                    QuarantineState::Purging
                } else {
                    QuarantineState::Moving
                };
                let mut d = doc! {
                    "_id": id, "v": VERSION, "run": self.run, "store": i.store, "name": i.name,
                    "location": i.location, "size": i.size as i64, "state": state.as_str(),
                    "at": now,
                };
                if let Some(m) = i.modified {
                    d.insert("modified", DateTime::from_system_time(m));
                }
                if let Some(v) = i.version {
                    d.insert("version", v);
                }
                d
            })
            .collect();
        self.quarantine_coll()
            .insert_many(docs)
            .await
            .context("writing the ledger's quarantine records")?;
        Ok(ids)
    }

    /// Set records' states in one round trip (and, on `quarantined`, the time the move finished,
    /// once: a refused restore puts a record back unchanged).
    pub async fn quarantine_marks(
        &self,
        marks: &[(ObjectId, QuarantineState)],
    ) -> anyhow::Result<()> {
        let now = DateTime::now();
        let mut stmts = Vec::with_capacity(marks.len() * 2);
        for (id, state) in marks {
            if *state == QuarantineState::Quarantined {
                stmts.push(update_stmt(
                    doc! {"_id": id, "quarantined_at": {"$exists": false}},
                    doc! {"$set": {"quarantined_at": now}},
                    false,
                ));
            }
            stmts.push(update_stmt(
                doc! {"_id": id},
                doc! {"$set": {"state": state.as_str(), "at": now, "last_run": self.run}},
                false,
            ));
        }
        self.write(&format!("{}.quarantine", self.files), stmts)
            .await
    }

    /// Up to `limit` records of the store named `store` (any of the names its records may carry:
    /// `StoreName::all`) in one of `states`, in `_id` order after `after`.
    pub async fn quarantine_records(
        &self,
        store: &[&str],
        states: &[QuarantineState],
        after: Option<ObjectId>,
        limit: i64,
    ) -> anyhow::Result<Vec<QuarantineRecord>> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let mut filter = doc! {"store": {"$in": store}, "state": {"$in": states}};
        if let Some(a) = after {
            filter.insert("_id", doc! {"$gt": a});
        }
        self.find_quarantine(filter, Some(limit)).await
    }
}

impl Ledger {
    /// The records of the store named `store` in `states` whose name is one of `names`.
    pub async fn quarantine_named(
        &self,
        store: &[&str],
        states: &[QuarantineState],
        names: &[&str],
    ) -> anyhow::Result<Vec<QuarantineRecord>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let filter =
            doc! {"store": {"$in": store}, "state": {"$in": states}, "name": {"$in": names}};
        self.find_quarantine(filter, None).await
    }

    /// The records `filter` selects, oldest first, at most `limit`.
    async fn find_quarantine(
        &self,
        filter: Document,
        limit: Option<i64>,
    ) -> anyhow::Result<Vec<QuarantineRecord>> {
        let docs: Vec<Document> = self
            .quarantine_coll()
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit.unwrap_or(0))
            .await
            .context("reading the ledger's quarantine records")?
            .try_collect()
            .await
            .context("reading the ledger's quarantine records")?;
        docs.iter().map(record).collect()
    }
}

fn record(d: &Document) -> anyhow::Result<QuarantineRecord> {
    super::batch::check_version(d)
        .map_err(|why| anyhow::anyhow!("a quarantine record was {why}"))?;
    let text = |k: &str| d.get_str(k).map(str::to_string);
    let time = |k: &str| match d.get(k) {
        Some(Bson::DateTime(t)) => Some(t.to_system_time()),
        _ => None,
    };
    let state = d
        .get_str("state")
        .ok()
        .and_then(QuarantineState::parse)
        .context("a quarantine record has no known state")?;
    Ok(QuarantineRecord {
        id: d.get_object_id("_id")?,
        store: text("store")?,
        name: text("name")?,
        location: text("location").unwrap_or_default(),
        size: match d.get("size") {
            Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        modified: time("modified"),
        state,
        quarantined_at: time("quarantined_at"),
        version: text("version").ok(),
    })
}
