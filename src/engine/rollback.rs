//! `rollback`, the engine side: put back the values the migration replaced, as recorded in the
//! ledger — each a compare-and-swap on the value the migration wrote ([`super::cas`]), so a
//! reference the app changed since is reported and left alone — and optionally delete the copies
//! the migration made. Every write goes through the run's [`Effects`], so `--dry-run` is the same
//! gate as for `migrate`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Effects;
use crate::ledger::{FileState, KEY_PLACEHOLDER, Ledger, RefChange, RefState};
use crate::parse::schema::collection_name;
use crate::secret::Secret;

/// What a rollback did (or would do).
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub restored: u64,
    pub conflicts: u64,
    pub failed: u64,
    pub copies_deleted: u64,
    pub copies_kept: u64,
}

impl Counts {
    /// Whether anything was left as it is that the operator must look at.
    pub fn incomplete(&self) -> bool {
        self.conflicts + self.failed > 0
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
}

impl Rollback<'_> {
    pub async fn run(&self, effects: &dyn Effects) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
        self.restore(effects, &mut counts).await?;
        if self.delete_copies {
            self.remove_copies(effects, &mut counts).await?;
        }
        Ok(counts)
    }

    async fn restore(&self, effects: &dyn Effects, counts: &mut Counts) -> anyhow::Result<()> {
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
            for (collection, changes) in by_collection {
                let states = effects.restore(&collection, &changes).await?;
                for (change, (state, err)) in changes.iter().zip(states) {
                    tally(counts, change, state, err);
                }
            }
        }
        Ok(())
    }

    async fn remove_copies(
        &self,
        effects: &dyn Effects,
        counts: &mut Counts,
    ) -> anyhow::Result<()> {
        let mut after = None;
        loop {
            let page = self
                .ledger
                .files_page(FileState::Verified, after.as_ref())
                .await?;
            let Some(next) = page.next else { break };
            after = Some(next);
            // Never delete the original.
            let (originals, copies): (Vec<_>, Vec<_>) = page
                .records
                .into_iter()
                .partition(|f| (self.is_original)(&f.name, &f.target));
            counts.copies_kept += originals.len() as u64;
            for removed in effects.remove_copies(&copies).await? {
                if removed {
                    counts.copies_deleted += 1;
                } else {
                    counts.copies_kept += 1;
                }
            }
        }
        Ok(())
    }
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
    let (mut old, mut new) = (recorded.new, recorded.old);
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
            loc: None,
        };
        // As read back from the ledger: the exact strings are gone.
        let mut read = recorded.clone();
        read.old.raw_text = None;
        read.new.raw_text = None;
        let back = reverse(read.clone(), Some("K")).unwrap();
        assert_eq!(back.old.raw_text.as_deref(), Some(after));
        assert_eq!(back.new.raw_text.as_deref(), Some(before));
        assert!(reverse(read, None).unwrap_err().contains("parse.file_key"));
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
