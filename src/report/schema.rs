//! The `schema` summary: per class, its File fields with reference counts, the nested File
//! paths found (array indexes folded to `*`), object counts, problems; and, when nothing was
//! found, why.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

/// What `schema` prints.
#[derive(Debug, Default, Serialize)]
pub struct SchemaReport {
    pub database: String,
    pub collection_prefix: String,
    pub schema_collection: String,
    pub schema_exists: bool,
    pub classes: Vec<ClassReport>,
    pub warnings: Vec<String>,
    pub total_references: u64,
    /// Set when no reference was found: the likely reason and what to try.
    pub explanation: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ClassReport {
    pub class: String,
    pub collection: String,
    /// Objects walked (or the collection's estimated size when nothing needed walking).
    pub objects: u64,
    /// Top-level File fields → references.
    pub file_fields: BTreeMap<String, u64>,
    /// Object/Array fields searched for nested Files.
    pub searched_fields: Vec<String>,
    /// Nested File paths (indexes as `*`) → references.
    pub nested_paths: BTreeMap<String, u64>,
    /// References by name kind.
    pub kinds: BTreeMap<String, u64>,
    /// Malformed values met.
    pub issues: u64,
}

impl ClassReport {
    /// Count one reference found at `path` with a name of `kind`.
    pub fn count(&mut self, path: &str, nested: bool, kind: &str) {
        if nested {
            *self.nested_paths.entry(fold_indexes(path)).or_default() += 1;
        } else {
            *self.file_fields.entry(path.to_string()).or_default() += 1;
        }
        *self.kinds.entry(kind.to_string()).or_default() += 1;
    }

    pub fn references(&self) -> u64 {
        self.kinds.values().sum()
    }
}

/// `gallery.2.file` → `gallery.*.file`.
pub fn fold_indexes(path: &str) -> String {
    path.split('.')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl SchemaReport {
    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "database {}  prefix {:?}  schema collection {}",
            self.database, self.collection_prefix, self.schema_collection
        )?;
        for c in &self.classes {
            writeln!(
                out,
                "\n{} ({}): {}, {}{}",
                c.class,
                c.collection,
                super::count(c.objects, "object", "objects"),
                super::count(c.references(), "reference", "references"),
                if c.issues > 0 {
                    format!(
                        ", {}",
                        super::count(c.issues, "malformed value", "malformed values")
                    )
                } else {
                    String::new()
                }
            )?;
            for (field, n) in &c.file_fields {
                writeln!(out, "  file field   {field:<32} {n:>8}")?;
            }
            for (path, n) in &c.nested_paths {
                writeln!(out, "  nested File  {path:<32} {n:>8}")?;
            }
            if !c.searched_fields.is_empty() {
                writeln!(out, "  searched     {}", c.searched_fields.join(", "))?;
            }
            if !c.kinds.is_empty() {
                let kinds: Vec<String> = c.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
                writeln!(out, "  kinds        {}", kinds.join(", "))?;
            }
        }
        for w in &self.warnings {
            writeln!(out, "\nwarning: {w}")?;
        }
        writeln!(
            out,
            "\n{} in total",
            super::count(self.total_references, "reference", "references")
        )?;
        if let Some(e) = &self.explanation {
            writeln!(out, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_counts() {
        assert_eq!(fold_indexes("gallery.12.file"), "gallery.*.file");
        assert_eq!(fold_indexes("params.logo"), "params.logo");
        let mut c = ClassReport::default();
        c.count("gallery.0", true, "parse-hosted");
        c.count("gallery.1", true, "other");
        c.count("image", false, "other");
        assert_eq!(c.nested_paths["gallery.*"], 2);
        assert_eq!(c.file_fields["image"], 1);
        assert_eq!(c.references(), 3);
    }
}
