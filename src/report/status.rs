//! How `status` looks: a few short tables for people, or one JSON document on one line.

use super::migrate::human_bytes;
use crate::ledger::Status;

/// The status as one JSON document on one line (its shape is [`Status`]'s).
/// `status` on stdout: one JSON document, or the text.
pub fn print(s: &Status, json_output: bool) -> anyhow::Result<()> {
    if json_output {
        super::stdout::line(json(s)?)?;
    } else {
        std::io::Write::write_all(&mut super::stdout::stdout(), text(s).as_bytes())?;
    }
    Ok(())
}

pub fn json(s: &Status) -> serde_json::Result<String> {
    serde_json::to_string(s)
}

pub fn text(s: &Status) -> String {
    let mut t = String::new();
    if s.files.is_empty() && s.runs.is_empty() {
        return "The ledger is empty: no migration has run against this database yet \
                (or [ledger] points elsewhere).\n"
            .to_string();
    }
    t.push_str("FILES\n");
    for f in &s.files {
        let (state, n) = (&f.state, f.files);
        t.push_str(&format!(
            "  {state:<10} {n:>10}  {}\n",
            human_bytes(f.bytes)
        ));
    }
    t.push_str("REFERENCES\n");
    for r in &s.references {
        let (class, state, n) = (&r.class, &r.state, r.references);
        t.push_str(&format!("  {class:<24} {state:<12} {n:>10}\n"));
    }
    if !s.problems.is_empty() {
        t.push_str("PROBLEMS (by reason)\n");
        for p in &s.problems {
            let (state, reason, n, example) = (&p.state, &p.reason, p.files, &p.example);
            t.push_str(&format!(
                "  {state:<8} {n:>6}  {reason}  (e.g. {example})\n"
            ));
        }
    }
    if !s.unfinished_passes.is_empty() {
        t.push_str("UNFINISHED PASSES (the next run continues the walk; --rescan starts over)\n");
        for w in &s.unfinished_passes {
            let (scope, done) = (&w.scope, w.classes_done);
            t.push_str(&format!(
                "  shard {scope:<6} {} done, {} walked{}\n",
                super::count(done, "class", "classes"),
                super::count(w.objects_walked, "object", "objects"),
                w.walking
                    .as_ref()
                    .map(|c| format!(", walking {}", super::printable(c)))
                    .unwrap_or_default()
            ));
        }
    }
    let d = &s.debris;
    if d.runs_swept > 0 || d.runs_unswept > 0 || d.runs_not_sweepable > 0 {
        t.push_str("DEBRIS OF KILLED RUNS (unfinished uploads a kill -9 left)\n");
        t.push_str(&format!(
            "  removed {} ({}) left by {}\n",
            super::count(d.uploads_removed, "upload", "uploads"),
            super::count(d.chunks_removed, "GridFS chunk", "GridFS chunks"),
            super::count(d.runs_swept, "killed run", "killed runs")
        ));
        if d.runs_not_sweepable > 0 {
            t.push_str(&format!(
                "  {} wrote where nothing is swept (fs: temp files of dead processes are \
                 removed at start; GCS: an unfinished upload expires in a week)\n",
                super::count(d.runs_not_sweepable, "killed run", "killed runs")
            ));
        }
        if d.runs_unswept > 0 {
            t.push_str(&format!(
                "  {} not swept yet: the next writing run to the same destination removes \
                 what is left (migrate --dry-run counts it)\n",
                super::count(d.runs_unswept, "killed run", "killed runs")
            ));
        }
    }
    t.push_str("RECENT RUNS\n");
    for r in &s.runs {
        let date = |k: &str| {
            r[k]["$date"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "-".into())
        };
        t.push_str(&format!(
            "  {}  {}  host {}  shard {}  exit {}  copied {}  rewritten {}\n",
            date("started_at"),
            date("finished_at"),
            r["host"].as_str().unwrap_or("?"),
            r["shard"].as_str().unwrap_or("all"),
            r["exit_code"]
                .as_i64()
                .map_or("running/crashed".to_string(), |c| c.to_string()),
            r["summary"]["files"]["copied"].as_u64().unwrap_or(0),
            r["summary"]["references"]["rewritten"]
                .as_u64()
                .unwrap_or(0),
        ));
    }
    t
}
