//! `relayout`'s command line (kept out of `cli.rs` for its size budget).

use clap::Args;

use super::{Filters, MetricsArgs, MigrateOutput, StoreRole};

pub(super) const RELAYOUT_EXAMPLES: &str = "\
Examples:
  # Every file's new name, and every reference that would change (changes nothing)
  parse-files-migrate -c migrate.toml relayout --store server --template '{class}/{name}' --dry-run
  # By class and creation month, as Parse.File.setDirectory would have named them
  parse-files-migrate -c migrate.toml relayout --store server --template '{class}/{yyyy}/{mm}/{name}' --yes
  # Undo: the references go back to the old names (which stay until audit cleans them up)
  parse-files-migrate -c migrate.toml rollback --yes";

#[derive(Debug, Args)]
pub struct RelayoutArgs {
    /// Which store to lay out: `[destination]` or `[source.server]`
    #[arg(long, value_enum, default_value = "destination")]
    pub store: StoreRole,

    /// The new name of each file: `{name}` (required), `{class}`, `{field}`, `{yyyy}` `{mm}`
    /// `{dd}` (the object's createdAt, UTC), `{hash2}` (fan-out), literal text
    #[arg(long, value_name = "TEMPLATE")]
    pub template: String,

    /// Print the plan (each file's new name, each reference change) and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub filters: Filters,

    /// Stop after this long, e.g. 45m (exit 8; a re-run continues)
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,

    /// Stop after this many files (exit 8; a re-run continues)
    #[arg(long, value_name = "N")]
    pub max_files: Option<u64>,

    /// Break the lease another run holds (shown, then confirmed): only when that run is gone
    #[arg(long)]
    pub break_lease: bool,

    /// Output on stdout: the dry-run plan and the summary (default: text on a terminal, jsonl
    /// otherwise)
    #[arg(long, value_name = "FORMAT", value_parser = super::text_or_jsonl())]
    pub output: Option<MigrateOutput>,

    /// Also write the summary and every file or reference left alone to FILE (JSON), whole or
    /// not at all
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub hooks: super::HookArgs,
}
