//! Hooks: the operator's shell commands run before a writing run, before and after each of its
//! phases, when it fails, and after it (`[hooks]`, `--hook-*`; the README's "Hooks"). The
//! SilverStripe `MigrateFileTask`'s extension points, borgmatic's `before_backup` /
//! `after_backup` / `on_error`: pause an indexer, put uploads in maintenance, purge a CDN once
//! references are rewritten, page someone when a cron pass fails.
//!
//! This module owns the event vocabulary ([`Event`], [`Phase`]: the names hooks see, defined
//! here once), running one hook (`sh -c`, a documented environment without the tool's secrets,
//! a timeout that kills the hook's process group, its output to the log) and the rules that tie
//! hooks to the run's exit code ([`Hooks::end`]). The commands and the engine call it at their
//! events; it knows nothing of stores, documents or the ledger, and prints nothing on stdout.
//!
//! # Rules
//!
//! - `before` runs once the run holds its lease and has recorded its start (the gate's `begin`,
//!   which also settles what a killed run left), before its first copy, move or rewrite; a
//!   failing `before` or `before_phase` hook stops the run there with exit [`HOOK_FAILED`] and
//!   the hook's stderr.
//! - `on_error` runs when the command fails (an exit code other than 0 and 8, the cutoff's
//!   planned stop), also at start-up; `after` runs whenever `before` ran, last, with the exit
//!   code and the run's summary.
//! - A failing `after`, `after_phase` or `on_error` hook is logged; it turns an exit code of 0
//!   into [`HOOK_FAILED`] and leaves any other code as it is (the run's own failure says more).
//! - Dry runs run no hook unless `in_dry_run`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::exit::{CUTOFF, Coded, HOOK_FAILED, OK};

/// How long a hook may run before its process group is killed (`[hooks] timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How much of a failed hook's stderr its error quotes (the end of it).
const STDERR_TAIL: usize = 2000;

/// How long, after a hook has exited, its output is still read (a background child it started
/// may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Environment variables never passed to a hook: every variable of the tool's own (`PFM_*`:
/// the MongoDB URI, the fileKey, the new key…) and the cloud credentials the stores read from
/// the environment. The `PFM_HOOK_*` and run variables are set afresh.
const WITHHELD: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// `[hooks]`, resolved: the command of each event (`None`: no hook), the timeout, and whether dry
/// runs run them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HookConfig {
    pub before: Option<String>,
    pub before_phase: Option<String>,
    pub after_phase: Option<String>,
    pub on_error: Option<String>,
    pub after: Option<String>,
    #[serde(serialize_with = "humantime_secs")]
    pub timeout: Duration,
    pub in_dry_run: bool,
}

fn humantime_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl HookConfig {
    fn command(&self, event: Event) -> Option<&str> {
        let c = match event {
            Event::Before => &self.before,
            Event::BeforePhase => &self.before_phase,
            Event::AfterPhase => &self.after_phase,
            Event::OnError => &self.on_error,
            Event::After => &self.after,
        };
        c.as_deref().filter(|c| !c.trim().is_empty())
    }
}

/// When a hook runs (`PFM_HOOK_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Before,
    BeforePhase,
    AfterPhase,
    OnError,
    After,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Before => "before",
            Event::BeforePhase => "before_phase",
            Event::AfterPhase => "after_phase",
            Event::OnError => "on_error",
            Event::After => "after",
        }
    }
}

/// A run's phases, in the order they run (`PFM_HOOK_PHASE`); which command has which is in the
/// README's "Hooks".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `migrate --include-unreferenced`: copy the files no reference names.
    Unreferenced,
    /// `migrate`: the walk of File references, plan → copy → verify → rewrite (run as stages
    /// at once); `rebase`: the nested File urls.
    Files,
    /// `migrate --strings`, `rebase`: URLs inside strings.
    Strings,
    /// `rollback`: put the recorded references back; `audit --restore`.
    Restore,
    /// `rollback --delete-copies`.
    DeleteCopies,
    /// `audit --quarantine`.
    Quarantine,
    /// `audit --purge`.
    Purge,
    /// `audit --purge --superseded`.
    PurgeSuperseded,
    /// `rekey`: finish the files a killed run left half done.
    Settle,
    /// `rekey`: every file of the store.
    Rekey,
    /// `relink`: list the store, walk every reference, pair the dangling ones with orphans.
    Pair,
    /// `relink`: rewrite the references paired with exactly one key.
    Relink,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unreferenced => "unreferenced",
            Phase::Files => "files",
            Phase::Strings => "strings",
            Phase::Restore => "restore",
            Phase::DeleteCopies => "delete_copies",
            Phase::Quarantine => "quarantine",
            Phase::Purge => "purge",
            Phase::PurgeSuperseded => "purge_superseded",
            Phase::Settle => "settle",
            Phase::Rekey => "rekey",
            Phase::Pair => "pair",
            Phase::Relink => "relink",
        }
    }
}

/// How one hook ended (the `result` label of the metrics file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookResult {
    Ok,
    Failed,
    Timeout,
}

impl HookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            HookResult::Ok => "ok",
            HookResult::Failed => "failed",
            HookResult::Timeout => "timeout",
        }
    }
}

/// A hook that did not succeed: what to say about it.
#[derive(Debug)]
struct Failure {
    result: HookResult,
    message: String,
}

/// The run's values hooks see.
#[derive(Debug, Default)]
struct Context {
    run_id: String,
    shard: String,
    /// The run's summary as the `after` hook's `PFM_SUMMARY` file holds it.
    summary: Option<serde_json::Value>,
}

/// One command's hooks: call [`Hooks::before`], [`Hooks::phase`] around each phase, and
/// [`Hooks::end`] when the command is over.
#[derive(Debug)]
pub struct Hooks {
    config: HookConfig,
    command: &'static str,
    dry_run: bool,
    context: Mutex<Context>,
    /// `before` was run (so `after` runs).
    started: AtomicBool,
    /// An `after_phase` or `on_error` hook failed (so does the command, if it had not).
    failed: Mutex<Option<String>>,
    counts: Mutex<BTreeMap<(Event, HookResult), u64>>,
}

impl Hooks {
    /// The hooks of a run of `command` (`migrate`, `rollback`…) on `shard`; a dry run gets none
    /// unless `config.in_dry_run`.
    pub fn new(config: HookConfig, command: &'static str, dry_run: bool, shard: &str) -> Hooks {
        let config = if dry_run && !config.in_dry_run {
            HookConfig::default()
        } else {
            config
        };
        Hooks {
            config,
            command,
            dry_run,
            context: Mutex::new(Context {
                shard: shard.to_string(),
                ..Context::default()
            }),
            started: AtomicBool::new(false),
            failed: Mutex::new(None),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// No hooks (a command that runs none, a test).
    pub fn none() -> Hooks {
        Hooks::new(HookConfig::default(), "", false, "all")
    }

    /// The run's id (the ledger's) and lease scope, once the run is set up.
    pub fn arm(&self, run_id: String, shard: &str) {
        let mut c = lock(&self.context);
        c.run_id = run_id;
        c.shard = shard.to_string();
    }

    /// The run's summary, for the `after` hook's `PFM_SUMMARY` file.
    pub fn summary(&self, summary: serde_json::Value) {
        lock(&self.context).summary = Some(summary);
    }

    /// The `before` hook: an error (exit [`HOOK_FAILED`]) when it fails.
    pub async fn before(&self) -> anyhow::Result<()> {
        self.started.store(true, Relaxed);
        self.run(Event::Before, &[]).await.map_err(stop)
    }

    /// Run `work` as `phase`: `before_phase` first (its failure stops the run with exit
    /// [`HOOK_FAILED`] before the phase writes anything), then `after_phase` with the phase's
    /// outcome (`PFM_HOOK_OUTCOME`: `ok` or `failed`).
    pub async fn phase<T>(
        &self,
        phase: Phase,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let name = ("PFM_HOOK_PHASE", phase.as_str().to_string());
        self.run(Event::BeforePhase, std::slice::from_ref(&name))
            .await
            .map_err(stop)?;
        let result = work.await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        let env = [name, ("PFM_HOOK_OUTCOME", outcome.to_string())];
        if let Err(f) = self.run(Event::AfterPhase, &env).await {
            self.note_failure(f);
        }
        result
    }

    /// The command is over with `result`: `on_error` when it failed, then `after` when `before`
    /// ran. Returns the command's result, turned into an error (exit [`HOOK_FAILED`]) when it
    /// succeeded but one of these hooks (or an `after_phase` hook) failed.
    pub async fn end(&self, result: anyhow::Result<i32>) -> anyhow::Result<i32> {
        let code = match &result {
            Ok(c) => *c,
            Err(e) => crate::exit::code_of(e),
        };
        let exit = ("PFM_EXIT_CODE", code.to_string());
        let failed = code != OK && code != CUTOFF;
        if failed && let Err(f) = self.run(Event::OnError, std::slice::from_ref(&exit)).await {
            self.note_failure(f);
        }
        if self.started.load(Relaxed) && self.config.command(Event::After).is_some() {
            let file = self.summary_file(code);
            let mut env = vec![exit];
            if let Some(f) = &file {
                env.push(("PFM_SUMMARY", f.path().display().to_string()));
            }
            if let Err(f) = self.run(Event::After, &env).await {
                self.note_failure(f);
            }
        }
        let failed = lock(&self.failed).take();
        match (result, failed) {
            (Ok(OK), Some(why)) => Err(Coded::new(HOOK_FAILED, why)
                .hint("the run itself succeeded; the hook's output is in the log")
                .into()),
            (result, _) => result,
        }
    }

    /// How many hooks ran, by event and result (for the metrics file).
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        lock(&self.counts)
            .iter()
            .map(|((e, r), n)| (e.as_str(), r.as_str(), *n))
            .collect()
    }

    fn note_failure(&self, f: Failure) {
        tracing::error!("{}", f.message);
        lock(&self.failed).get_or_insert(f.message);
    }

    /// The run's summary in a temporary file, for the `after` hook (removed when dropped):
    /// `{command, run_id, shard, dry_run, exit_code, summary}`, `summary` as the ledger records
    /// it (the counts; `{"error": …}` for a run that failed).
    fn summary_file(&self, code: i32) -> Option<tempfile::NamedTempFile> {
        let summary = {
            let c = lock(&self.context);
            serde_json::json!({
                "command": self.command,
                "run_id": c.run_id,
                "shard": c.shard,
                "dry_run": self.dry_run,
                "exit_code": code,
                "summary": c.summary.clone()?,
            })
        };
        let written = tempfile::Builder::new()
            .prefix("pfm-summary-")
            .suffix(".json")
            .tempfile()
            .and_then(|mut f| {
                serde_json::to_writer_pretty(&mut f, &summary)?;
                f.flush()?;
                Ok(f)
            });
        match written {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("writing the run's summary for the after hook: {e}");
                None
            }
        }
    }

    /// Run the hook of `event`, if there is one, with the run's variables and `extra`.
    async fn run(&self, event: Event, extra: &[(&str, String)]) -> Result<(), Failure> {
        let Some(command) = self.config.command(event) else {
            return Ok(());
        };
        let env = self.environment(event, extra);
        let what = match extra.iter().find(|(k, _)| *k == "PFM_HOOK_PHASE") {
            Some((_, phase)) => format!("the {} hook ({phase})", event.as_str()),
            None => format!("the {} hook", event.as_str()),
        };
        tracing::info!("running {what}: {command}");
        let ended = run_shell(command, env, self.config.timeout, &what).await;
        let result = match &ended {
            Ok(()) => HookResult::Ok,
            Err(f) => f.result,
        };
        *lock(&self.counts).entry((event, result)).or_default() += 1;
        ended
    }

    /// The hook's environment: this process's, less [`WITHHELD`] and every `PFM_*` variable,
    /// plus the run's variables.
    fn environment(&self, event: Event, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| !k.starts_with("PFM_") && !WITHHELD.contains(&k.as_str()))
            .collect();
        let c = lock(&self.context);
        let dry = if self.dry_run { "1" } else { "0" };
        for (k, v) in [
            ("PFM_HOOK_EVENT", event.as_str()),
            ("PFM_HOOK_COMMAND", self.command),
            ("PFM_RUN_ID", &c.run_id),
            ("PFM_SHARD", &c.shard),
            ("PFM_DRY_RUN", dry),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    }
}

/// A failure of `before` / `before_phase` as the error that stops the run.
fn stop(f: Failure) -> anyhow::Error {
    Coded::new(HOOK_FAILED, f.message)
        .hint(
            "the run stopped before its next write; fix the hook (its output is in the log) and \
             run the command again: it continues where it stopped",
        )
        .into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `sh -c command` in a process group of its own, stdin closed, its stdout and stderr logged line
/// by line; the group killed after `timeout`.
async fn run_shell(
    command: &str,
    env: Vec<(String, String)>,
    timeout: Duration,
    what: &str,
) -> Result<(), Failure> {
    let failed = |message: String| Failure {
        result: HookResult::Failed,
        message,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("{what} could not be started: {e}")))?;
    let tail = std::sync::Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().map(|o| log_lines(o, what, None));
    let err = child
        .stderr
        .take()
        .map(|e| log_lines(e, what, Some(tail.clone())));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let status: Result<ExitStatus, Failure> = match status {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(failed(format!("{what}: waiting for it: {e}"))),
        Err(_) => {
            kill_group(&child);
            let _ = child.wait().await;
            Err(Failure {
                result: HookResult::Timeout,
                message: format!(
                    "{what} did not finish within {} and was killed",
                    humantime::format_duration(timeout)
                ),
            })
        }
    };
    for task in [out, err].into_iter().flatten() {
        if tokio::time::timeout(OUTPUT_GRACE, task).await.is_err() {
            tracing::debug!("{what}: its output is still open (a background process); not read");
        }
    }
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let tail = lock(&tail).clone();
    let how = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    let message = if tail.trim().is_empty() {
        format!("{what} failed ({how})")
    } else {
        format!("{what} failed ({how}): {}", tail.trim_end())
    };
    Err(failed(message))
}

/// Log each line `from` gives as the hook's output; keep the last [`STDERR_TAIL`] bytes in
/// `tail`.
fn log_lines(
    from: impl AsyncRead + Unpin + Send + 'static,
    what: &str,
    tail: Option<std::sync::Arc<Mutex<String>>>,
) -> tokio::task::JoinHandle<()> {
    let what = what.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match &tail {
                Some(t) => {
                    tracing::warn!("{what}: {line}");
                    let mut t = lock(t);
                    t.push_str(&line);
                    t.push('\n');
                    if t.len() > STDERR_TAIL {
                        let cut = t.len() - STDERR_TAIL;
                        let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                        t.drain(..cut);
                    }
                }
                None => tracing::info!("{what}: {line}"),
            }
        }
    })
}

/// SIGKILL to the hook's process group (the shell and everything it started).
fn kill_group(child: &tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    // The group is the hook's own (`process_group(0)` made the shell its leader).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
