//! One recipe per command (a file each, or two where a command has two modes: `migrate` and
//! `migrate --estimate`, `audit` and its clean-up): resolve what it needs, pass the gate, run the
//! engine, hand results to [`crate::report`]. [`run`] is the whole program after argument
//! parsing, and the one place that dispatches: no command calls another.

mod audit;
mod audit_clean;
mod docs;
mod ending;
mod estimate;
mod list;
mod migrate;
mod rebase;
mod rekey;
mod relayout;
mod relink;
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
    let hook_flags = command.as_ref().and_then(ending::hook_flags);
    let settings = Settings::resolve(&cli.global, migrate)?.with_hook_flags(hook_flags)?;
    if cli.global.show_settings {
        report::print_settings(&settings.to_toml()?)?;
        return Ok(OK);
    }
    report::logging::init(&settings.output);
    let ending = ending::Ending::new(&settings, command.as_ref());
    let h = ending.hooks();
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
        Some(Command::Relayout(args)) => relayout::run(&settings, &args, h).await,
        Some(Command::Relink(args)) => relink::run(&settings, &args, h).await,
        Some(Command::Serve(args)) => serve::run(&settings, &args, h).await,
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::Man(args)) => docs::man(&args),
    };
    ending.end(result).await
}
