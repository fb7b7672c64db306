//! `list`: every file reference, one row each, streamed page by page as the walk finds them, with
//! where each stands in the ledger. Read-only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::cli::ListArgs;
use crate::exit::{INCOMPLETE, OK};
use crate::ledger::{FileRecord, FileState, Ledger, RefRecord, RefState, ref_key};
use crate::parse::names::{NameKind, Selection, target_name};
use crate::report::list::{ListFormat, ListRow, ListWriter};
use crate::scan::{FileRef, Shape, log_issues};
use crate::session::{self, discover, explain_empty, next_page};
use crate::settings::Settings;
use crate::storage::ObjectStore;

pub(super) async fn run(settings: &Settings, args: &ListArgs) -> anyhow::Result<i32> {
    let format = ListFormat::choose(args.out.output, "list")?;
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let kinds: HashSet<NameKind> = args.kinds.iter().map(|k| (*k).into()).collect();
    let fail_on: HashSet<NameKind> = args.fail_on.iter().map(|k| (*k).into()).collect();
    let rename = args.rename.map(Into::into).unwrap_or(settings.run.rename);
    let sources = Sources::open(settings).await;
    let key = settings.parse.file_key.as_ref().map(|k| k.expose());

    let mut writer = ListWriter::new(format, crate::report::stdout::stdout())?;
    let mut matched_fail_on = 0u64;
    let mut by_kind = BTreeMap::<&str, u64>::new();
    let mut issues = 0u64;
    for target in &d.targets {
        let mut walker = d.walker(target, settings);
        while let Some(page) = next_page(&mut walker, target).await? {
            log_issues(&page.issues);
            issues += page.issues.len() as u64;
            let refs: Vec<&FileRef> = page
                .refs
                .iter()
                .filter(|r| kinds.is_empty() || kinds.contains(&r.kind()))
                .collect();
            let known = Known::of_page(&ledger, &refs).await?;
            for r in refs {
                let kind = r.kind();
                if fail_on.contains(&kind) {
                    matched_fail_on += 1;
                }
                *by_kind.entry(kind.as_str()).or_default() += 1;
                writer.write(&ListRow {
                    class: r.class.clone(),
                    object_id: r.object_id(),
                    path: r.path.clone(),
                    name: r.name.clone(),
                    kind: kind.as_str(),
                    nested: r.nested(),
                    source: sources.location(r),
                    target_name: target_name(&r.name, rename).into_owned(),
                    status: known.status(r),
                    in_string: r.in_string(),
                    url: r
                        .in_string()
                        .then(|| redact(r.url.as_deref(), key))
                        .flatten(),
                })?;
            }
        }
    }
    let rows = writer.finish()?;
    if rows == 0 && issues == 0 && kinds.is_empty() {
        tracing::warn!(
            "no file references found: {}",
            explain_empty(&d, &settings.mongo.collection_prefix)
        );
    }
    tracing::info!(
        references = rows,
        malformed = issues,
        "listed {}",
        crate::report::count(rows, "reference", "references")
    );
    let summary = serde_json::json!({"action": "summary", "references": rows,
        "malformed": issues, "kinds": by_kind, "fail_on_matched": matched_fail_on});
    crate::report::output::write_report(args.out.report.as_deref(), &summary)?;
    if matched_fail_on > 0 {
        tracing::warn!(
            "{} --fail-on",
            crate::report::count(matched_fail_on, "reference matches", "references match")
        );
        return Ok(INCOMPLETE);
    }
    Ok(OK)
}

/// What the ledger knows of one page's references: their files' records by name and their own
/// records by key. Two queries (one per ledger collection), sent together: one round trip per
/// page, never one per reference.
struct Known {
    files: HashMap<String, FileRecord>,
    refs: HashMap<String, RefRecord>,
}

impl Known {
    async fn of_page(ledger: &Ledger, refs: &[&FileRef]) -> anyhow::Result<Known> {
        let mut names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut keys: Vec<String> = refs
            .iter()
            .map(|r| ref_key(&r.class, &r.id, &r.path))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (files, refs) = tokio::try_join!(ledger.lookup(&names), ledger.refs_by_key(&keys))?;
        Ok(Known { files, refs })
    }

    fn status(&self, r: &FileRef) -> &'static str {
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
        Some(FileState::Planned | FileState::Deleted) | None => "pending",
    }
}

/// A URL with the fileKey (a secret) shown as `{file_key}`.
fn redact(url: Option<&str>, key: Option<&str>) -> Option<String> {
    let url = url?;
    Some(match key.filter(|k| !k.is_empty()) {
        Some(k) => url.replace(k, crate::ledger::KEY_PLACEHOLDER),
        None => url.to_string(),
    })
}

/// The configured sources, to show where each reference's bytes would be read from.
struct Sources {
    hosted: Option<Arc<dyn ObjectStore>>,
    server: Option<Arc<dyn ObjectStore>>,
}

impl Sources {
    async fn open(settings: &Settings) -> Sources {
        Sources {
            hosted: session::open_lenient(settings, Some(&settings.source.hosted)).await,
            server: session::open_lenient(settings, settings.source.server.as_ref()).await,
        }
    }

    fn location(&self, r: &FileRef) -> Option<String> {
        let store = if Selection::Hosted.includes(r.kind()) {
            self.hosted.as_ref()
        } else {
            self.server.as_ref()
        }?;
        store.location(&r.name).ok()
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
