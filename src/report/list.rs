//! Writers for `list`: one row per reference, as an aligned table, JSON lines or CSV.
//!
//! Rows are written as they come (streaming): the table uses fixed column widths instead of
//! measuring every row first, so memory never grows with the number of references.

use std::io::Write;

use serde::Serialize;

/// One row of `list` (the JSONL schema in the product contract).
#[derive(Debug, Clone, Serialize)]
pub struct ListRow {
    pub class: String,
    pub object_id: String,
    pub path: String,
    pub name: String,
    pub kind: &'static str,
    pub nested: bool,
    /// Where the bytes are read from (no secrets: a `fileKey` in a URL shows as `{file_key}`).
    pub source: Option<String>,
    pub target_name: String,
    /// Where the reference stands in the ledger: `pending`, `copied`, `rewritten`, `missing`,
    /// `failed` or `conflict` (`commands::list`).
    pub status: &'static str,
    /// The reference is a URL inside a string (`--strings`); `url` is that URL, with a
    /// `fileKey` in it shown as `{file_key}`.
    pub in_string: bool,
    pub url: Option<String>,
}

/// Output formats of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Jsonl,
    Csv,
}

impl ListFormat {
    /// `--output` of `command` (`list`, `audit`: [`super::output::resolve`]).
    pub fn choose(
        output: Option<crate::cli::ListOutput>,
        command: &str,
    ) -> anyhow::Result<ListFormat> {
        use super::output::{Format, Forms, resolve};
        Ok(match resolve(output, command, Forms::WithCsv)? {
            Format::Text => ListFormat::Table,
            Format::Jsonl => ListFormat::Jsonl,
            Format::Csv => ListFormat::Csv,
        })
    }
}

/// Streams rows to `out` in one format.
pub struct ListWriter<W: Write> {
    out: Out<W>,
    rows: u64,
}

enum Out<W: Write> {
    Table(W),
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

const TABLE_WIDTHS: [usize; 6] = [18, 12, 22, 12, 9, 0];

impl<W: Write> ListWriter<W> {
    pub fn new(format: ListFormat, out: W) -> std::io::Result<Self> {
        let mut out = match format {
            ListFormat::Table => Out::Table(out),
            ListFormat::Jsonl => Out::Jsonl(out),
            ListFormat::Csv => Out::Csv(Box::new(csv::Writer::from_writer(out))),
        };
        if let Out::Table(w) = &mut out {
            table_line(w, &["CLASS", "OBJECT_ID", "PATH", "KIND", "STATUS", "NAME"])?;
        }
        Ok(ListWriter { out, rows: 0 })
    }

    pub fn write(&mut self, row: &ListRow) -> std::io::Result<()> {
        self.rows += 1;
        match &mut self.out {
            Out::Jsonl(w) => {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")
            }
            Out::Csv(c) => c.serialize(row).map_err(csv_error),
            Out::Table(w) => {
                let name = if row.target_name != row.name {
                    format!("{} -> {}", row.name, row.target_name)
                } else {
                    row.name.clone()
                };
                table_line(
                    w,
                    &[
                        &row.class,
                        &row.object_id,
                        &row.path,
                        row.kind,
                        row.status,
                        &name,
                    ],
                )
            }
        }
    }

    /// Flush and return the number of rows written.
    pub fn finish(self) -> std::io::Result<u64> {
        match self.out {
            Out::Table(mut w) | Out::Jsonl(mut w) => w.flush()?,
            Out::Csv(mut c) => c.flush()?,
        }
        Ok(self.rows)
    }
}

/// A CSV error as an `io::Error`: a failed write stays the `io::Error` it was, so that a closed
/// stdout is still recognised as one ([`super::stdout::closed`]).
fn csv_error(e: csv::Error) -> std::io::Error {
    if !e.is_io_error() {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

fn table_line(out: &mut impl Write, cols: &[&str; 6]) -> std::io::Result<()> {
    let mut line = String::new();
    for (col, width) in cols.iter().zip(TABLE_WIDTHS) {
        let cell = super::printable(col);
        if width == 0 {
            line.push_str(&cell);
        } else {
            let cell = truncate(&cell, width);
            let len = cell.chars().count();
            line.push_str(&cell);
            line.push_str(&" ".repeat(width.saturating_sub(len) + 2));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn row() -> ListRow {
        ListRow {
            class: "Photo".into(),
            object_id: "a1".into(),
            path: "image".into(),
            name: "tfss-x\n.jpg".into(),
            kind: "parse-hosted",
            nested: false,
            source: None,
            target_name: "abc_x.jpg".into(),
            status: "pending",
            in_string: false,
            url: None,
        }
    }

    /// A pipe whose reader has gone, as [`super::super::stdout`] reports it.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(crate::report::stdout::mark(
                std::io::ErrorKind::BrokenPipe.into(),
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_is_recognised_in_every_format() {
        for format in [ListFormat::Jsonl, ListFormat::Csv, ListFormat::Table] {
            // Enough rows to pass any buffer (csv's is 8 KiB), so the error comes from `write`.
            let err = ListWriter::new(format, Closed).and_then(|mut w| {
                (0..1000).try_for_each(|_| w.write(&row()))?;
                w.finish().map(drop)
            });
            let err = anyhow::Error::from(err.expect_err("a closed pipe"));
            assert!(crate::report::stdout::closed(&err), "{format:?}: {err:?}");
        }
    }

    #[test]
    fn formats() {
        for (format, want) in [
            (ListFormat::Jsonl, "\"path\":\"image\""),
            (
                ListFormat::Csv,
                "class,object_id,path,name,kind,nested,source,target_name,status",
            ),
            (ListFormat::Table, "tfss-x\\n.jpg -> abc_x.jpg"),
        ] {
            let buf = Buf::default();
            let mut w = ListWriter::new(format, buf.clone()).unwrap();
            w.write(&row()).unwrap();
            assert_eq!(w.finish().unwrap(), 1);
            let out = String::from_utf8(buf.0.borrow().clone()).unwrap();
            assert!(out.contains(want), "{format:?}: {out}");
        }
    }
}
