//! `rollback`, the engine side: put back the values the migration replaced, as recorded in the
//! ledger — each a compare-and-swap on the value the migration wrote ([`super::cas`]), so a
//! reference the app changed since is reported and left alone — and optionally delete the copies
//! the migration made. Every write goes through the run's [`Effects`], so `--dry-run` is the same
//! gate as for `migrate`.
//!
//! A copy is deleted only when this tool wrote it (not found there already, identical), at the
//! destination configured now, it is not the original itself, and nothing references it: a walk
//! of every reference (top-level, nested, Parse Config, URLs in strings), started after the
//! restore, joined with the copies in bounded memory ([`crate::audit`]); then, right before each
//! batch of deletes, the database and the ledger are asked again
//! ([`super::removal::delete_copies`]).

use std::collections::BTreeMap;

use serde::Serialize;

use mongodb::Database;

use super::Effects;
use crate::audit::sort::{Members, Sorter};
use crate::audit::{Audit, Finding, Options};
use crate::hooks::{Hooks, Phase};
use crate::ledger::{FileRecord, FileState, KEY_PLACEHOLDER, Ledger, RefChange, RefState};
use crate::parse::names::NameKind;
use crate::parse::schema::collection_name;
use crate::scan::Target;
use crate::scan::refs::for_each_ref;
use crate::secret::Secret;
use crate::storage::ObjectStore;

/// What a rollback did (or would do).
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub restored: u64,
    pub conflicts: u64,
    pub failed: u64,
    pub copies_deleted: u64,
    pub copies_kept: u64,
    /// References left on their copy because the value they would go back to names a file its
    /// store no longer holds (a restore would leave them pointing at nothing).
    #[serde(skip_serializing_if = "is_zero")]
    pub originals_missing: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counts {
    /// Whether anything was left as it is that the operator must look at.
    pub fn incomplete(&self) -> bool {
        self.conflicts + self.failed + self.originals_missing > 0
    }
}

/// What to roll back.
pub struct Rollback<'a> {
    pub ledger: &'a Ledger,
    /// `collectionPrefix` of the class collections.
    pub prefix: &'a str,
    /// The fileKey, to put back into restored hosted-era urls.
    pub file_key: Option<&'a Secret>,
    /// Also delete the copies the migration made.
    pub delete_copies: bool,
    /// Whether a file's copy is its original (same store, same name): never deleted.
    pub is_original: &'a (dyn Fn(&str, &str) -> bool + Sync),
    /// Where the originals are (hosted-Parse names, and the others): each value a restore puts
    /// back is asked for there first.
    pub hosted: Option<&'a dyn ObjectStore>,
    pub server: Option<&'a dyn ObjectStore>,
    /// The destination configured now, as the ledger names it: copies recorded in another store
    /// are never deleted here.
    pub destination: &'a crate::storage::StoreName,
    /// The app database and every reference target (nested, Parse Config and strings searched),
    /// whose references protect a copy.
    pub db: &'a Database,
    pub targets: &'a [Target],
    pub page_size: u32,
}

/// Copies deleted per batch (one ledger and one database check each).
const BATCH: usize = 256;

impl Rollback<'_> {
    /// Restore every recorded reference (the phase [`Phase::Restore`]), then, when asked,
    /// delete the copies ([`Phase::DeleteCopies`]).
    pub async fn run(&self, effects: &dyn Effects, hooks: &Hooks) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
        let opts = Options::default();
        let mut unrestored = Sorter::new(&opts.temp_dir, opts.run_bytes);
        let restore = self.restore(effects, &mut counts, &mut unrestored);
        hooks.phase(Phase::Restore, restore).await?;
        if self.delete_copies {
            let remove = self.remove_copies(effects, &mut counts, unrestored);
            hooks.phase(Phase::DeleteCopies, remove).await?;
        }
        Ok(counts)
    }

    /// Restore every recorded reference. The references the gate reports as not restored yet
    /// (a dry run's "would be restored") go into `unrestored`, keyed as [`ref_key`]: they still
    /// name the copies, but would not once the rollback ran.
    async fn restore(
        &self,
        effects: &dyn Effects,
        counts: &mut Counts,
        unrestored: &mut Sorter,
    ) -> anyhow::Result<()> {
        let key = self.file_key.map(Secret::expose);
        let mut after = None;
        loop {
            // Pending: a crash may have come between the update and its record.
            let states = [RefState::Rewritten, RefState::Pending];
            let page = self
                .ledger
                .refs_page(&states, after.as_ref(), false)
                .await?;
            let Some(next) = page.next else { break };
            after = Some(next);
            let mut by_collection: BTreeMap<String, Vec<RefChange>> = BTreeMap::new();
            for r in page.records {
                match r
                    .map_err(|e| e.to_string())
                    .and_then(|r| reverse(r.change, key))
                {
                    Ok(change) => by_collection
                        .entry(collection_name(self.prefix, &change.class))
                        .or_default()
                        .push(change),
                    Err(why) => {
                        counts.failed += 1;
                        tracing::error!("cannot restore: {why}");
                    }
                }
            }
            let gone = self.missing_originals(&by_collection).await;
            for (collection, changes) in by_collection {
                let (changes, kept): (Vec<_>, Vec<_>) = changes
                    .into_iter()
                    .partition(|c| !renames(c) || !gone.contains(&c.new.name));
                for c in &kept {
                    counts.originals_missing += 1;
                    tracing::warn!(
                        class = %c.class, object_id = %crate::scan::id_string(&c.id),
                        path = %c.path,
                        "not restored: the original {} is gone from its store; the reference \
                         keeps its copy {}", c.new.name, c.old.name
                    );
                }
                if changes.is_empty() {
                    continue;
                }
                let states = effects.restore(&collection, &changes).await?;
                for (change, (state, err)) in changes.iter().zip(states) {
                    if state == RefState::Pending {
                        let id = crate::scan::id_string(&change.id);
                        let key = ref_key(&change.old.name, &change.class, &id, &change.path);
                        unrestored.push(&key, &[])?;
                    }
                    tally(counts, change, state, err);
                }
            }
        }
        Ok(())
    }

    /// Of the values these changes put back, the names their store does not hold (one `stat` per
    /// name, a few at a time). A name whose store is not configured counts as gone: a restore
    /// must not point a reference at bytes nobody can vouch for.
    async fn missing_originals(
        &self,
        changes: &BTreeMap<String, Vec<RefChange>>,
    ) -> std::collections::HashSet<String> {
        let names: std::collections::BTreeSet<&str> = changes
            .values()
            .flatten()
            .filter(|c| renames(c))
            .map(|c| c.new.name.as_str())
            .collect();
        let stat = |name: &str| {
            let store = if NameKind::of(name).is_hosted() {
                self.hosted
            } else {
                self.server
            };
            let name = name.to_string();
            async move {
                let there = match store {
                    Some(s) => match s.stat(&name).await {
                        Ok(_) => true,
                        Err(e) if e.is_not_found() => false,
                        // Unknown (a timeout, a refusal): not proof that it is gone.
                        Err(e) => {
                            tracing::warn!("checking the original {name}: {e}");
                            true
                        }
                    },
                    None => false,
                };
                (name, there)
            }
        };
        let mut gone = std::collections::HashSet::new();
        let names: Vec<&str> = names.into_iter().collect();
        for chunk in names.chunks(16) {
            for (name, there) in futures::future::join_all(chunk.iter().map(|n| stat(n))).await {
                if !there {
                    gone.insert(name);
                }
            }
        }
        gone
    }

    /// Whether the tool may delete `f`'s copy at all (before any reference check).
    fn deletable(&self, f: &FileRecord) -> bool {
        f.wrote
            && f.destination
                .as_deref()
                .is_some_and(|d| self.destination.names(d))
            && !(self.is_original)(&f.name, &f.target)
    }

    async fn remove_copies(
        &self,
        effects: &dyn Effects,
        counts: &mut Counts,
        unrestored: Sorter,
    ) -> anyhow::Result<()> {
        // 1. The copies this tool wrote at this destination.
        let opts = Options::default();
        let mut audit = Audit::new(&opts);
        let mut same_name = Sorter::new(&opts.temp_dir, opts.run_bytes);
        let mut after = None;
        loop {
            let page = self
                .ledger
                .files_page(FileState::Verified, after.as_ref())
                .await?;
            let Some(next) = page.next else { break };
            after = Some(next);
            for f in page.records {
                if !self.deletable(&f) {
                    counts.copies_kept += 1;
                } else if f.name == f.target {
                    // Names unchanged: the app's references name the original (in the store
                    // Parse Server goes back to) as much as this copy. The removal door deletes
                    // the copy only while the original is there.
                    same_name.push(&f.target, &[])?;
                } else {
                    audit.add_stored(&f.target, f.size.unwrap_or(0), None)?;
                }
            }
        }
        let mut batch = Vec::with_capacity(BATCH);
        for rec in same_name.finish()? {
            batch.push(rec?.key);
            if batch.len() == BATCH {
                self.delete_batch(effects, &batch, counts).await?;
                batch.clear();
            }
        }
        self.delete_batch(effects, &batch, counts).await?;
        batch.clear();
        let (candidates, _, _) = audit.counts();
        if candidates == 0 {
            return Ok(());
        }
        // 2. Those nothing references: every reference, walked now (after the restore), less
        // those the restore reported as still to be restored (a dry run's).
        let mut walked = Sorter::new(&opts.temp_dir, opts.run_bytes);
        for_each_ref(self.db, self.targets, self.page_size, |r| {
            Ok(walked.push(&ref_key(&r.name, &r.class, &r.object_id(), &r.path), &[])?)
        })
        .await?;
        let mut restored = Members::new(unrestored.finish()?);
        for rec in walked.finish()? {
            let key = rec?.key;
            if !restored.contains(&key)? {
                let mut parts = key.splitn(4, '\0');
                let mut next = || parts.next().unwrap_or_default();
                let (name, class, id, path) = (next(), next(), next(), next());
                audit.add_reference(class, id, path, name)?;
            }
        }
        let mut unreferenced = Sorter::new(&opts.temp_dir, opts.run_bytes);
        audit.finish(&mut |f| match f {
            Finding::Orphan { name, .. } => unreferenced.push(name, &[]),
            _ => Ok(()),
        })?;
        counts.copies_kept += candidates - unreferenced.len();
        // 3. In batches, each re-checked right before its deletes by the removal door.
        for rec in unreferenced.finish()? {
            batch.push(rec?.key);
            if batch.len() == BATCH {
                self.delete_batch(effects, &batch, counts).await?;
                batch.clear();
            }
        }
        self.delete_batch(effects, &batch, counts).await
    }

    async fn delete_batch(
        &self,
        effects: &dyn Effects,
        targets: &[String],
        counts: &mut Counts,
    ) -> anyhow::Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = targets.iter().map(String::as_str).collect();
        let records = self.ledger.by_target(&names).await?;
        let files: Vec<FileRecord> = records
            .into_values()
            .filter(|f| self.deletable(f))
            .collect();
        counts.copies_kept += (targets.len() - files.len()) as u64;
        for removed in effects.remove_copies(&files, self.targets).await? {
            if removed {
                counts.copies_deleted += 1;
            } else {
                counts.copies_kept += 1;
            }
        }
        Ok(())
    }
}

/// Whether restoring `c` points its reference at another file (the original) that must be
/// there: a File reference whose name changes. URLs inside strings (whose files the record does
/// not list one by one), rebased urls (the same file) and the dangling names a `relink` replaced
/// (what the app held: nothing stored) are not checked.
fn renames(c: &RefChange) -> bool {
    c.new.text.is_none() && c.old.text.is_none() && c.new.name != c.old.name && !c.dangling
}

/// A reference as both sides of the restore/walk merge key it: the file name first (what the
/// join with the copies is on), then the reference's place.
fn ref_key(name: &str, class: &str, object_id: &str, path: &str) -> String {
    format!("{name}\0{class}\0{object_id}\0{path}")
}

fn tally(counts: &mut Counts, change: &RefChange, state: RefState, err: Option<String>) {
    match state {
        RefState::RolledBack | RefState::Pending => counts.restored += 1,
        RefState::Conflict => {
            counts.conflicts += 1;
            tracing::warn!(
                class = %change.class, object_id = %crate::scan::id_string(&change.id),
                path = %change.path,
                "changed since the migration; left alone"
            );
        }
        _ => {
            counts.failed += 1;
            tracing::error!(
                class = %change.class, path = %change.path,
                "restore refused: {}", err.unwrap_or_default()
            );
        }
    }
}

/// The change that puts a recorded reference back: from the value written to the old one, with
/// the fileKey put back into a url it was taken out of.
fn reverse(recorded: RefChange, key: Option<&str>) -> Result<RefChange, String> {
    // Back to the value before the first of a chain of changes (migrate, rebase, another move).
    let (mut old, mut new) = (recorded.new, recorded.origin.unwrap_or(recorded.old));
    // The key configured now must be the one taken out (rotated since: refused, not guessed).
    for v in [&old, &new] {
        if let (Some(was), Some(k)) = (&v.key_id, key)
            && *was != crate::ledger::key_id(k)
        {
            return Err(
                "the recorded url embedded another fileKey than parse.file_key now (rotated \
                 since?); set the fileKey of that run to restore it"
                    .into(),
            );
        }
    }
    // Strings: both sides may have had the key taken out (a URL left as it was keeps it).
    for v in [&mut old, &mut new] {
        if v.is_text() && v.raw_text.is_none() {
            let k = key.ok_or(
                "the string embedded the fileKey; set parse.file_key (or --file-key) to restore it",
            )?;
            v.raw_text = v.text.as_ref().map(|t| t.replace(KEY_PLACEHOLDER, k));
        }
    }
    if new.key_redacted && !new.is_text() {
        let k = key.ok_or(
            "the old url embedded the fileKey; set parse.file_key (or --file-key) to restore it",
        )?;
        new.url = new.url.map(|u| u.replace(KEY_PLACEHOLDER, k));
        new.key_redacted = false;
    }
    Ok(RefChange {
        old,
        new,
        origin: None,
        ..recorded
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::RefValue;
    use mongodb::bson::Bson;

    #[test]
    fn a_reversed_string_gets_the_key_back_on_both_sides() {
        // One URL moved, one (a missing file) left: both strings hold the key.
        let before =
            "a http://files.parsetfss.com/K/tfss-1 b http://files.parsetfss.com/K/tfss-gone";
        let after = "a https://api/files/app/h_1 b http://files.parsetfss.com/K/tfss-gone";
        let recorded = RefChange {
            class: "A".into(),
            id: Bson::String("x".into()),
            path: "body".into(),
            file: "tfss-1".into(),
            old: RefValue::text("tfss-1", before, Some("K")).unwrap(),
            new: RefValue::text("tfss-1", after, Some("K")).unwrap(),
            origin: None,
            dangling: false,
            loc: None,
        };
        // As read back from the ledger: the exact strings are gone.
        let mut read = recorded.clone();
        read.old.raw_text = None;
        read.new.raw_text = None;
        let back = reverse(read.clone(), Some("K")).unwrap();
        assert_eq!(back.old.raw_text.as_deref(), Some(after));
        assert_eq!(back.new.raw_text.as_deref(), Some(before));
        assert!(
            reverse(read.clone(), None)
                .unwrap_err()
                .contains("parse.file_key")
        );
        // Another key configured now (rotated since): refused, never put in its place.
        let e = reverse(read, Some("K2")).unwrap_err();
        assert!(e.contains("another fileKey"), "{e}");
    }

    #[test]
    fn a_reversed_change_gets_the_file_key_back_or_refuses() {
        let recorded = RefChange {
            class: "A".into(),
            id: Bson::String("x".into()),
            path: "f".into(),
            file: "tfss-1-a.png".into(),
            old: RefValue::file(
                "tfss-1-a.png",
                Some("http://files.parsetfss.com/K/a"),
                Some("K"),
            ),
            new: RefValue::file("h_a.png", Some("https://api/files/app/h_a.png"), None),
            origin: None,
            dangling: false,
            loc: None,
        };
        assert!(recorded.old.key_redacted);
        let back = reverse(recorded.clone(), Some("K")).unwrap();
        assert_eq!(back.old.name, "h_a.png");
        assert_eq!(
            back.new.url.as_deref(),
            Some("http://files.parsetfss.com/K/a")
        );
        assert!(!back.new.key_redacted);
        assert!(
            reverse(recorded, None)
                .unwrap_err()
                .contains("parse.file_key")
        );
    }
}
