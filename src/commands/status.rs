//! `status`: where the migration stands, from the ledger. Read-only.

use crate::cli::{SchemaOutput, StatusArgs};
use crate::exit::OK;
use crate::report::stdout_is_terminal;
use crate::session;
use crate::settings::Settings;

/// Runs shown.
const RUNS: i64 = 5;

pub(super) async fn run(settings: &Settings, args: &StatusArgs) -> anyhow::Result<i32> {
    let (_db, ledger) = session::app_and_ledger(settings).await?;
    let status = ledger.status(RUNS).await?;
    let json = match args.output {
        Some(SchemaOutput::Json) => true,
        Some(SchemaOutput::Table) => false,
        None => !stdout_is_terminal(),
    };
    if json {
        println!("{}", crate::report::status::json(&status)?);
    } else {
        print!("{}", crate::report::status::text(&status));
    }
    Ok(OK)
}
