//! Which orphans `audit --quarantine` moves: those of the store's listing that the walk after it
//! found no reference to, last modified at least `--min-age` ago, and that a *second* walk,
//! started after the first one ended, still finds no reference to; that second join is done
//! right before the moves, in bounded memory like the audit itself (both sides sorted on disk).
//! Right before each batch of moves the database is asked whether a top-level File field names
//! one of them now ([`referenced_top_level`]).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use mongodb::Database;

use super::{Action, Outcome, Step};
use crate::audit::sort::{Members, Sorter};
use crate::audit::{Audit, Finding, Options, join};
use crate::engine::Effects;
use crate::exit::{Coded, USAGE};
use crate::ledger::{FileState, Ledger, QuarantineRecord, QuarantineState as QState, RefState};
use crate::scan::Target;
use crate::scan::lookup::referenced_top_level;
use crate::scan::refs::for_each_ref;
use crate::storage::ObjectStore;
use crate::storage::StoreName;

/// Confirmed orphans per database check and batch of moves.
const BATCH: usize = 256;

type Report<'r> = dyn FnMut(&Step, &Outcome) -> anyhow::Result<()> + 'r;

/// The orphans of one store, checked against the app's references.
pub struct Orphans<'a> {
    pub db: &'a Database,
    pub targets: &'a [Target],
    /// The other Parse apps' targets in the same database (their references protect files too,
    /// but do not count in the dangling check: they may use another store).
    pub other_apps: &'a [Target],
    /// Documents per page of the walks.
    pub page_size: u32,
    pub effects: &'a dyn Effects,
    pub ledger: &'a Ledger,
    pub store: &'a dyn ObjectStore,
    pub min_age: Duration,
    pub run_bytes: usize,
}

impl Orphans<'_> {
    /// Take back interrupted moves, then move every confirmed orphan. Returns how many orphans the
    /// second walk found referenced again (kept).
    pub async fn run(&self, report: &mut Report<'_>) -> anyhow::Result<u64> {
        super::take_back_unfinished(self.effects, self.ledger, self.store, report).await?;
        let opts = Options {
            run_bytes: self.run_bytes,
            ..Options::default()
        };
        let cutoff = SystemTime::now()
            .checked_sub(self.min_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut first = Audit::new(&opts);
        let mut recheck = Audit::new(&opts);
        tracing::info!("listing {}", self.store.describe());
        first.list(self.store, &mut |_| Ok(())).await?;
        let issues = for_each_ref(self.db, self.targets, self.page_size, |r| {
            Ok(first.add_ref(r)?)
        })
        .await?;
        refuse_unread_values(issues)?;
        let mut young = 0u64;
        let summary = first.finish(&mut |f| match f {
            // An unknown age is never old enough.
            Finding::Orphan {
                name,
                size,
                modified,
            } if modified.is_some_and(|m| m <= cutoff) => {
                recheck.add_stored(name, *size, *modified)
            }
            Finding::Orphan { .. } => {
                young += 1;
                Ok(())
            }
            _ => Ok(()),
        })?;
        refuse_when_most_dangle(self.store, &summary)?;
        let (candidates, _, _) = recheck.counts();
        tracing::info!(
            "{candidates} orphans older than {}, {young} younger (left alone); walking again",
            humantime::format_duration(self.min_age)
        );
        pause_for_tests("PFM_TEST_PAUSE_BEFORE_RECHECK").await;
        self.add_references(&mut recheck).await?;
        let mut confirmed = Sorter::new(&opts.temp_dir, self.run_bytes);
        recheck.finish(&mut |f| match f {
            Finding::Orphan {
                name,
                size,
                modified,
            } => confirmed.push(name, &join::stored_payload(*size, *modified)),
            _ => Ok(()),
        })?;
        let mut kept = candidates - confirmed.len();
        pause_for_tests("PFM_TEST_PAUSE_BEFORE_MOVES").await;
        let mut batch = Vec::with_capacity(BATCH);
        for rec in confirmed.finish()? {
            batch.push(rec?);
            if batch.len() == BATCH {
                kept += self.move_batch(&mut batch, report).await?;
            }
        }
        kept += self.move_batch(&mut batch, report).await?;
        Ok(kept)
    }

    /// `--purge`: delete for good what was quarantined at least `older_than` ago and nothing
    /// references now (a walk started after the purge began, then the database asked again right
    /// before each batch); a quarantined file that something references again is restored
    /// instead. Interrupted purges are finished the same way, and interrupted deletes of
    /// superseded revisions (which no reference can name) are finished as they are.
    pub async fn purge_unreferenced(
        &self,
        older_than: Duration,
        report: &mut Report<'_>,
    ) -> anyhow::Result<()> {
        let store = StoreName::of(self.store);
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let opts = Options {
            run_bytes: self.run_bytes,
            ..Options::default()
        };
        let states = [QState::Quarantined, QState::Purging];
        let mut audit = Audit::new(&opts);
        let mut all = Sorter::new(&opts.temp_dir, self.run_bytes);
        let mut after = None;
        loop {
            let page = self
                .ledger
                .quarantine_records(&store.all(), &states, after, 256)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let mut superseded = Vec::new();
            for r in page {
                let due =
                    r.state == QState::Purging || r.quarantined_at.is_some_and(|t| t <= cutoff);
                if !due {
                    continue;
                }
                if r.version.is_some() {
                    superseded.push(step_of(&r, Action::PurgeSuperseded));
                } else {
                    audit.add_stored(&r.name, r.size, r.modified)?;
                    all.push(&r.name, &[])?;
                }
            }
            super::run_steps(self.effects, self.store, &superseded, report).await?;
        }
        if audit.counts().0 == 0 {
            return Ok(());
        }
        self.add_references(&mut audit).await?;
        let mut unreferenced = Sorter::new(&opts.temp_dir, self.run_bytes);
        audit.finish(&mut |f| match f {
            Finding::Orphan { name, .. } => unreferenced.push(name, &[]),
            _ => Ok(()),
        })?;
        // Both sorted by name: what is not unreferenced is referenced again.
        let mut orphans = Members::new(unreferenced.finish()?);
        let mut purge = Vec::with_capacity(BATCH);
        let mut restore = Vec::with_capacity(BATCH);
        let mut last: Option<String> = None;
        for rec in all.finish()? {
            let name = rec?.key;
            if last.as_deref() == Some(name.as_str()) {
                continue;
            }
            last = Some(name.clone());
            let orphan = orphans.contains(&name)?;
            let (list, action) = if orphan {
                (&mut purge, Action::Purge)
            } else {
                (&mut restore, Action::Restore)
            };
            list.push(name);
            if list.len() == BATCH {
                let names = std::mem::take(list);
                self.purge_batch(&store, names, action, cutoff, report)
                    .await?;
            }
        }
        self.purge_batch(&store, purge, Action::Purge, cutoff, report)
            .await?;
        self.purge_batch(&store, restore, Action::Restore, cutoff, report)
            .await
    }

    /// Purge (or restore: referenced again) the due records of `names`; right before a purge,
    /// the database is asked whether a top-level File field names one of them now (restored).
    async fn purge_batch(
        &self,
        store: &StoreName,
        names: Vec<String>,
        action: Action,
        cutoff: SystemTime,
        report: &mut Report<'_>,
    ) -> anyhow::Result<()> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let states = [QState::Quarantined, QState::Purging];
        let records = self
            .ledger
            .quarantine_named(&store.all(), &states, &refs)
            .await?;
        let mut taken = HashSet::new();
        if action == Action::Purge {
            taken = referenced_top_level(self.db, self.targets, &refs).await?;
            taken.extend(referenced_top_level(self.db, self.other_apps, &refs).await?);
        }
        let due = |r: &&QuarantineRecord| {
            r.state == QState::Purging || r.quarantined_at.is_some_and(|t| t <= cutoff)
        };
        // One quarantined object can answer for several records of its name (a second quarantine
        // of the name: GridFS merges the revisions, S3/GCS find the same bytes already there):
        // it is purged only once every record of the name is due.
        let younger: HashSet<&str> = records
            .iter()
            .filter(|r| r.version.is_none() && !due(r))
            .map(|r| r.name.as_str())
            .collect();
        let steps: Vec<Step> = records
            .iter()
            .filter(|r| r.version.is_none())
            .filter(due)
            .filter(|r| {
                let wait = action == Action::Purge && younger.contains(r.name.as_str());
                if wait {
                    tracing::info!(file = %r.name, "kept: a younger quarantine of the name is not due yet");
                }
                !wait
            })
            .map(|r| {
                if action == Action::Restore || taken.contains(&r.name) {
                    tracing::info!(file = %r.name, "referenced again: restored instead of purged");
                    step_of(r, Action::Restore)
                } else {
                    step_of(r, Action::Purge)
                }
            })
            .collect();
        super::run_steps(self.effects, self.store, &steps, report).await
    }

    /// Every reference that protects a stored file of this store: the app's (and the other apps'
    /// in its database: `targets` holds them all), walked now, and the names the ledger still
    /// needs ([`ledger_references`]).
    async fn add_references(&self, audit: &mut Audit) -> anyhow::Result<()> {
        for targets in [self.targets, self.other_apps] {
            let issues =
                for_each_ref(self.db, targets, self.page_size, |r| Ok(audit.add_ref(r)?)).await?;
            refuse_unread_values(issues)?;
        }
        ledger_references(self.ledger, &StoreName::of(self.store), audit).await
    }

    /// Move a batch of confirmed orphans, asking the database right before whether a top-level
    /// File field names one of them now (those are kept). Returns how many were kept.
    async fn move_batch(
        &self,
        batch: &mut Vec<crate::audit::sort::Record>,
        report: &mut Report<'_>,
    ) -> anyhow::Result<u64> {
        let names: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
        let mut taken = referenced_top_level(self.db, self.targets, &names).await?;
        taken.extend(referenced_top_level(self.db, self.other_apps, &names).await?);
        let mut steps = Vec::with_capacity(batch.len());
        for rec in batch.drain(..) {
            if taken.contains(&rec.key) {
                tracing::info!(file = %rec.key, "referenced again right before the move: kept");
                continue;
            }
            let (size, modified) = join::decode_stored(&rec.payload)?;
            steps.push(Step {
                action: Action::Quarantine,
                name: rec.key,
                size,
                modified,
                version: None,
                record: None,
            });
        }
        super::run_steps(self.effects, self.store, &steps, report).await?;
        Ok(taken.len() as u64)
    }
}

/// The step that continues record `r`.
fn step_of(r: &QuarantineRecord, action: Action) -> Step {
    Step {
        action,
        name: r.name.clone(),
        size: r.size,
        modified: r.modified,
        version: r.version.clone(),
        record: Some(r.id),
    }
}

/// What the ledger says the tool still needs, as references of its own: the copies recorded
/// verified at `store` (a `--copy-only` pass, or references not rewritten yet, would point at
/// them later) and the old values that a `rollback` would restore (the originals, which may be
/// the only bytes once the copies are gone).
pub async fn ledger_references(
    ledger: &Ledger,
    store: &StoreName,
    audit: &mut Audit,
) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let page = ledger
            .files_page(FileState::Verified, after.as_ref())
            .await?;
        let Some(next) = page.next else { break };
        after = Some(next);
        for f in page.records {
            if f.destination.as_deref().is_some_and(|d| store.names(d)) {
                audit.add_reference(LEDGER, "", "a verified copy", &f.target)?;
            }
        }
    }
    let mut after = None;
    loop {
        let states = [RefState::Rewritten, RefState::Pending];
        let page = ledger.refs_page(&states, after.as_ref(), false).await?;
        let Some(next) = page.next else { break };
        after = Some(next);
        for r in page.records {
            // A record this version cannot read may protect a file: stop rather than guess.
            let r = r?;
            let c = &r.change;
            let id = crate::scan::id_string(&c.id);
            audit.add_reference(&c.class, &id, &c.path, &c.old.name)?;
        }
    }
    Ok(())
}

/// Refuse to move or delete anything when the walk met values it could not read (a File under a
/// key holding `.`, a value too deeply nested, an unreadable `_SCHEMA` type): one of them may
/// name a file that would then look unreferenced.
fn refuse_unread_values(issues: u64) -> anyhow::Result<()> {
    if issues == 0 {
        return Ok(());
    }
    Err(Coded::new(
        USAGE,
        format!(
            "refusing to quarantine or purge: the walk met {issues} values it could not read \
             (logged above), and one of them may name a file of this store"
        ),
    )
    .hint("fix or remove those values (`list` shows them too), then run the clean-up again")
    .into())
}

/// The class name the ledger's own references carry in the join.
const LEDGER: &str = "(ledger)";

/// Refuse to quarantine when at least as many references name nothing in the store as name
/// something: the store is most likely not the one the app uses (a wrong bucket or prefix, keys
/// written by a broken `generateKey`), and every file in it would look orphaned.
fn refuse_when_most_dangle(
    store: &dyn ObjectStore,
    summary: &crate::audit::Summary,
) -> anyhow::Result<()> {
    let dangling = summary.dangling_references;
    let resolved = summary.references.saturating_sub(dangling);
    if dangling > 0 && dangling >= resolved {
        return Err(Coded::new(
            USAGE,
            format!(
                "refusing to quarantine anything in {}: {dangling} of {} references name no \
                 object in it, so it is most likely not the store the app uses",
                store.describe(),
                summary.references
            ),
        )
        .hint("check the bucket, prefix or path of the store (run `audit` without --quarantine to see the dangling references)")
        .into());
    }
    Ok(())
}

/// For tests only, and the one place outside `settings` that reads the environment: with
/// `<var>=<path>` (`PFM_TEST_PAUSE_BEFORE_RECHECK`: the orphans are chosen,
/// the re-check walk not started; `PFM_TEST_PAUSE_BEFORE_MOVES`: walked again, nothing moved),
/// create `<path>.ready` and wait (at most a minute) for `<path>` to exist, so a test can add a
/// reference exactly between the listing and the move.
async fn pause_for_tests(var: &str) {
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    let go = std::path::PathBuf::from(path);
    let mut ready = go.clone().into_os_string();
    ready.push(".ready");
    let _ = std::fs::write(&ready, b"");
    for _ in 0..600 {
        if go.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
