//! Writers for `audit`: one row per finding as it is found, then the summary — an aligned table
//! followed by the summary as text, JSON lines (`"finding": "orphan" | "dangling" | "superseded"
//! | "summary"`), or CSV (findings only; the summary goes to stderr as text).

use std::io::Write;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::json;

use crate::audit::{Finding, Summary};

/// Output formats of `audit`: those of `list`.
pub use super::list::ListFormat as AuditFormat;

/// One CSV row: every column of every finding, empty where it does not apply.
#[derive(Serialize)]
struct CsvRow<'a> {
    finding: &'static str,
    name: &'a str,
    size: Option<u64>,
    modified: Option<String>,
    class: Option<&'a str>,
    object_id: Option<&'a str>,
    path: Option<&'a str>,
    version: Option<&'a str>,
    /// Why an orphan's key looks like a broken `generateKey`'s output.
    note: Option<String>,
}

/// Streams findings to `out` in one format.
pub struct AuditWriter<W: Write> {
    out: Out<W>,
}

enum Out<W: Write> {
    Table(W),
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

const TABLE_WIDTHS: [usize; 5] = [10, 12, 20, 34, 0];

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

impl<W: Write> AuditWriter<W> {
    pub fn new(format: AuditFormat, out: W) -> std::io::Result<Self> {
        let mut out = match format {
            AuditFormat::Table => Out::Table(out),
            AuditFormat::Jsonl => Out::Jsonl(out),
            AuditFormat::Csv => Out::Csv(Box::new(csv::Writer::from_writer(out))),
        };
        if let Out::Table(w) = &mut out {
            table_line(w, ["FINDING", "SIZE", "MODIFIED", "WHERE", "NAME"])?;
        }
        Ok(AuditWriter { out })
    }

    pub fn write(&mut self, f: &Finding) -> std::io::Result<()> {
        let stored = |finding, name, size: &u64, modified: &Option<SystemTime>| CsvRow {
            finding,
            name,
            size: Some(*size),
            modified: rfc3339(*modified),
            class: None,
            object_id: None,
            path: None,
            version: None,
            note: None,
        };
        let row = match f {
            Finding::Orphan {
                name,
                size,
                modified,
            } => CsvRow {
                note: crate::audit::broken_generated_key(name)
                    .map(|s| format!("generateKey wrote {s:?}")),
                ..stored("orphan", name, size, modified)
            },
            Finding::Superseded {
                name,
                size,
                modified,
                version,
            } => CsvRow {
                version: version.as_deref(),
                ..stored("superseded", name, size, modified)
            },
            Finding::Dangling {
                class,
                object_id,
                path,
                name,
            } => CsvRow {
                finding: "dangling",
                name,
                size: None,
                modified: None,
                class: Some(class),
                object_id: Some(object_id),
                path: Some(path),
                version: None,
                note: None,
            },
        };
        match &mut self.out {
            Out::Csv(c) => c.serialize(&row).map_err(std::io::Error::other),
            Out::Jsonl(w) => {
                let mut v = json!({"finding": row.finding, "name": row.name});
                let fields = [
                    ("size", row.size.map(|s| json!(s))),
                    ("modified", row.modified.map(|m| json!(m))),
                    ("class", row.class.map(|c| json!(c))),
                    ("object_id", row.object_id.map(|o| json!(o))),
                    ("path", row.path.map(|p| json!(p))),
                    ("version", row.version.map(|v| json!(v))),
                    ("note", row.note.as_ref().map(|n| json!(n))),
                ];
                for (k, val) in fields {
                    if let Some(val) = val {
                        v[k] = val;
                    }
                }
                serde_json::to_writer(&mut *w, &v)?;
                w.write_all(b"\n")
            }
            Out::Table(w) => {
                let place = match (row.class, row.object_id, row.path, row.version) {
                    (Some(c), Some(o), Some(p), _) => format!("{c} {o} {p}"),
                    (_, _, _, Some(v)) => format!("version {v}"),
                    _ => row.note.clone().unwrap_or_default(),
                };
                let size = row.size.map(|s| s.to_string()).unwrap_or_default();
                let modified = row.modified.unwrap_or_default();
                table_line(w, [row.finding, &size, &modified, &place, row.name])
            }
        }
    }

    /// The summary: a JSON line, or text after the table (on stderr for CSV).
    pub fn summary(&mut self, store: &str, s: &Summary) -> std::io::Result<()> {
        match &mut self.out {
            Out::Jsonl(w) => {
                serde_json::to_writer(&mut *w, &summary_json(store, s))?;
                w.write_all(b"\n")
            }
            Out::Table(w) => summary_text(w, store, s),
            Out::Csv(_) => summary_text(&mut std::io::stderr().lock(), store, s),
        }
    }

    pub fn finish(self) -> std::io::Result<()> {
        match self.out {
            Out::Table(mut w) | Out::Jsonl(mut w) => w.flush(),
            Out::Csv(mut c) => c.flush(),
        }
    }
}

/// The summary as the last JSON line carries it (`"finding": "summary"`; also `--report`).
pub fn summary_json(store: &str, s: &Summary) -> serde_json::Value {
    let fields: Vec<_> = s
        .fields
        .iter()
        .map(|((class, field), b)| {
            json!({"class": class, "field": field, "references": b.references, "bytes": b.bytes})
        })
        .collect();
    json!({
        "finding": "summary",
        "store": store,
        "stored_files": s.stored_files,
        "stored_bytes": s.stored_bytes,
        "referenced_files": s.referenced_files,
        "references": s.references,
        "orphans": s.orphans,
        "orphan_bytes": s.orphan_bytes,
        "broken_keys": s.broken_keys,
        "dangling_references": s.dangling_references,
        "superseded_versions": s.superseded_versions,
        "superseded_bytes": s.superseded_bytes,
        "legacy_references": s.legacy_references,
        "legacy_unresolved": s.legacy_unresolved,
        "shared_files": s.shared_files,
        "relink": s.relink,
        "fields": fields,
    })
}

fn summary_text(w: &mut impl Write, store: &str, s: &Summary) -> std::io::Result<()> {
    writeln!(w, "\nAudit of {}", super::printable(store))?;
    let lines = [
        (
            "stored files",
            format!("{} ({} bytes)", s.stored_files, s.stored_bytes),
        ),
        ("referenced files", s.referenced_files.to_string()),
        (
            "shared files",
            format!("{} (referenced by several objects)", s.shared_files),
        ),
        ("references", s.references.to_string()),
        (
            "orphans",
            format!("{} ({} bytes)", s.orphans, s.orphan_bytes),
        ),
        ("dangling references", s.dangling_references.to_string()),
        (
            "superseded versions",
            format!("{} ({} bytes)", s.superseded_versions, s.superseded_bytes),
        ),
        (
            "legacy references",
            format!(
                "{} (hosted-Parse names; {} not in this store, served by the old hosts)",
                s.legacy_references, s.legacy_unresolved
            ),
        ),
    ];
    for (k, v) in lines {
        writeln!(w, "  {k:<21}{v}")?;
    }
    if s.broken_keys > 0 {
        writeln!(
            w,
            "  {:<21}{} orphans have a key a broken S3 adapter `generateKey` wrote (`undefined`, \
             `[object Promise]`…): their bytes may be what dangling references name",
            "broken keys", s.broken_keys
        )?;
    }
    if let Some(r) = s.relink.as_ref().filter(|_| s.dangling_references > 0) {
        writeln!(
            w,
            "  {:<21}{} dangling references ({} names) have exactly one orphan whose key ends in \
             /<name>: `relink` would point them at it; {} ({} names) have several, {} none",
            "relink",
            r.relinkable_references,
            r.relinkable_names,
            r.ambiguous_references,
            r.ambiguous_names,
            r.unmatched_references
        )?;
    }
    if !s.fields.is_empty() {
        writeln!(w, "  by class and field:")?;
        for ((class, field), b) in &s.fields {
            let cf = super::printable(&format!("{class}.{field}")).into_owned();
            writeln!(
                w,
                "    {cf:<30} {:>10} {:<10} {:>14} bytes",
                b.references,
                if b.references == 1 {
                    "reference"
                } else {
                    "references"
                },
                b.bytes
            )?;
        }
    }
    Ok(())
}

fn table_line(out: &mut impl Write, cols: [&str; 5]) -> std::io::Result<()> {
    let mut line = String::new();
    for (col, width) in cols.iter().zip(TABLE_WIDTHS) {
        let cell = super::printable(col);
        line.push_str(&cell);
        if width > 0 {
            let len = cell.chars().count();
            line.push_str(&" ".repeat(width.saturating_sub(len) + 2));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_writes_findings_and_the_summary() {
        let findings = [
            Finding::Orphan {
                name: "a\nb.txt".into(),
                size: 3,
                modified: Some(std::time::UNIX_EPOCH),
            },
            Finding::Dangling {
                class: "Photo".into(),
                object_id: "x1".into(),
                path: "meta.avatar".into(),
                name: "gone.jpg".into(),
            },
        ];
        let mut summary = Summary {
            orphans: 1,
            ..Default::default()
        };
        summary
            .fields
            .insert(("Photo".into(), "image".into()), Default::default());
        for (format, wants) in [
            (
                AuditFormat::Jsonl,
                &[
                    r#"{"finding":"orphan","name":"a\nb.txt","size":3,"modified":"1970-01-01T00:00:00Z"}"#,
                    r#""finding":"dangling""#,
                    r#""finding":"summary""#,
                ][..],
            ),
            (
                AuditFormat::Csv,
                &[
                    "finding,name,size,modified,class,object_id,path,version,note",
                    "dangling,gone.jpg,,,Photo,x1,meta.avatar,",
                ][..],
            ),
            (
                AuditFormat::Table,
                &[
                    "orphan",
                    "a\\nb.txt",
                    "Photo x1 meta.avatar",
                    "Photo.image",
                    "orphans",
                ][..],
            ),
        ] {
            let mut buf = Vec::new();
            let mut w = AuditWriter::new(format, &mut buf).unwrap();
            for f in &findings {
                w.write(f).unwrap();
            }
            w.summary("fs /x", &summary).unwrap();
            w.finish().unwrap();
            let out = String::from_utf8(buf).unwrap();
            for want in wants {
                assert!(out.contains(want), "{format:?}: {want} not in\n{out}");
            }
        }
    }
}
