//! What `rekey` shows: the progress line on a terminal, and the summary (text on stderr, or one
//! JSON object on stdout) and `--report FILE`. No key is ever in any of it: the summary holds
//! counts, names and forms (`plain`, `current`, `new`), never a key.

use std::sync::Arc;
use std::time::Duration;

use super::migrate::human_bytes;
use super::printable;
use crate::engine::rekey::{RekeyMode, RekeySummary, Tally};
use crate::engine::{Counters, RunState};

/// Print the summary and write `--report FILE`.
pub fn print_rekey(
    s: &RekeySummary,
    json: bool,
    report: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let tagged = super::migrate::Tagged {
        action: "summary",
        item: s,
    };
    super::output::write_report(report, &tagged)?;
    if json {
        super::stdout::line(serde_json::to_string(&tagged)?)?;
        return Ok(());
    }
    let t = |t: &Tally| format!("{:>8} files {:>10}", t.files, human_bytes(t.bytes));
    let mut out = format!(
        "rekey {} of {}{}\n",
        s.mode.as_str(),
        s.store,
        if s.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    out += &format!("  checked:              {:>8} files\n", s.files_checked);
    if s.mode == RekeyMode::Rotate {
        out += &format!("  new key:              {}\n", t(&s.new_key));
        out += &format!("  current key:          {}\n", t(&s.current_key));
        out += &format!("  undecryptable:        {}\n", t(&s.undecryptable));
    } else {
        out += &format!("  plaintext:            {}\n", t(&s.plaintext));
        out += &format!("  current key:          {}\n", t(&s.current_key));
    }
    out += &format!("  already in target:    {}\n", t(&s.already_done));
    let verb = if s.dry_run {
        "would rewrite:"
    } else {
        "rewritten:    "
    };
    out += &format!("  {verb}        {}\n", t(&s.rewritten));
    out += &format!(
        "  superseded (left):    {:>8}   stale versions {}: {}   failed: {}   settled from earlier runs: {}\n",
        s.superseded,
        if s.dry_run { "found" } else { "removed" },
        s.stale_versions,
        s.failed,
        s.settled
    );
    for f in &s.failures {
        out += &format!(
            "  failed: {}: {}\n",
            printable(&f.name),
            printable(&f.error)
        );
    }
    for n in &s.undecryptable_names {
        out += &format!("  undecryptable: {}\n", printable(n));
    }
    if let Some(why) = &s.stopped_by {
        out += &format!("  stopped by {why}; a re-run continues\n");
    }
    out += &format!("  took {:.1} s\n", s.elapsed_secs);
    eprint!("{out}");
    Ok(())
}

/// Show progress until the returned task is aborted.
/// Stop the progress line of [`spawn_progress`] and end it, so what follows starts on a line of
/// its own.
pub async fn end_progress(p: tokio::task::JoinHandle<()>) {
    p.abort();
    let _ = p.await;
    eprintln!();
}

pub fn spawn_progress(state: Arc<RunState>, total: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let g = Counters::get;
        loop {
            let c = &state.counters;
            let secs = state.started.elapsed().as_secs_f64().max(0.001);
            let bytes = g(&c.bytes_copied);
            eprint!(
                "\r\x1b[2Krekey: {}/~{total} checked · {} rewritten ({}, {}/s) · {} in flight · {} already done · {} failed",
                g(&c.objects),
                g(&c.files_copied),
                human_bytes(bytes),
                human_bytes((bytes as f64 / secs) as u64),
                g(&c.files_in_flight),
                g(&c.files_skipped),
                g(&c.files_failed),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
