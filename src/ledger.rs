//! The ledger: what every run did, kept in MongoDB next to the app data, so passes are
//! resumable, auditable and reversible.
//!
//! Three collections (names derive from `[ledger] collection`, default `_FileMigration`):
//!
//! * `<collection>`: one record per **source file** (`_id` = the stored name): target name, kind,
//!   state (`planned` → `verified`, or `missing` / `failed` with the reason and attempt count),
//!   size, MD5, timestamps.
//! * `<collection>.refs`: one record per **reference** rewritten (`_id` =
//!   `<class>/<object _id>/<path>`, with `c`, `o`, `p` holding the parts): the old and new
//!   values, state `pending` → `rewritten` | `conflict` (→ `rolled-back`).
//! * `<collection>.runs`: one record per run: settings (no secrets), host, start/end, counts, exit
//!   code.
//! * `<collection>.locks`: one lease per shard (`_id` = `all` or `K/N`), held by a writing run and
//!   renewed while it runs; a crashed run's lease expires (`[ledger] lease_secs`).
//! * `<collection>.walk`: one walk checkpoint per shard (`_id` = `all` or `K/N`): where the next
//!   run of an unfinished pass resumes (see [`crate::engine::checkpoint`]).
//!
//! # Write order (crash safety)
//!
//! Intent before copy (`planned`), verification recorded before any reference is rewritten
//! (`verified`), a reference's old value recorded before its document is touched (`pending`), and
//! the outcome after (`rewritten`/`conflict`). A crash between any two steps leaves a record that
//! a re-run repeats idempotently: a planned file is copied again to the same deterministic target
//! (overwriting, never orphaning), a pending reference is retried with the same compare-and-swap.
//!
//! Every write here is batched: one round trip per hundreds of records.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};
use serde::Serialize;

use crate::db::{DUPLICATE_KEY, insert_batch, update_batch, update_stmt};

/// Format version written into every record.
pub const VERSION: i32 = 1;

/// Where a file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// A copy was started (intent recorded before the first byte moved).
    Planned,
    /// Copied and verified at the destination: references may point at the target.
    Verified,
    /// The source does not have it (404/403/410 or no such object).
    Missing,
    /// Copy or verification failed; `error` says why.
    Failed,
    /// `rollback --delete-copies` removed the copy.
    Deleted,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Planned => "planned",
            FileState::Verified => "verified",
            FileState::Missing => "missing",
            FileState::Failed => "failed",
            FileState::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<FileState> {
        Some(match s {
            "planned" => FileState::Planned,
            "verified" => FileState::Verified,
            "missing" => FileState::Missing,
            "failed" => FileState::Failed,
            "deleted" => FileState::Deleted,
            _ => return None,
        })
    }
}

/// A reference's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefState {
    /// About to be rewritten (old value recorded).
    Pending,
    Rewritten,
    /// The document no longer held the old value: the app changed it; left alone.
    Conflict,
    /// The server refused the update; the reason is recorded.
    Failed,
    /// `rollback` restored the old value.
    RolledBack,
}

impl RefState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefState::Pending => "pending",
            RefState::Rewritten => "rewritten",
            RefState::Conflict => "conflict",
            RefState::Failed => "failed",
            RefState::RolledBack => "rolled-back",
        }
    }
}

/// What the ledger knows of one source file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub name: String,
    pub target: String,
    pub state: FileState,
    pub size: Option<u64>,
    pub md5: Option<String>,
    pub hash_checked: bool,
    pub attempts: u32,
    pub error: Option<String>,
    /// The destination it was copied to (its description; no secrets).
    pub destination: Option<String>,
}

/// A file about to be copied.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub kind: &'a str,
    pub destination: &'a str,
}

/// The outcome of one file, to record.
#[derive(Debug, Clone)]
pub struct FileResult<'a> {
    pub name: &'a str,
    pub state: FileState,
    pub size: Option<u64>,
    pub md5: Option<&'a str>,
    pub hash_checked: bool,
    pub error: Option<&'a str>,
}

/// The values of a File reference (the name, and the `url` of File objects).
///
/// Hosted-era urls embed the app's `fileKey` (`http://files.parsetfss.com/<fileKey>/…`); a
/// secret never goes into the ledger or any output, so such a url is kept with the key replaced
/// by `{file_key}` and `key_redacted` set (a rollback puts the key back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefValue {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key_redacted: bool,
}

/// What stands for the `fileKey` in recorded urls.
pub const KEY_PLACEHOLDER: &str = "{file_key}";

impl RefValue {
    /// A name without a url.
    pub fn name(name: impl Into<String>) -> RefValue {
        RefValue {
            name: name.into(),
            url: None,
            key_redacted: false,
        }
    }

    /// A File object's values, with `secret` (the fileKey) taken out of the url.
    pub fn file(name: impl Into<String>, url: Option<&str>, secret: Option<&str>) -> RefValue {
        let secret = secret.filter(|s| !s.is_empty());
        let (url, key_redacted) = match (url, secret) {
            (Some(u), Some(k)) if u.contains(k) => (Some(u.replace(k, KEY_PLACEHOLDER)), true),
            (u, _) => (u.map(str::to_string), false),
        };
        RefValue {
            name: name.into(),
            url,
            key_redacted,
        }
    }

    fn to_bson(&self) -> Document {
        let mut d = doc! {"name": &self.name};
        if let Some(u) = &self.url {
            d.insert("url", u);
        }
        if self.key_redacted {
            d.insert("key_redacted", true);
        }
        d
    }
}

/// One reference change, as recorded.
#[derive(Debug, Clone)]
pub struct RefChange {
    pub class: String,
    pub id: Bson,
    pub path: String,
    /// The source file's name (links the reference to its file record).
    pub file: String,
    pub old: RefValue,
    pub new: RefValue,
}

impl RefChange {
    /// The record's `_id`: `<class>/<object _id as canonical extended JSON>/<path>` — a string,
    /// unique per reference and cheap to index on every server (the parts are stored as `c`,
    /// `o`, `p` too).
    pub fn key(&self) -> Bson {
        Bson::String(format!(
            "{}/{}/{}",
            self.class,
            self.id.clone().into_canonical_extjson(),
            self.path
        ))
    }
}

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

/// Another run holds the lease.
#[derive(Debug, thiserror::Error)]
#[error(
    "another run holds the lease on {scope} (host {host:?}, pid {pid}, run {run}) until {until}; \
     two runs over the same files at once are refused"
)]
pub struct LeaseHeld {
    pub scope: String,
    pub host: String,
    pub pid: i64,
    pub run: String,
    pub until: String,
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
            lease: std::time::Duration::from_secs(crate::settings::defaults::LEASE_SECS),
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

    /// The walk checkpoint of `scope`, as stored (read-only).
    pub async fn checkpoint(&self, scope: &str) -> anyhow::Result<Option<Document>> {
        self.coll(&self.walk)
            .find_one(doc! {"_id": scope})
            .await
            .with_context(|| format!("reading {}", self.walk))
    }

    /// Remove the walk checkpoints of every scope (the next pass of each walks every class).
    pub async fn forget_walks(&self) -> anyhow::Result<()> {
        self.coll(&self.walk)
            .delete_many(doc! {})
            .await
            .with_context(|| format!("writing {}", self.walk))?;
        Ok(())
    }

    /// Write the walk checkpoint of `scope` (`None`: the pass is over, remove it).
    pub async fn save_checkpoint(
        &self,
        scope: &str,
        checkpoint: Option<Document>,
    ) -> anyhow::Result<()> {
        let walk = self.coll(&self.walk);
        match checkpoint {
            Some(mut d) => {
                d.insert("run", self.run);
                d.insert("updated", DateTime::now());
                d.insert("v", VERSION);
                walk.replace_one(doc! {"_id": scope}, d)
                    .upsert(true)
                    .await
                    .map(drop)
            }
            None => walk.delete_one(doc! {"_id": scope}).await.map(drop),
        }
        .with_context(|| format!("writing the walk checkpoint in {}", self.walk))
    }

    /// Take (or renew) the lease on `scope` for this run. Fails with [`LeaseHeld`] in the chain
    /// when another run holds an unexpired one.
    pub async fn lease(&self, scope: &str, host: &str) -> anyhow::Result<()> {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + self.lease.as_millis() as i64);
        let locks = self.coll(&self.locks);
        let taken = locks
            .update_one(
                doc! {"_id": scope, "$or": [{"run": self.run}, {"until": {"$lt": now}}]},
                doc! {"$set": {"run": self.run, "host": host, "pid": std::process::id() as i64,
                "until": until, "v": VERSION}},
            )
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                let holder = locks
                    .find_one(doc! {"_id": scope})
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Err(LeaseHeld {
                    scope: scope.to_string(),
                    host: holder.get_str("host").unwrap_or("?").to_string(),
                    pid: holder.get_i64("pid").unwrap_or(0),
                    run: holder
                        .get_object_id("run")
                        .map(|o| o.to_hex())
                        .unwrap_or_default(),
                    until: holder
                        .get_datetime("until")
                        .ok()
                        .and_then(|d| d.try_to_rfc3339_string().ok())
                        .unwrap_or_default(),
                }
                .into())
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("taking the lease in {}", self.locks)))
            }
        }
    }

    /// Give the lease on `scope` back (only if this run holds it).
    pub async fn release(&self, scope: &str) -> anyhow::Result<()> {
        self.coll(&self.locks)
            .delete_one(doc! {"_id": scope, "run": self.run})
            .await
            .with_context(|| format!("releasing the lease in {}", self.locks))?;
        Ok(())
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// The records of `names`, one round trip. Names without a record are absent from the map.
    pub async fn lookup(&self, names: &[&str]) -> anyhow::Result<HashMap<String, FileRecord>> {
        let mut out = HashMap::with_capacity(names.len());
        if names.is_empty() {
            return Ok(out);
        }
        let mut cursor = self
            .coll(&self.files)
            .find(doc! {"_id": {"$in": names}})
            .await
            .with_context(|| format!("reading the ledger {}", self.files))?;
        while let Some(d) = cursor
            .try_next()
            .await
            .with_context(|| format!("reading the ledger {}", self.files))?
        {
            if let Some(r) = file_record(&d) {
                out.insert(r.name.clone(), r);
            }
        }
        Ok(out)
    }

    /// Record the intent to copy `files` (state `planned`, attempt count + 1).
    pub async fn plan(&self, files: &[Intent<'_>]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let set = |f: &Intent| {
            doc! {"v": VERSION, "target": f.target, "kind": f.kind,
            "destination": f.destination, "state": FileState::Planned.as_str(),
            "run": self.run, "updated_at": now}
        };
        let fresh = files
            .iter()
            .map(|f| {
                let mut d = doc! {"_id": f.name, "created_at": now, "attempts": 1};
                d.extend(set(f));
                d
            })
            .collect();
        let upsert = |i: usize| {
            let f = &files[i];
            update_stmt(
                doc! {"_id": f.name},
                doc! {"$set": set(f), "$setOnInsert": {"created_at": now},
                "$inc": {"attempts": 1}},
                true,
            )
        };
        self.insert_or_upsert(&self.files, fresh, upsert).await
    }

    /// Record file outcomes.
    pub async fn record_files(&self, results: &[FileResult<'_>]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let stmts = results
            .iter()
            .map(|r| {
                let mut set = doc! {"state": r.state.as_str(), "run": self.run, "updated_at": now,
                "hash_checked": r.hash_checked};
                let mut unset = Document::new();
                match r.size {
                    Some(s) => set.insert("size", s as i64),
                    None => unset.insert("size", ""),
                };
                match r.md5 {
                    Some(m) => set.insert("md5", m),
                    None => unset.insert("md5", ""),
                };
                match r.error {
                    Some(e) => set.insert("error", e),
                    None => unset.insert("error", ""),
                };
                if r.state == FileState::Verified {
                    set.insert("verified_at", now);
                }
                let mut u = doc! {"$set": set};
                if !unset.is_empty() {
                    u.insert("$unset", unset);
                }
                update_stmt(doc! {"_id": r.name}, u, false)
            })
            .collect();
        self.write(&self.files, stmts).await
    }

    /// Record references about to be rewritten, with their old and new values.
    pub async fn record_pending(&self, changes: &[RefChange]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let set = |c: &RefChange| {
            doc! {"v": VERSION, "c": &c.class, "o": c.id.clone(), "p": &c.path,
            "file": &c.file, "old": c.old.to_bson(), "new": c.new.to_bson(),
            "state": RefState::Pending.as_str(), "run": self.run, "updated_at": now}
        };
        let fresh = changes
            .iter()
            .map(|c| {
                let mut d = doc! {"_id": c.key()};
                d.extend(set(c));
                d
            })
            .collect();
        let upsert = |i: usize| {
            let c = &changes[i];
            update_stmt(
                doc! {"_id": c.key()},
                doc! {"$set": set(c), "$unset": {"error": ""}},
                true,
            )
        };
        self.insert_or_upsert(&self.refs, fresh, upsert).await
    }

    /// Record what happened to references. Outcomes without an error (the common case: a whole
    /// batch rewritten) share one multi-document statement per state, `{_id: {$in: keys}}`,
    /// rather than a statement each: the server plans one query instead of hundreds.
    pub async fn record_refs(
        &self,
        outcomes: &[(&RefChange, RefState, Option<&str>)],
    ) -> anyhow::Result<()> {
        let now = DateTime::now();
        let mut plain: BTreeMap<&'static str, Vec<Bson>> = BTreeMap::new();
        let mut stmts = Vec::new();
        for (c, state, error) in outcomes {
            match error {
                None => plain.entry(state.as_str()).or_default().push(c.key()),
                Some(e) => stmts.push(update_stmt(
                    doc! {"_id": c.key()},
                    doc! {"$set": {"state": state.as_str(), "updated_at": now, "error": *e}},
                    false,
                )),
            }
        }
        for (state, keys) in plain {
            for keys in keys.chunks(crate::db::UPDATE_BATCH) {
                let mut s = update_stmt(
                    doc! {"_id": {"$in": keys}},
                    doc! {"$set": {"state": state, "updated_at": now}},
                    false,
                );
                s.insert("multi", true);
                stmts.push(s);
            }
        }
        self.write(&self.refs, stmts).await
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

    /// Record the start of this run.
    pub async fn start_run(&self, info: Document) -> anyhow::Result<()> {
        let mut d = doc! {"_id": self.run, "v": VERSION, "started_at": DateTime::now()};
        d.extend(info);
        self.coll(&self.runs)
            .insert_one(d)
            .await
            .with_context(|| format!("writing the ledger {}", self.runs))?;
        Ok(())
    }

    /// Record the end of this run: its counts and exit code.
    pub async fn finish_run(&self, summary: Document, exit_code: i32) -> anyhow::Result<()> {
        self.coll(&self.runs)
            .update_one(
                doc! {"_id": self.run},
                doc! {"$set": {"finished_at": DateTime::now(), "summary": summary,
                "exit_code": exit_code}},
            )
            .await
            .with_context(|| format!("writing the ledger {}", self.runs))?;
        Ok(())
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
}

/// A reference record read back as the change it recorded (old → new).
pub fn ref_change(d: &Document) -> Result<RefChange, String> {
    let value = |k: &str| -> Result<RefValue, String> {
        let v = d.get_document(k).map_err(|_| format!("no {k} value"))?;
        Ok(RefValue {
            name: v.get_str("name").map_err(|_| "no name")?.to_string(),
            url: v.get_str("url").ok().map(str::to_string),
            key_redacted: v.get_bool("key_redacted").unwrap_or(false),
        })
    };
    Ok(RefChange {
        class: d.get_str("c").map_err(|_| "no class")?.to_string(),
        id: d.get("o").cloned().ok_or("no object id")?,
        path: d.get_str("p").map_err(|_| "no path")?.to_string(),
        file: d.get_str("file").unwrap_or_default().to_string(),
        old: value("old")?,
        new: value("new")?,
    })
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => e.to_string().contains("E11000"),
    }
}

fn file_record(d: &Document) -> Option<FileRecord> {
    let name = d.get_str("_id").ok()?.to_string();
    let state = FileState::parse(d.get_str("state").ok()?)?;
    let int = |k: &str| match d.get(k) {
        Some(Bson::Int32(i)) => Some(*i as i64),
        Some(Bson::Int64(i)) => Some(*i),
        Some(Bson::Double(f)) => Some(*f as i64),
        _ => None,
    };
    Some(FileRecord {
        target: d.get_str("target").unwrap_or(&name).to_string(),
        state,
        size: int("size").and_then(|s| u64::try_from(s).ok()),
        md5: d.get_str("md5").ok().map(str::to_string),
        hash_checked: d.get_bool("hash_checked").unwrap_or(false),
        attempts: int("attempts").unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        error: d.get_str("error").ok().map(str::to_string),
        destination: d.get_str("destination").ok().map(str::to_string),
        name,
    })
}

/// What `status` shows: counts per state, per class, failures by reason, recent runs.
#[derive(Debug, Default, Serialize)]
pub struct Status {
    /// File records per state: (state, files, bytes).
    pub files: Vec<(String, u64, u64)>,
    /// Reference records per (class, state): count.
    pub references: Vec<(String, String, u64)>,
    /// Missing and failed files grouped by reason: (state, reason, files, an example name).
    pub problems: Vec<(String, String, u64, String)>,
    /// The most recent runs, newest first.
    pub runs: Vec<serde_json::Value>,
    /// Unfinished passes: (scope, classes walked to the end, class being walked, objects walked).
    pub walks: Vec<(String, u64, Option<String>, u64)>,
}

impl Ledger {
    /// Aggregate the ledger (read-only).
    pub async fn status(&self, runs: i64) -> anyhow::Result<Status> {
        let mut st = Status::default();
        for d in self
            .aggregate(
                &self.files,
                vec![
                    doc! {"$group": {"_id": "$state", "n": {"$sum": 1}, "bytes": {"$sum": {"$ifNull": ["$size", 0]}}}},
                    doc! {"$sort": {"_id": 1}},
                ],
            )
            .await?
        {
            st.files.push((
                d.get_str("_id").unwrap_or("?").to_string(),
                count(&d, "n"),
                count(&d, "bytes"),
            ));
        }
        for d in self
            .aggregate(
                &self.refs,
                vec![
                    doc! {"$group": {"_id": {"c": "$c", "s": "$state"}, "n": {"$sum": 1}}},
                    doc! {"$sort": {"_id.c": 1, "_id.s": 1}},
                ],
            )
            .await?
        {
            let id = d.get_document("_id").cloned().unwrap_or_default();
            st.references.push((
                id.get_str("c").unwrap_or("?").to_string(),
                id.get_str("s").unwrap_or("?").to_string(),
                count(&d, "n"),
            ));
        }
        for d in self
            .aggregate(
                &self.files,
                vec![
                    doc! {"$match": {"state": {"$in": ["missing", "failed"]}}},
                    doc! {"$group": {"_id": {"s": "$state", "e": "$error"}, "n": {"$sum": 1}, "example": {"$first": "$_id"}}},
                    doc! {"$sort": {"n": -1}},
                    doc! {"$limit": 50},
                ],
            )
            .await?
        {
            let id = d.get_document("_id").cloned().unwrap_or_default();
            st.problems.push((
                id.get_str("s").unwrap_or("?").to_string(),
                id.get_str("e").unwrap_or("").to_string(),
                count(&d, "n"),
                d.get_str("example").unwrap_or("").to_string(),
            ));
        }
        let mut cursor = self
            .coll(&self.runs)
            .find(doc! {})
            .sort(doc! {"started_at": -1})
            .limit(runs)
            .projection(doc! {"settings": 0})
            .await
            .with_context(|| format!("reading {}", self.runs))?;
        while let Some(d) = cursor.try_next().await? {
            st.runs.push(Bson::Document(d).into_relaxed_extjson());
        }
        let mut cursor = self
            .coll(&self.walk)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .with_context(|| format!("reading {}", self.walk))?;
        while let Some(d) = cursor.try_next().await? {
            st.walks.push((
                d.get_str("_id").unwrap_or("?").to_string(),
                d.get_array("done").map_or(0, |a| a.len() as u64),
                d.get_str("class").ok().map(str::to_string),
                count(&d, "objects"),
            ));
        }
        Ok(st)
    }

    async fn aggregate(
        &self,
        coll: &str,
        pipeline: Vec<Document>,
    ) -> anyhow::Result<Vec<Document>> {
        let cursor = self
            .coll(coll)
            .aggregate(pipeline)
            .await
            .with_context(|| format!("reading {coll}"))?;
        Ok(cursor.try_collect().await?)
    }

    /// Every reference record in one of `states`, in `_id` order, a page at a time after `after`.
    pub async fn refs_page(
        &self,
        states: &[RefState],
        after: Option<&Bson>,
        limit: i64,
    ) -> anyhow::Result<Vec<Document>> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let mut filter = doc! {"state": {"$in": states}};
        if let Some(a) = after {
            filter.insert("_id", doc! {"$gt": a.clone()});
        }
        let cursor = self
            .coll(&self.refs)
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit)
            .await
            .with_context(|| format!("reading {}", self.refs))?;
        Ok(cursor.try_collect().await?)
    }

    /// Mark reference records (by `_id`) with a state.
    pub async fn mark_refs(&self, ids: &[(Bson, RefState)]) -> anyhow::Result<()> {
        let now = DateTime::now();
        let stmts = ids
            .iter()
            .map(|(id, s)| {
                update_stmt(
                    doc! {"_id": id.clone()},
                    doc! {"$set": {"state": s.as_str(), "updated_at": now}},
                    false,
                )
            })
            .collect();
        self.write(&self.refs, stmts).await
    }

    /// File records in `state` whose copy this tool made (target, name), a page after `after`.
    pub async fn files_page(
        &self,
        state: FileState,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<FileRecord>> {
        let mut filter = doc! {"state": state.as_str()};
        if let Some(a) = after {
            filter.insert("_id", doc! {"$gt": a});
        }
        let cursor = self
            .coll(&self.files)
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit)
            .await
            .with_context(|| format!("reading {}", self.files))?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        Ok(docs.iter().filter_map(file_record).collect())
    }

    /// Whether any reference to `file` is still recorded as rewritten (points at its copy).
    pub async fn still_referenced(&self, file: &str) -> anyhow::Result<bool> {
        Ok(self
            .coll(&self.refs)
            .find_one(doc! {"file": file, "state": {"$in": ["rewritten", "pending"]}})
            .await
            .with_context(|| format!("reading {}", self.refs))?
            .is_some())
    }

    /// Set the state of file records.
    pub async fn mark_files(&self, names: &[&str], state: FileState) -> anyhow::Result<()> {
        let now = DateTime::now();
        let stmts = names
            .iter()
            .map(|n| {
                update_stmt(
                    doc! {"_id": *n},
                    doc! {"$set": {"state": state.as_str(), "updated_at": now}},
                    false,
                )
            })
            .collect();
        self.write(&self.files, stmts).await
    }

    /// Verified file records whose target is one of `targets`, by target.
    pub async fn by_target(&self, targets: &[&str]) -> anyhow::Result<HashMap<String, FileRecord>> {
        let mut out = HashMap::new();
        if targets.is_empty() {
            return Ok(out);
        }
        let cursor = self
            .coll(&self.files)
            .find(doc! {"target": {"$in": targets}, "state": "verified"})
            .await
            .with_context(|| format!("reading {}", self.files))?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        for r in docs.iter().filter_map(file_record) {
            out.insert(r.target.clone(), r);
        }
        Ok(out)
    }
}

fn count(d: &Document, k: &str) -> u64 {
    match d.get(k) {
        Some(Bson::Int32(i)) => *i as u64,
        Some(Bson::Int64(i)) => *i as u64,
        Some(Bson::Double(f)) => *f as u64,
        _ => 0,
    }
}
