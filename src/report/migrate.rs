//! What `migrate` shows: the dry-run plan (one line per planned copy and per planned document
//! update, text or JSONL on stdout), the confirmation text, and the end-of-run summary (readable
//! text on stderr, or one JSON object on stdout).

use std::io::Write;

use serde::Serialize;

use super::{count, printable};
use crate::cli::MigrateOutput;
use crate::engine::Summary;
use crate::engine::dry::{PlanSink, PlannedCopy, PlannedMove, PlannedUpdate};
use crate::engine::rollback::Counts;
use crate::ledger::KEY_PLACEHOLDER;
use crate::secret::{Scrubber, Secret};

/// Output format of `migrate` (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateFormat {
    /// Plan lines on stdout, the summary as text on stderr.
    Text,
    /// One JSON object per line on stdout: plan actions, then the summary.
    Jsonl,
}

impl MigrateFormat {
    /// `--output` of `command` (text or JSON lines: [`super::output::resolve`]).
    pub fn choose(output: Option<MigrateOutput>, command: &str) -> anyhow::Result<MigrateFormat> {
        Ok(if super::output::jsonl(output, command)? {
            MigrateFormat::Jsonl
        } else {
            MigrateFormat::Text
        })
    }
}

/// A summary or plan line: `{"action": …, …item}`.
#[derive(Serialize)]
pub(super) struct Tagged<'a, T: Serialize> {
    pub action: &'a str,
    #[serde(flatten)]
    pub item: &'a T,
}

/// Streams the plan of a dry run. Every line is scrubbed of the secret it is given (the fileKey,
/// which hosted-era urls embed, raw or percent-encoded) before it is written: each JSON string
/// decoded, and each text line with the key's escaped forms too ([`Scrubber`]).
pub struct PlanWriter {
    format: MigrateFormat,
    out: Box<dyn Write + Send>,
    secret: Option<Scrubber>,
}

impl PlanWriter {
    pub fn new(
        format: MigrateFormat,
        out: Box<dyn Write + Send>,
        secret: Option<Secret>,
    ) -> PlanWriter {
        PlanWriter {
            format,
            out,
            secret: secret.and_then(|s| Scrubber::new(s.expose())),
        }
    }

    fn json<T: Serialize>(&mut self, action: &str, item: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_string(&Tagged { action, item })?;
        if let Some(s) = &self.secret {
            line = s.scrub_json(&line, KEY_PLACEHOLDER);
        }
        writeln!(self.out, "{line}")
    }

    fn line(&mut self, line: String) -> std::io::Result<()> {
        let line = match &self.secret {
            Some(s) => s.scrub(&line, KEY_PLACEHOLDER),
            None => line.into(),
        };
        writeln!(self.out, "{line}")
    }

    /// `text` without the key, before it is cut to an excerpt (which could keep part of it).
    fn scrubbed<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.secret {
            Some(s) => s.scrub(text, KEY_PLACEHOLDER),
            None => text.into(),
        }
    }
}

impl PlanSink for PlanWriter {
    fn copy(&mut self, c: &PlannedCopy) -> std::io::Result<()> {
        match self.format {
            MigrateFormat::Jsonl => self.json("copy", c),
            MigrateFormat::Text => self.line(format!(
                "copy    {} -> {}",
                printable(c.source.unwrap_or(c.name)),
                printable(c.destination.unwrap_or(c.target))
            )),
        }
    }

    fn update(&mut self, u: &PlannedUpdate) -> std::io::Result<()> {
        match self.format {
            MigrateFormat::Jsonl => self.json("update", u),
            MigrateFormat::Text if u.old.is_text() || u.new.is_text() => {
                let (before, after) = excerpt(
                    &self.scrubbed(u.old.text.as_deref().unwrap_or("")),
                    &self.scrubbed(u.new.text.as_deref().unwrap_or("")),
                );
                self.line(format!(
                    "update  {} {} {} (string):\n  - {before}\n  + {after}",
                    u.class,
                    printable(&u.object_id),
                    printable(u.path),
                ))
            }
            MigrateFormat::Text => {
                let mut line = format!(
                    "update  {} {} {}: {:?} -> {:?}",
                    u.class,
                    printable(&u.object_id),
                    printable(u.path),
                    u.old.name,
                    u.new.name
                );
                if u.new.url != u.old.url {
                    match &u.new.url {
                        Some(url) => line.push_str(&format!(" (url {})", printable(url))),
                        None => line.push_str(" (url removed)"),
                    }
                }
                self.line(line)
            }
        }
    }

    fn deletion(&mut self, location: &str) -> std::io::Result<()> {
        match self.format {
            MigrateFormat::Jsonl => self.json("delete", &serde_json::json!({"location": location})),
            MigrateFormat::Text => self.line(format!("delete  {location}")),
        }
    }

    fn relocate(&mut self, m: &PlannedMove) -> std::io::Result<()> {
        match self.format {
            MigrateFormat::Jsonl => self.json(m.action, m),
            MigrateFormat::Text => {
                let mut line = format!("{} {}", m.action, printable(m.from));
                if let Some(to) = m.to {
                    line.push_str(&format!(" -> {}", printable(to)));
                }
                self.line(line)
            }
        }
    }
}

/// Context kept on each side of a string change in the dry-run plan.
const EXCERPT_CONTEXT: usize = 30;

/// The part of a string that changes, before and after, with a little context either side
/// (`…` where cut) and every control character escaped for the terminal.
pub fn excerpt(old: &str, new: &str) -> (String, String) {
    let prefix = old
        .char_indices()
        .zip(new.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((i, _), _)| i);
    let suffix = old[prefix..]
        .chars()
        .rev()
        .zip(new[prefix..].chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    let cut = |s: &str| {
        let end = s.len() - suffix;
        let from = s[..prefix]
            .char_indices()
            .rev()
            .nth(EXCERPT_CONTEXT - 1)
            .map_or(0, |(i, _)| i);
        let to = s[end..]
            .char_indices()
            .nth(EXCERPT_CONTEXT)
            .map_or(s.len(), |(i, _)| end + i);
        let mut out = String::new();
        if from > 0 {
            out.push('…');
        }
        out.push_str(&printable(&s[from..to]));
        if to < s.len() {
            out.push('…');
        }
        out
    };
    (cut(old), cut(new))
}

/// Print the summary (JSON on stdout, or text on stderr) and write `--report FILE`.
pub fn print_summary(
    format: MigrateFormat,
    summary: &Summary,
    report: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    match format {
        MigrateFormat::Jsonl => super::stdout::line(summary_json(summary)?)?,
        MigrateFormat::Text => eprint!("{}", summary_text(summary)),
    }
    super::output::write_report(
        report,
        &Tagged {
            action: "summary",
            item: summary,
        },
    )?;
    Ok(())
}

/// Print what `rollback` did (one JSON line on stdout, or a sentence on stderr); write
/// `--report FILE`.
pub fn print_rollback(
    format: MigrateFormat,
    dry_run: bool,
    counts: &Counts,
    report: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let json = serde_json::json!({"action": "summary", "dry_run": dry_run, "rollback": counts});
    super::output::write_report(report, &json)?;
    match format {
        MigrateFormat::Jsonl => super::stdout::line(json)?,
        MigrateFormat::Text => {
            // A dry run restores and deletes nothing: it says what a real run would do, as
            // migrate's dry run does.
            let would = if dry_run { "would be " } else { "" };
            eprintln!(
                "rollback{}: {} {would}restored, {} (changed since; left alone), {} failed; {} \
                 {would}deleted, {} kept",
                if dry_run { " (dry run)" } else { "" },
                count(counts.restored, "reference", "references"),
                count(counts.conflicts, "conflict", "conflicts"),
                counts.failed,
                count(counts.copies_deleted, "copy", "copies"),
                counts.copies_kept
            );
            if counts.originals_missing > 0 {
                eprintln!(
                    "  {} left on the copy: the original is gone from its store",
                    count(counts.originals_missing, "reference", "references")
                );
            }
        }
    }
    Ok(())
}

/// The summary as one JSON line (`{"action":"summary",…}`), for `--output jsonl`.
pub fn summary_json(summary: &Summary) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&Tagged {
        action: "summary",
        item: summary,
    })?)
}

/// The summary for people, on several short lines.
pub fn summary_text(s: &Summary) -> String {
    let mut t = String::new();
    let would = if s.dry_run { "would be " } else { "" };
    let f = &s.files;
    let r = &s.references;
    t.push_str(&format!(
        "{} in {:.1} s: {} scanned, {} found\n",
        if s.dry_run { "dry run" } else { "migration" },
        s.duration_secs,
        count(s.objects_scanned, "object", "objects"),
        count(s.references_found, "file reference", "file references")
    ));
    if s.dry_run {
        t.push_str(&format!(
            "  files:      {} would be copied, {} already done\n",
            f.planned, f.skipped
        ));
    } else {
        t.push_str(&format!(
            "  files:      {} copied ({}, {:.1} files/s, {}/s), {} already done, {} missing, {} failed\n",
            f.copied,
            human_bytes(s.bytes_copied),
            s.files_per_sec,
            human_bytes(s.bytes_per_sec as u64),
            f.skipped,
            f.missing,
            f.failed
        ));
        if f.server_side > 0 {
            t.push_str(&format!(
                "  server-side: {} copied by the store's server (no byte through this tool)\n",
                count(f.server_side, "file", "files")
            ));
        }
        if f.collisions > 0 {
            t.push_str(&format!(
                "  collisions: {} already held other bytes at the destination: not overwritten\n",
                count(f.collisions, "target", "targets")
            ));
        }
        if f.retries > 0 {
            t.push_str(&format!(
                "  retries:    {} failed attempts were made again (timeouts, resets, 5xx, throttling; see the log)\n",
                f.retries
            ));
        }
    }
    // Shown only when there are some: a re-run after a migration (see `RefCounts`).
    let migrated = if r.migrated_before > 0 {
        format!(", {} already migrated", r.migrated_before)
    } else {
        String::new()
    };
    t.push_str(&format!(
        "  references: {} {}rewritten{migrated}, {} already right, {}, {} failed, {} left untouched, {} not selected\n",
        r.rewritten,
        would,
        r.unchanged,
        count(r.conflicts, "conflict", "conflicts"),
        r.failed,
        r.left_untouched,
        r.not_selected
    ));
    let db = &s.database;
    if db.write_batches > 0 || db.throttled() {
        t.push_str(&format!(
            "  database:   {}, latency p50 {} ms, p90 {} ms, max {} ms",
            count(db.write_batches, "write batch", "write batches"),
            db.latency_ms_p50,
            db.latency_ms_p90,
            db.latency_ms_max,
        ));
        // The throttled time where a limit could have throttled (or did).
        let limited = db.limits.max_db_latency.is_some() || db.limits.max_repl_lag.is_some();
        if limited || db.throttled() {
            t.push_str(&format!(
                "; throttled {:.1} s (db latency), {:.1} s (replication lag)",
                db.throttled_secs.db_latency, db.throttled_secs.repl_lag
            ));
        }
        t.push('\n');
    }
    if s.malformed_values > 0 {
        t.push_str(&format!(
            "  malformed:  {} could not be read as files (logged above)\n",
            count(s.malformed_values, "value", "values")
        ));
    }
    for (what, items) in [
        ("missing:", &s.items.missing),
        ("failed: ", &s.items.failed),
        ("collision:", &s.items.collisions),
    ] {
        for m in items.iter().take(20) {
            t.push_str(&format!(
                "  {what} {} ({}): {}\n",
                printable(&m.name),
                count(m.references, "reference", "references"),
                printable(&m.reason)
            ));
        }
    }
    for c in s
        .items
        .conflicts
        .iter()
        .chain(&s.items.failed_references)
        .take(20)
    {
        t.push_str(&format!(
            "  not rewritten: {} {} {} ({}): {}\n",
            c.class,
            printable(&c.object_id),
            printable(&c.path),
            printable(&c.name),
            printable(&c.reason)
        ));
    }
    let listed = s.items.missing.len().min(20)
        + s.items.failed.len().min(20)
        + s.items.collisions.len().min(20)
        + (s.items.conflicts.len() + s.items.failed_references.len()).min(20);
    let all = s.items.missing.len()
        + s.items.failed.len()
        + s.items.collisions.len()
        + s.items.conflicts.len()
        + s.items.failed_references.len()
        + s.items.truncated as usize;
    if all > listed {
        t.push_str(&format!(
            "  … {} more (see --report, or the ledger)\n",
            all - listed
        ));
    }
    if s.stopped_by_errors() {
        t.push_str(&format!(
            "  stopped at {}: too many failures; fix their cause (above), then run again\n",
            s.stopped_by.as_deref().unwrap_or_default()
        ));
    } else if s.exit_code() == crate::exit::UNREACHABLE {
        t.push_str(&format!(
            "  stopped: {}; fix what it says, then run again to continue\n",
            s.stopped_by.as_deref().unwrap_or_default()
        ));
    } else if s.exit_code() == crate::exit::NO_SPACE {
        t.push_str(&format!(
            "  stopped: {}; make room (or move the destination), then run again to continue\n",
            s.stopped_by.as_deref().unwrap_or_default()
        ));
    } else if let Some(stop) = &s.stopped_by {
        t.push_str(&format!(
            "  stopped at {stop}: run the same command again to continue\n"
        ));
    } else if s.incomplete() && !s.dry_run {
        t.push_str("  incomplete: fix the causes above and run again (--retry-failed also retries missing files)\n");
    }
    t
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::RefValue;

    #[test]
    fn a_string_change_shows_its_changed_part_escaped() {
        let old = format!(
            "{}\nsrc=\"http://files.parsetfss.com/K/tfss-a.jpg\" end\x1b[2J",
            "x".repeat(80)
        );
        let new = old.replace(
            "http://files.parsetfss.com/K/tfss-a.jpg",
            "https://n/files/a/h_a.jpg",
        );
        let (b, a) = excerpt(&old, &new);
        assert!(
            b.starts_with('…') && !b.contains('\n') && !b.contains('\x1b'),
            "{b}"
        );
        assert!(b.contains("files.parsetfss.com/K/tfss-a.jpg"), "{b}");
        assert!(a.contains("https://n/files/a/h_a.jpg\" end"), "{a}");
        assert!(a.contains("\\u{1b}"), "{a}");
        assert_eq!(excerpt("same", "same"), ("same".into(), "same".into()));
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    /// What a [`PlanWriter`] wrote, shared with the test.
    struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The update of `Photo` `o1`'s `image` from `old` to `new`.
    fn update_of<'a>(old: &'a RefValue, new: &'a RefValue) -> PlannedUpdate<'a> {
        PlannedUpdate {
            class: "Photo",
            object_id: "o1".into(),
            path: "image",
            old,
            new,
        }
    }

    /// The plan of `u` and `c` in both formats, written with `key` to scrub.
    fn plan_with_key(u: &PlannedUpdate, c: &PlannedCopy, key: &str) -> String {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for format in [MigrateFormat::Jsonl, MigrateFormat::Text] {
            let mut w = PlanWriter::new(format, Box::new(W(buf.clone())), Some(key.into()));
            w.update(u).unwrap();
            w.copy(c).unwrap();
        }
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    /// Review "minor leaks": a key holding `"` or `\` was JSON-escaped in the line, and one
    /// percent-encoded in a stored url was written as is.
    #[test]
    fn the_key_is_scrubbed_escaped_and_encoded() {
        let key = "k\"e\\y/1";
        let encoded = crate::parse::names::encode_uri_component(key);
        let old = RefValue {
            url: Some(format!("http://files.parsetfss.com/{encoded}/tfss-a.jpg")),
            ..RefValue::name(format!("tfss-{key}.jpg"))
        };
        let new = RefValue::name("h_x.jpg");
        let u = update_of(&old, &new);
        let src = format!("http://files.parsetfss.com/{key}/tfss-a.jpg");
        let c = PlannedCopy {
            name: "tfss-a.jpg",
            kind: "tfss",
            source: Some(&src),
            target: "h_x.jpg",
            destination: None,
        };
        let out = plan_with_key(&u, &c, key);
        for leak in [key, &encoded, "k\\\"e", "e\\\\y"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(out.contains("parsetfss.com/{file_key}/tfss-a.jpg"), "{out}");
        for line in out.lines().filter(|l| l.starts_with('{')) {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    proptest::proptest! {
        /// A key (marked by a `K` nothing else in the plan holds) written raw, percent-encoded
        /// or in a long string cut to an excerpt, never reaches the plan, in either format, and
        /// JSON lines stay JSON.
        #[test]
        fn no_form_of_the_key_reaches_the_plan(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    (0x20u8..0x7f).prop_map(char::from),
                    proptest::sample::select(vec!['é', '中', '🔑', '\u{1b}', '\n', '\u{301}']),
                ],
                5..20,
            ).prop_map(String::from_iter),
            encode in proptest::bool::ANY,
            pad in 0..80usize,
        ) {
            let key = format!("K{body}");
            let in_url = if encode {
                crate::parse::names::encode_uri_component(&key)
            } else {
                key.clone()
            };
            let url = format!("http://files.parsetfss.com/{in_url}/tfss-a.jpg");
            let text = format!("{}<img src=\"{url}\">{}", "x".repeat(pad), "y".repeat(pad));
            let old = RefValue {
                url: Some(url.clone()),
                ..RefValue::name("tfss-a.jpg")
            };
            let old_text = RefValue {
                text: Some(text.clone()),
                ..RefValue::name("tfss-a.jpg")
            };
            let new_text = RefValue {
                text: Some(text.replace(&url, "https://n/files/a/h_a.jpg")),
                ..RefValue::name("h_a.jpg")
            };
            let new = RefValue::name("h_a.jpg");
            let c = PlannedCopy {
                name: "tfss-a.jpg",
                kind: "tfss",
                source: Some(&url),
                target: "h_a.jpg",
                destination: None,
            };
            for (o, n) in [(&old, &new), (&old_text, &new_text)] {
                let out = plan_with_key(&update_of(o, n), &c, &key);
                prop_assert!(
                    !out.contains('K') && !out.to_ascii_uppercase().contains("%4B"),
                    "{out}"
                );
                for line in out.lines().filter(|l| l.starts_with('{')) {
                    prop_assert!(
                        serde_json::from_str::<serde_json::Value>(line).is_ok(),
                        "{line}"
                    );
                }
            }
        }
    }

    #[test]
    fn plan_lines_in_both_formats() {
        let old = RefValue::name("tfss-a-x.jpg");
        let new = RefValue::name("h_x.jpg");
        let u = update_of(&old, &new);
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = PlanWriter::new(MigrateFormat::Jsonl, Box::new(W(buf.clone())), None);
        w.update(&u).unwrap();
        let mut t = PlanWriter::new(MigrateFormat::Text, Box::new(W(buf.clone())), None);
        t.update(&u).unwrap();
        let s = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let mut lines = s.lines();
        let j: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(j["action"], "update");
        assert_eq!(j["old"]["name"], "tfss-a-x.jpg");
        assert_eq!(j["new"]["name"], "h_x.jpg");
        assert_eq!(
            lines.next().unwrap(),
            r#"update  Photo o1 image: "tfss-a-x.jpg" -> "h_x.jpg""#
        );
    }
}
