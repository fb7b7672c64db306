//! The one output vocabulary every command shares: `--output text|jsonl|csv` (the older
//! spellings `table` and `json` kept as aliases) and `--report FILE`. Which format applies when
//! `--output` is not given, and which commands have a CSV form, is decided in one place:
//! `report::output::resolve`. `--metrics-file` (`report::metrics`) joins them for the commands a
//! cron job runs.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};

/// `--output`: what a command prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: tables, plan lines and sentences (also spelled `table`)
    #[value(alias = "table")]
    Text,
    /// For programs: one JSON object per line; a command whose output is one document prints it
    /// as one line (also spelled `json`)
    #[value(alias = "json")]
    Jsonl,
    /// Comma-separated rows with a header: only `list` and `audit`'s listing
    Csv,
}

/// `--output`'s words for a command without a CSV form: its help lists `text` and `jsonl` only.
/// `csv` still parses (hidden), so that `report::output::resolve` refuses it with a message that
/// says which words to use, rather than clap's bare "invalid value".
pub fn text_or_jsonl() -> impl TypedValueParser<Value = OutputFormat> {
    output_words(false)
}

/// `--output`'s words for a command whose output is a table of rows: `text`, `jsonl` and `csv`.
pub fn rows_words() -> impl TypedValueParser<Value = OutputFormat> {
    output_words(true)
}

fn output_words(csv: bool) -> impl TypedValueParser<Value = OutputFormat> {
    let words = OutputFormat::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .map(move |v| {
            let hide = !csv && v.get_name() == "csv";
            v.hide(hide)
        });
    PossibleValuesParser::new(words).try_map(|word| OutputFormat::from_str(&word, false))
}

/// The formats `migrate`, `rebase` and `rollback` took before the shared vocabulary (same type).
pub type MigrateOutput = OutputFormat;
/// The formats `list` and `audit` took before the shared vocabulary (same type).
pub type ListOutput = OutputFormat;
/// The formats `schema` and `status` took before the shared vocabulary (same type).
pub type SchemaOutput = OutputFormat;

/// `--output` and `--report`, for the commands that had neither.
#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// Output on stdout: text (alias table) or jsonl (alias json); default: text on a terminal,
    /// jsonl otherwise
    #[arg(long, value_name = "FORMAT", value_parser = text_or_jsonl())]
    pub output: Option<OutputFormat>,

    /// Also write the command's summary to FILE as JSON (the object its last `--output jsonl`
    /// line carries), whole or not at all
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// `--output` (CSV too) and `--report`, for the commands whose output is a table of rows.
#[derive(Debug, Args, Clone, Default)]
pub struct RowsOutputArgs {
    /// Output on stdout: text (alias table), jsonl or csv; default: text on a terminal, jsonl
    /// otherwise
    #[arg(long, value_name = "FORMAT", value_parser = rows_words())]
    pub output: Option<OutputFormat>,

    /// Also write the command's summary to FILE as JSON, whole or not at all
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// `--metrics-file`, for the commands a cron job or a Kubernetes Job runs besides `migrate`.
#[derive(Debug, Args, Clone, Default)]
pub struct MetricsArgs {
    /// Write the run's exit code, duration and last success to FILE in the Prometheus text
    /// format (node_exporter's textfile collector), labelled with the command
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// `--output`, `--report` and `--metrics-file`, for `verify` and `rollback`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunOutputArgs {
    /// Output on stdout: text (alias table) or jsonl (alias json); default: text on a terminal,
    /// jsonl otherwise
    #[arg(long, value_name = "FORMAT", value_parser = text_or_jsonl())]
    pub output: Option<OutputFormat>,

    /// Also write the command's summary to FILE as JSON (the object its last `--output jsonl`
    /// line carries), whole or not at all
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Write the run's exit code, duration and last success to FILE in the Prometheus text
    /// format (node_exporter's textfile collector), labelled with the command
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}
