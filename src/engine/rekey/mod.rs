//! `rekey`: bring every file of a GridFS or FS store into one form — encrypted with the store's
//! current key (`--encrypt`), with a new key (rotate), or plaintext (`--decrypt`) — one file at a
//! time, each rewritten as a new version that is read back before the old one goes.
//!
//! The pass walks the store's names a page at a time ([`Versioned::names`]); per name it reads
//! the version readers see, **classifies** it (one read: which of the run's keys its GCM tag
//! verifies with, if any), skips it when it is already in the target form, and otherwise
//! ([`mod@file`]): records the intent in the ledger (the id the new version will have), streams
//! old → decrypt → MD5 → encrypt → new version, reads the new version back and compares its
//! plaintext MD5 and size, and only then makes it replace the old one. A run killed anywhere
//! leaves a `staged` record; the next run settles it first ([`file::settle`]): the partial
//! version removed, or the verified one committed. Memory: `concurrency` files in flight, each a
//! chunk or two, whatever the file sizes and their number.
//!
//! Which bytes are "plaintext": a stored object that no key of the run verifies. That may also be
//! ciphertext for some other key, or a corrupt file; nothing can tell those apart. So `--encrypt`
//! encrypts whatever the current key does not open (its plaintext MD5 is checked like any other:
//! nothing is lost, and `--decrypt` undoes it); rotate and `--decrypt` never touch such a file —
//! rotate reports it as undecryptable (exit 3).

pub mod file;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde::Serialize;

use super::{Counters, Limits, RunState};
use crate::hooks::{Hooks, Phase};
use crate::ledger::Ledger;
use crate::storage::crypto::FileKey;
use crate::storage::rekey::Versioned;

/// Names read per page of the walk.
const PAGE: usize = 256;

/// Failures and undecryptable names kept for the summary (the counts are exact).
const KEEP_ITEMS: usize = 100;

/// What the run turns every file into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RekeyMode {
    /// Plaintext → the current key.
    Encrypt,
    /// The current key → the new key.
    Rotate,
    /// The current key → plaintext.
    Decrypt,
}

impl RekeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RekeyMode::Encrypt => "encrypt",
            RekeyMode::Rotate => "rotate",
            RekeyMode::Decrypt => "decrypt",
        }
    }

    /// What the mode does, for the consent question.
    pub fn describe(self) -> &'static str {
        match self {
            RekeyMode::Encrypt => "encrypt with the store's current key",
            RekeyMode::Rotate => "re-encrypt from the current key to the new key",
            RekeyMode::Decrypt => "decrypt (write back as plaintext)",
        }
    }
}

/// What a stored file is, relative to the run's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// No key of the run verifies it.
    Plain,
    Current,
    New,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Plain => "plain",
            Form::Current => "current",
            Form::New => "new",
        }
    }
}

/// Everything a rekey run needs to know (no secrets are printed: [`FileKey`] is redacted).
#[derive(Debug, Clone)]
pub struct RekeyPlan {
    pub mode: RekeyMode,
    pub current: FileKey,
    /// Required for [`RekeyMode::Rotate`].
    pub new: Option<FileKey>,
    pub concurrency: usize,
    pub limits: Limits,
    pub dry_run: bool,
    /// How a failed rewrite is retried (`[run] retries`…), each attempt from the first byte.
    pub retry: crate::retry::RetryPolicy,
}

impl RekeyPlan {
    /// The keys to classify with, and the form each means.
    fn keys(&self) -> Vec<(&FileKey, Form)> {
        let mut keys = Vec::new();
        if self.mode == RekeyMode::Rotate
            && let Some(n) = &self.new
        {
            keys.push((n, Form::New));
        }
        keys.push((&self.current, Form::Current));
        keys
    }

    fn key_of(&self, form: Form) -> Option<&FileKey> {
        match form {
            Form::Plain => None,
            Form::Current => Some(&self.current),
            Form::New => self.new.as_ref(),
        }
    }

    pub fn target(&self) -> Form {
        match self.mode {
            RekeyMode::Encrypt => Form::Current,
            RekeyMode::Rotate => Form::New,
            RekeyMode::Decrypt => Form::Plain,
        }
    }

    /// The form this mode rewrites; anything else not in the target form is left.
    fn source(&self) -> Form {
        match self.mode {
            RekeyMode::Encrypt => Form::Plain,
            RekeyMode::Rotate | RekeyMode::Decrypt => Form::Current,
        }
    }
}

/// A number of files and their stored bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// A file that could not be classified or rewritten.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub name: String,
    pub error: String,
}

/// What a rekey run found and did (the `--report` JSON).
#[derive(Debug, Clone, Serialize)]
pub struct RekeySummary {
    pub mode: RekeyMode,
    pub dry_run: bool,
    pub store: String,
    /// Files whose served version was classified.
    pub files_checked: u64,
    /// Stored as plaintext (or under a key the run does not know: see the module doc).
    pub plaintext: Tally,
    pub current_key: Tally,
    pub new_key: Tally,
    /// Rotate only: neither key verifies it (plaintext, another key, or corrupt); left as is.
    pub undecryptable: Tally,
    /// Already in the target form: skipped.
    pub already_done: Tally,
    /// Rewritten into the target form (a dry run: would be).
    pub rewritten: Tally,
    /// A newer version appeared while the file was rewritten (Parse Server uploaded it): left.
    pub superseded: u64,
    /// Older versions nobody is served (GridFS revisions): removed (a dry run: found).
    pub stale_versions: u64,
    pub failed: u64,
    /// Unfinished rewrites of earlier runs settled at the start.
    pub settled: u64,
    pub failures: Vec<Failure>,
    pub undecryptable_names: Vec<String>,
    pub stopped_by: Option<String>,
    pub elapsed_secs: f64,
}

impl RekeySummary {
    fn new(plan: &RekeyPlan, store: String) -> Self {
        RekeySummary {
            mode: plan.mode,
            dry_run: plan.dry_run,
            store,
            files_checked: 0,
            plaintext: Tally::default(),
            current_key: Tally::default(),
            new_key: Tally::default(),
            undecryptable: Tally::default(),
            already_done: Tally::default(),
            rewritten: Tally::default(),
            superseded: 0,
            stale_versions: 0,
            failed: 0,
            settled: 0,
            failures: Vec::new(),
            undecryptable_names: Vec::new(),
            stopped_by: None,
            elapsed_secs: 0.0,
        }
    }

    /// Exit code as for `migrate`: 130 interrupted, 3 the error budget or anything left that a
    /// re-run will not fix by itself (failures, undecryptable files), 8 a cutoff, else 0.
    pub fn exit_code(&self) -> i32 {
        use crate::exit::{CUTOFF, INCOMPLETE, INTERRUPTED, OK};
        match self.stopped_by.as_deref() {
            Some(super::INTERRUPTED) => INTERRUPTED,
            Some(s) if super::stopped_by_errors(s) => INCOMPLETE,
            Some(_) => CUTOFF,
            None if self.dry_run => OK,
            None if self.failed > 0 || self.undecryptable.files > 0 => INCOMPLETE,
            None => OK,
        }
    }

    fn fail(&mut self, name: &str, error: String) {
        self.failed += 1;
        if self.failures.len() < KEEP_ITEMS {
            self.failures.push(Failure {
                name: name.to_string(),
                error,
            });
        }
    }
}

/// One run: the plan, the store, the ledger (unused by a dry run) and the shared state.
pub struct Rekey {
    pub plan: RekeyPlan,
    pub store: Arc<dyn Versioned>,
    pub ledger: Ledger,
    pub state: Arc<RunState>,
    summary: Mutex<RekeySummary>,
    /// Rewrites started (for `--max-files`).
    started: std::sync::atomic::AtomicU64,
    stop: std::sync::OnceLock<String>,
}

impl Rekey {
    pub fn new(
        plan: RekeyPlan,
        store: Arc<dyn Versioned>,
        ledger: Ledger,
        state: Arc<RunState>,
    ) -> Rekey {
        let summary = Mutex::new(RekeySummary::new(&plan, store.describe()));
        Rekey {
            plan,
            store,
            ledger,
            state,
            summary,
            started: Default::default(),
            stop: Default::default(),
        }
    }

    fn summary(&self) -> std::sync::MutexGuard<'_, RekeySummary> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// Why no further file may start, if something stops the run.
    fn stopped(&self) -> Option<String> {
        if let Some(s) = self.stop.get() {
            return Some(s.clone());
        }
        let why = self.state.stop(&self.plan.limits)?;
        Some(self.stop.get_or_init(|| why).clone())
    }

    /// The whole run: settle what earlier runs left ([`Phase::Settle`]), then every name of
    /// the store ([`Phase::Rekey`]).
    pub async fn run(&self, hooks: &Hooks) -> anyhow::Result<RekeySummary> {
        if !self.plan.dry_run {
            let settle = async {
                self.ledger.rekey_index().await?;
                self.store
                    .prepare()
                    .await
                    .map_err(|e| anyhow::anyhow!("preparing {}: {e}", self.store.describe()))?;
                for r in self.ledger.rekey_unfinished(&self.store.identity()).await? {
                    file::settle(self, &r).await?;
                    self.summary().settled += 1;
                }
                anyhow::Ok(())
            };
            hooks.phase(Phase::Settle, settle).await?;
        }
        hooks.phase(Phase::Rekey, self.every_file()).await?;
        self.state
            .walked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut s = self.summary().clone();
        s.stopped_by = self.stop.get().cloned();
        s.elapsed_secs = self.state.started.elapsed().as_secs_f64();
        Ok(s)
    }

    /// Every name of the store, a page at a time, up to `concurrency` files at once.
    async fn every_file(&self) -> anyhow::Result<()> {
        let mut after: Option<String> = None;
        loop {
            if self.stopped().is_some() {
                return Ok(());
            }
            let names = self
                .store
                .names(after.as_deref(), PAGE)
                .await
                .map_err(|e| anyhow::anyhow!("listing {}: {e}", self.store.describe()))?;
            let Some(last) = names.last().cloned() else {
                return Ok(());
            };
            let results: Vec<anyhow::Result<()>> = futures::stream::iter(names)
                .map(|name| file::one(self, name))
                .buffer_unordered(self.plan.concurrency.max(1))
                .collect()
                .await;
            // A ledger write that failed stops the run: nothing may go on unrecorded.
            results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
            after = Some(last);
        }
    }
}
