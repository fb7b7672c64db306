//! `rebase`'s options (kept beside [`super`], which is at its size budget).

use clap::Args;

use super::{Filters, MetricsArgs, MigrateOutput};

pub(super) const REBASE_EXAMPLES: &str = "\
Examples:
  # Every URL that would move from the old bases, as before/after excerpts
  parse-files-migrate -c migrate.toml rebase --dry-run
  # Rebase, then HEAD-request every current URL found
  parse-files-migrate -c migrate.toml rebase --yes --check";

#[derive(Debug, Args)]
pub struct RebaseArgs {
    /// Print every change (before/after) and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Then HEAD-request each current URL found and report those not answering 200 (exit 3)
    #[arg(long)]
    pub check: bool,

    /// Leave strings alone: rebase only the `url`s of nested File objects
    #[arg(long)]
    pub no_strings: bool,

    #[command(flatten)]
    pub filters: Filters,

    /// Stop after this long, e.g. 45m (exit 8; a re-run continues)
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,

    /// Break the lease another run holds (shown, then confirmed): only when that run is gone
    #[arg(long)]
    pub break_lease: bool,

    /// Output on stdout: the dry-run plan and the summary (default: text on a terminal, jsonl
    /// otherwise)
    #[arg(long, value_name = "FORMAT", value_parser = super::text_or_jsonl())]
    pub output: Option<MigrateOutput>,

    /// Also write the summary and every conflicting or failed reference to FILE (JSON), whole or
    /// not at all
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub hooks: super::HookArgs,
}
