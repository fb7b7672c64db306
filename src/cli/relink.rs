//! `relink`'s command line (kept out of `cli.rs` for its size budget).

use clap::Args;

use super::{MetricsArgs, MigrateOutput, StoreRole};

pub(super) const RELINK_EXAMPLES: &str = "\
Examples:
  # Which dangling references would point at which stored key (changes nothing)
  parse-files-migrate -c migrate.toml relink --store server --dry-run
  # Relink, pairing each name with the one orphan whose key ends in /<name>
  parse-files-migrate -c migrate.toml relink --store server --yes
  # The keys a generateKey wrote as uploads/<name>
  parse-files-migrate -c migrate.toml relink --store server --match 'template:uploads/{name}' --yes
  # Undo: put the dangling names back
  parse-files-migrate -c migrate.toml rollback --yes";

#[derive(Debug, Args)]
pub struct RelinkArgs {
    /// Which store holds the bytes: `[destination]` or `[source.server]`
    #[arg(long, value_enum, default_value = "destination")]
    pub store: StoreRole,

    /// How a dangling name finds its key among the orphans: `suffix` (the key ends in
    /// `/<name>`) or `template:T` (the key is T with {name} replaced)
    #[arg(long = "match", value_name = "RULE", default_value = "suffix")]
    pub rule: String,

    /// Print every change (before/after) and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Stop after this long, e.g. 45m (exit 8; a re-run continues)
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,

    /// Break the lease another run holds (shown, then confirmed): only when that run is gone
    #[arg(long)]
    pub break_lease: bool,

    /// Memory for each sort before it spills a sorted run to a temporary file, e.g. 64MiB
    /// (default 8MiB; files go to TMPDIR)
    #[arg(long, value_name = "SIZE")]
    pub sort_run_bytes: Option<String>,

    /// Output on stdout: the dry-run plan and the summary (default: text on a terminal, jsonl
    /// otherwise)
    #[arg(long, value_name = "FORMAT", value_parser = super::text_or_jsonl())]
    pub output: Option<MigrateOutput>,

    /// Also write the summary and every reference left alone to FILE (JSON), whole or not at all
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub hooks: super::HookArgs,
}
