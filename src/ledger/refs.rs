//! The reference records (`<collection>.refs`): one per reference rewritten, keyed by
//! `<class>/<object _id>/<path>`, holding the old and new values.

use std::collections::BTreeMap;

use anyhow::Context;
use mongodb::bson::{Bson, DateTime, doc};

use super::records::ref_record;
use super::{BadRecord, Ledger, RefChange, RefRecord, RefState, VERSION};
use crate::db::update_stmt;

impl Ledger {
    /// Record references about to be rewritten, with their old and new values.
    pub async fn record_pending(&self, changes: &[RefChange]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let set = |c: &RefChange| {
            doc! {"v": VERSION, "c": &c.class, "o": c.id.clone(), "p": &c.path,
            "file": &c.file, "old": c.old.to_bson(), "new": c.new.to_bson(),
            "state": RefState::Pending.as_str(), "run": self.run, "updated_at": now}
        };
        let fresh = changes
            .iter()
            .map(|c| {
                let mut d = doc! {"_id": c.key()};
                d.extend(set(c));
                d
            })
            .collect();
        let upsert = |i: usize| {
            let c = &changes[i];
            update_stmt(
                doc! {"_id": c.key()},
                doc! {"$set": set(c), "$unset": {"error": ""}},
                true,
            )
        };
        self.insert_or_upsert(&self.refs, fresh, upsert).await
    }

    /// Record what happened to references. Outcomes without an error (the common case: a whole
    /// batch rewritten) share one multi-document statement per state, `{_id: {$in: keys}}`,
    /// rather than a statement each: the server plans one query instead of hundreds.
    pub async fn record_refs(
        &self,
        outcomes: &[(&RefChange, RefState, Option<&str>)],
    ) -> anyhow::Result<()> {
        let now = DateTime::now();
        let mut plain: BTreeMap<&'static str, Vec<Bson>> = BTreeMap::new();
        let mut stmts = Vec::new();
        for (c, state, error) in outcomes {
            match error {
                None => plain.entry(state.as_str()).or_default().push(c.key()),
                Some(e) => stmts.push(update_stmt(
                    doc! {"_id": c.key()},
                    doc! {"$set": {"state": state.as_str(), "updated_at": now, "error": *e}},
                    false,
                )),
            }
        }
        for (state, keys) in plain {
            for keys in keys.chunks(crate::db::UPDATE_BATCH) {
                let mut s = update_stmt(
                    doc! {"_id": {"$in": keys}},
                    doc! {"$set": {"state": state, "updated_at": now}},
                    false,
                );
                s.insert("multi", true);
                stmts.push(s);
            }
        }
        self.write(&self.refs, stmts).await
    }

    /// Reference records in one of `states`, in key order, a page after `after` (the key of the
    /// last record of the previous page). A record this version cannot read comes back as its
    /// [`BadRecord`], in place, so a caller can report it and go on.
    pub async fn refs_page(
        &self,
        states: &[RefState],
        after: Option<&Bson>,
        limit: i64,
    ) -> anyhow::Result<RefPage> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let filter = doc! {"state": {"$in": names}};
        let (mut records, mut last) = (Vec::new(), None);
        for (key, r) in self
            .page(&self.refs, filter, after.cloned(), limit, |coll, d| {
                (d.get("_id").cloned(), ref_record(coll, d))
            })
            .await?
        {
            last = key.or(last);
            records.push(r);
        }
        Ok(RefPage { records, last })
    }

    /// Mark reference records (by key) with a state.
    pub async fn mark_refs(&self, keys: &[(Bson, RefState)]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let stmts = keys
            .iter()
            .map(|(id, s)| {
                update_stmt(
                    doc! {"_id": id.clone()},
                    doc! {"$set": {"state": s.as_str(), "updated_at": now}},
                    false,
                )
            })
            .collect();
        self.write(&self.refs, stmts).await
    }

    /// Whether any reference to `file` is still recorded as rewritten (points at its copy).
    pub async fn still_referenced(&self, file: &str) -> anyhow::Result<bool> {
        let live = [RefState::Rewritten.as_str(), RefState::Pending.as_str()];
        Ok(self
            .coll(&self.refs)
            .find_one(doc! {"file": file, "state": {"$in": live.to_vec()}})
            .await
            .with_context(|| format!("reading {}", self.refs))?
            .is_some())
    }
}

/// One page of reference records.
#[derive(Debug)]
pub struct RefPage {
    pub records: Vec<Result<RefRecord, BadRecord>>,
    /// The key to read the next page after (`None`: the page was empty).
    pub last: Option<Bson>,
}
