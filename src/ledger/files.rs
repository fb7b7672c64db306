//! The file records (`<collection>`), stored as batch documents: one document per batch of
//! intents (`f`: the entries, `n`: the names whose current record is here), written in one
//! insert before the copies start, and updated once per batch of outcomes (appended to its
//! `o` array). A file copied again later gets an entry in a newer batch, and its name is
//! pulled from the older one's `n`, so each name is current in one place.

use std::collections::HashMap;

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use super::batch::{batch_header, file_records, intent_entry, outcome_change};
use super::{FileRecord, FileResult, FileState, Intent, Ledger, Loc, pull_elsewhere};

/// Batch documents read per page of [`Ledger::files_page`] (each holds up to a few hundred
/// entries).
const DOCS_PER_PAGE: i64 = 8;

/// A page of file records.
#[derive(Debug, Default)]
pub struct FilePage {
    pub records: Vec<FileRecord>,
    /// Where the next page starts (`None`: this page was the last).
    pub next: Option<Bson>,
}

impl Ledger {
    /// The current records of `names`, one round trip. Names without a record are absent.
    pub async fn lookup(&self, names: &[&str]) -> anyhow::Result<HashMap<String, FileRecord>> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: std::collections::HashSet<&str> = names.iter().copied().collect();
        self.files_where(
            doc! {"n": {"$in": names}},
            |r| wanted.contains(r.name.as_str()).then(|| r.name.clone()),
            |_, _| true,
        )
        .await
    }

    /// Verified file records whose target is one of `targets`, by target.
    pub async fn by_target(&self, targets: &[&str]) -> anyhow::Result<HashMap<String, FileRecord>> {
        if targets.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: std::collections::HashSet<&str> = targets.iter().copied().collect();
        // A copy made under the target (from another name) says more than a later check of
        // the target in place (a name already where it belongs: `relayout` run again, a store
        // migrated onto itself): that copy is what `rollback --delete-copies` may remove, and
        // what `relink` must not take.
        let copy = |f: &FileRecord| f.name != f.target;
        self.files_where(
            doc! {"f.t": {"$in": targets}},
            |r| {
                (r.state == FileState::Verified && wanted.contains(r.target.as_str()))
                    .then(|| r.target.clone())
            },
            |kept, newer| !copy(kept) || copy(newer),
        )
        .await
    }

    /// The records of the batch documents `filter` selects that `key` keeps, by that key. Where
    /// two batches both hold a current record under one key (two hosts copied one file at the
    /// same moment), the newer batch's wins, unless `replaces(kept, newer)` says otherwise.
    async fn files_where(
        &self,
        filter: Document,
        key: impl Fn(&FileRecord) -> Option<String>,
        replaces: impl Fn(&FileRecord, &FileRecord) -> bool,
    ) -> anyhow::Result<HashMap<String, FileRecord>> {
        let mut out: HashMap<String, FileRecord> = HashMap::new();
        self.each_batch(&self.files, filter, |d| {
            for r in file_records(&self.files, d) {
                let r = r?;
                let Some(k) = key(&r) else { continue };
                if out.get(&k).is_none_or(|kept| replaces(kept, &r)) {
                    out.insert(k, r);
                }
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    /// Current file records in `state`, a page of batch documents after `after` (a previous
    /// page's [`FilePage::next`]).
    pub async fn files_page(
        &self,
        state: FileState,
        after: Option<&Bson>,
    ) -> anyhow::Result<FilePage> {
        let docs = self
            .page(
                &self.files,
                // The state is the entry's own, or one a later change gave it.
                doc! {"$or": [{"f.s": state.as_str()}, {"o.s": state.as_str()}]},
                after.cloned(),
                DOCS_PER_PAGE,
            )
            .await?;
        let next = docs.last().and_then(|d| d.get("_id").cloned());
        let mut records = Vec::new();
        for d in &docs {
            for r in file_records(&self.files, d) {
                let r = r?;
                if r.state == state {
                    records.push(r);
                }
            }
        }
        Ok(FilePage { records, next })
    }

    /// Record the intent to copy `files`: one batch document, one insert. Names an earlier run
    /// recorded (`attempts > 0`) are then pulled from their older batches.
    pub async fn plan(&self, files: &[Intent<'_>]) -> anyhow::Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let (now, batch) = (DateTime::now(), ObjectId::new());
        let mut d = batch_header(batch, self.run, now);
        d.insert("n", files.iter().map(|f| f.name).collect::<Vec<_>>());
        d.insert(
            "f",
            files
                .iter()
                .map(|f| intent_entry(f, now))
                .collect::<Vec<_>>(),
        );
        self.insert_one(&self.files, d).await?;
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            for (index, f) in files.iter().enumerate() {
                held.files.insert(f.name.to_string(), Loc { batch, index });
            }
        }
        let again: Vec<&str> = files
            .iter()
            .filter(|f| f.attempts > 0)
            .map(|f| f.name)
            .collect();
        if again.is_empty() {
            return Ok(());
        }
        self.write(&self.files, vec![pull_elsewhere("n", &again, &[batch])])
            .await
    }

    /// Record file outcomes: one update per batch document the files' intents are in.
    ///
    /// Every outcome is of a file this run planned. Two rewrite batches may record one outcome
    /// (one holds references to a file whose outcome the other is still recording): both write
    /// it, and the intent's place is forgotten only once a write has completed — so a call that
    /// no longer finds it knows the outcome is already durable.
    pub async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let now = DateTime::now();
        let marks: Vec<(Loc, Document)> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            results
                .iter()
                .filter_map(|r| match held.files.get(r.name) {
                    Some(loc) => Some((*loc, outcome_change(r, now))),
                    None => {
                        tracing::debug!(file = r.name, "outcome already recorded");
                        None
                    }
                })
                .collect()
        };
        self.push_changes(&self.files, &marks, &[], Vec::new())
            .await?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for r in results {
            held.files.remove(r.name);
        }
        Ok(())
    }

    /// Set the state of file records (read back, so each knows where it is stored).
    pub async fn mark_files(&self, files: &[&FileRecord], state: FileState) -> anyhow::Result<()> {
        let now = DateTime::now();
        let marks: Vec<(Loc, Document)> = files
            .iter()
            .map(|f| (f.loc, doc! {"s": state.as_str(), "at": now}))
            .collect();
        self.push_changes(&self.files, &marks, &[], Vec::new())
            .await
    }
}
