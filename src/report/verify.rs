//! How `verify` looks: one line per reference with a problem (JSON on a pipe), then a summary
//! (JSON on stdout, or a sentence on stderr).

use crate::engine::verify::{Counts, Finding};

/// One finding, on stdout.
pub fn print_finding(json: bool, f: &Finding) -> anyhow::Result<()> {
    if json {
        super::stdout::line(serde_json::to_string(f)?)?;
    } else {
        super::stdout::line(format_args!(
            "{:<14} {} {} {}: {} ({})",
            f.problem.as_str(),
            f.class,
            super::printable(&f.object_id),
            super::printable(&f.path),
            super::printable(&f.name),
            super::printable(&f.detail)
        ))?;
    }
    Ok(())
}

/// The end of a `verify` run; and `--report FILE`.
pub fn print_summary(
    json: bool,
    counts: &Counts,
    destination: &str,
    via_server: bool,
    report: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let line = serde_json::json!({"action": "summary", "verify": counts});
    super::output::write_report(report, &line)?;
    if json {
        super::stdout::line(line)?;
        return Ok(());
    }
    eprintln!(
        "verify: {}, {} checked at {}: {} ok, {}; {} not covered by --select{}",
        super::count(counts.references, "reference", "references"),
        counts.checked,
        destination,
        counts.ok,
        super::count(counts.problems, "problem", "problems"),
        counts.not_covered,
        if via_server {
            format!(
                "; {} downloaded through the Parse Server",
                super::count(counts.served_checked, "file", "files")
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
