//! The one rule every command follows for its output: `--output` when given (a command without
//! a CSV form refuses `csv` as a usage error), else text for people when stdout is a terminal
//! and JSON lines otherwise; and `--report FILE`, the command's summary as JSON, written to a
//! temporary file beside FILE and renamed over it, so a reader sees all of it or none.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::exit::usage;

/// The format a command writes in, resolved from `--output` and the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people: tables, plan lines, sentences.
    Text,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated rows (`list`, `audit`'s listing).
    Csv,
}

/// Which formats a command has besides text and JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forms {
    /// Text and JSON lines.
    TextJsonl,
    /// Text, JSON lines and CSV (a table of rows).
    WithCsv,
}

/// `--output` of `command`, or by default text on a terminal and JSON lines otherwise; `csv`
/// where the command has no CSV form is a usage error (exit 2).
pub fn resolve(
    output: Option<OutputFormat>,
    command: &str,
    forms: Forms,
) -> anyhow::Result<Format> {
    Ok(match output {
        Some(OutputFormat::Text) => Format::Text,
        Some(OutputFormat::Jsonl) => Format::Jsonl,
        Some(OutputFormat::Csv) if forms == Forms::WithCsv => Format::Csv,
        Some(OutputFormat::Csv) => {
            return Err(usage(format!(
                "{command} has no csv output (its output is not a table of rows): use --output \
                 text or --output jsonl"
            )));
        }
        None if super::stdout_is_terminal() => Format::Text,
        None => Format::Jsonl,
    })
}

/// `--output` of a command with text and JSON lines only: whether it is JSON lines.
pub fn jsonl(output: Option<OutputFormat>, command: &str) -> anyhow::Result<bool> {
    Ok(resolve(output, command, Forms::TextJsonl)? == Format::Jsonl)
}

/// Write `value` as pretty JSON to `path` (`--report`), whole or not at all.
pub fn write_report(path: Option<&Path>, value: &impl Serialize) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    write_atomic(path, &json).with_context(|| format!("writing the report {}", path.display()))
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_only_where_there_are_rows() {
        let csv = Some(OutputFormat::Csv);
        assert_eq!(resolve(csv, "list", Forms::WithCsv).unwrap(), Format::Csv);
        let err = resolve(csv, "status", Forms::TextJsonl).unwrap_err();
        assert_eq!(crate::exit::code_of(&err), crate::exit::USAGE);
        assert!(
            err.to_string().contains("status has no csv output"),
            "{err}"
        );
        let text = Some(OutputFormat::Text);
        assert_eq!(resolve(text, "x", Forms::TextJsonl).unwrap(), Format::Text);
    }

    #[test]
    fn a_report_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "old").unwrap();
        write_report(Some(&path), &serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["a"], 1);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        let missing = dir.path().join("no/such/dir/r.json");
        assert!(write_report(Some(&missing), &1).is_err());
    }
}
