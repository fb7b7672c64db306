//! The ledger: what every run did, kept in MongoDB next to the app data, so passes are
//! resumable, auditable and reversible.
//!
//! Five collections (names derive from `[ledger] collection`, default `_FileMigration`), each
//! owned by one file of this folder:
//!
//! * `<collection>` ([`files`](self::files)): one record per **source file** (`_id` = the stored
//!   name): target name, kind, state (`planned` → `verified`, or `missing` / `failed` with the
//!   reason and attempt count), size, MD5, timestamps.
//! * `<collection>.refs` ([`refs`](self::refs)): one record per **reference** rewritten (`_id` =
//!   `<class>/<object _id>/<path>`, with `c`, `o`, `p` holding the parts): the old and new
//!   values, state `pending` → `rewritten` | `conflict` (→ `rolled-back`).
//! * `<collection>.runs` ([`runs`](self::runs)): one record per run: settings (no secrets),
//!   host, start/end, counts, exit code.
//! * `<collection>.locks` ([`lease`](self::lease)): one lease per shard (`_id` = `all` or
//!   `K/N`), held by a writing run and renewed while it runs; a crashed run's lease expires
//!   (`[ledger] lease_secs`).
//! * `<collection>.walk` ([`runs`](self::runs)): one walk checkpoint per shard: where the next
//!   run of an unfinished pass resumes (see [`crate::engine::checkpoint`]).
//!
//! Every record carries the format [`VERSION`]; a ledger holding records of a newer format is
//! refused ([`Ledger::check_version`], and record by record in [`records`]).
//!
//! # Write order (crash safety)
//!
//! Intent before copy (`planned`), verification recorded before any reference is rewritten
//! (`verified`), a reference's old value recorded before its document is touched (`pending`), and
//! the outcome after (`rewritten`/`conflict`). A crash between any two steps leaves a record that
//! a re-run repeats idempotently: a planned file is copied again to the same deterministic target
//! (overwriting, never orphaning), a pending reference is retried with the same compare-and-swap.
//!
//! Every write here is batched: one round trip per hundreds of records. The callers (the engine,
//! `status`, `rollback`) see only the typed operations below — record intents, outcomes, pending
//! changes; look records up by name or target; page through them — never a stored document, so
//! the storage layout under them can change (one record per batch instead of per file) without
//! touching a caller.

mod files;
mod lease;
pub mod records;
mod refs;
mod runs;
mod status;

use anyhow::Context;
use mongodb::bson::{Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};

use crate::db::{DUPLICATE_KEY, insert_batch, update_batch};
pub use lease::LeaseHeld;
pub use records::{
    BadRecord, FileRecord, FileResult, FileState, Intent, KEY_PLACEHOLDER, RefChange, RefRecord,
    RefState, RefValue,
};
pub use refs::RefPage;
pub use status::{FileCount, Problem, RefCount, Status, UnfinishedPass};

/// The ledger's base collection name (`[ledger] collection`).
pub const DEFAULT_COLLECTION: &str = "_FileMigration";

/// A run renews its lease every third of this; after a crash (`kill -9`, a lost host) the
/// shard is free again after at most this long. A minute keeps the wait after a crash short
/// while tolerating a stalled process or database for ~40 s before another run may start.
pub const DEFAULT_LEASE_SECS: u64 = 60;

/// Format version written into every record, and the newest this version reads.
pub const VERSION: i32 = 1;

/// The ledger collections of one app.
#[derive(Debug, Clone)]
pub struct Ledger {
    db: Database,
    files: String,
    refs: String,
    runs: String,
    locks: String,
    walk: String,
    run: ObjectId,
    lease: std::time::Duration,
}

impl Ledger {
    /// The ledger in `db` under the base collection name `collection`. Opening does no I/O.
    pub fn new(db: Database, collection: &str) -> Ledger {
        Ledger {
            db,
            files: collection.to_string(),
            refs: format!("{collection}.refs"),
            runs: format!("{collection}.runs"),
            locks: format!("{collection}.locks"),
            walk: format!("{collection}.walk"),
            run: ObjectId::new(),
            lease: std::time::Duration::from_secs(DEFAULT_LEASE_SECS),
        }
    }

    /// How long this run's lease lasts without renewal.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Ledger {
        self.lease = lease;
        self
    }

    pub fn lease_duration(&self) -> std::time::Duration {
        self.lease
    }

    /// This run's id (recorded on every record it writes).
    pub fn run_id(&self) -> ObjectId {
        self.run
    }

    /// Every collection name the ledger uses (to leave them out of scans).
    pub fn collections(&self) -> [&str; 5] {
        [&self.files, &self.refs, &self.runs, &self.locks, &self.walk]
    }

    /// Refuse a ledger that a newer version of the tool has written to (its records could be
    /// misread, and writing next to them could corrupt it): one query on the runs collection
    /// (one small record per run), which every writing run records first.
    pub async fn check_version(&self) -> anyhow::Result<()> {
        let newer = self
            .coll(&self.runs)
            .find_one(doc! {"v": {"$gt": VERSION}})
            .projection(doc! {"v": 1})
            .await
            .with_context(|| format!("reading {}", self.runs))?;
        if let Some(Err(why)) = newer.as_ref().map(records::check_version) {
            let refused = crate::exit::Coded::new(
                crate::exit::USAGE,
                format!("the ledger {} was {why}", self.runs),
            );
            return Err(refused
                .hint("run the version of parse-files-migrate that wrote it, or a newer one")
                .into());
        }
        Ok(())
    }

    /// Create the secondary indexes the hot path's queries need (idempotent; a no-op when they
    /// exist). Without `{target: 1}` every planner page's [`by_target`](Self::by_target) lookup
    /// scans the whole file ledger — O(pages × files) on a large migration; `{file: 1}` does the
    /// same for `rollback`'s per-file [`still_referenced`](Self::still_referenced) check.
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        use mongodb::IndexModel;
        for (coll, key) in [(&self.files, "target"), (&self.refs, "file")] {
            self.coll(coll)
                .create_index(IndexModel::builder().keys(doc! {key: 1}).build())
                .await
                .with_context(|| format!("creating the index {{{key}: 1}} on {coll}"))?;
        }
        Ok(())
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Write records that are usually new (a first pass): insert them all, unordered — cheaper
    /// for the server than an upsert, which plans a query per statement — and upsert only the
    /// ones whose `_id` exists already (`upsert(i)` builds the statement for `fresh[i]`).
    async fn insert_or_upsert(
        &self,
        coll: &str,
        fresh: Vec<Document>,
        upsert: impl Fn(usize) -> Document,
    ) -> anyhow::Result<()> {
        let refused = insert_batch(&self.db, coll, fresh)
            .await
            .with_context(|| format!("writing the ledger {coll}"))?;
        let mut stmts = Vec::new();
        for (i, code, msg) in refused {
            if code != DUPLICATE_KEY {
                anyhow::bail!("writing the ledger {coll}: record #{i} refused: {msg}");
            }
            stmts.push(upsert(i));
        }
        self.write(coll, stmts).await
    }

    async fn write(&self, coll: &str, stmts: Vec<Document>) -> anyhow::Result<()> {
        if stmts.is_empty() {
            return Ok(());
        }
        let out = update_batch(&self.db, coll, stmts)
            .await
            .with_context(|| format!("writing the ledger {coll}"))?;
        if let Some((i, msg)) = out.errors.first() {
            anyhow::bail!(
                "writing the ledger {coll}: {} statements refused, first (#{i}): {msg}",
                out.errors.len()
            );
        }
        Ok(())
    }

    /// Read every document `filter` selects in `coll`, in `_id` order after `after`, at most
    /// `limit`, decoded by `decode`.
    async fn page<T>(
        &self,
        coll: &str,
        mut filter: Document,
        after: Option<mongodb::bson::Bson>,
        limit: i64,
        decode: impl Fn(&str, &Document) -> T,
    ) -> anyhow::Result<Vec<T>> {
        use futures::TryStreamExt;
        if let Some(a) = after {
            filter.insert("_id", doc! {"$gt": a});
        }
        let docs: Vec<Document> = self
            .coll(coll)
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit)
            .await
            .with_context(|| format!("reading {coll}"))?
            .try_collect()
            .await
            .with_context(|| format!("reading {coll}"))?;
        Ok(docs.iter().map(|d| decode(coll, d)).collect())
    }
}
