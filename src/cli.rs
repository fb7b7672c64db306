//! The command line, as clap derive types and nothing else.
//!
//! Every option that also lives in the configuration file is an `Option` here, so that
//! [`crate::settings`] can tell "given on the command line / in the environment" from "not given"
//! and apply the precedence flag > `PFM_*` env > config file > default in one place. clap itself
//! handles flag > env.

mod clean;
mod cutoff;
pub mod health;
mod hooks;
mod output;
mod rebase;
mod rekey;
mod relayout;
mod relink;
mod serve;
mod sizing;
pub use clean::CleanArgs;
pub use cutoff::CutoffArgs;
pub use hooks::HookArgs;
pub use output::*;
pub use rebase::RebaseArgs;
pub use rekey::RekeyArgs;
pub use relayout::RelayoutArgs;
pub use relink::RelinkArgs;
pub use serve::ServeArgs;
pub use sizing::SizingArgs;
use {
    rebase::REBASE_EXAMPLES, rekey::REKEY_EXAMPLES, relayout::RELAYOUT_EXAMPLES,
    relink::RELINK_EXAMPLES, serve::SERVE_EXAMPLES,
};

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # What File fields does the app have, and how many references?
  parse-files-migrate -c migrate.toml schema

  # Every legacy reference as JSON lines (read-only; works with a read-only MongoDB user)
  parse-files-migrate --mongo-uri mongodb://127.0.0.1:27017/parse list --kind parse-hosted --output jsonl

  # CI gate: fail (exit 3) while any hosted-Parse file is still referenced
  parse-files-migrate -c migrate.toml list --fail-on parse-hosted,parse-legacy

  # Print the resolved settings (secrets redacted) and exit
  parse-files-migrate -c migrate.toml --show-settings migrate

Output: every command takes --output text|jsonl (csv: list, audit) and --report FILE; by default
text on a terminal, JSON lines otherwise.
Environment: every global option has a PFM_* variable (PFM_CONFIG, PFM_MONGO_URI, PFM_FILE_KEY, ...).
Precedence: flag > environment > config file > default.";

/// Move the files of Parse apps between storage backends and rewrite the references in MongoDB.
#[derive(Debug, Parser)]
#[command(name = "parse-files-migrate", version, after_long_help = EXAMPLES)]
#[command(subcommand_required = false, arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by every command: listed under their own heading in every command's help, apart
/// from the command's own options.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Configuration file (TOML); see config.example.toml
    #[arg(
        short = 'c',
        long,
        env = "PFM_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// MongoDB connection string of the Parse app (the database is taken from its path)
    #[arg(
        long,
        env = "PFM_MONGO_URI",
        global = true,
        value_name = "URI",
        hide_env_values = true
    )]
    pub mongo_uri: Option<String>,

    /// Database name, when the URI names none (or to override it)
    #[arg(long, env = "PFM_DATABASE", global = true, value_name = "NAME")]
    pub database: Option<String>,

    /// Parse Server `collectionPrefix` (applies to `_SCHEMA` and every class collection)
    #[arg(
        long,
        env = "PFM_COLLECTION_PREFIX",
        global = true,
        value_name = "PREFIX"
    )]
    pub collection_prefix: Option<String>,

    /// Parse application id (used in `/files/<appId>/<name>` URLs)
    #[arg(long, env = "PFM_APP_ID", global = true, value_name = "ID")]
    pub app_id: Option<String>,

    /// Parse `fileKey`: builds legacy hosted URLs, and is the GridFS/FS encryption key
    #[arg(
        long,
        env = "PFM_FILE_KEY",
        global = true,
        value_name = "KEY",
        hide_env_values = true
    )]
    pub file_key: Option<String>,

    /// Parse Server `publicServerURL`, used to rebuild the `url` of nested File objects
    #[arg(long, env = "PFM_PUBLIC_SERVER_URL", global = true, value_name = "URL")]
    pub public_server_url: Option<String>,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q warnings and errors only, -qq errors only)
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub quiet: u8,

    /// Log line format on stderr
    #[arg(long, env = "PFM_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Progress display on stderr (auto: only when stderr is a terminal)
    #[arg(long, env = "PFM_PROGRESS", global = true, value_enum)]
    pub progress: Option<ProgressMode>,

    /// Print the resolved settings (secrets redacted) and exit
    #[arg(long, global = true)]
    pub show_settings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

const SCHEMA_EXAMPLES: &str = "\
Examples:
  parse-files-migrate -c migrate.toml schema
  parse-files-migrate --mongo-uri mongodb://127.0.0.1:27017/parse schema --output json";

const LIST_EXAMPLES: &str = "\
Examples:
  # Legacy references still in the database, as JSON lines
  parse-files-migrate -c migrate.toml list --kind parse-hosted,parse-legacy --output jsonl
  # CI gate: exit 3 while any legacy file is referenced
  parse-files-migrate -c migrate.toml list --fail-on parse-hosted,parse-legacy
  # One class and field, as CSV
  parse-files-migrate -c migrate.toml list --class Photo --field image --output csv > photos.csv";

const MIGRATE_EXAMPLES: &str = "\
Examples:
  # See every copy and every document update, change nothing
  parse-files-migrate -c migrate.toml migrate --dry-run
  # Hosted-Parse (tfss-/UUID) files to the configured destination, renamed so Parse Server serves them
  parse-files-migrate -c migrate.toml migrate --yes --report report.json
  # Move a GridFS app to S3, names kept (configure [source.server] and [destination])
  parse-files-migrate -c gridfs-to-s3.toml migrate --select server --rename keep --yes
  # Cron: at most 45 minutes per run (exit 8 = stopped at the cutoff; the next run continues),
  # ending early (exit 3) once 50 files have failed, e.g. with the destination down
  parse-files-migrate -c migrate.toml migrate --yes --max-duration 45m --max-errors 50
  # One of four hosts (or a Kubernetes Indexed Job)
  parse-files-migrate -c migrate.toml migrate --yes --shard 2/4";

const VERIFY_EXAMPLES: &str = "\
Examples:
  parse-files-migrate -c migrate.toml verify
  # Also download every file through Parse Server
  parse-files-migrate -c migrate.toml verify --via-server https://api.example.com/parse
  # For a cron job: findings as JSON lines, the summary also in a file
  parse-files-migrate -c migrate.toml verify --output jsonl --report verify.json";

const STATUS_EXAMPLES: &str = "\
Examples:
  parse-files-migrate -c migrate.toml status
  parse-files-migrate -c migrate.toml status --output json | jq .problems";

const ROLLBACK_EXAMPLES: &str = "\
Examples:
  # What would be restored
  parse-files-migrate -c migrate.toml rollback --dry-run
  # Restore every rewritten reference, then delete the copies the migration made
  parse-files-migrate -c migrate.toml rollback --yes --delete-copies";

const AUDIT_EXAMPLES: &str = "\
Examples:
  # Orphans, dangling references and a summary for the destination store
  parse-files-migrate -c migrate.toml audit
  # The app's current store ([source.server]), as JSON lines; exit 6 if anything was found
  parse-files-migrate -c migrate.toml audit --store server --output jsonl > audit.jsonl
  # Move orphans older than 7 days out of Parse Server's reach (--dry-run first); undo it;
  # delete for good what has been in quarantine for 30 days
  parse-files-migrate -c migrate.toml audit --store server --quarantine --yes
  parse-files-migrate -c migrate.toml audit --store server --restore --yes
  parse-files-migrate -c migrate.toml audit --store server --purge --older-than 30d --yes";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  parse-files-migrate completions bash > /etc/bash_completion.d/parse-files-migrate
  parse-files-migrate completions zsh > \"${fpath[1]}/_parse-files-migrate\"
  parse-files-migrate completions fish > ~/.config/fish/completions/parse-files-migrate.fish";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classes and their File fields, nested File locations and Parse Config params (read-only)
    #[command(after_long_help = SCHEMA_EXAMPLES)]
    Schema(SchemaArgs),
    /// Every file reference: the dry-run listing (read-only)
    #[command(after_long_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Copy → verify → rewrite; resumable; --dry-run prints the plan and changes nothing
    #[command(after_long_help = MIGRATE_EXAMPLES)]
    Migrate(Box<MigrateArgs>),
    /// Check that every reference resolves at the destination (exists, size, hash)
    #[command(after_long_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Progress and failures recorded in the ledger
    #[command(after_long_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Restore the original references recorded in the ledger (compare-and-swap)
    #[command(after_long_help = ROLLBACK_EXAMPLES)]
    Rollback(RollbackArgs),
    /// Stored files nothing references, references to absent files, superseded GridFS versions
    /// (read-only; --quarantine / --restore / --purge clean up, reversibly)
    #[command(after_long_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// Move file URLs from old bases (`[rebase] from`) to the current one; copies no bytes
    #[command(after_long_help = REBASE_EXAMPLES)]
    Rebase(RebaseArgs),
    /// Encrypt, rotate the key of, or decrypt every file of a GridFS or FS store in place
    /// (streaming, verified, resumable); --dry-run classifies them
    #[command(after_long_help = REKEY_EXAMPLES)]
    Rekey(RekeyArgs),
    /// Rename every referenced file of a store after a template (directories by class, date…),
    /// copying on the server where it can, and rewrite every reference; the old names stay
    #[command(after_long_help = RELAYOUT_EXAMPLES)]
    Relayout(RelayoutArgs),
    /// Point dangling references at the one unreferenced key their bytes sit under (a broken
    /// S3 adapter `generateKey`); copies and deletes nothing
    #[command(after_long_help = RELINK_EXAMPLES)]
    Relink(RelinkArgs),
    /// A read-through gateway in front of Parse Server for a zero-downtime cut-over: files the
    /// new store misses are copied from the old one as they are asked for
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_long_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Write man pages (roff): to stdout, or one page per command into a directory
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write parse-files-migrate.1 and `parse-files-migrate-<command>.1` here instead of printing
    /// the main page
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Which classes and fields a command looks at.
#[derive(Debug, Args, Clone, Default)]
pub struct Filters {
    /// Only these classes (repeat or comma-separate)
    #[arg(long = "class", value_name = "CLASS", value_delimiter = ',')]
    pub classes: Vec<String>,

    /// Only these fields: `field` or `Class.field` (repeat or comma-separate)
    #[arg(long = "field", value_name = "FIELD", value_delimiter = ',')]
    pub fields: Vec<String>,

    /// Do not search Object/Array fields and Parse Config for nested Files
    #[arg(long)]
    pub no_nested: bool,

    /// Also search String fields, and the strings inside Object/Array fields and Parse Config,
    /// for file URLs (docs/guide.md "URLs in strings"; `[scan] strings`)
    #[arg(long)]
    pub strings: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[command(flatten)]
    pub out: OutputArgs,

    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub out: RowsOutputArgs,

    #[command(flatten)]
    pub filters: Filters,

    /// Only references whose name is of these kinds (repeat or comma-separate)
    #[arg(long = "kind", value_enum, value_delimiter = ',')]
    pub kinds: Vec<KindArg>,

    /// Exit 3 if any listed reference is of one of these kinds (CI gate)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    pub fail_on: Vec<KindArg>,

    /// Rename policy used to compute `target_name` (as `migrate --rename`)
    #[arg(long, value_enum)]
    pub rename: Option<RenameArg>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Which store to audit: `[destination]` or `[source.server]`
    #[arg(long, value_enum, default_value = "destination")]
    pub store: StoreRole,

    #[command(flatten)]
    pub out: RowsOutputArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Memory for each side's sort before it spills a sorted run to a temporary file, e.g. 64MiB
    /// (default 8MiB; files go to TMPDIR)
    #[arg(long, value_name = "SIZE")]
    pub sort_run_bytes: Option<String>,

    #[command(flatten)]
    pub clean: CleanArgs,

    #[command(flatten)]
    pub hooks: HookArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreRole {
    /// The `[destination]` table
    Destination,
    /// The `[source.server]` table (the store Parse Server uses today)
    Server,
}

/// Name kinds, as on the command line (see `parse::names::NameKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    ParseHosted,
    ParseLegacy,
    ParseServer,
    Migrated,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SelectArg {
    /// `parse-hosted` and `parse-legacy` names (the hosted-Parse rescue)
    Hosted,
    /// Names created by Parse Server and others (an adapter move)
    Server,
    /// Everything
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenameArg {
    /// Legacy names get a Parse-Server-style name; others keep theirs
    Auto,
    /// Keep every name (legacy names only if Parse Server's fileKey was removed)
    Keep,
    /// Every name not already Parse-Server-style gets one
    ParseServer,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Print the plan (copies and document updates) and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required to write when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Which kinds of names to move
    #[arg(long, value_enum)]
    pub select: Option<SelectArg>,

    /// How target names are chosen
    #[arg(long, value_enum)]
    pub rename: Option<RenameArg>,

    /// Files transferred at once
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    #[command(flatten)]
    pub filters: Filters,

    #[command(flatten)]
    pub cutoff: CutoffArgs,

    /// Stop starting copies once N files or reference updates have failed for good (exit 3);
    /// missing files and conflicts do not count
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// At most N requests per second to the sources (429/503 slow every transfer down anyway)
    #[arg(long, value_name = "N")]
    pub tps_limit: Option<f64>,

    /// At most this many bytes per second read from the sources, e.g. 10MiB
    #[arg(long, value_name = "RATE")]
    pub bwlimit: Option<String>,

    #[command(flatten)]
    pub health: health::DbHealthArgs,

    /// Take only shard K of N (by a stable hash of the file name), e.g. 0/4
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Also retry files recorded as missing at the source (walks every class: implies --rescan)
    #[arg(long)]
    pub retry_failed: bool,

    /// Walk every class from the start, ignoring where an unfinished pass stopped
    #[arg(long)]
    pub rescan: bool,

    /// Also copy every file of [source.server] no reference names (a complete copy, orphans too)
    #[arg(long)]
    pub include_unreferenced: bool,

    /// Copy and verify, but do not rewrite references
    #[arg(long, conflicts_with = "rewrite_only")]
    pub copy_only: bool,

    /// Rewrite references of files already copied and verified; copy nothing
    #[arg(long)]
    pub rewrite_only: bool,

    /// With `--rename keep`: confirm Parse Server no longer has `fileKey` set, so it serves kept
    /// legacy names from its adapter instead of redirecting clients to the dead hosted-Parse hosts
    #[arg(long)]
    pub confirm_file_key_removed: bool,

    /// Replace objects already at the destination under a target name with other bytes (by
    /// default they are left alone and reported as collisions)
    #[arg(long)]
    pub overwrite: bool,

    /// Break the lease another run holds on this shard (shown, then confirmed; --yes without a
    /// terminal): only when you know that run is gone
    #[arg(long)]
    pub break_lease: bool,

    /// Output on stdout: the dry-run plan and the summary (default: text on a terminal, jsonl
    /// otherwise)
    #[arg(long, value_name = "FORMAT", value_parser = text_or_jsonl())]
    pub output: Option<MigrateOutput>,

    /// Also write the summary and every missing, failed and conflicting item to FILE (JSON)
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,

    /// Write the run's counters to FILE in the Prometheus text format (node_exporter's textfile
    /// collector), refreshed every 10 s and final at the end, with the exit code
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub sizing: SizingArgs,

    #[command(flatten)]
    pub hooks: HookArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub filters: Filters,

    /// Also download each file through this Parse Server URL
    #[arg(long, value_name = "URL")]
    pub via_server: Option<String>,

    /// Which kinds of names must be migrated (as `migrate --select`; default `[run] select`)
    #[arg(long, value_enum)]
    pub select: Option<SelectArg>,

    /// The rename policy the migration used (as `migrate --rename`)
    #[arg(long, value_enum)]
    pub rename: Option<RenameArg>,

    #[command(flatten)]
    pub out: RunOutputArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Print what would be restored and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Also delete the objects the migration created at the destination
    #[arg(long)]
    pub delete_copies: bool,

    /// Break the leases other runs hold (shown, then confirmed; --yes without a terminal): only
    /// when you know those runs are gone
    #[arg(long)]
    pub break_lease: bool,

    #[command(flatten)]
    pub out: RunOutputArgs,

    #[command(flatten)]
    pub hooks: HookArgs,
}

impl From<SelectArg> for crate::parse::names::Selection {
    fn from(s: SelectArg) -> Self {
        match s {
            SelectArg::Hosted => Self::Hosted,
            SelectArg::Server => Self::Server,
            SelectArg::All => Self::All,
        }
    }
}

impl From<RenameArg> for crate::parse::names::RenamePolicy {
    fn from(r: RenameArg) -> Self {
        match r {
            RenameArg::Auto => Self::Auto,
            RenameArg::Keep => Self::Keep,
            RenameArg::ParseServer => Self::ParseServer,
        }
    }
}

impl From<KindArg> for crate::parse::names::NameKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::ParseHosted => Self::ParseHosted,
            KindArg::ParseLegacy => Self::ParseLegacy,
            KindArg::ParseServer => Self::ParseServer,
            KindArg::Migrated => Self::Migrated,
            KindArg::Other => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_and_option_has_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id}: no help text");
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                assert!(
                    sub.get_about().is_some(),
                    "{path} {}: no about",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        check(&cmd, "parse-files-migrate");
    }
}
