//! `relink`, the engine side: point dangling references at the bytes that sit under another key
//! of the same store (a broken or racing S3 adapter `generateKey` wrote the object under a key
//! other than the name Parse stored), copying and removing nothing.
//!
//! Two phases (hook phases [`Phase::Pair`] and [`Phase::Relink`]):
//!
//! 1. **Pair.** The store's listing and every reference (top level, nested, Parse Config, URLs
//!    in strings, other apps of the database) are joined as `audit` joins them; the dangling
//!    references are paired with the orphans by [`crate::audit::relink`] (bounded memory). A
//!    reference of this app's File fields with exactly one unclaimed candidate is queued, sorted
//!    by collection and object (a temporary file when large); the others are reported with the
//!    reason and left alone.
//! 2. **Relink.** A batch at a time: each distinct key is asked of the store again (it must still
//!    be there) and of the ledger (a copy this tool made of another file is never taken), and
//!    each dangling name of the other configured store (held there, it is no dangling reference
//!    for an app mid-migration); then each reference is rewritten through the run's
//!    [`Effects`] — the compare-and-swap on the value the walk read, the ledger record first,
//!    marked [`dangling`](crate::ledger::RefChange::dangling) so that `rollback` puts the old
//!    name back.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use mongodb::Database;
use mongodb::bson::Bson;
use serde::{Deserialize, Serialize};

use super::pipeline::Plan;
use super::pipeline::rewrite::change_for;
use super::summary::{FileItem, RefItem};
use super::{Counters, Effects, RunState};
use crate::audit::join::{decode_ref, ref_payload};
use crate::audit::relink::{Counts, Pairer, Pairing, Rule};
use crate::audit::sort::{Sorter, parts, push_part};
use crate::audit::{Audit, Finding, Options};
use crate::hooks::{Hooks, Phase};
use crate::ledger::{Ledger, RefChange};
use crate::parse::schema::collection_name;
use crate::scan::{FileRef, Shape, Target};
use crate::storage::ObjectStore;

/// References rewritten per batch (one `stat` per distinct key, one ledger lookup, one update
/// command).
const BATCH: usize = 256;

/// Keys asked of the store at once.
const STATS: usize = 16;

/// What to relink.
pub struct Relink<'a> {
    pub store: &'a dyn ObjectStore,
    /// The other configured store, if any: a dangling name it holds is left alone (Parse
    /// Server may be reading it from there, mid-migration).
    pub other: Option<&'a dyn ObjectStore>,
    pub ledger: &'a Ledger,
    pub db: &'a Database,
    /// This app's targets: their File references are relinked.
    pub own: &'a [Target],
    /// Other apps of the database: their references only protect keys.
    pub others: &'a [Target],
    pub rule: Rule,
    pub sort: Options,
    /// The url base, the fileKey, the collection prefix, page size and limits.
    pub plan: &'a Plan,
}

/// A dangling reference as the pairing carries it (enough to rewrite it without reading its
/// document again: the compare-and-swap holds the value the walk saw).
#[derive(Serialize, Deserialize)]
struct Held {
    /// `_id` as canonical extended JSON.
    id: serde_json::Value,
    url: Option<String>,
    shape: Shape,
    /// A File reference of this app (relinkable), not a string's URL or another app's.
    own: bool,
}

/// What relink found and did besides the run's counters.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub rule: String,
    pub pairing: Counts,
    /// Relinkable references left alone at the last check (the key gone, or a copy this tool
    /// made of another file).
    pub refused: u64,
}

impl Relink<'_> {
    pub async fn run(
        &self,
        effects: &dyn Effects,
        state: &RunState,
        hooks: &Hooks,
    ) -> anyhow::Result<(Report, Option<String>)> {
        let mut report = Report {
            rule: self.rule.describe(),
            ..Report::default()
        };
        let queued = hooks
            .phase(Phase::Pair, self.pair(state, &mut report))
            .await?;
        let stopped = hooks
            .phase(
                Phase::Relink,
                self.relink(queued, effects, state, &mut report),
            )
            .await?;
        Ok((report, stopped))
    }

    /// Phase 1: the relinkable references, sorted by collection and object.
    async fn pair(&self, state: &RunState, report: &mut Report) -> anyhow::Result<Sorter> {
        let mut audit = Audit::new(&self.sort);
        tracing::info!("listing {}", self.store.describe());
        audit.list(self.store, &mut |_| Ok(())).await?;
        let c = &state.counters;
        let page = self.plan.page_size;
        for (targets, own) in [(self.own, true), (self.others, false)] {
            crate::scan::refs::for_each_ref(self.db, targets, page, |r| {
                Counters::add(&c.references, own as u64);
                let held = Held {
                    id: r.id.clone().into_canonical_extjson(),
                    url: r.url.clone(),
                    shape: r.shape,
                    own: own && !r.in_string(),
                };
                let handle = serde_json::to_string(&held)?;
                audit.add_reference(&r.class, &handle, &r.path, &r.name)?;
                Ok(())
            })
            .await?;
        }
        let mut pairer = Pairer::new(self.rule.clone(), &self.sort);
        let mut dangling = 0u64;
        let _summary = audit.finish(&mut |f| match f {
            Finding::Orphan { name, size, .. } => pairer.add_orphan(name, *size),
            Finding::Dangling {
                class,
                object_id,
                path,
                name,
            } => {
                dangling += 1;
                pairer.add_dangling(name, &ref_payload(class, object_id, path))
            }
            Finding::Superseded { .. } => Ok(()),
        })?;
        tracing::info!(dangling, "pairing the dangling references with the orphans");
        let mut queued = Sorter::new(&self.sort.temp_dir, self.sort.run_bytes);
        let mut left = Left::default();
        report.pairing = pairer.finish(&mut |name, r, pairing| {
            let [class, handle, path] = decode_ref(r)?;
            let held: Held = serde_json::from_str(handle).map_err(io::Error::other)?;
            if !held.own {
                return Ok(());
            }
            let why = match pairing {
                Pairing::One { key, .. } => {
                    let mut payload = Vec::new();
                    for part in [class, name, key, path, handle] {
                        push_part(&mut payload, part);
                    }
                    return queued.push(&format!("{class}\0{}", held.id), &payload);
                }
                Pairing::Several { keys, count } => format!(
                    "ambiguous: {count} orphans' keys match ({}{}); left alone",
                    keys.join(", "),
                    if *count as usize > keys.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
                Pairing::Claimed { key, names } => format!(
                    "ambiguous: the one orphan that matches, {key}, matches {names} dangling \
                     names; left alone"
                ),
                Pairing::None => "no orphan's key matches; stays dangling".to_string(),
            };
            left.add(name, why, c);
            Ok(())
        })?;
        left.flush(c);
        Ok(queued)
    }

    /// Phase 2: rewrite the queued references, a batch at a time.
    async fn relink(
        &self,
        queued: Sorter,
        effects: &dyn Effects,
        state: &RunState,
        report: &mut Report,
    ) -> anyhow::Result<Option<String>> {
        let mut batch: Vec<Queued> = Vec::new();
        for rec in queued.finish()? {
            let q = Queued::decode(&rec?.payload)?;
            let other_class = batch.first().is_some_and(|b| b.class != q.class);
            if other_class || batch.len() == BATCH {
                self.flush(std::mem::take(&mut batch), effects, state, report)
                    .await?;
                if let Some(stop) = state.stop(&self.plan.limits) {
                    return Ok(Some(stop));
                }
            }
            batch.push(q);
        }
        if !batch.is_empty() {
            self.flush(batch, effects, state, report).await?;
        }
        Ok(state.stop(&self.plan.limits))
    }

    /// Rewrite one batch of references of one class.
    async fn flush(
        &self,
        batch: Vec<Queued>,
        effects: &dyn Effects,
        state: &RunState,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let c = &state.counters;
        let Some(class) = batch.first().map(|q| q.class.clone()) else {
            return Ok(());
        };
        let collection = collection_name(&self.plan.collection_prefix, &class);
        state.db.admit().await;
        // The last check of each key: still stored, and not a copy this tool made of another
        // file (the ledger's verified targets).
        let keys: Vec<&str> = batch.iter().map(|q| q.key.as_str()).collect();
        let mut refused = refusals(self.store, &keys, |key, stat| match stat {
            Ok(_) => None,
            Err(e) if e.is_not_found() => Some(format!("{key} is gone since it was listed")),
            Err(e) => Some(format!("{key} could not be checked: {e}")),
        })
        .await;
        for (key, f) in self.ledger.by_target(&keys).await? {
            refused
                .entry(key.clone())
                .or_insert_with(|| format!("{key} is the copy this tool made of {}", f.name));
        }
        // And each dangling name, of the other store: there, it is no dangling reference.
        let held_elsewhere = match self.other {
            None => BTreeMap::new(),
            Some(other) => {
                let names: Vec<&str> = batch.iter().map(|q| q.name.as_str()).collect();
                let there = other.describe();
                refusals(other, &names, |name, stat| match stat {
                    Err(e) if e.is_not_found() => None,
                    Ok(_) => Some(format!(
                        "{name} is in {there} (Parse Server may read it there)"
                    )),
                    Err(e) => Some(format!("{name} could not be looked for in {there}: {e}")),
                })
                .await
            }
        };
        let secret = self.plan.file_key.as_ref().map(|k| k.expose());
        let mut changes: Vec<RefChange> = Vec::with_capacity(batch.len());
        for q in &batch {
            let r = match q.file_ref() {
                Ok(r) => r,
                Err(why) => {
                    Counters::add(&c.refs_failed, 1);
                    c.failed_reference(RefItem {
                        class: q.class.clone(),
                        object_id: q.held.id.to_string(),
                        path: q.path.clone(),
                        name: q.name.clone(),
                        reason: why,
                    });
                    continue;
                }
            };
            let why = refused.get(&q.key).or_else(|| held_elsewhere.get(&q.name));
            if let Some(why) = why {
                report.refused += 1;
                Counters::add(&c.refs_failed, 1);
                c.failed_reference(RefItem::of_ref(&r, format!("not relinked: {why}")));
                continue;
            }
            match change_for(&r, &q.name, &q.key, &self.plan.urls, secret) {
                Ok(Some(mut change)) => {
                    change.dangling = true;
                    changes.push(change);
                }
                Ok(None) => Counters::add(&c.refs_unchanged, 1),
                Err(why) => {
                    Counters::add(&c.refs_failed, 1);
                    c.failed_reference(RefItem::of_ref(&r, why));
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let states = effects.rewrite(&collection, &changes).await?;
        for (change, (s, error)) in changes.iter().zip(states) {
            let conflict = "changed since it was read (by the app); left alone";
            c.settled(change, s, error, conflict);
        }
        Ok(())
    }
}

/// Of `names` (repeats asked once, [`STATS`] at a time), those `why` gives a reason against,
/// looked up in `store`, with the reason.
async fn refusals(
    store: &dyn ObjectStore,
    names: &[&str],
    why: impl Fn(
        &str,
        Result<crate::storage::ObjectMeta, crate::storage::StorageError>,
    ) -> Option<String>,
) -> BTreeMap<String, String> {
    let names: Vec<&str> = names
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = BTreeMap::new();
    for chunk in names.chunks(STATS) {
        let stats = futures::future::join_all(chunk.iter().map(|n| store.stat(n))).await;
        for (name, stat) in chunk.iter().zip(stats) {
            if let Some(reason) = why(name, stat) {
                out.insert(name.to_string(), reason);
            }
        }
    }
    out
}

/// A queued reference.
struct Queued {
    class: String,
    name: String,
    key: String,
    path: String,
    held: Held,
}

impl Queued {
    fn decode(p: &[u8]) -> io::Result<Queued> {
        let ([class, name, key, path, handle], _) = parts::<5>(p)?;
        let held = serde_json::from_str(handle).map_err(io::Error::other)?;
        Ok(Queued {
            class: class.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            path: path.to_string(),
            held,
        })
    }

    /// The reference as the walk found it.
    fn file_ref(&self) -> Result<FileRef, String> {
        let id = Bson::try_from(self.held.id.clone())
            .map_err(|e| format!("the object id could not be read back: {e}"))?;
        Ok(FileRef {
            class: self.class.clone(),
            id,
            path: self.path.clone(),
            name: self.name.clone(),
            url: self.held.url.clone(),
            shape: self.held.shape,
            page: 0,
        })
    }
}

/// Names left alone, one report item per name (its references arrive one after another).
#[derive(Default)]
struct Left {
    current: Option<FileItem>,
}

impl Left {
    fn add(&mut self, name: &str, reason: String, c: &Counters) {
        Counters::add(&c.refs_left, 1);
        match &mut self.current {
            Some(item) if item.name == name && item.reason == reason => item.references += 1,
            _ => {
                self.flush(c);
                self.current = Some(FileItem {
                    name: name.to_string(),
                    reason,
                    references: 1,
                });
            }
        }
    }

    fn flush(&mut self, c: &Counters) {
        // Listed with the reason, not counted as missing files: a re-run would not change
        // them (the exit code stays 0; `audit` still reports them dangling).
        if let Some(item) = self.current.take() {
            c.missing(item);
        }
    }
}
