//! One recipe per command (a file each, or two where a command has two modes: `migrate` and
//! `migrate --estimate`, `audit` and its clean-up): resolve what it needs, pass the gate, run the
//! engine, hand results to [`crate::report`]. [`run`] is the whole program after argument
//! parsing, and the one place that dispatches: no command calls another.

mod audit;
mod audit_clean;
mod docs;
mod estimate;
mod list;
mod migrate;
mod rebase;
mod rekey;
mod rollback;
mod schema;
mod status;
mod verify;

use crate::cli::{Cli, Command};
use crate::exit::{OK, usage};
use crate::hooks::Hooks;
use crate::report;
use crate::settings::Settings;

/// Run the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    // Documentation of the command line itself needs no settings.
    let command = match cli.command {
        Some(Command::Completions(args)) => return docs::completions(&args),
        Some(Command::Man(args)) => return docs::man(&args),
        other => other,
    };
    let migrate = match &command {
        Some(Command::Migrate(m)) => Some(m.as_ref()),
        _ => None,
    };
    let hook_flags = command.as_ref().and_then(hook_flags);
    let settings = Settings::resolve(&cli.global, migrate)?.with_hook_flags(hook_flags)?;
    if cli.global.show_settings {
        report::print_settings(&settings.to_toml()?)?;
        return Ok(OK);
    }
    report::logging::init(&settings.output);
    let started = std::time::Instant::now();
    let metrics = command.as_ref().and_then(metrics_of);
    let hooks = command
        .as_ref()
        .map_or_else(Hooks::none, |c| hooks_of(&settings, c));
    let metrics_path = command.as_ref().and_then(metrics_path);
    let h = &hooks;
    let result = match command {
        None => Err(usage("no command given; see --help")),
        Some(Command::Schema(args)) => schema::run(&settings, &args).await,
        Some(Command::List(args)) => list::run(&settings, &args).await,
        Some(Command::Migrate(args)) if args.sizing.estimate => {
            estimate::run(&settings, &args).await
        }
        Some(Command::Migrate(args)) => migrate::run(&settings, &args, h).await,
        Some(Command::Verify(args)) => verify::run(&settings, &args).await,
        Some(Command::Status(args)) => status::run(&settings, &args).await,
        Some(Command::Rollback(args)) => rollback::run(&settings, &args, h).await,
        Some(Command::Audit(args)) if args.clean.any() => {
            audit_clean::run(&settings, &args, h).await
        }
        Some(Command::Audit(args)) => audit::run(&settings, &args).await,
        Some(Command::Rebase(args)) => rebase::run(&settings, &args, h).await,
        Some(Command::Rekey(args)) => rekey::run(&settings, &args, h).await,
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::Man(args)) => docs::man(&args),
    };
    let result = hooks.end(result).await;
    let code = result.as_ref().map_or_else(crate::exit::code_of, |c| *c);
    if let Some((path, name, dry_run)) = metrics {
        let success = code == OK && !dry_run;
        let end = report::metrics::End { code, success };
        report::metrics::write_final(&path, name, started.elapsed(), end);
    }
    if let Some(path) = metrics_path {
        report::metrics::record_hooks(&path, &hooks.counts(), code);
    }
    result
}

/// `--metrics-file` of any command that has one (the hooks' outcomes are added to it last).
fn metrics_path(command: &Command) -> Option<std::path::PathBuf> {
    match command {
        Command::Migrate(a) if !a.sizing.estimate => a.metrics_file.clone(),
        Command::Rebase(a) => a.metrics.metrics_file.clone(),
        other => metrics_of(other).map(|(path, _, _)| path),
    }
}

/// The `--hook-*` flags of a writing command.
fn hook_flags(command: &Command) -> Option<&crate::cli::HookArgs> {
    match command {
        Command::Migrate(a) if !a.sizing.estimate => Some(&a.hooks),
        Command::Rollback(a) => Some(&a.hooks),
        Command::Audit(a) if a.clean.any() => Some(&a.hooks),
        Command::Rebase(a) => Some(&a.hooks),
        Command::Rekey(a) => Some(&a.hooks),
        _ => None,
    }
}

/// The hooks of a writing command (none for the others): its name, whether it is a dry run,
/// and its lease scope as far as the settings say.
fn hooks_of(settings: &Settings, command: &Command) -> Hooks {
    let (name, dry_run) = match command {
        Command::Migrate(a) if !a.sizing.estimate => ("migrate", a.dry_run),
        Command::Rollback(a) => ("rollback", a.dry_run),
        Command::Audit(a) if a.clean.any() => ("audit", a.clean.dry_run),
        Command::Rebase(a) => ("rebase", a.dry_run),
        Command::Rekey(a) => ("rekey", a.dry_run),
        _ => return Hooks::none(),
    };
    let scope = match command {
        Command::Migrate(_) => crate::engine::scope_of(settings.run.shard),
        _ => "all".to_string(),
    };
    Hooks::new(settings.hooks.clone(), name, dry_run, &scope)
}

/// `--metrics-file` of the commands whose file is written once at the end (`migrate` and `rebase`
/// refresh theirs during the run): the path, the command, and whether it is a dry run (which
/// is no successful pass).
fn metrics_of(command: &Command) -> Option<(std::path::PathBuf, &'static str, bool)> {
    let (path, name, dry_run) = match command {
        Command::Verify(a) => (&a.out.metrics_file, "verify", false),
        Command::Rollback(a) => (&a.out.metrics_file, "rollback", a.dry_run),
        Command::Audit(a) => (&a.metrics.metrics_file, "audit", a.clean.dry_run),
        Command::Rekey(a) => (&a.metrics.metrics_file, "rekey", a.dry_run),
        _ => return None,
    };
    Some((path.clone()?, name, dry_run))
}
