//! `audit`: the storage side of an app joined with its database side. A store's listing and every
//! reference the walk finds are each sorted externally ([`sort`]: bounded runs on disk, then a
//! k-way merge) and merge-joined by name ([`join`]), so memory stays bounded by the run size
//! whatever the number of files and references.
//!
//! Findings: `orphan` (stored, referenced by nothing), `dangling` (referenced, not stored),
//! `superseded` (older GridFS revisions), and a [`Summary`]. This module reads and counts only;
//! it changes nothing, prints nothing (findings go to the caller's sink, which `report` writes),
//! and knows nothing of the command line.

pub mod join;
pub mod relink;
pub mod sort;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use futures::TryStreamExt;
use serde::Serialize;

use crate::scan::FileRef;
use crate::storage::{ListOptions, ObjectStore};

/// Default memory for each side's sort buffer (`--sort-run-bytes`).
pub const DEFAULT_RUN_BYTES: usize = 8 * 1024 * 1024;

/// One finding, handed to the sink as it is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Stored, referenced by nothing.
    Orphan {
        name: String,
        size: u64,
        modified: Option<SystemTime>,
    },
    /// Referenced, absent from the store.
    Dangling {
        class: String,
        object_id: String,
        path: String,
        name: String,
    },
    /// An older GridFS revision of a name (never served).
    Superseded {
        name: String,
        size: u64,
        modified: Option<SystemTime>,
        version: Option<String>,
    },
}

/// References and referenced bytes of one class and File field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldBytes {
    pub references: u64,
    /// Stored bytes of the files its references name (a file named twice counts twice).
    pub bytes: u64,
}

/// What an audit counted. Sizes are stored bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Objects served under their name (superseded revisions not included).
    pub stored_files: u64,
    pub stored_bytes: u64,
    /// Stored objects at least one reference names.
    pub referenced_files: u64,
    /// Every reference the walk found, legacy ones included.
    pub references: u64,
    pub orphans: u64,
    pub orphan_bytes: u64,
    /// Of the orphans, those whose key looks like a broken `generateKey`'s output
    /// ([`broken_generated_key`]): often the bytes of a dangling reference, under another key.
    pub broken_keys: u64,
    pub dangling_references: u64,
    pub superseded_versions: u64,
    pub superseded_bytes: u64,
    /// References with a hosted-Parse name (`tfss-…`, `<uuid>-…`).
    pub legacy_references: u64,
    /// Of those, the ones this store does not hold: Parse Server sends them to the old hosts,
    /// so they are not dangling here.
    pub legacy_unresolved: u64,
    /// Stored objects referenced by more than one object.
    pub shared_files: u64,
    /// Per (class, File field): references and their bytes.
    pub fields: BTreeMap<(String, String), FieldBytes>,
    /// What `relink` would make of the dangling references (with its default rule), when the
    /// audit paired them ([`Audit::finish_paired`]).
    pub relink: Option<relink::Counts>,
}

impl Summary {
    /// Whether the audit found nothing to act on (no orphan, no dangling reference).
    pub fn is_clean(&self) -> bool {
        self.orphans == 0 && self.dangling_references == 0
    }
}

/// Segments a key gets when the S3 adapter's `generateKey` returns what is not a string (an async
/// function, a missing field): parse-server-s3-adapter#596.
const BROKEN_SEGMENTS: [&str; 5] = [
    "undefined",
    "null",
    "NaN",
    "[object Promise]",
    "[object Object]",
];

/// Why stored key `name` looks like the output of a broken `generateKey`, if it does: a segment
/// (between `/`s, before its first `.`) that is `undefined`, `null`, `NaN`, `[object Promise]`
/// or `[object Object]` — what JavaScript makes of a value that is not a string.
pub fn broken_generated_key(name: &str) -> Option<&'static str> {
    name.split('/').find_map(|segment| {
        let stem = match segment.strip_prefix("[object ") {
            Some(_) => segment,
            None => segment.split('.').next().unwrap_or(segment),
        };
        BROKEN_SEGMENTS.into_iter().find(|b| stem == *b)
    })
}

/// How an audit sorts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Memory for each side's sort buffer before it spills a run to disk.
    pub run_bytes: usize,
    /// Where run files go (a private directory is made inside).
    pub temp_dir: PathBuf,
    /// Objects per listing page.
    pub page_size: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run_bytes: DEFAULT_RUN_BYTES,
            temp_dir: std::env::temp_dir(),
            page_size: None,
        }
    }
}

/// An audit in progress: feed it the listing, then the references, then [`Audit::finish`].
pub struct Audit {
    opts: Options,
    stored: sort::Sorter,
    refs: sort::Sorter,
    summary: Summary,
    page_size: Option<usize>,
}

impl Audit {
    pub fn new(opts: &Options) -> Audit {
        Audit {
            opts: opts.clone(),
            stored: sort::Sorter::new(&opts.temp_dir, opts.run_bytes),
            refs: sort::Sorter::new(&opts.temp_dir, opts.run_bytes),
            summary: Summary::default(),
            page_size: opts.page_size,
        }
    }

    /// Read `store`'s whole listing. Superseded revisions go to `sink` at once; the objects are
    /// sorted for the join.
    pub async fn list(
        &mut self,
        store: &dyn ObjectStore,
        sink: &mut dyn FnMut(&Finding) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut pages = store.list(ListOptions {
            prefix: None,
            page_size: self.page_size,
        });
        while let Some(page) = pages
            .try_next()
            .await
            .with_context(|| format!("listing {}", store.describe()))?
        {
            for o in page {
                if o.superseded {
                    self.summary.superseded_versions += 1;
                    self.summary.superseded_bytes += o.size;
                    sink(&Finding::Superseded {
                        name: o.name,
                        size: o.size,
                        modified: o.modified,
                        version: o.version,
                    })?;
                } else {
                    self.add_stored(&o.name, o.size, o.modified)?;
                }
            }
        }
        Ok(())
    }

    /// One stored object.
    pub fn add_stored(
        &mut self,
        name: &str,
        size: u64,
        modified: Option<SystemTime>,
    ) -> io::Result<()> {
        self.stored
            .push(name, &join::stored_payload(size, modified))
            .context_io("sorting the listing")
    }

    /// One reference found by the walk.
    pub fn add_ref(&mut self, r: &FileRef) -> io::Result<()> {
        self.add_reference(&r.class, &r.object_id(), &r.path, &r.name)
    }

    /// One reference, by its parts.
    pub fn add_reference(
        &mut self,
        class: &str,
        object_id: &str,
        path: &str,
        name: &str,
    ) -> io::Result<()> {
        self.refs
            .push(name, &join::ref_payload(class, object_id, path))
            .context_io("sorting the references")
    }

    /// Objects and references gathered so far, and the run files their sorts wrote.
    pub fn counts(&self) -> (u64, u64, usize) {
        (
            self.stored.len(),
            self.refs.len(),
            self.stored.runs() + self.refs.runs(),
        )
    }

    /// Join both sides: orphans and dangling references go to `sink`; returns the summary.
    pub fn finish(
        mut self,
        sink: &mut dyn FnMut(&Finding) -> io::Result<()>,
    ) -> io::Result<Summary> {
        let stored = self.stored.finish().context_io("sorting the listing")?;
        let refs = self.refs.finish().context_io("sorting the references")?;
        join::join(stored, refs, &mut self.summary, sink)?;
        Ok(self.summary)
    }
}

impl Audit {
    /// [`finish`](Self::finish), and pair the dangling references with the orphans as `relink`
    /// would under `rule` ([`relink`]): the summary says how many it would fix.
    pub fn finish_paired(
        self,
        rule: relink::Rule,
        sink: &mut dyn FnMut(&Finding) -> io::Result<()>,
    ) -> io::Result<Summary> {
        let mut pairer = relink::Pairer::new(rule, &self.opts);
        let mut summary = self.finish(&mut |f| {
            match f {
                Finding::Orphan { name, size, .. } => pairer.add_orphan(name, *size)?,
                Finding::Dangling { name, .. } => pairer.add_dangling(name, &[])?,
                Finding::Superseded { .. } => {}
            }
            sink(f)
        })?;
        let counts = pairer
            .finish(&mut |_, _, _| Ok(()))
            .context_io("pairing dangling references with orphans")?;
        summary.relink = Some(counts);
        Ok(summary)
    }
}

/// Say what was being done when a temp-file error happened.
trait IoContext<T> {
    fn context_io(self, what: &str) -> io::Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context_io(self, what: &str) -> io::Result<T> {
        self.map_err(|e| io::Error::new(e.kind(), format!("{what} (temporary files): {e}")))
    }
}

#[cfg(test)]
mod tests;
