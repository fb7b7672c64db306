//! One function per command: resolve what it needs, run the pipeline, hand results to
//! [`crate::report`]. [`run`] is the whole program after argument parsing.

mod discover;
mod docs;
mod list;
mod migrate;
mod rollback;
mod schema;
mod status;
mod verify;

use crate::cli::{Cli, Command};
use crate::exit::{OK, usage};
use crate::ledger::Ledger;
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
        Some(Command::Migrate(m)) => Some(m),
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
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::Man(args)) => docs::man(&args),
    }
}

/// The ledger of the app whose database is `app` (or where `[ledger]` puts it).
async fn open_ledger(settings: &Settings, app: &mongodb::Database) -> anyhow::Result<Ledger> {
    let l = &settings.ledger;
    let database = l.database.clone().unwrap_or_else(|| app.name().to_string());
    let db = match &l.uri {
        Some(uri) => crate::db::connect(uri, &database).await?.1,
        None => app.client().database(&database),
    };
    Ok(Ledger::new(db, &l.collection).with_lease(std::time::Duration::from_secs(l.lease_secs)))
}

/// Connect to the app database and open its ledger (commands that do not walk the schema).
async fn app_and_ledger(settings: &Settings) -> anyhow::Result<(mongodb::Database, Ledger)> {
    let (uri, database) = settings.mongo_target()?;
    let (_client, db) = crate::db::connect(uri, database).await?;
    let ledger = open_ledger(settings, &db).await?;
    Ok((db, ledger))
}
