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
//! [`UrlBase`]. Sending it as a compare-and-swap, and telling a conflict from a
//! success, is [`crate::engine::cas`]'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Mode, Plan, UrlBase};
use crate::engine::summary::RefItem;
use crate::engine::{Counters, Effects, FileJob, Outcome, RunState};
use crate::ledger::{FileResult, FileState, RefChange, RefValue};
use crate::parse::schema::collection_name;
use crate::scan::{FileRef, Shape};

/// Records handled per flush (each `update` command carries up to
/// [`UPDATE_BATCH`](crate::db::UPDATE_BATCH) statements). A flush is four write commands
/// whatever its size (the file outcomes, the pending references, the compare-and-swap updates,
/// their outcomes), and a write command is what a database charges for beyond the documents it
/// touches: on the Python test server ~20-25 ms of its CPU per command, against ~0.35 ms per
/// compare-and-swap statement (`bench/run --only dbcost`; a command per document written cost
/// 25 ms, the same documents in one command 0.4 ms each). So a flush takes up to 1,024 records:
/// 2,000 references in 3 flushes instead of 13-17.
pub const BATCH: usize = 1024;

/// How long a batch waits for more records after its first, unless it fills up sooner. Taking
/// whatever was ready made batches of ~16 records when copies finished one by one: 20,000 ×
/// 20 KiB → fs `--copy-only` wrote ~1,250 outcome batches, each a ledger update and a `syncfs`.
/// 50 ms is nothing beside a pass, and lets a batch fill while the copies stream in.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Batches written at once. One at a time, each flush takes everything that arrived while the
/// previous one was written (up to [`BATCH`]): a slow database gets fewer, larger batches by
/// itself. Several at once split the same records into more commands; on the Python test server
/// 2,000 references × 20 KiB, full migration: 4 at once 3.5-4.3 s of database CPU, 2 at once
/// 2.3-2.9 s, 1 at a time 1.8-2.5 s (with 1,024-record batches).
pub const FLUSHES: usize = 1;

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
    tokio_stream::StreamExt::chunks_timeout(ReceiverStream::new(rx), BATCH, LINGER)
        .map(Ok)
        .try_for_each_concurrent(FLUSHES, |batch| flush(batch, &*effects, &state, &plan))
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
    let mut by_collection: BTreeMap<String, Vec<RefChange>> = BTreeMap::new();
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
        // URLs in strings are rewritten a whole string at a time, after the copies.
        let refs: Vec<FileRef> = refs.into_iter().filter(|r| !r.in_string()).collect();
        if !outcome.usable() || plan.mode == Mode::CopyOnly {
            Counters::add(&c.refs_left, refs.len() as u64);
            continue;
        }
        for r in refs {
            match change_for(&r, &name, &target, &plan.urls, plan.secret()) {
                Ok(Some(r)) => {
                    let collection = collection_name(&plan.collection_prefix, &r.class);
                    by_collection.entry(collection).or_default().push(r)
                }
                Ok(None) => Counters::add(&c.refs_unchanged, 1),
                Err(reason) => {
                    Counters::add(&c.refs_failed, 1);
                    c.failed_reference(RefItem::of_ref(&r, reason));
                }
            }
        }
    }
    for (collection, changes) in by_collection {
        let states = effects.rewrite(&collection, &changes).await?;
        for (change, (state, error)) in changes.iter().zip(states) {
            c.settled(
                change,
                state,
                error,
                "the document no longer holds the old value (changed by the app); left alone",
            );
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

pub(crate) fn file_result<'a>(name: &'a str, outcome: &'a Outcome) -> Option<FileResult<'a>> {
    let (state, size, md5, hash_checked, error, wrote) = match outcome {
        Outcome::Verified {
            size,
            md5,
            hash_checked,
            skipped,
        } => (
            FileState::Verified,
            Some(*size),
            md5.as_deref(),
            *hash_checked,
            None,
            !*skipped,
        ),
        Outcome::Missing { reason } => (FileState::Missing, None, None, false, Some(reason), false),
        Outcome::Failed { reason }
        | Outcome::Collision { reason }
        | Outcome::Stopped { reason, .. } => {
            (FileState::Failed, None, None, false, Some(reason), false)
        }
        Outcome::Planned | Outcome::NotStarted => return None,
    };
    Some(FileResult {
        name,
        state,
        size,
        md5,
        hash_checked,
        error: error.map(String::as_str),
        wrote,
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
        // Rewritten as whole strings after the copies (`engine::strings`), never one URL alone.
        Shape::InString => return Ok(None),
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
        origin: None,
        dangling: false,
        loc: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::Bson;

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
        assert!(c.is_bare_name());
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
        assert!(!c.is_bare_name());
        assert_eq!(c.old.url.as_deref(), Some("http://old/x"));
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
}
