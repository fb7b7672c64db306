//! Where the references a walk finds stand in the ledger, in the words `list` shows: `pending`,
//! `copied`, `rewritten`, `missing`, `failed`, `conflict`. Read-only: a page's file records (by
//! name) and reference records (by key) are looked up together, once per page.

use std::collections::HashMap;

use super::{FileRecord, FileState, Ledger, RefRecord, RefState, ref_key};
use crate::scan::{FileRef, Shape};

/// What the ledger knows of a page of found references: their files' records by name and their
/// own records by key.
pub struct Standing {
    files: HashMap<String, FileRecord>,
    refs: HashMap<String, RefRecord>,
}

impl Ledger {
    /// Where each of `refs` (a page of the walk) stands: two queries (one per ledger collection),
    /// sent together, so one round trip per page, never one per reference.
    pub async fn standing(&self, refs: &[&FileRef]) -> anyhow::Result<Standing> {
        let mut names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut keys: Vec<String> = refs
            .iter()
            .map(|r| ref_key(&r.class, &r.id, &r.path))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (files, refs) = tokio::try_join!(self.lookup(&names), self.refs_by_key(&keys))?;
        Ok(Standing { files, refs })
    }
}

impl Standing {
    /// Where `r` (one of the page's references) stands: `pending`, `copied`, `rewritten`,
    /// `missing`, `failed` or `conflict` (see `status` below).
    pub fn status(&self, r: &FileRef) -> &'static str {
        status(
            r,
            self.files.get(&r.name),
            self.refs.get(&ref_key(&r.class, &r.id, &r.path)),
        )
    }
}

/// Where one reference stands: `rewritten` when its record says so and the document still holds
/// the value written; `conflict` or `failed` when its rewrite was refused; otherwise what its
/// file's record says: `copied` (copied and verified, the reference not rewritten yet),
/// `missing` (not at the source), `failed`; `pending` when nothing is done yet (no record, a
/// copy only started, a copy deleted by a rollback).
fn status(r: &FileRef, file: Option<&FileRecord>, reference: Option<&RefRecord>) -> &'static str {
    if let Some(rec) = reference {
        let new = &rec.change.new;
        let holds_new = match (&r.shape, &new.text) {
            // A URL inside a string: the string written holds it (as written: the name may be
            // percent-encoded there).
            (Shape::InString, Some(text)) => {
                r.url.as_deref().is_some_and(|u| text.contains(u)) || text.contains(&r.name)
            }
            _ => new.name == r.name,
        };
        match rec.state {
            RefState::Rewritten if holds_new => return "rewritten",
            RefState::Conflict => return "conflict",
            RefState::Failed => return "failed",
            // Pending (a run is rewriting it, or one was killed doing so), rolled back, or
            // rewritten to a value the app has replaced since: the file's record tells.
            _ => {}
        }
    }
    match file.map(|f| f.state) {
        Some(FileState::Verified) => "copied",
        Some(FileState::Missing) => "missing",
        Some(FileState::Failed) => "failed",
        Some(FileState::Planned | FileState::Deleting | FileState::Deleted) | None => "pending",
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{Bson, oid::ObjectId};

    use super::*;
    use crate::ledger::{Loc, RefChange, RefValue};

    fn found(name: &str) -> FileRef {
        FileRef {
            class: "Photo".into(),
            id: Bson::String("a1".into()),
            path: "image".into(),
            name: name.into(),
            url: None,
            shape: Shape::BareName,
            page: 0,
        }
    }

    fn file(state: FileState) -> FileRecord {
        FileRecord {
            name: "tfss-a.jpg".into(),
            target: "0123_a.jpg".into(),
            state,
            size: None,
            md5: None,
            hash_checked: false,
            attempts: 1,
            error: None,
            destination: None,
            wrote: true,
            loc: Loc {
                batch: ObjectId::new(),
                index: 0,
            },
        }
    }

    fn reference(state: RefState) -> RefRecord {
        RefRecord {
            state,
            change: RefChange {
                class: "Photo".into(),
                id: Bson::String("a1".into()),
                path: "image".into(),
                file: "tfss-a.jpg".into(),
                old: RefValue::name("tfss-a.jpg"),
                new: RefValue::name("0123_a.jpg"),
                origin: None,
                dangling: false,
                loc: None,
            },
        }
    }

    #[test]
    fn a_reference_stands_where_its_records_say() {
        let old = found("tfss-a.jpg");
        let new = found("0123_a.jpg");
        assert_eq!(status(&old, None, None), "pending");
        let planned = file(FileState::Planned);
        assert_eq!(status(&old, Some(&planned), None), "pending");
        let verified = file(FileState::Verified);
        assert_eq!(status(&old, Some(&verified), None), "copied");
        let missing = file(FileState::Missing);
        assert_eq!(status(&old, Some(&missing), None), "missing");
        let failed = file(FileState::Failed);
        assert_eq!(status(&old, Some(&failed), None), "failed");
        let rewritten = reference(RefState::Rewritten);
        assert_eq!(status(&new, None, Some(&rewritten)), "rewritten");
        let conflict = reference(RefState::Conflict);
        assert_eq!(status(&old, Some(&verified), Some(&conflict)), "conflict");
        let refused = reference(RefState::Failed);
        assert_eq!(status(&old, Some(&verified), Some(&refused)), "failed");
        // Rolled back: the document holds the old name again; the copy is still there.
        let rolled_back = reference(RefState::RolledBack);
        assert_eq!(status(&old, Some(&verified), Some(&rolled_back)), "copied");
        // Rewritten, then the app put another name there: that name is not rewritten.
        assert_eq!(
            status(&found("other.jpg"), None, Some(&rewritten)),
            "pending"
        );
    }

    #[test]
    fn its_key_is_the_one_its_record_is_stored_under() {
        let r = found("x");
        assert_eq!(
            ref_key(&r.class, &r.id, &r.path),
            reference(RefState::Pending).change.key()
        );
    }
}
