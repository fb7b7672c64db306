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
mod serve;
mod status;
mod verify;

use crate::cli::{Cli, Command};
use crate::exit::{OK, usage};
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
    let settings = Settings::resolve(&cli.global, migrate)?;
    if cli.global.show_settings {
        report::print_settings(&settings.to_toml()?)?;
        return Ok(OK);
    }
    report::logging::init(&settings.output);
    let started = std::time::Instant::now();
    let metrics = command.as_ref().and_then(metrics_of);
    let result = match command {
        None => Err(usage("no command given; see --help")),
        Some(Command::Schema(args)) => schema::run(&settings, &args).await,
        Some(Command::List(args)) => list::run(&settings, &args).await,
        Some(Command::Migrate(args)) if args.sizing.estimate => {
            estimate::run(&settings, &args).await
        }
        Some(Command::Migrate(args)) => migrate::run(&settings, &args).await,
        Some(Command::Verify(args)) => verify::run(&settings, &args).await,
        Some(Command::Status(args)) => status::run(&settings, &args).await,
        Some(Command::Rollback(args)) => rollback::run(&settings, &args).await,
        Some(Command::Audit(args)) if args.clean.any() => audit_clean::run(&settings, &args).await,
        Some(Command::Audit(args)) => audit::run(&settings, &args).await,
        Some(Command::Rebase(args)) => rebase::run(&settings, &args).await,
        Some(Command::Rekey(args)) => rekey::run(&settings, &args).await,
        Some(Command::Serve(args)) => serve::run(&settings, &args).await,
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::Man(args)) => docs::man(&args),
    };
    if let Some((path, name, dry_run)) = metrics {
        let code = result.as_ref().map_or_else(crate::exit::code_of, |c| *c);
        let success = code == OK && !dry_run;
        let end = report::metrics::End { code, success };
        report::metrics::write_final(&path, name, started.elapsed(), end);
    }
    result
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
