//! The reference records (`<collection>.refs`), stored as batch documents: one per batch of
//! references about to be rewritten (`r`: the entries, each with its key
//! `<class>/<object _id>/<path>`, old and new values and state; `k`: the keys whose current
//! record is here; `open` while any entry may still be `pending`). The old values are inserted
//! in one document before the compare-and-swap updates; the outcomes are appended to it (`o`) in
//! one update after.
//! A reference recorded again later (after a conflict or a rollback) has its key pulled from the
//! older batch's `k` when the newer batch is closed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use super::batch::{batch_header, ref_entry, ref_records};
use super::{BadRecord, Ledger, Loc, RefChange, RefRecord, RefState, RefValue, pull_elsewhere};

/// Bytes of entries per batch document. References to files are small (a few hundred bytes);
/// whole strings (`--strings`) may be large, and a batch of them must stay far below the 16 MiB
/// BSON document limit.
pub(super) const BATCH_DOC_BYTES: usize = 4 * 1024 * 1024;

/// Batch documents read per page of [`Ledger::refs_page`].
const DOCS_PER_PAGE: i64 = 8;

/// What settling a recorded reference found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Its outcome, now known.
    State(RefState),
    /// The update never reached the document (it still holds the old value): the record is
    /// dropped from the current ones, and the walk finds and rewrites the reference again.
    NotApplied,
}

impl Ledger {
    /// Record references about to be rewritten, with their old and new values: one batch
    /// document (more when the values are large: see [`BATCH_DOC_BYTES`]), `open`, every entry
    /// `pending`, all in one round trip.
    pub async fn record_pending(&self, changes: &[RefChange]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let origins = self.origins(changes).await?;
        let now = DateTime::now();
        let mut docs = Vec::new();
        let mut locs = Vec::with_capacity(changes.len());
        let entries = changes.iter().zip(origins).map(|(c, origin)| {
            let mut entry = ref_entry(c, RefState::Pending);
            // A chain's first value, and whether it named nothing stored (a relink began it).
            if let Some((origin, dangling)) = origin {
                entry.insert("orig", origin.to_bson());
                entry.insert("dg", dangling);
            }
            (c.key(), entry)
        });
        let size = |(key, entry): &(String, Document)| key.len() + crate::db::bson_len(entry);
        for group in crate::db::by_size(entries, usize::MAX, BATCH_DOC_BYTES, size) {
            let batch = ObjectId::new();
            let mut d = batch_header(batch, self.run, now);
            let (keys, entries): (Vec<String>, Vec<Document>) = group.into_iter().unzip();
            d.insert("open", true);
            d.insert("k", &keys);
            d.insert("r", entries);
            docs.push(d);
            locs.extend(
                keys.into_iter()
                    .enumerate()
                    .map(|(index, key)| (key, Loc { batch, index })),
            );
        }
        match docs.len() {
            1 => self.insert_one(&self.refs, docs.remove(0)).await?,
            _ => self.insert_many(&self.refs, docs).await?,
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.refs.extend(locs);
        Ok(())
    }

    /// For each change, the value before the first of a chain of recorded changes when it
    /// continues one: the reference's current record is `rewritten` to exactly the value this
    /// change replaces (an earlier migrate, rebase or move; a value the app changed meanwhile
    /// starts a new chain). One lookup per batch, and none while the ledger held no reference
    /// records when this run began (a first migration).
    async fn origins(
        &self,
        changes: &[RefChange],
    ) -> anyhow::Result<Vec<Option<(RefValue, bool)>>> {
        let earlier = *self
            .earlier_refs
            .get_or_try_init(|| async {
                let any = self
                    .db
                    .collection::<Document>(&self.refs)
                    .find_one(doc! {})
                    .projection(doc! {"_id": 1})
                    .await?;
                anyhow::Ok(any.is_some())
            })
            .await?;
        if !earlier {
            return Ok(vec![None; changes.len()]);
        }
        let keys: Vec<String> = changes.iter().map(RefChange::key).collect();
        let current = self.refs_by_key(&keys).await?;
        Ok(changes
            .iter()
            .zip(&keys)
            .map(|(c, key)| {
                let before = current.get(key)?;
                (before.state == RefState::Rewritten && before.change.new.same_as(&c.old))
                    .then(|| (before.change.original().clone(), before.change.dangling))
            })
            .collect())
    }

    /// Record what happened to references [`record_pending`](Self::record_pending) recorded:
    /// one update per batch document (which closes it), in the same command as pulling their
    /// keys from older batches.
    pub async fn record_refs(
        &self,
        outcomes: &[(&RefChange, RefState, Option<&str>)],
    ) -> anyhow::Result<()> {
        let marks: Vec<(Loc, Document)> = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            outcomes
                .iter()
                .filter_map(|(c, state, error)| {
                    let loc = held.refs.remove(&c.key())?;
                    let mut set = doc! {"s": state.as_str()};
                    if let Some(e) = error {
                        set.insert("err", *e);
                    }
                    Some((loc, set))
                })
                .collect()
        };
        if marks.len() < outcomes.len() {
            anyhow::bail!(
                "recording reference outcomes: {} of {} were never recorded pending",
                outcomes.len() - marks.len(),
                outcomes.len()
            );
        }
        let keys: Vec<String> = outcomes.iter().map(|(c, ..)| c.key()).collect();
        self.close_refs(&marks, &keys).await
    }

    /// Set the outcome of each recorded reference, close the batch documents they are in and
    /// pull `keys` (theirs) from every other batch.
    async fn close_refs(&self, marks: &[(Loc, Document)], keys: &[String]) -> anyhow::Result<()> {
        let mut batches: Vec<ObjectId> = marks.iter().map(|(l, _)| l.batch).collect();
        batches.sort_unstable();
        batches.dedup();
        let mut extra = Vec::new();
        if !keys.is_empty() {
            extra.push(pull_elsewhere("k", keys, &batches));
        }
        self.push_changes(&self.refs, marks, &batches, extra).await
    }

    /// Current reference records in one of `states`, a page of batch documents after `after`
    /// (the previous page's [`RefPage::next`]). `open_only` reads only batches that may hold
    /// `pending` records and that no live run (one holding an unexpired lease) wrote. A record this version cannot read comes back as its [`BadRecord`], in
    /// place, so a caller can report it and go on.
    pub async fn refs_page(
        &self,
        states: &[RefState],
        after: Option<&Bson>,
        open_only: bool,
    ) -> anyhow::Result<RefPage> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let filter = if open_only {
            doc! {"open": true, "run": {"$nin": self.live_runs().await?}}
        } else {
            doc! {"$or": [{"r.s": {"$in": &names}}, {"o.s": {"$in": &names}}]}
        };
        let docs = self
            .page(&self.refs, filter, after.cloned(), DOCS_PER_PAGE)
            .await?;
        let next = docs.last().and_then(|d| d.get("_id").cloned());
        let mut records = Vec::new();
        let mut batches = Vec::new();
        for d in &docs {
            if let Ok(id) = d.get_object_id("_id") {
                batches.push(id);
            }
            records.extend(
                ref_records(&self.refs, d)
                    .into_iter()
                    .filter(|r| r.as_ref().map_or(true, |r| states.contains(&r.state))),
            );
        }
        Ok(RefPage {
            records,
            next,
            batches,
        })
    }

    /// Mark reference records (read back, so each knows where it is stored) with a state.
    pub async fn mark_refs(&self, marks: &[(&RefChange, RefState)]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let marks: Vec<(Loc, Document)> = marks
            .iter()
            .filter_map(|(c, s)| Some((c.loc?, doc! {"s": s.as_str(), "at": now})))
            .collect();
        self.push_changes(&self.refs, &marks, &[], Vec::new()).await
    }

    /// Settle the records of a page of open batches: each gets its outcome, or is dropped from
    /// the current records ([`Settled::NotApplied`]); the batches are closed.
    pub async fn settle_refs(
        &self,
        page: &RefPage,
        settled: &[(&RefChange, Settled)],
    ) -> anyhow::Result<()> {
        let mut marks = Vec::new();
        let mut dropped: BTreeMap<ObjectId, Vec<String>> = BTreeMap::new();
        let mut keys = Vec::new();
        for (c, s) in settled {
            let Some(loc) = c.loc else { continue };
            match s {
                Settled::State(state) => {
                    marks.push((loc, doc! {"s": state.as_str()}));
                    keys.push(c.key());
                }
                Settled::NotApplied => dropped.entry(loc.batch).or_default().push(c.key()),
            }
        }
        let mut extra = Vec::new();
        for (batch, keys) in dropped {
            extra.push(crate::db::update_stmt(
                doc! {"_id": batch},
                doc! {"$pull": {"k": {"$in": keys}}},
                false,
            ));
        }
        self.push_changes(&self.refs, &marks, &page.batches, extra)
            .await?;
        // Keys whose outcome is now known are current here only.
        if keys.is_empty() {
            return Ok(());
        }
        let pull = pull_elsewhere("k", &keys, &page.batches);
        self.write(&self.refs, vec![pull]).await
    }

    /// The current records of the references `keys` ([`RefChange::key`]), by key, in one round
    /// trip (the `k` index). Keys without a record are absent. Where two batches both hold a
    /// current record under one key, the newer batch's wins.
    pub async fn refs_by_key(&self, keys: &[String]) -> anyhow::Result<HashMap<String, RefRecord>> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
        self.each_batch(&self.refs, doc! {"k": {"$in": keys}}, |d| {
            for r in ref_records(&self.refs, d) {
                let r = r?;
                let key = r.change.key();
                if wanted.contains(key.as_str()) {
                    out.insert(key, r);
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    /// Whether any current reference record of `file` is rewritten or pending (points at its
    /// copy, or may).
    pub async fn still_referenced(&self, file: &str) -> anyhow::Result<bool> {
        let live = [RefState::Rewritten, RefState::Pending];
        let names: Vec<&str> = live.iter().map(|s| s.as_str()).collect();
        let filter = doc! {"r": {"$elemMatch": {"file": file, "s": {"$in": names}}}};
        let mut found = false;
        self.each_batch(&self.refs, filter, |d| {
            found = ref_records(&self.refs, d)
                .into_iter()
                .any(|r| r.is_ok_and(|r| r.change.file == file && live.contains(&r.state)));
            Ok(if found {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await?;
        Ok(found)
    }
}

/// One page of reference records.
#[derive(Debug)]
pub struct RefPage {
    pub records: Vec<Result<RefRecord, BadRecord>>,
    /// Where the next page starts (`None`: the page was empty).
    pub next: Option<Bson>,
    /// The batch documents the page read.
    pub batches: Vec<ObjectId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(entries: Vec<(String, Document)>) -> Vec<Vec<(String, Document)>> {
        let size = |(k, e): &(String, Document)| k.len() + crate::db::bson_len(e);
        crate::db::by_size(entries, usize::MAX, BATCH_DOC_BYTES, size)
    }

    #[test]
    fn large_entries_are_spread_over_several_batch_documents() {
        let big = "x".repeat(1024 * 1024);
        let g = groups(
            (0..10)
                .map(|i| (format!("k{i}"), doc! {"old": &big, "i": i}))
                .collect(),
        );
        assert_eq!(
            g.iter().map(Vec::len).sum::<usize>(),
            10,
            "every entry, once"
        );
        assert!(
            g.len() >= 3,
            "10 MiB in groups of at most 4 MiB: {}",
            g.len()
        );
        let order: Vec<String> = g.iter().flatten().map(|(k, _)| k.clone()).collect();
        assert_eq!(order, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>());
        let small = (0..500).map(|i| (format!("k{i}"), doc! {"old": "tfss-a.png"}));
        assert_eq!(
            groups(small.collect()).len(),
            1,
            "small entries share one document"
        );
    }
}
