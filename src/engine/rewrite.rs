//! The rewrite stage: records file outcomes, then rewrites the references to verified files.
//!
//! Records arrive from the copy stage (a copy ended) and from the planner (a file whose outcome
//! was already known). The stage takes whatever is ready (up to [`BATCH`] records), writes the
//! file outcomes to the ledger first, then the reference changes, collection by collection, in
//! batched compare-and-swap updates. So a reference is never rewritten before its file's
//! verification is durable. Up to [`FLUSHES`] batches are written at once; a batch holding
//! references to a file whose outcome another batch is still recording records it too, so the
//! rule holds across batches.
//!
//! A change is built here from a reference and its file's target: a bare top-level name becomes
//! the target name; a File object gets the target `name` and a `url` rebuilt by
//! [`UrlBase`](super::UrlBase). The compare-and-swap filter and the read-back that tells a
//! conflict from a success are in [`statement`] and [`settle`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::summary::RefItem;
use super::{Change, Counters, Effects, FileJob, Mode, Outcome, Plan, RunState, UrlBase};
use crate::ledger::{FileResult, FileState, RefChange, RefState, RefValue};
use crate::parse::schema::collection_name;
use crate::scan::{FileRef, Shape};

/// Records handled per flush.
pub const BATCH: usize = 256;

/// Batches written at once. Each batch is three round trips one after the other (pending
/// records, the compare-and-swap updates, outcomes); while one waits for the database, another
/// can be on the wire. 2,000 references on secantusd-rs (`bench/run --only rewrite`): 1 batch at
/// a time 0.38 s, 2: 0.30-0.33 s, 4: 0.26-0.31 s.
pub const FLUSHES: usize = 4;

/// Work for the rewrite stage.
pub enum Record {
    /// A copy ended; `refs` are every reference that waited for it.
    Copied {
        job: FileJob,
        outcome: Arc<Outcome>,
        refs: Vec<FileRef>,
    },
    /// References to a file whose outcome was already known.
    Known {
        name: String,
        target: String,
        outcome: Arc<Outcome>,
        /// The ledger has the outcome (else a batch still in flight is writing it, and this
        /// record's batch writes it as well before it rewrites anything).
        recorded: bool,
        refs: Vec<FileRef>,
    },
}

/// Run the stage until the channel closes.
pub async fn stage(
    rx: mpsc::Receiver<Record>,
    effects: Arc<dyn Effects>,
    state: Arc<RunState>,
    plan: Plan,
) -> anyhow::Result<()> {
    // A dry run prints its batches one after the other.
    let flushes = if effects.dry_run() { 1 } else { FLUSHES };
    ReceiverStream::new(rx)
        .ready_chunks(BATCH)
        .map(Ok)
        .try_for_each_concurrent(flushes, |batch| flush(batch, &*effects, &state, &plan))
        .await
}

async fn flush(
    batch: Vec<Record>,
    effects: &dyn Effects,
    state: &RunState,
    plan: &Plan,
) -> anyhow::Result<()> {
    let c = &state.counters;
    // 1. File outcomes first (verification durable before any rewrite).
    let results: Vec<FileResult> = batch
        .iter()
        .filter_map(unrecorded)
        .filter_map(|(name, outcome)| file_result(name, outcome))
        .collect();
    effects.record_files(&results).await?;
    state
        .dedup
        .flushed(batch.iter().filter_map(unrecorded).map(|(name, _)| name));

    // The walk pages these references came from settle once the batch is through.
    // Not those of copies a stop left unstarted: the walk checkpoint must not pass them.
    let pages: Vec<u64> = batch
        .iter()
        .flat_map(|r| match r {
            Record::Copied { outcome, refs, .. } | Record::Known { outcome, refs, .. } => {
                let started = **outcome != Outcome::NotStarted;
                refs.iter().filter(move |_| started).map(|r| r.page)
            }
        })
        .collect();

    // 2. Reference changes, grouped by collection.
    let mut by_collection: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for record in batch {
        let (name, target, outcome, refs) = match record {
            Record::Copied { job, outcome, refs } => (job.name, job.target, outcome, refs),
            Record::Known {
                name,
                target,
                outcome,
                refs,
                ..
            } => (name, target, outcome, refs),
        };
        if !outcome.usable() || plan.mode == Mode::CopyOnly {
            Counters::add(&c.refs_left, refs.len() as u64);
            continue;
        }
        for r in refs {
            match change_for(&r, &name, &target, &plan.urls, plan.secret()) {
                Ok(Some(r)) => {
                    let collection = collection_name(&plan.collection_prefix, &r.class);
                    by_collection.entry(collection).or_default().push(Change {
                        shape: shape_of(&r),
                        r,
                    })
                }
                Ok(None) => Counters::add(&c.refs_unchanged, 1),
                Err(reason) => {
                    Counters::add(&c.refs_failed, 1);
                    c.failed_reference(ref_item(&r, reason));
                }
            }
        }
    }
    for (collection, changes) in by_collection {
        let states = effects.rewrite(&collection, &changes).await?;
        for (change, (state, error)) in changes.iter().zip(states) {
            match state {
                RefState::Rewritten | RefState::Pending | RefState::RolledBack => {
                    Counters::add(&c.refs_rewritten, 1)
                }
                RefState::Conflict => {
                    Counters::add(&c.refs_conflict, 1);
                    c.conflict(change_item(
                        change,
                        "the document no longer holds the old value (changed by the app); left alone"
                            .into(),
                    ));
                }
                RefState::Failed => {
                    Counters::add(&c.refs_failed, 1);
                    c.failed_reference(change_item(
                        change,
                        error.unwrap_or_else(|| "update refused".into()),
                    ));
                }
            }
        }
    }
    state.walk.settled(pages);
    super::save_checkpoint(state, effects, false).await
}

/// The file and outcome a record brings that the ledger does not have yet.
fn unrecorded(r: &Record) -> Option<(&str, &Outcome)> {
    match r {
        Record::Copied { job, outcome, .. } => Some((job.name.as_str(), &**outcome)),
        Record::Known {
            name,
            outcome,
            recorded: false,
            ..
        } => Some((name.as_str(), &**outcome)),
        Record::Known { .. } => None,
    }
}

/// Whether a recorded change is of a bare name (no `url`).
fn shape_of(r: &RefChange) -> Shape {
    if r.old.url.is_none() && r.new.url.is_none() {
        Shape::BareName
    } else {
        Shape::Nested
    }
}

fn file_result<'a>(name: &'a str, outcome: &'a Outcome) -> Option<FileResult<'a>> {
    let (state, size, md5, hash_checked, error) = match outcome {
        Outcome::Verified {
            size,
            md5,
            hash_checked,
            ..
        } => (
            FileState::Verified,
            Some(*size),
            md5.as_deref(),
            *hash_checked,
            None,
        ),
        Outcome::Missing { reason } => (FileState::Missing, None, None, false, Some(reason)),
        Outcome::Failed { reason } => (FileState::Failed, None, None, false, Some(reason)),
        Outcome::Planned | Outcome::NotStarted => return None,
    };
    Some(FileResult {
        name,
        state,
        size,
        md5,
        hash_checked,
        error: error.map(String::as_str),
    })
}

/// The change that points `r` at `target`, or `None` when it already holds the final value.
/// `Err` when it cannot be rewritten (a File object's url cannot be rebuilt).
///
/// `secret` (the fileKey) is taken out of recorded old urls (see [`RefValue`]).
pub fn change_for(
    r: &FileRef,
    name: &str,
    target: &str,
    urls: &UrlBase,
    secret: Option<&str>,
) -> Result<Option<RefChange>, String> {
    let (old, new) = match r.shape {
        Shape::BareName => {
            if r.name == target {
                return Ok(None);
            }
            (RefValue::name(&r.name), RefValue::name(target))
        }
        Shape::TopLevelObject | Shape::Nested => {
            let url = match urls.url(target) {
                Ok(u) => u,
                // Nothing to rebuild the url from: fine if the name stays (the url stays too).
                Err(_) if r.name == target => return Ok(None),
                Err(why) => return Err(why),
            };
            if r.name == target && r.url.as_deref() == Some(url.as_str()) {
                return Ok(None);
            }
            (
                RefValue::file(&r.name, r.url.as_deref(), secret),
                RefValue::file(target, Some(&url), None),
            )
        }
    };
    Ok(Some(RefChange {
        class: r.class.clone(),
        id: r.id.clone(),
        path: r.path.clone(),
        file: name.to_string(),
        old,
        new,
    }))
}

/// The compare-and-swap update of one change: the filter holds the old name at the exact path.
pub fn statement(change: &Change) -> (Document, Document) {
    let r = &change.r;
    match change.shape {
        Shape::BareName => (
            doc! {"_id": r.id.clone(), &r.path: &r.old.name},
            doc! {"$set": {&r.path: &r.new.name}},
        ),
        _ => {
            let mut set = doc! {format!("{}.name", r.path): &r.new.name};
            let mut u = Document::new();
            match &r.new.url {
                Some(url) => {
                    set.insert(format!("{}.url", r.path), url);
                }
                // Only a rollback restores "no url" (a File object stored without one).
                None => {
                    u.insert("$unset", doc! {format!("{}.url", r.path): ""});
                }
            }
            u.insert("$set", set);
            (
                doc! {"_id": r.id.clone(), format!("{}.name", r.path): &r.old.name},
                u,
            )
        }
    }
}

/// After a batch matched fewer statements than it had: read the documents back and tell, per
/// change, whether it now holds the new value (rewritten, by us or already before) or something
/// else (a conflict: the app changed it). `docs` are the documents by `_id` key
/// ([`id_key`]); `errors` the server's refusals by statement index.
pub fn settle(
    changes: &[Change],
    docs: &HashMap<String, Document>,
    errors: &HashMap<usize, String>,
) -> Vec<(RefState, Option<String>)> {
    changes
        .iter()
        .enumerate()
        .map(|(i, change)| {
            if let Some(e) = errors.get(&i) {
                return (RefState::Failed, Some(e.clone()));
            }
            let r = &change.r;
            let now = docs.get(&id_key(&r.id)).and_then(|d| get_path(d, &r.path));
            let holds_new = match (change.shape, now) {
                (Shape::BareName, Some(Bson::String(s))) => s == &r.new.name,
                (_, Some(Bson::Document(d))) => d.get_str("name").ok() == Some(r.new.name.as_str()),
                _ => false,
            };
            if holds_new {
                (RefState::Rewritten, None)
            } else {
                (RefState::Conflict, None)
            }
        })
        .collect()
}

/// A hashable key for an `_id` of any type.
pub fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

/// The value at a dotted path (`gallery.2.file`), descending into arrays by index.
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get(p)?,
            Bson::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn ref_item(r: &FileRef, reason: String) -> RefItem {
    RefItem {
        class: r.class.clone(),
        object_id: r.object_id(),
        path: r.path.clone(),
        name: r.name.clone(),
        reason,
    }
}

fn change_item(c: &Change, reason: String) -> RefItem {
    RefItem {
        class: c.r.class.clone(),
        object_id: crate::scan::id_string(&c.r.id),
        path: c.r.path.clone(),
        name: c.r.old.name.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fref(shape: Shape, path: &str, name: &str, url: Option<&str>) -> FileRef {
        FileRef {
            class: "Photo".into(),
            id: Bson::String("a1".into()),
            path: path.into(),
            name: name.into(),
            url: url.map(str::to_string),
            shape,
            page: 0,
        }
    }

    fn server() -> UrlBase {
        UrlBase::Server {
            public_server_url: "https://api.example.com/parse/".into(),
            app_id: "app".into(),
        }
    }

    #[test]
    fn bare_names_change_only_when_renamed() {
        let r = fref(Shape::BareName, "image", "tfss-x-a.jpg", None);
        let c = change_for(&r, &r.name, "h_a.jpg", &server(), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.new.name, "h_a.jpg");
        assert_eq!(c.new.url, None);
        assert!(
            change_for(&r, &r.name, "tfss-x-a.jpg", &server(), None)
                .unwrap()
                .is_none()
        );
        let change = Change {
            shape: shape_of(&c),
            r: c,
        };
        let (q, u) = statement(&change);
        assert_eq!(q, doc! {"_id": "a1", "image": "tfss-x-a.jpg"});
        assert_eq!(u, doc! {"$set": {"image": "h_a.jpg"}});
    }

    #[test]
    fn nested_files_get_a_rebuilt_url_and_a_filter_on_the_old_name() {
        let r = fref(
            Shape::Nested,
            "gallery.2.file",
            "my pic.jpg",
            Some("http://old/x"),
        );
        let c = change_for(&r, &r.name, "my pic.jpg", &server(), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            c.new.url.as_deref(),
            Some("https://api.example.com/parse/files/app/my%20pic.jpg")
        );
        let change = Change {
            shape: shape_of(&c),
            r: c,
        };
        let (q, u) = statement(&change);
        assert_eq!(q, doc! {"_id": "a1", "gallery.2.file.name": "my pic.jpg"});
        assert_eq!(
            u,
            doc! {"$set": {"gallery.2.file.name": "my pic.jpg",
            "gallery.2.file.url": "https://api.example.com/parse/files/app/my%20pic.jpg"}}
        );
        // Already right: nothing to do.
        let done = fref(
            Shape::Nested,
            "f",
            "n.jpg",
            Some("https://api.example.com/parse/files/app/n.jpg"),
        );
        assert!(
            change_for(&done, "n.jpg", "n.jpg", &server(), None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_template_builds_direct_urls_and_no_base_refuses_renames_only() {
        let t = UrlBase::Template("https://cdn.example.com/f/{name}".into());
        let r = fref(Shape::Nested, "f", "tfss-1-a b.png", None);
        let c = change_for(&r, &r.name, "h_a b.png", &t, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            c.new.url.as_deref(),
            Some("https://cdn.example.com/f/h_a%20b.png")
        );
        let none = UrlBase::None {
            why: "no base".into(),
        };
        assert_eq!(
            change_for(&r, &r.name, "h_a b.png", &none, None).unwrap_err(),
            "no base"
        );
        assert!(
            change_for(&r, &r.name, &r.name, &none, None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn settle_tells_rewritten_from_conflicts() {
        let mk = |path: &str, old: &str, new: &str| {
            let r = fref(Shape::BareName, path, old, None);
            let c = change_for(&r, old, new, &server(), None).unwrap().unwrap();
            Change {
                shape: shape_of(&c),
                r: c,
            }
        };
        let changes = vec![
            mk("a", "o1", "n1"),
            mk("b", "o2", "n2"),
            mk("c", "o3", "n3"),
        ];
        let mut docs = HashMap::new();
        docs.insert(
            id_key(&Bson::String("a1".into())),
            doc! {"_id": "a1", "a": "n1", "b": "app-wrote-this", "c": "o3"},
        );
        let errors = HashMap::from([(2usize, "too big".to_string())]);
        let s = settle(&changes, &docs, &errors);
        assert_eq!(s[0].0, RefState::Rewritten);
        assert_eq!(s[1].0, RefState::Conflict);
        assert_eq!(s[2], (RefState::Failed, Some("too big".into())));
    }

    #[test]
    fn get_path_walks_objects_and_arrays() {
        let d = doc! {"g": [{"f": {"name": "x"}}, {"f": {"name": "y"}}], "p": {"q": 1}};
        assert_eq!(get_path(&d, "g.1.f.name"), Some(&Bson::String("y".into())));
        assert_eq!(get_path(&d, "p.q"), Some(&Bson::Int32(1)));
        assert_eq!(get_path(&d, "g.9.f"), None);
        assert_eq!(get_path(&d, "p.q.r"), None);
    }
}
