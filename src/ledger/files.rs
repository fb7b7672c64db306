//! The file records (`<collection>`): one per source file, keyed by its stored name.

use std::collections::HashMap;

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};

use super::records::file_record;
use super::{FileRecord, FileResult, FileState, Intent, Ledger, VERSION};
use crate::db::update_stmt;

impl Ledger {
    /// The records of `names`, one round trip. Names without a record are absent from the map.
    pub async fn lookup(&self, names: &[&str]) -> anyhow::Result<HashMap<String, FileRecord>> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        self.files_where(doc! {"_id": {"$in": names}}, |r| r.name.clone())
            .await
    }

    /// Verified file records whose target is one of `targets`, by target.
    pub async fn by_target(&self, targets: &[&str]) -> anyhow::Result<HashMap<String, FileRecord>> {
        if targets.is_empty() {
            return Ok(HashMap::new());
        }
        self.files_where(
            doc! {"target": {"$in": targets}, "state": FileState::Verified.as_str()},
            |r| r.target.clone(),
        )
        .await
    }

    async fn files_where(
        &self,
        filter: Document,
        key: impl Fn(&FileRecord) -> String,
    ) -> anyhow::Result<HashMap<String, FileRecord>> {
        let mut out = HashMap::new();
        let mut cursor = self
            .coll(&self.files)
            .find(filter)
            .await
            .with_context(|| format!("reading the ledger {}", self.files))?;
        while let Some(d) = cursor
            .try_next()
            .await
            .with_context(|| format!("reading the ledger {}", self.files))?
        {
            let r = file_record(&self.files, &d)?;
            out.insert(key(&r), r);
        }
        Ok(out)
    }

    /// File records in `state`, in name order, a page after `after`.
    pub async fn files_page(
        &self,
        state: FileState,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<FileRecord>> {
        let filter = doc! {"state": state.as_str()};
        let after = after.map(|a| Bson::String(a.to_string()));
        self.page(&self.files, filter, after, limit, file_record)
            .await?
            .into_iter()
            .map(|r| r.map_err(anyhow::Error::from))
            .collect()
    }

    /// Record the intent to copy `files` (state `planned`, attempt count + 1).
    pub async fn plan(&self, files: &[Intent<'_>]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let set = |f: &Intent| {
            doc! {"v": VERSION, "target": f.target, "kind": f.kind,
            "destination": f.destination, "state": FileState::Planned.as_str(),
            "run": self.run, "updated_at": now}
        };
        let fresh = files
            .iter()
            .map(|f| {
                let mut d = doc! {"_id": f.name, "created_at": now, "attempts": 1};
                d.extend(set(f));
                d
            })
            .collect();
        let upsert = |i: usize| {
            let f = &files[i];
            update_stmt(
                doc! {"_id": f.name},
                doc! {"$set": set(f), "$setOnInsert": {"created_at": now},
                "$inc": {"attempts": 1}},
                true,
            )
        };
        self.insert_or_upsert(&self.files, fresh, upsert).await
    }

    /// Record file outcomes.
    pub async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let stmts = results
            .iter()
            .map(|r| {
                let mut set = doc! {"state": r.state.as_str(), "run": self.run, "updated_at": now,
                "hash_checked": r.hash_checked};
                let mut unset = Document::new();
                match r.size {
                    Some(s) => set.insert("size", s as i64),
                    None => unset.insert("size", ""),
                };
                match r.md5 {
                    Some(m) => set.insert("md5", m),
                    None => unset.insert("md5", ""),
                };
                match r.error {
                    Some(e) => set.insert("error", e),
                    None => unset.insert("error", ""),
                };
                if r.state == FileState::Verified {
                    set.insert("verified_at", now);
                }
                let mut u = doc! {"$set": set};
                if !unset.is_empty() {
                    u.insert("$unset", unset);
                }
                update_stmt(doc! {"_id": r.name}, u, false)
            })
            .collect();
        self.write(&self.files, stmts).await
    }

    /// Set the state of file records.
    pub async fn mark_files(&self, names: &[&str], state: FileState) -> anyhow::Result<()> {
        let now = DateTime::now();
        let stmts = names
            .iter()
            .map(|n| {
                update_stmt(
                    doc! {"_id": *n},
                    doc! {"$set": {"state": state.as_str(), "updated_at": now}},
                    false,
                )
            })
            .collect();
        self.write(&self.files, stmts).await
    }
}
