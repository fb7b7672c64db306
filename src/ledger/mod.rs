//! The ledger: what every run did, kept in MongoDB next to the app data, so passes are
//! resumable, auditable and reversible.
//!
//! Eight collections (names derive from `[ledger] collection`, default `_FileMigration`), each
//! owned by one file of this folder:
//!
//! * `<collection>` ([`files`]): the **file records**, one per source file: target
//!   name, kind, state (`planned` → `verified`, or `missing` / `failed` with the reason and
//!   attempt count), size, MD5, time.
//! * `<collection>.refs` ([`refs`]): the **reference records**, one per reference
//!   rewritten (key `<class>/<object _id>/<path>`): the old and new values, state `pending` →
//!   `rewritten` | `conflict` | `failed` (→ `rolled-back`).
//! * `<collection>.runs` ([`runs`]): one record per run: settings (no secrets),
//!   host, start/end, counts, exit code.
//! * `<collection>.locks` ([`lease`]): one lease per shard (`_id` = `all` or
//!   `K/N`), held by a writing run and renewed while it runs ([`tenure`]: a run
//!   that loses it stops before its next write); scopes that overlap exclude each other; a
//!   crashed run's lease is taken over at once by a run on the same machine
//!   ([`holder`]), and expires for others (`[ledger] lease_secs`, by the database
//!   server's clock: [`clock`]).
//! * `<collection>.walk` ([`runs`]): one walk checkpoint per shard: where the next
//!   run of an unfinished pass resumes (see [`crate::engine::pipeline::checkpoint`]).
//! * `<collection>.quarantine` ([`quarantine`]): one record per file `audit
//!   --quarantine` moved (or `--purge --superseded` deleted), written before the store is
//!   touched: enough to finish or undo it.
//! * `<collection>.uploads` ([`debris`]): the multipart uploads a running copy started, so
//!   that a later run can abort those a kill left unfinished.
//! * `<collection>.rekey` ([`rekey`]): one record per file `rekey` is rewriting: the old and
//!   new version ids, written before the new version is staged.
//!
//! # Batch documents (format 2)
//!
//! File and reference records are not a document each: they are the entries of **batch
//! documents**, one per batch of hundreds, because a document write is what a database charges
//! for (one per record made a migrated file cost the server four or five writes besides the
//! rewrite itself; now a batch of 256 files costs about four). A batch document holds the
//! entries (`f` / `r`), the names or keys whose *current* record it holds (`n` / `k`, indexed),
//! its run and time. It is inserted once (intents; old values) and updated once per batch of
//! outcomes, which are appended to its `o` array (`{i: <entry>, <field>: <value>}`, read back
//! folded into the entries in order); a record written again later (a retry, a rollback and a new
//! pass) goes into a newer batch and its name or key is pulled from the older one, so each is
//! current in exactly one place and `status` counts each once. Records read back carry their
//! [`Loc`] (batch and index), so a later state change is one more change appended to its batch.
//!
//! Every record carries the format [`VERSION`]; a ledger holding records of a newer format is
//! refused ([`Ledger::check_version`], and record by record in [`records`]); a ledger of the
//! first format (a document per record) is converted once ([`upgrade`]).
//!
//! # Write order (crash safety)
//!
//! Intent before copy (`planned`), verification recorded before any reference is rewritten
//! (`verified`), a reference's old value recorded before its document is touched (`pending`), and
//! the outcome after (`rewritten`/`conflict`). A crash between any two steps leaves a record that
//! a re-run repeats idempotently: a planned file is copied again to the same deterministic target
//! (create-only: it finds its own earlier copy there, same size and MD5, and counts it as
//! copied; never orphaning, never overwriting), a batch left `open` is settled from the documents before the
//! next run writes anything ([`crate::engine::cas::settle_pending`]).
//!
//! The callers (the engine: migrate, rollback, audit's clean-up, rekey; `status`; `list`) see
//! only the typed operations below — record intents, outcomes, pending changes; look records up
//! by name or target; page through them; say where a walk's references stand (`standing`) —
//! never a stored document.

mod batch;
mod clock;
mod debris;
mod files;
mod holder;
mod lease;
mod quarantine;
pub mod records;
mod refs;
mod rekey;
mod runs;
mod standing;
mod status;
mod tenure;
mod upgrade;

use anyhow::Context;
use mongodb::bson::{Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};

use crate::db::{update_batch, update_stmt};
pub use debris::{DebrisStatus, GoneRun};
pub use files::FilePage;
pub use holder::Holder;
pub use lease::{LeaseHeld, LeaseLost, SERVE_SCOPE, Taken, conflicts};
pub use quarantine::{QuarantineIntent, QuarantineRecord, QuarantineState};
pub use records::{
    BadRecord, FileRecord, FileResult, FileState, Intent, KEY_PLACEHOLDER, Loc, RefChange,
    RefRecord, RefState, RefValue, TOMBSTONE, key_id, ref_key,
};
pub use refs::{RefPage, Settled};
pub use rekey::RekeyRecord;
pub use standing::Standing;
pub use status::{FileCount, Problem, RefCount, Status, UnfinishedPass};
pub use tenure::LOST as LEASE_LOST;

/// The ledger's base collection name (`[ledger] collection`).
pub const DEFAULT_COLLECTION: &str = "_FileMigration";

/// A run renews its lease every third of this; after a crash (`kill -9`, a lost host) the
/// shard is free again after at most this long. A minute keeps the wait after a crash short
/// while tolerating a stalled process or database for ~40 s before another run may start.
pub const DEFAULT_LEASE_SECS: u64 = 60;

/// Format version written into every record, and the newest this version reads. 2: file and
/// reference records are entries of batch documents (1: a document each).
pub const VERSION: i32 = 2;

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
    /// Where this run's records in progress are stored, to set their outcomes.
    held: std::sync::Arc<std::sync::Mutex<Held>>,
    /// The lease this run holds while it writes ([`Ledger::hold`]).
    tenure: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<tenure::Tenure>>>>,
    /// Whether the ledger held reference records before this run recorded its first: only then
    /// can a change continue an earlier run's (asked once, by the first `record_pending`).
    earlier_refs: std::sync::Arc<tokio::sync::OnceCell<bool>>,
}

/// The places of this run's intents without an outcome yet (by file name) and of its pending
/// references (by key): no more than the run has in flight.
#[derive(Debug, Default)]
struct Held {
    files: std::collections::HashMap<String, Loc>,
    refs: std::collections::HashMap<String, Loc>,
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
            held: Default::default(),
            tenure: Default::default(),
            earlier_refs: Default::default(),
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
        if let Some(Err(why)) = newer.as_ref().map(batch::check_version) {
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
    /// exist): the planner looks file records up by name (`n`) and by target (`f.t`) for every
    /// page, a batch of references is closed by pulling its keys from older batches (`k`),
    /// `rollback` asks whether a copy is still referenced (`r.file`), and every writing run
    /// settles the batches a crash left `open`. Without them each is a scan of the whole ledger.
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        use mongodb::IndexModel;
        let wanted = [
            (&self.files, "n"),
            (&self.files, "f.t"),
            (&self.refs, "k"),
            (&self.refs, "r.file"),
            (&self.refs, "open"),
        ];
        for (coll, key) in wanted {
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

    /// Insert one batch document.
    async fn insert_one(&self, coll: &str, d: Document) -> anyhow::Result<()> {
        self.coll(coll)
            .insert_one(d)
            .await
            .with_context(|| format!("writing the ledger {coll}"))?;
        Ok(())
    }

    /// Several documents in one round trip (the driver splits at the server's message limit).
    async fn insert_many(&self, coll: &str, docs: Vec<Document>) -> anyhow::Result<()> {
        self.coll(coll)
            .insert_many(docs)
            .await
            .with_context(|| format!("writing the ledger {coll}"))?;
        Ok(())
    }

    /// One `update` command: for each batch document among `marks`, one statement appending the
    /// changes given for its entries (`$push` to its [`CHANGES`](batch::CHANGES) array: one
    /// path per statement, cheap for any server, where a `$set` of hundreds of positional paths
    /// cost the test server 300 ms per batch) and unsetting `open` on the batches in `close`;
    /// then the `extra` statements.
    async fn push_changes(
        &self,
        coll: &str,
        marks: &[(Loc, Document)],
        close: &[ObjectId],
        extra: Vec<Document>,
    ) -> anyhow::Result<()> {
        let mut by_batch: std::collections::BTreeMap<ObjectId, Vec<Document>> = Default::default();
        for (loc, fields) in marks {
            let mut change = doc! {"i": loc.index as i64};
            change.extend(fields.clone());
            by_batch.entry(loc.batch).or_default().push(change);
        }
        for b in close {
            by_batch.entry(*b).or_default();
        }
        let mut stmts: Vec<Document> = by_batch
            .into_iter()
            .filter_map(|(batch, changes)| {
                let mut u = Document::new();
                if !changes.is_empty() {
                    u.insert("$push", doc! {batch::CHANGES: {"$each": changes}});
                }
                if close.contains(&batch) {
                    u.insert("$unset", doc! {"open": ""});
                }
                (!u.is_empty()).then(|| update_stmt(doc! {"_id": batch}, u, false))
            })
            .collect();
        stmts.extend(extra);
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

    /// Hand the documents `filter` selects in `coll` to `each`, oldest batch first (so a newer
    /// batch's record of a name or key replaces an older one's), until it breaks.
    async fn each_batch(
        &self,
        coll: &str,
        filter: Document,
        mut each: impl FnMut(&Document) -> anyhow::Result<std::ops::ControlFlow<()>>,
    ) -> anyhow::Result<()> {
        use futures::TryStreamExt;
        let mut cursor = self
            .coll(coll)
            .find(filter)
            .sort(doc! {"_id": 1})
            .await
            .with_context(|| format!("reading the ledger {coll}"))?;
        while let Some(d) = cursor
            .try_next()
            .await
            .with_context(|| format!("reading the ledger {coll}"))?
        {
            if each(&d)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Read the documents `filter` selects in `coll`, in `_id` order after `after`, at most
    /// `limit`.
    async fn page(
        &self,
        coll: &str,
        mut filter: Document,
        after: Option<mongodb::bson::Bson>,
        limit: i64,
    ) -> anyhow::Result<Vec<Document>> {
        use futures::TryStreamExt;
        if let Some(a) = after {
            filter.insert("_id", doc! {"$gt": a});
        }
        self.coll(coll)
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit)
            .await
            .with_context(|| format!("reading {coll}"))?
            .try_collect()
            .await
            .with_context(|| format!("reading {coll}"))
    }
}

/// The statement that pulls `names` from the `field` array (`n` / `k`) of every batch document
/// but `keep`: their current records are in `keep` now. It modifies nothing on a first pass (no
/// older batch names them), and finds the older batches through the index on `field`.
fn pull_elsewhere(field: &str, names: &[impl AsRef<str>], keep: &[ObjectId]) -> Document {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    let mut s = update_stmt(
        doc! {field: {"$in": &names}, "_id": {"$nin": keep}},
        doc! {"$pull": {field: {"$in": &names}}},
        false,
    );
    s.insert("multi", true);
    s
}
