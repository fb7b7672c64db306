//! What `migrate --estimate` shows: the sizing of the work (files and bytes per class field and
//! per kind, the largest files, files missing already, the rate, the projected duration and
//! memory), as text or as one JSON line (`"action": "estimate"`) on stdout.

use std::io::Write;

use super::migrate::{MigrateFormat, human_bytes};
use super::printable;
use crate::engine::pipeline::estimate::{Estimate, Group};

/// Write the estimate in `format`.
pub fn write(format: MigrateFormat, e: &Estimate, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        MigrateFormat::Jsonl => {
            let mut v = serde_json::to_value(e)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("action".into(), "estimate".into());
                let mem = memory_total(e);
                o.insert("memory_projected_bytes".into(), mem.into());
            }
            writeln!(out, "{v}")
        }
        MigrateFormat::Text => out.write_all(text(e).as_bytes()),
    }
}

/// The projected peak memory: the base (measured) plus the transfers' buffers.
fn memory_total(e: &Estimate) -> Option<u64> {
    Some(e.memory.base_bytes? + e.memory.transfers_bytes)
}

/// `3 h 02 min`, `4 min 10 s`, `12.5 s`.
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() {
        return "unknown".into();
    }
    let whole = s.round() as u64;
    match whole {
        0..60 => format!("{s:.1} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

fn group_line(label: &str, g: &Group) -> String {
    let mut line = format!(
        "    {:<32} {:>9} files {:>11}",
        printable(label),
        g.files,
        human_bytes(g.bytes)
    );
    if g.missing > 0 {
        line.push_str(&format!("   missing {}", g.missing));
    }
    line + "\n"
}

fn text(e: &Estimate) -> String {
    let mut t = String::from("Estimate (a dry run: nothing was written)\n");
    let approx = if e.sampled { "~" } else { "" };
    if e.sampled {
        t += &format!(
            "  files to copy:    {} (sizes probed for a random sample of {})\n",
            e.files, e.probed
        );
    } else {
        t += &format!("  files to copy:    {} (every one probed)\n", e.files);
    }
    t += &format!("  bytes:            {approx}{}\n", human_bytes(e.bytes));
    if e.sampled {
        t += &format!(
            "  missing already:  {} of the sample (~{} of all)\n",
            e.missing, e.missing_projected
        );
    } else {
        t += &format!(
            "  missing already:  {} (listed in the summary)\n",
            e.missing
        );
    }
    if e.probe_errors > 0 {
        t += &format!(
            "  probe errors:     {} (not counted in the bytes)\n",
            e.probe_errors
        );
    }
    t += "  by class field (probed files):\n";
    for (field, g) in &e.by_field {
        t += &group_line(field, g);
    }
    t += "  by kind (probed files):\n";
    for (kind, g) in &e.by_kind {
        t += &group_line(kind, g);
    }
    if !e.largest.is_empty() {
        t += "  largest files:\n";
        for f in &e.largest {
            t += &format!(
                "    {:>11}  {}  ({})\n",
                human_bytes(f.size),
                printable(&f.name),
                printable(&f.field)
            );
        }
    }
    match (&e.rate_measured, &e.rate) {
        (Some(m), _) => {
            t += &format!(
                "  rate measured:    {}, {} read from the sources in {} at concurrency {}{}\n",
                super::count(m.files, "file", "files"),
                human_bytes(m.bytes),
                human_secs(m.secs),
                e.concurrency,
                if m.failed > 0 {
                    format!(" ({} failed)", super::count(m.failed, "read", "reads"))
                } else {
                    String::new()
                }
            )
        }
        (None, Some(_)) => t += "  rate:             as given by --assume-rate\n",
        (None, None) => {}
    }
    if let Some(r) = &e.rate {
        let mut parts = Vec::new();
        if let Some(f) = r.files_per_sec {
            parts.push(format!("{f:.1} files/s"));
        }
        if let Some(b) = r.bytes_per_sec {
            parts.push(format!("{}/s", human_bytes(b as u64)));
        }
        t += &format!("                    {}\n", parts.join(", "));
    }
    match e.projected_secs {
        Some(s) => {
            t += &format!(
                "  projected copy:   {approx}{} (reading the sources; writing the destination and \
                 rewriting references come on top)\n",
                human_secs(s)
            )
        }
        None => t += "  projected copy:   unknown (no file could be read to measure a rate)\n",
    }
    let per = human_bytes(e.memory.per_transfer_bytes);
    t += &match memory_total(e) {
        Some(total) => format!(
            "  memory needed:    about {} at concurrency {} ({} now + up to {per} per transfer)\n",
            human_bytes(total),
            e.concurrency,
            human_bytes(e.memory.base_bytes.unwrap_or(0)),
        ),
        None => format!(
            "  memory needed:    up to {per} per transfer at concurrency {} (the base could not be read)\n",
            e.concurrency
        ),
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_secs(12.54), "12.5 s");
        assert_eq!(human_secs(250.0), "4 min 10 s");
        assert_eq!(human_secs(3.0 * 3600.0 + 125.0), "3 h 02 min");
        assert_eq!(human_secs(f64::INFINITY), "unknown");
    }
}
