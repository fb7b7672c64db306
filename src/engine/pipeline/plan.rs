//! The planner: walks the classes and decides, per file, what the run does with it.
//!
//! For each page of references: drop those outside `--select` and `--shard` (counting, in one
//! ledger query, those that name a file this tool copied: migrated by an earlier run), group the
//! rest by file name, ask the run's [`Dedup`](super::dedup::Dedup) table and then the ledger (one
//! round trip per page) what is known, and hand each file on: a new copy to the copy stage
//! (bounded channel: the walk waits when transfers are busy), references to a file with a known
//! outcome to the rewrite stage. The planner writes nothing itself; it moves the walk
//! [`checkpoint`] (written through [`Effects`], so never in a dry run).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::checkpoint::{self, Checkpoint};
use super::dedup::Seen;
use super::rewrite::Record;
use super::{Mode, Plan};
use crate::engine::Shard;
use crate::engine::summary::FileItem;
use crate::engine::{Counters, Effects, FileJob, Outcome, RunState};
use crate::ledger::{FileState, Ledger};
use crate::parse::layout::{Facts, Layout};
use crate::parse::names::{NameKind, target_name};
use crate::scan::{ClassWalker, FileRef, Target, WalkOptions, log_issues};

/// Which shard a file name belongs to: a stable hash, the same on every host and run.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let d = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    let v = u64::from_be_bytes(first);
    (v % count as u64) as u32
}

pub(crate) fn in_shard(name: &str, shard: Option<Shard>) -> bool {
    shard.is_none_or(|s| shard_of(name, s.count) == s.index)
}

pub struct Planner<'a> {
    pub plan: &'a Plan,
    /// Only for the walk checkpoint.
    pub effects: Arc<dyn Effects>,
    pub state: Arc<RunState>,
    pub ledger: &'a Ledger,
    pub copies: mpsc::Sender<FileJob>,
    pub records: mpsc::Sender<Record>,
}

impl Planner<'_> {
    /// Walk every target, from the walk checkpoint of an unfinished pass if there is one.
    /// Returns the cutoff that stopped the walk early, if one did.
    pub async fn walk(self, db: &Database, targets: &[Target]) -> anyhow::Result<Option<String>> {
        let stop = self.walk_targets(db, targets).await;
        self.state
            .walked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        stop
    }

    async fn walk_targets(
        &self,
        db: &Database,
        targets: &[Target],
    ) -> anyhow::Result<Option<String>> {
        let start = self.resume_point(targets).await?;
        let walk = &self.state.walk;
        walk.start(start.clone());
        for target in targets {
            let mut walker = ClassWalker::new(
                db.collection(&target.collection),
                target.class.clone(),
                WalkOptions {
                    page_size: self.plan.page_size,
                    nested: true,
                },
            );
            if let Some(s) = &target.strings {
                walker = walker.with_strings(&s.fields, s.matcher.clone());
            }
            if let Some(at) = start.start_of(&target.collection) {
                if at.is_end() {
                    tracing::debug!(class = %target.class.name, "walked to the end earlier in this pass");
                    continue;
                }
                walker.resume(&at);
            }
            loop {
                // A page of the walk is database work too: held back while it is unhealthy.
                self.state.db.admit().await;
                let page = walker
                    .next_page()
                    .await
                    .with_context(|| format!("walking {}", target.collection))?;
                let Some(page) = page else {
                    walk.page(&target.collection, walker.position(), 0, 0);
                    break;
                };
                if self.state.is_interrupted() {
                    return Ok(Some(crate::engine::INTERRUPTED.to_string()));
                }
                let c = &self.state.counters;
                Counters::add(&c.objects, page.objects);
                Counters::add(&c.malformed, page.issues.len() as u64);
                Counters::add(&c.references, page.refs.len() as u64);
                log_issues(&page.issues);
                let (mut selected, others): (Vec<FileRef>, Vec<FileRef>) =
                    page.refs.into_iter().partition(|r| {
                        self.plan.select.includes(r.kind()) && in_shard(&r.name, self.plan.shard)
                    });
                let migrated = self.migrated_before(&others).await?;
                Counters::add(&c.refs_migrated_before, migrated);
                Counters::add(&c.refs_not_selected, others.len() as u64 - migrated);
                let n = walk.page(
                    &target.collection,
                    walker.position(),
                    page.objects,
                    selected.len() as u64,
                );
                for r in &mut selected {
                    r.page = n;
                }
                let created = match &self.plan.layout {
                    Some(l) if l.dated() => created_at(db, &target.collection, &selected).await?,
                    _ => HashMap::new(),
                };
                let stop = self.page(selected, &created).await?;
                super::save_checkpoint(&self.state, &*self.effects, false).await?;
                if let Some(stop) = stop {
                    return Ok(Some(stop));
                }
            }
        }
        Ok(None)
    }

    /// How many of `refs` (outside `--select` or the shard) name a file this tool copied: the
    /// summary counts them as migrated by an earlier run, not merely as not selected. One
    /// ledger round trip, only for a page that has such references.
    async fn migrated_before(&self, refs: &[FileRef]) -> anyhow::Result<u64> {
        if refs.is_empty() {
            return Ok(0);
        }
        let mut names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let written = self.ledger.by_target(&names).await?;
        Ok(refs
            .iter()
            .filter(|r| written.contains_key(&r.name))
            .count() as u64)
    }

    /// Where this run starts: the checkpoint of an unfinished pass with the same settings, or
    /// the start of every class.
    async fn resume_point(&self, targets: &[Target]) -> anyhow::Result<Checkpoint> {
        let digest = checkpoint::digest(self.plan, targets);
        let fresh = Checkpoint {
            digest: digest.clone(),
            ..Checkpoint::default()
        };
        let Some(stored) = self.ledger.checkpoint(&self.plan.scope).await? else {
            return Ok(fresh);
        };
        Ok(match Checkpoint::from_document(&stored) {
            None => {
                tracing::warn!("an unreadable walk checkpoint is ignored; walking every class");
                fresh
            }
            Some(_) if self.plan.rescan => {
                tracing::info!(
                    "walking every class from the start (--rescan); the unfinished pass's checkpoint is replaced"
                );
                fresh
            }
            Some(cp) if cp.digest != digest => {
                tracing::info!(
                    "the unfinished pass's checkpoint was made with other settings (selection, \
                     rename, mode, destination, classes or fields); walking every class from the start"
                );
                fresh
            }
            Some(cp) => {
                tracing::info!(
                    classes_done = cp.done.len(),
                    objects_walked = cp.objects,
                    "continuing an unfinished pass from its walk checkpoint (--rescan walks every class)"
                );
                cp
            }
        })
    }

    /// Decide for one page of (selected) references; `created`: the `createdAt` of their objects
    /// (ms, by canonical `_id`), when a relayout's template needs it.
    async fn page(
        &self,
        refs: Vec<FileRef>,
        created: &HashMap<String, i64>,
    ) -> anyhow::Result<Option<String>> {
        let c = &self.state.counters;
        let mut groups: BTreeMap<String, Vec<FileRef>> = BTreeMap::new();
        for r in refs {
            groups.entry(r.name.clone()).or_default().push(r);
        }

        let mut unknown = Vec::new();
        for (name, mut refs) in groups {
            loop {
                match self.state.dedup.see(&name, &mut refs, true) {
                    Seen::New => {
                        unknown.push((name, refs));
                        break;
                    }
                    Seen::Attached => break,
                    Seen::Wait(done) => {
                        // The copy will finish; re-check at least every 100 ms in case its wake-up
                        // came between `see` and here.
                        let _ =
                            tokio::time::timeout(Duration::from_millis(100), done.notified()).await;
                    }
                    Seen::Done {
                        outcome,
                        target,
                        recorded,
                    } => {
                        self.send(Record::Known {
                            name,
                            target: target.to_string(),
                            outcome,
                            recorded,
                            refs,
                        })
                        .await?;
                        break;
                    }
                }
            }
        }
        if unknown.is_empty() {
            return Ok(None);
        }

        let names: Vec<&str> = unknown.iter().map(|(n, _)| n.as_str()).collect();
        let known = self.ledger.lookup(&names).await?;
        // Names this tool wrote (targets of verified copies) are done, whatever their kind: a
        // later `--select all` pass must not look for them at the source.
        let written = self.ledger.by_target(&names).await?;
        let here = |r: &crate::ledger::FileRecord| {
            r.destination
                .as_deref()
                .is_none_or(|d| self.plan.destination.names(d))
        };
        for (name, refs) in unknown {
            let record = known.get(&name);
            let (target, wrote_it) = match &self.plan.layout {
                None => {
                    let target = target_name(&name, self.plan.rename).into_owned();
                    let wrote_it = written.get(&name).filter(|r| here(r) && target == name);
                    (target, wrote_it)
                }
                Some(layout) => {
                    // Decided once, by the first reference an earlier run met: it sticks.
                    let decided = record.filter(|r| here(r) && r.target != name);
                    let target = match decided {
                        Some(r) => Ok(r.target.clone()),
                        None => laid_out(layout, &name, &refs, created),
                    };
                    match target {
                        Ok(t) => (t, None),
                        Err(reason) => {
                            self.refuse(name, reason, refs).await?;
                            continue;
                        }
                    }
                }
            };
            let outcome = match (record, wrote_it) {
                // Deleted through a `serve` gateway: never copied back from the old store.
                (Some(r), _) if r.is_tombstone() => Some(Outcome::Missing {
                    reason: crate::ledger::TOMBSTONE.into(),
                }),
                (_, Some(r)) => Some(Outcome::Verified {
                    size: r.size.unwrap_or(0),
                    md5: r.md5.clone(),
                    hash_checked: r.hash_checked,
                    skipped: true,
                }),
                (Some(r), _) if r.state == FileState::Verified && r.target == target && here(r) => {
                    Some(Outcome::Verified {
                        size: r.size.unwrap_or(0),
                        md5: r.md5.clone(),
                        hash_checked: r.hash_checked,
                        skipped: true,
                    })
                }
                (Some(r), _) if r.state == FileState::Missing && !self.plan.retry_missing => {
                    Some(Outcome::Missing {
                        reason: r
                            .error
                            .clone()
                            .unwrap_or_else(|| "missing at the source".into()),
                    })
                }
                _ => None,
            };
            if let Some(outcome) = outcome {
                // Known from an earlier run: count the file once, and remember it for this run.
                match &outcome {
                    Outcome::Missing { reason } => {
                        Counters::add(&c.files_missing, 1);
                        c.missing(FileItem {
                            name: name.clone(),
                            reason: if reason == crate::ledger::TOMBSTONE {
                                format!("{reason}; still referenced")
                            } else {
                                format!(
                                    "{reason} (recorded by an earlier run; --retry-failed retries)"
                                )
                            },
                            references: refs.len() as u64,
                        });
                    }
                    _ => Counters::add(&c.files_skipped, 1),
                }
                let outcome = self.state.dedup.known(&name, &target, outcome);
                self.send(Record::Known {
                    name,
                    target,
                    outcome,
                    recorded: true,
                    refs,
                })
                .await?;
                continue;
            }
            if self.plan.mode == Mode::RewriteOnly {
                Counters::add(&c.refs_left, refs.len() as u64);
                self.state.walk.settled(refs.iter().map(|r| r.page));
                continue;
            }
            if let Some(stop) = self.cutoff() {
                return Ok(Some(stop));
            }
            let kind = NameKind::of(&name);
            let url_hint = refs.iter().find_map(|r| r.url.clone());
            let field = refs.first().map(FileRef::field).unwrap_or_default();
            let attempts = record.map_or(0, |r| r.attempts.max(1));
            self.state.dedup.start(&name, refs);
            Counters::add(&c.files_planned, 1);
            self.copies
                .send(FileJob {
                    name,
                    target,
                    kind,
                    url_hint,
                    field,
                    attempts,
                })
                .await
                .map_err(|_| super::StageStopped("copy"))?;
        }
        Ok(None)
    }

    /// A file no new name could be made for (`relayout`): counted failed, its references left;
    /// nothing recorded, so the next run decides again.
    async fn refuse(&self, name: String, reason: String, refs: Vec<FileRef>) -> anyhow::Result<()> {
        let c = &self.state.counters;
        tracing::warn!(file = %name, "no new name: {reason}");
        Counters::add(&c.files_failed, 1);
        c.failed(FileItem {
            name: name.clone(),
            reason: reason.clone(),
            references: refs.len() as u64,
        });
        let outcome = self
            .state
            .dedup
            .known(&name, &name, Outcome::Failed { reason });
        self.send(Record::Known {
            target: name.clone(),
            name,
            outcome,
            recorded: true,
            refs,
        })
        .await
    }

    async fn send(&self, record: Record) -> anyhow::Result<()> {
        self.records
            .send(record)
            .await
            .map_err(|_| super::StageStopped("rewrite").into())
    }

    /// The limit reached, if any: no new copy is queued past it.
    fn cutoff(&self) -> Option<String> {
        let l = &self.plan.limits;
        if let Some(stop) = self.state.stop(l) {
            return Some(stop);
        }
        let c = &self.state.counters;
        if let Some(max) = l.max_files
            && Counters::get(&c.files_planned) >= max
        {
            return Some(format!("--max-files {max}"));
        }
        None
    }
}

/// The new name of `name` under `layout`, from the first of its references: the name itself
/// when it already has the layout's shape (laid out by an earlier run, or uploaded there).
fn laid_out(
    layout: &Layout,
    name: &str,
    refs: &[FileRef],
    created: &HashMap<String, i64>,
) -> Result<String, String> {
    let first = refs.first().ok_or("no reference")?;
    let field = first.field();
    let field = field.split_once('.').map_or(field.as_str(), |(_, f)| f);
    let facts = Facts {
        class: &first.class,
        field,
        created_ms: created.get(&id_key(&first.id)).copied(),
    };
    if layout.holds(name, &facts) {
        return Ok(name.to_string());
    }
    layout.render(name, &facts)
}

fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

/// The `_created_at` of the objects `refs` are in (one query for the page), by [`id_key`].
async fn created_at(
    db: &Database,
    collection: &str,
    refs: &[FileRef],
) -> anyhow::Result<HashMap<String, i64>> {
    let mut ids: Vec<Bson> = refs.iter().map(|r| r.id.clone()).collect();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut cursor = db
        .collection::<Document>(collection)
        .find(doc! {"_id": {"$in": ids}})
        .projection(doc! {"_created_at": 1})
        .await
        .with_context(|| format!("reading createdAt in {collection}"))?;
    let mut out = HashMap::new();
    while let Some(d) = cursor.try_next().await? {
        if let (Some(id), Ok(at)) = (d.get("_id"), d.get_datetime("_created_at")) {
            out.insert(id_key(id), at.timestamp_millis());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_names_stably_and_completely() {
        let names: Vec<String> = (0..1000).map(|i| format!("tfss-{i}-x.jpg")).collect();
        let mut counts = [0u32; 4];
        for n in &names {
            let s = shard_of(n, 4);
            assert_eq!(s, shard_of(n, 4), "stable");
            counts[s as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<u32>(), 1000);
        assert!(counts.iter().all(|c| *c > 200), "roughly even: {counts:?}");
        // Pinned so that hosts running different builds agree.
        assert_eq!(shard_of("photo.jpg", 7), shard_of("photo.jpg", 7));
        assert!(in_shard("x", None));
    }
}
