//! Copy each file once per run, with memory bounded by what is in flight.
//!
//! The planner consults this table before the ledger. A name is either *in flight* (its copy was
//! handed to the copy stage; references met later wait here for the outcome) or *done* (its
//! outcome is known). Done entries are kept while their ledger record may still be unwritten,
//! then in a FIFO window of [`WINDOW`] names; older ones are dropped, because once the outcome is
//! in the ledger the planner's ledger lookup sees it. So a name absent from this table is either
//! new to the run or has a durable ledger record: the planner's two lookups together are exact.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::engine::Outcome;
use crate::scan::FileRef;

/// Done entries kept after their ledger record is written (a cache; correctness does not need it).
pub const WINDOW: usize = 4096;

/// References waiting on one in-flight copy before the planner pauses (bounds memory when one file
/// is referenced by a huge number of objects while its copy is slow).
pub const MAX_WAITERS: usize = 10_000;

enum Entry {
    InFlight {
        waiters: Vec<FileRef>,
        done: Arc<Notify>,
    },
    Done {
        outcome: Arc<Outcome>,
        /// The name it was copied to (decided once per file: `relayout`'s first reference).
        target: Arc<str>,
        flushed: bool,
    },
}

/// What the planner learns about a name.
pub enum Seen {
    /// New to this run (and possibly in the ledger).
    New,
    /// Its copy is in flight; the references were attached to it.
    Attached,
    /// Its copy is in flight and has too many waiters: wait for this, then ask again.
    Wait(Arc<Notify>),
    /// The outcome is known; `recorded` once the ledger has it (a copy that just ended may
    /// still be on its way there, in a batch of the rewrite stage).
    Done {
        outcome: Arc<Outcome>,
        target: Arc<str>,
        recorded: bool,
    },
}

pub struct Dedup {
    inner: Mutex<Inner>,
}

struct Inner {
    map: HashMap<String, Entry>,
    window: VecDeque<String>,
    cap: usize,
}

impl Inner {
    fn evict(&mut self) {
        while self.window.len() > self.cap {
            if let Some(old) = self.window.pop_front() {
                // Only if still the flushed entry the window refers to (not restarted since).
                if matches!(self.map.get(&old), Some(Entry::Done { flushed: true, .. })) {
                    self.map.remove(&old);
                }
            }
        }
    }
}

impl Dedup {
    pub fn new(cap: usize) -> Dedup {
        Dedup {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                window: VecDeque::new(),
                cap,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug elsewhere; the table itself stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Look `name` up; if its copy is in flight and `attach` is true, `refs` wait on it (taken).
    pub fn see(&self, name: &str, refs: &mut Vec<FileRef>, attach: bool) -> Seen {
        let mut inner = self.lock();
        match inner.map.get_mut(name) {
            None => Seen::New,
            Some(Entry::Done {
                outcome,
                target,
                flushed,
            }) => Seen::Done {
                outcome: outcome.clone(),
                target: target.clone(),
                recorded: *flushed,
            },
            Some(Entry::InFlight { waiters, done }) => {
                if !attach {
                    return Seen::Attached;
                }
                if waiters.len() >= MAX_WAITERS {
                    return Seen::Wait(done.clone());
                }
                waiters.append(refs);
                Seen::Attached
            }
        }
    }

    /// Mark `name` in flight (the planner hands its copy to the copy stage); `refs` wait for it.
    pub fn start(&self, name: &str, refs: Vec<FileRef>) {
        self.lock().map.insert(
            name.to_string(),
            Entry::InFlight {
                waiters: refs,
                done: Arc::new(Notify::new()),
            },
        );
    }

    /// Remember an outcome read from the ledger (already durable), so later pages skip the lookup.
    pub fn known(&self, name: &str, target: &str, outcome: Outcome) -> Arc<Outcome> {
        let outcome = Arc::new(outcome);
        let mut inner = self.lock();
        inner.map.insert(
            name.to_string(),
            Entry::Done {
                outcome: outcome.clone(),
                target: target.into(),
                flushed: true,
            },
        );
        inner.window.push_back(name.to_string());
        inner.evict();
        outcome
    }

    /// The copy of `name` ended: store the outcome, wake a paused planner, and return the
    /// references that waited for it.
    pub fn finish(
        &self,
        name: &str,
        target: &str,
        outcome: Outcome,
    ) -> (Arc<Outcome>, Vec<FileRef>) {
        let outcome = Arc::new(outcome);
        let mut inner = self.lock();
        let previous = inner.map.insert(
            name.to_string(),
            Entry::Done {
                outcome: outcome.clone(),
                target: target.into(),
                flushed: false,
            },
        );
        match previous {
            Some(Entry::InFlight { waiters, done }) => {
                done.notify_waiters();
                (outcome, waiters)
            }
            _ => (outcome, Vec::new()),
        }
    }

    /// The ledger now has the outcome of `names`: they may leave the table (oldest first, beyond
    /// the window).
    pub fn flushed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        for name in names {
            if let Some(Entry::Done { flushed, .. }) = inner.map.get_mut(name)
                && !*flushed
            {
                *flushed = true;
                inner.window.push_back(name.to_string());
            }
        }
        inner.evict();
    }

    /// Entries held (for tests and memory checks).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Shape;
    use mongodb::bson::Bson;

    fn r(id: &str) -> FileRef {
        FileRef {
            class: "C".into(),
            id: Bson::String(id.into()),
            path: "f".into(),
            name: "n".into(),
            url: None,
            shape: Shape::BareName,
            page: 0,
        }
    }

    #[test]
    fn waiters_follow_the_in_flight_copy_and_done_entries_age_out() {
        let d = Dedup::new(1);
        assert!(matches!(d.see("a", &mut vec![r("1")], true), Seen::New));
        d.start("a", vec![r("1")]);
        let mut later = vec![r("2"), r("3")];
        assert!(matches!(d.see("a", &mut later, true), Seen::Attached));
        assert!(later.is_empty());
        let (_, waiters) = d.finish("a", "a", Outcome::Planned);
        assert_eq!(waiters.len(), 3);
        assert!(matches!(
            d.see("a", &mut vec![], true),
            Seen::Done {
                recorded: false,
                ..
            }
        ));
        // Not flushed yet: stays even beyond the window.
        d.start("b", vec![]);
        d.finish("b", "b", Outcome::Planned);
        assert_eq!(d.len(), 2);
        d.flushed(["a", "b"]);
        assert!(matches!(
            d.see("b", &mut vec![], true),
            Seen::Done { recorded: true, .. }
        ));
        assert_eq!(d.len(), 1, "window of 1 keeps only the newest");
        assert!(matches!(d.see("a", &mut vec![], true), Seen::New));
    }

    #[test]
    fn too_many_waiters_pause_the_planner() {
        let d = Dedup::new(10);
        d.start("a", vec![]);
        let mut many: Vec<FileRef> = (0..MAX_WAITERS).map(|i| r(&i.to_string())).collect();
        assert!(matches!(d.see("a", &mut many, true), Seen::Attached));
        assert!(matches!(d.see("a", &mut vec![r("x")], true), Seen::Wait(_)));
    }
}
