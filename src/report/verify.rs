//! How `verify` looks: one line per reference with a problem (JSON on a pipe), then a summary
//! (JSON on stdout, or a sentence on stderr).

use crate::engine::verify::{Counts, Finding};

/// One finding, on stdout.
pub fn print_finding(json: bool, f: &Finding) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(f)?);
    } else {
        println!(
            "{:<14} {} {} {}: {} ({})",
            f.problem.as_str(),
            f.class,
            super::printable(&f.object_id),
            super::printable(&f.path),
            super::printable(&f.name),
            super::printable(&f.detail)
        );
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
        println!("{line}");
        return Ok(());
    }
    eprintln!(
        "verify: {} references, {} checked at {}: {} ok, {} problems; {} not covered by --select{}",
        counts.references,
        counts.checked,
        destination,
        counts.ok,
        counts.problems,
        counts.not_covered,
        if via_server {
            format!(
                "; {} files downloaded through the Parse Server",
                counts.served_checked
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
