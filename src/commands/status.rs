//! `status`: where the migration stands, from the ledger. Read-only.

use crate::cli::StatusArgs;
use crate::exit::OK;
use crate::report::output;
use crate::session;
use crate::settings::Settings;

/// Runs shown.
const RUNS: i64 = 5;

pub(super) async fn run(settings: &Settings, args: &StatusArgs) -> anyhow::Result<i32> {
    let json = output::jsonl(args.out.output, "status")?;
    let (_db, ledger) = session::app_and_ledger(settings).await?;
    let status = ledger.status(RUNS).await?;
    output::write_report(args.out.report.as_deref(), &status)?;
    if json {
        crate::report::stdout::line(crate::report::status::json(&status)?)?;
    } else {
        let text = crate::report::status::text(&status);
        std::io::Write::write_all(&mut crate::report::stdout::stdout(), text.as_bytes())?;
    }
    Ok(OK)
}
