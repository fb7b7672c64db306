//! Walk checkpoints: how far the walk of an unfinished pass is settled, so that the next run
//! resumes there instead of walking every class again.
//!
//! A page of the walk is *settled* when every reference it found has been dealt with: rewritten,
//! found already final, left alone (its file missing or failed, a conflict), or outside the
//! selection. Pages settle out of order (copies end out of order), so the checkpoint is the
//! position after the last page of the unbroken settled prefix: a run that starts there skips
//! only objects whose references were all dealt with. Whatever was in flight at a crash, a
//! cutoff or an interrupt is walked again (and the ledger makes that cheap).
//!
//! A checkpoint belongs to one *pass*: a walk that reaches the end of every class clears it, and
//! the next run walks everything again, which is where new objects, failed files and conflicts
//! get their retry. It is bound to the settings that decide what a pass does (selection, rename
//! policy, mode, destination, the classes and fields walked): a run with other settings ignores
//! it. `--rescan` (and `--retry-failed`) ignore it too. One checkpoint per shard scope (`all`,
//! `K/N`), like the lease.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document, doc};
use sha2::{Digest, Sha256};

use super::Plan;
use crate::scan::{Target, WalkPosition};

/// How often a moving checkpoint is written (one small upsert).
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Where a pass stands: classes walked to the end, and the position inside the current one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Digest of the settings the pass runs with (see [`digest`]).
    pub digest: String,
    /// Collections whose walk is settled to the end.
    pub done: Vec<String>,
    /// The collection being walked and the position after its last settled page.
    pub current: Option<(String, WalkPosition)>,
    /// Objects walked in this pass so far (all runs), for the operator.
    pub objects: u64,
}

impl Checkpoint {
    /// Where to start walking `collection`: `None` from the start; `Some(end)` to skip it.
    pub fn start_of(&self, collection: &str) -> Option<WalkPosition> {
        if self.done.iter().any(|c| c == collection) {
            return Some(WalkPosition {
                bracket: None,
                last: None,
            });
        }
        match &self.current {
            Some((c, at)) if c == collection => Some(at.clone()),
            _ => None,
        }
    }

    /// The stored form (without `_id`).
    pub fn to_document(&self) -> Document {
        let (class, bracket, last) = match &self.current {
            Some((c, at)) => (
                Bson::String(c.clone()),
                at.bracket.map_or(Bson::Null, |b| Bson::String(b.into())),
                at.last.clone().unwrap_or(Bson::Null),
            ),
            None => (Bson::Null, Bson::Null, Bson::Null),
        };
        doc! {
            "digest": &self.digest,
            "done": &self.done,
            "class": class,
            "bracket": bracket,
            "last": last,
            "has_last": self.current.as_ref().is_some_and(|(_, at)| at.last.is_some()),
            "objects": self.objects as i64,
        }
    }

    /// Read a stored checkpoint back; `None` when it cannot be understood (walk from the start).
    pub fn from_document(d: &Document) -> Option<Checkpoint> {
        let done = d
            .get_array("done")
            .ok()?
            .iter()
            .map(|b| b.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?;
        let current = match d.get_str("class") {
            Ok(class) => {
                let last = if d.get_bool("has_last").unwrap_or(false) {
                    Some(d.get("last")?.clone())
                } else {
                    None
                };
                let at = WalkPosition::named(d.get_str("bracket").ok(), last)?;
                Some((class.to_string(), at))
            }
            Err(_) => None,
        };
        Some(Checkpoint {
            digest: d.get_str("digest").ok()?.to_string(),
            done,
            current,
            objects: d
                .get_i64("objects")
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        })
    }
}

/// The settings a checkpoint is bound to, as a short digest: what a pass selects and does, and
/// exactly which classes and fields it walks (a pass cut with `--class`/`--field`/`--no-nested`
/// settled only those, so a run with other filters must not resume it).
pub fn digest(plan: &Plan, targets: &[Target]) -> String {
    let mut what = format!(
        "v1|{:?}|{:?}|{:?}|{}|{}",
        plan.select, plan.rename, plan.mode, plan.destination.identity, plan.collection_prefix
    );
    // A relayout's template (unchanged digests without one).
    if let Some(l) = &plan.layout {
        what.push_str(&format!("|layout:{}", l.as_str()));
    }
    for t in targets {
        what.push_str(&format!(
            "|{}:{:?}:{:?}",
            t.collection, t.class.file_fields, t.class.container_fields
        ));
        // `--strings` walks more (unchanged digests without it).
        if let Some(s) = &t.strings {
            what.push_str(&format!(":strings{:?}", s.fields));
        }
    }
    let d = Sha256::digest(what.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The run's bookkeeping of settled pages (see the module documentation).
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Held while a checkpoint is written, so writes happen in order; the version written last.
    pub(super) saving: tokio::sync::Mutex<u64>,
}

struct Inner {
    next: u64,
    /// Unsettled (or not yet committed) pages: references outstanding, position after the page.
    pages: BTreeMap<u64, (u64, String, WalkPosition, u64)>,
    committed: Checkpoint,
    version: u64,
    saved_at: Option<Instant>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            inner: Mutex::new(Inner {
                next: 1,
                pages: BTreeMap::new(),
                committed: Checkpoint::default(),
                version: 0,
                saved_at: None,
            }),
            saving: tokio::sync::Mutex::new(0),
        }
    }
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start from a checkpoint (loaded, or a fresh one with the run's digest).
    pub fn start(&self, from: Checkpoint) {
        let mut i = self.lock();
        i.committed = from;
        i.version = 0;
    }

    /// A page of `collection` was read (`objects` documents; `at` is where the next page
    /// starts) and `refs` of its references will be reported [`settled`](Self::settled).
    /// Returns the page's number, to put on those references.
    pub fn page(&self, collection: &str, at: WalkPosition, objects: u64, refs: u64) -> u64 {
        let mut i = self.lock();
        let n = i.next;
        i.next += 1;
        i.pages
            .insert(n, (refs, collection.to_string(), at, objects));
        i.advance();
        n
    }

    /// One reference of each listed page was dealt with.
    pub fn settled(&self, pages: impl IntoIterator<Item = u64>) {
        let mut i = self.lock();
        for p in pages {
            if let Some(page) = i.pages.get_mut(&p) {
                page.0 = page.0.saturating_sub(1);
            }
        }
        i.advance();
    }

    /// The checkpoint to write now, with its version: when it moved since the last write
    /// `saved`, and `force` or [`SAVE_EVERY`] has passed since.
    pub fn due(&self, saved: u64, force: bool) -> Option<(u64, Checkpoint)> {
        let mut i = self.lock();
        if i.version == saved {
            return None;
        }
        if !force && i.saved_at.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
            return None;
        }
        i.saved_at = Some(Instant::now());
        Some((i.version, i.committed.clone()))
    }

    /// The committed checkpoint (tests, the summary).
    pub fn committed(&self) -> Checkpoint {
        self.lock().committed.clone()
    }
}

impl Inner {
    /// Commit the settled prefix of pages.
    fn advance(&mut self) {
        while let Some(entry) = self.pages.first_entry() {
            if entry.get().0 > 0 {
                break;
            }
            let (_, collection, at, objects) = entry.remove();
            let cp = &mut self.committed;
            cp.objects += objects;
            if at.is_end() {
                if !cp.done.contains(&collection) {
                    cp.done.push(collection);
                }
                cp.current = None;
            } else {
                cp.current = Some((collection, at));
            }
            self.version += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last: &str) -> WalkPosition {
        WalkPosition {
            bracket: Some("string"),
            last: Some(Bson::String(last.into())),
        }
    }

    fn end() -> WalkPosition {
        WalkPosition {
            bracket: None,
            last: None,
        }
    }

    #[test]
    fn only_an_unbroken_settled_prefix_is_committed() {
        let t = Tracker::default();
        let p1 = t.page("A", at("a1"), 10, 2);
        let p2 = t.page("A", at("a2"), 10, 1);
        let _p3 = t.page("A", at("a3"), 10, 0);
        assert_eq!(t.committed().current, None, "nothing settled yet");
        // Page 2 settles first: still nothing, page 1 is outstanding.
        t.settled([p2]);
        assert_eq!(t.committed().current, None);
        t.settled([p1]);
        assert_eq!(t.committed().current, None, "one of page 1's two is left");
        t.settled([p1]);
        // 1, 2 and the empty page 3 commit together.
        let cp = t.committed();
        assert_eq!(cp.current, Some(("A".into(), at("a3"))));
        assert_eq!(cp.objects, 30);
        // The end of A marks it done; B starts.
        t.page("A", end(), 0, 0);
        let p5 = t.page("B", at("b1"), 5, 1);
        let cp = t.committed();
        assert_eq!(cp.done, vec!["A".to_string()]);
        assert_eq!(cp.current, None);
        assert_eq!(cp.start_of("A"), Some(end()));
        assert_eq!(cp.start_of("B"), None);
        t.settled([p5]);
        assert_eq!(t.committed().start_of("B"), Some(at("b1")));
    }

    #[test]
    fn a_page_never_reported_holds_everything_after_it() {
        // A cutoff drops a page's references: nothing from there on is committed.
        let t = Tracker::default();
        t.page("A", at("a1"), 10, 0);
        let _dropped = t.page("A", at("a2"), 10, 3);
        let p3 = t.page("A", at("a3"), 10, 1);
        t.settled([p3]);
        assert_eq!(t.committed().current, Some(("A".into(), at("a1"))));
    }

    #[test]
    fn saves_are_due_when_moved_and_throttled() {
        let t = Tracker::default();
        assert!(t.due(0, true).is_none(), "nothing moved");
        t.page("A", at("a1"), 1, 0);
        let (v, cp) = t.due(0, false).expect("first save");
        assert_eq!(cp.current, Some(("A".into(), at("a1"))));
        t.page("A", at("a2"), 1, 0);
        assert!(t.due(v, false).is_none(), "within SAVE_EVERY");
        let (v2, cp) = t.due(v, true).expect("forced");
        assert!(v2 > v);
        assert_eq!(cp.current, Some(("A".into(), at("a2"))));
        assert!(t.due(v2, true).is_none());
    }

    #[test]
    fn stored_form_round_trips() {
        for current in [
            None,
            Some(("C".to_string(), at("x"))),
            Some((
                "D".to_string(),
                WalkPosition {
                    bracket: Some("int"),
                    last: Some(Bson::Int64(7)),
                },
            )),
            Some((
                "E".to_string(),
                WalkPosition {
                    bracket: Some("objectId"),
                    last: None,
                },
            )),
            Some((
                "F".to_string(),
                WalkPosition {
                    bracket: Some("null"),
                    last: Some(Bson::Null),
                },
            )),
        ] {
            let cp = Checkpoint {
                digest: "d".into(),
                done: vec!["A".into(), "B".into()],
                current,
                objects: 42,
            };
            assert_eq!(Checkpoint::from_document(&cp.to_document()), Some(cp));
        }
        assert_eq!(Checkpoint::from_document(&doc! {"digest": 1}), None);
        assert_eq!(
            Checkpoint::from_document(
                &doc! {"digest": "d", "done": [], "class": "C", "bracket": "nope"}
            ),
            None,
            "an unknown bracket is not guessed"
        );
    }
}
