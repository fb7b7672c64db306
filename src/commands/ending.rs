//! What a command's run ends with besides its own output, the same for every command: the last
//! hooks (`on_error`, `after`: [`Hooks::end`]) and then the final `--metrics-file`, with the
//! hooks' outcomes and the exit code they leave. Which command has which hooks and which metrics
//! file is said here once ([`Profile`]).

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::cli::{Command, HookArgs};
use crate::exit::OK;
use crate::hooks::Hooks;
use crate::report::metrics;
use crate::settings::Settings;

/// A command as its ending sees it.
struct Profile<'a> {
    name: &'static str,
    dry_run: bool,
    /// `--hook-*`: only the writing commands have hooks.
    hooks: Option<&'a HookArgs>,
    metrics: Option<&'a PathBuf>,
}

/// A writing command with the shared `--hook-*` and `--metrics-file` flags.
fn writing<'a>(
    name: &'static str,
    dry_run: bool,
    hooks: &'a HookArgs,
    metrics: &'a crate::cli::MetricsArgs,
) -> Profile<'a> {
    Profile {
        name,
        dry_run,
        hooks: Some(hooks),
        metrics: metrics.metrics_file.as_ref(),
    }
}

fn profile(command: &Command) -> Option<Profile<'_>> {
    let p = |name, dry_run, hooks, metrics| Profile {
        name,
        dry_run,
        hooks,
        metrics,
    };
    Some(match command {
        Command::Migrate(a) if !a.sizing.estimate => p(
            "migrate",
            a.dry_run,
            Some(&a.hooks),
            a.metrics_file.as_ref(),
        ),
        Command::Rebase(a) => writing("rebase", a.dry_run, &a.hooks, &a.metrics),
        Command::Rollback(a) => p(
            "rollback",
            a.dry_run,
            Some(&a.hooks),
            a.out.metrics_file.as_ref(),
        ),
        Command::Rekey(a) => writing("rekey", a.dry_run, &a.hooks, &a.metrics),
        Command::Audit(a) => p(
            "audit",
            a.clean.dry_run,
            a.clean.any().then_some(&a.hooks),
            a.metrics.metrics_file.as_ref(),
        ),
        Command::Relayout(a) => writing("relayout", a.dry_run, &a.hooks, &a.metrics),
        Command::Relink(a) => writing("relink", a.dry_run, &a.hooks, &a.metrics),
        Command::Verify(a) => p("verify", false, None, a.out.metrics_file.as_ref()),
        Command::Serve(a) => p("serve", a.dry_run, Some(&a.hooks), None),
        _ => return None,
    })
}

/// The `--hook-*` flags of a writing command (for the settings).
pub(super) fn hook_flags(command: &Command) -> Option<&HookArgs> {
    profile(command)?.hooks
}

/// The metrics file to finish.
struct MetricsEnd {
    path: PathBuf,
    command: &'static str,
    shard: String,
    dry_run: bool,
    /// When the file was last written before this run: `migrate` and `rebase` write theirs as
    /// they go, the others (and a run that stopped before it began) get it written here.
    before: Option<SystemTime>,
}

/// The end of a command's run, prepared before it starts.
pub(super) struct Ending {
    hooks: Hooks,
    metrics: Option<MetricsEnd>,
    started: Instant,
}

impl Ending {
    pub(super) fn new(settings: &Settings, command: Option<&Command>) -> Ending {
        let profile = command.and_then(profile);
        // The lease scope as far as the settings say (`migrate --shard`), for the labels.
        let shard = match command {
            Some(Command::Migrate(_)) => crate::engine::scope_of(settings.run.shard),
            _ => "all".to_string(),
        };
        let hooks = match &profile {
            Some(p) if p.hooks.is_some() => {
                Hooks::new(settings.hooks.clone(), p.name, p.dry_run, &shard)
            }
            _ => Hooks::none(),
        };
        let metrics = profile.and_then(|p| {
            let path = p.metrics?.clone();
            Some(MetricsEnd {
                before: modified(&path),
                path,
                command: p.name,
                shard: shard.clone(),
                dry_run: p.dry_run,
            })
        });
        Ending {
            hooks,
            metrics,
            started: Instant::now(),
        }
    }

    pub(super) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Run the last hooks, then write the metrics file: a run that stopped before writing its
    /// own (a `before` hook failed, a start-up error) gets the exit code and duration.
    pub(super) async fn end(self, result: anyhow::Result<i32>) -> anyhow::Result<i32> {
        let result = self.hooks.end(result).await;
        let code = result.as_ref().map_or_else(crate::exit::code_of, |c| *c);
        if let Some(m) = self.metrics {
            if modified(&m.path) == m.before {
                let success = code == OK && !m.dry_run;
                let end = metrics::End { code, success };
                let elapsed = self.started.elapsed();
                metrics::write_final(&m.path, m.command, &m.shard, elapsed, end);
            }
            metrics::record_hooks(&m.path, &self.hooks.counts(), code);
        }
        result
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}
