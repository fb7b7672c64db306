//! One function per command: resolve what it needs, run the pipeline, hand results to
//! [`crate::report`]. [`run`] is the whole program after argument parsing.

mod audit;
mod audit_clean;
mod audit_quarantine;
mod docs;
mod estimate;
mod list;
mod migrate;
mod rebase;
mod rekey;
mod rollback;
mod schema;
mod status;
mod unreferenced;
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
        print!("{}", settings.to_toml()?);
        return Ok(OK);
    }
    report::logging::init(&settings.output);
    match command {
        None => Err(usage("no command given; see --help")),
        Some(Command::Schema(args)) => schema::run(&settings, &args).await,
        Some(Command::List(args)) => list::run(&settings, &args).await,
        Some(Command::Migrate(args)) => migrate::run(&settings, &args).await,
        Some(Command::Verify(args)) => verify::run(&settings, &args).await,
        Some(Command::Status(args)) => status::run(&settings, &args).await,
        Some(Command::Rollback(args)) => rollback::run(&settings, &args).await,
        Some(Command::Audit(args)) => audit::run(&settings, &args).await,
        Some(Command::Rebase(args)) => rebase::run(&settings, &args).await,
        Some(Command::Rekey(args)) => rekey::run(&settings, &args).await,
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::Man(args)) => docs::man(&args),
    }
}
