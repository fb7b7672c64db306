//! `rekey`'s command line (kept out of `cli.rs` for its size budget).

use std::path::PathBuf;

use clap::Args;

use super::{MetricsArgs, OutputFormat, StoreRole};

pub(super) const REKEY_EXAMPLES: &str = "\
Examples:
  # Which files are plaintext / current key / new key / undecryptable (changes nothing)
  parse-files-migrate -c migrate.toml rekey --store server --dry-run
  # Encrypt the plaintext files with the store's key (parse.file_key or encryption_key)
  parse-files-migrate -c migrate.toml rekey --store server --encrypt --yes
  # Rotate to a new key (never on the command line: from the environment or [rekey] new_key)
  PFM_NEW_FILE_KEY=... parse-files-migrate -c migrate.toml rekey --store server --yes
  # Write every file back as plaintext (then fileKey can be dropped)
  parse-files-migrate -c migrate.toml rekey --store server --decrypt --yes";

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Which store to rewrite: `[destination]` or `[source.server]`
    #[arg(long, value_enum, default_value = "destination")]
    pub store: StoreRole,

    /// Encrypt every plaintext file with the store's current key (default mode: rotate to the
    /// new key from PFM_NEW_FILE_KEY or `[rekey] new_key`)
    #[arg(long, conflicts_with = "decrypt")]
    pub encrypt: bool,

    /// Write every file encrypted with the store's current key back as plaintext
    #[arg(long)]
    pub decrypt: bool,

    /// Classify every file (plaintext / current key / new key / undecryptable) and change
    /// nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required to write when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Files rewritten at once (default 4)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    #[command(flatten)]
    pub cutoff: super::CutoffArgs,

    /// Stop once N files have failed (exit 3)
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Write the summary as JSON to this file, whole or not at all
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Output on stdout: text (alias table) or jsonl (alias json); default: text on a terminal,
    /// jsonl otherwise. The text summary goes to stderr
    #[arg(long, value_name = "FORMAT", value_parser = super::text_or_jsonl())]
    pub output: Option<OutputFormat>,

    /// The same as --output jsonl (kept for scripts)
    #[arg(long, conflicts_with = "output")]
    pub json: bool,

    /// Break another run's lease first (after confirmation): only when it is certainly gone
    #[arg(long)]
    pub break_lease: bool,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub hooks: super::HookArgs,
}
