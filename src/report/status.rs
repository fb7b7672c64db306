//! How `status` looks: a few short tables for people, or one JSON document.

use serde_json::{Value, json};

use super::migrate::human_bytes;
use crate::ledger::Status;

pub fn json(s: &Status) -> Value {
    json!({
        "files": s.files.iter().map(|(state, n, bytes)| json!({"state": state, "files": n, "bytes": bytes})).collect::<Vec<_>>(),
        "references": s.references.iter().map(|(class, state, n)| json!({"class": class, "state": state, "references": n})).collect::<Vec<_>>(),
        "problems": s.problems.iter().map(|(state, reason, n, example)| json!({"state": state, "reason": reason, "files": n, "example": example})).collect::<Vec<_>>(),
        "runs": s.runs,
        "unfinished_passes": s.walks.iter().map(|(scope, done, class, objects)| json!({"scope": scope, "classes_done": done, "walking": class, "objects_walked": objects})).collect::<Vec<_>>(),
    })
}

pub fn text(s: &Status) -> String {
    let mut t = String::new();
    if s.files.is_empty() && s.runs.is_empty() {
        return "The ledger is empty: no migration has run against this database yet \
                (or [ledger] points elsewhere).\n"
            .to_string();
    }
    t.push_str("FILES\n");
    for (state, n, bytes) in &s.files {
        t.push_str(&format!("  {state:<10} {n:>10}  {}\n", human_bytes(*bytes)));
    }
    t.push_str("REFERENCES\n");
    for (class, state, n) in &s.references {
        t.push_str(&format!("  {class:<24} {state:<12} {n:>10}\n"));
    }
    if !s.problems.is_empty() {
        t.push_str("PROBLEMS (by reason)\n");
        for (state, reason, n, example) in &s.problems {
            t.push_str(&format!(
                "  {state:<8} {n:>6}  {reason}  (e.g. {example})\n"
            ));
        }
    }
    if !s.walks.is_empty() {
        t.push_str("UNFINISHED PASSES (the next run continues the walk; --rescan starts over)\n");
        for (scope, done, class, objects) in &s.walks {
            t.push_str(&format!(
                "  shard {scope:<6} {done} classes done, {} objects walked{}\n",
                objects,
                class
                    .as_ref()
                    .map(|c| format!(", walking {}", super::printable(c)))
                    .unwrap_or_default()
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
