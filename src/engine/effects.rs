//! The gate's contract: [`Effects`], the destructive side of a run, chosen once per run
//! ([`super::live::Live`] does the writes, [`super::dry::DryRun`] reports them, the pipeline's
//! estimator sizes them), and the values that cross it ([`Stores`], [`FileJob`], [`Outcome`]).
//! That is the only dry-run gate: code past it never asks whether a run is dry.

use std::sync::Arc;

use async_trait::async_trait;
use mongodb::bson::Document;

use super::Counters;
use super::cas::Settled;
use super::pipeline::checkpoint::Checkpoint;
use crate::ledger::{FileRecord, FileResult, Intent, RefChange};
use crate::parse::names::NameKind;
use crate::storage::ObjectStore;

/// The stores a run reads and writes.
#[derive(Clone)]
pub struct Stores {
    /// Bytes of hosted-Parse names.
    pub hosted: Option<Arc<dyn ObjectStore>>,
    /// Bytes of every other name.
    pub server: Option<Arc<dyn ObjectStore>>,
    pub destination: Arc<dyn ObjectStore>,
}

impl Stores {
    /// The store that holds the bytes of a name of this kind.
    pub fn source_for(&self, kind: NameKind) -> Option<&Arc<dyn ObjectStore>> {
        if kind.is_hosted() {
            self.hosted.as_ref()
        } else {
            self.server.as_ref()
        }
    }
}

/// One file to move.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub name: String,
    pub target: String,
    pub kind: NameKind,
    /// A stored `url` of one of its references (an HTTP source may need it).
    pub url_hint: Option<String>,
    pub field: String, // `Class.field` of the first reference to it (how reports group files)
    /// Copy attempts the ledger recorded before (0: it has no record of the file).
    pub attempts: u32,
}

impl FileJob {
    /// The intent to copy it to `destination`, as the ledger records it before the copy.
    pub fn intent<'a>(&'a self, destination: &'a str) -> Intent<'a> {
        Intent {
            name: &self.name,
            target: &self.target,
            kind: self.kind.as_str(),
            destination,
            attempts: self.attempts,
        }
    }
}

/// How a file ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Copied (or found in place) and verified.
    Verified {
        size: u64,
        md5: Option<String>,
        hash_checked: bool,
        /// Already at the destination before this run (ledger or same store): nothing moved.
        skipped: bool,
    },
    /// Not at the source.
    Missing { reason: String },
    /// Could not be copied or verified.
    Failed { reason: String },
    /// The destination already holds other bytes under the target name: left alone, not
    /// copied (the reason starts with `collision:`).
    Collision { reason: String },
    /// Failed in a way that stops the run (the destination is full, a store refuses every
    /// request): every later copy would fail the same way. Recorded as failed; `why` is how
    /// `stopped_by` starts ([`super::NO_SPACE`], [`super::REFUSED`]).
    Stopped { reason: String, why: &'static str },
    /// Dry run: would be copied.
    Planned,
    /// Queued, but the run stopped (interrupt, error budget, `--max-bytes`, `--max-duration`)
    /// before its copy began: nothing was written; the next run copies it.
    NotStarted,
}

impl Outcome {
    /// Whether references may point at the target.
    pub fn usable(&self) -> bool {
        matches!(self, Outcome::Verified { .. } | Outcome::Planned)
    }
}

/// The destructive side of a run, chosen once (see the module documentation).
#[async_trait]
pub trait Effects: Send + Sync + super::quarantine::Relocate {
    /// Record the start of the run.
    async fn begin(&self, info: Document) -> anyhow::Result<()>;
    /// Record the intent to copy these files.
    async fn plan(&self, intents: &[Intent<'_>]) -> anyhow::Result<()>;
    /// Copy one file and verify it at the destination (counting retries in `counters`).
    async fn copy(&self, job: &FileJob, counters: &Counters) -> Outcome;
    /// Record file outcomes (before any reference to them is rewritten).
    async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()>;
    /// Rewrite references in one collection, compare-and-swap each ([`super::cas`]); returns a state
    /// per change (and the server's reason for refused ones).
    async fn rewrite(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled>;
    /// Put recorded old values back (`rollback`): `changes` go from the value the migration
    /// wrote to the old one, compare-and-swap each; records each reference as `rolled-back`.
    async fn restore(&self, collection: &str, changes: &[RefChange]) -> anyhow::Result<Settled>;
    /// Delete copies this tool made at the destination (`rollback --delete-copies`), each only
    /// if, right before, nothing points at it (the ledger's records, and the top-level File
    /// fields of `targets` asked of the database); records each `deleting` before and `deleted`
    /// after ([`super::removal::delete_copies`]). Returns, per file, whether it was (or would
    /// be) deleted.
    async fn remove_copies(
        &self,
        files: &[FileRecord],
        targets: &[crate::scan::Target],
    ) -> anyhow::Result<Vec<bool>>;
    /// Write the walk checkpoint (`None`: the pass is over; see [`super::pipeline::checkpoint`]).
    async fn checkpoint(&self, checkpoint: Option<&Checkpoint>) -> anyhow::Result<()>;
    /// Record the end of the run.
    async fn finish(&self, summary: Document, exit_code: i32) -> anyhow::Result<()>;
    /// Whether this is a dry run: for the summary's wording only, never to decide what to do
    /// (that is what the two implementations are for).
    fn dry_run(&self) -> bool;
}
