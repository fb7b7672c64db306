//! One function per command: resolve what it needs, run the pipeline, hand results to
//! [`crate::report`]. [`run`] is the whole program after argument parsing.

mod discover;
mod list;
mod migrate;
mod schema;

use crate::cli::{Cli, Command};
use crate::exit::{OK, usage};
use crate::report;
use crate::settings::Settings;

/// Run the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let migrate = match &cli.command {
        Some(Command::Migrate(m)) => Some(m),
        _ => None,
    };
    let settings = Settings::resolve(&cli.global, migrate)?;
    if cli.global.show_settings {
        print!("{}", settings.to_toml()?);
        return Ok(OK);
    }
    report::logging::init(&settings.output);
    match cli.command {
        None => Err(usage("no command given; see --help")),
        Some(Command::Schema(args)) => schema::run(&settings, &args).await,
        Some(Command::List(args)) => list::run(&settings, &args).await,
        Some(Command::Migrate(args)) => migrate::run(&settings, &args).await,
        Some(Command::Verify(_)) => Err(not_yet("verify")),
        Some(Command::Status(_)) => Err(not_yet("status")),
        Some(Command::Rollback(_)) => Err(not_yet("rollback")),
    }
}

fn not_yet(command: &str) -> anyhow::Error {
    usage(format!(
        "`{command}` is not implemented yet in this version; `schema`, `list` and `migrate` are"
    ))
}
