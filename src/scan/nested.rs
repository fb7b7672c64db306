//! Extracting File references from one raw document.
//!
//! Works on raw BSON so that a string with invalid UTF-8 elsewhere in the document, or an
//! unexpected type, costs one [`ScanIssue`] instead of the whole document. Parse stores:
//! * top-level File fields as the bare name (`MongoTransform` `FileCoder`);
//! * Files inside Object/Array fields and Parse Config params as the REST JSON
//!   `{__type: "File", name, url?}`, at any depth (`transformInteriorAtom` keeps them as sent).

use mongodb::bson::raw::{RawArray, RawBsonRef, RawDocument};

use super::{FileRef, ScanIssue, Shape};

/// Deeper than this, a value is reported and not searched further. MongoDB itself refuses
/// documents nested more than 100 levels; the margin covers servers that accept more.
pub const MAX_DEPTH: usize = 128;

/// Which fields of a document to look at.
pub struct Fields<'a> {
    pub class: &'a str,
    /// Top-level File fields (bare names).
    pub files: &'a [String],
    /// Object/Array fields to search recursively (empty with `--no-nested`).
    pub containers: &'a [String],
}

/// Collects references and issues for one document.
struct Collector<'a> {
    class: &'a str,
    id: &'a mongodb::bson::Bson,
    refs: &'a mut Vec<FileRef>,
    issues: &'a mut Vec<ScanIssue>,
}

impl Collector<'_> {
    fn issue(&mut self, path: &str, problem: impl Into<String>) {
        self.issues.push(ScanIssue {
            class: self.class.to_string(),
            object_id: super::id_string(self.id),
            path: path.to_string(),
            problem: problem.into(),
        });
    }

    fn push(&mut self, path: &str, name: &str, url: Option<String>, shape: Shape) {
        if name.is_empty() {
            self.issue(path, "File with an empty name");
            return;
        }
        if name.contains('\0') {
            self.issue(path, "File name contains a NUL character");
            return;
        }
        self.refs.push(FileRef {
            class: self.class.to_string(),
            id: self.id.clone(),
            path: path.to_string(),
            name: name.to_string(),
            url,
            shape,
            page: 0,
        });
    }
}

/// Find every reference in `doc` (whose `_id` is `id`), appending to `refs` and `issues`.
pub fn extract(
    doc: &RawDocument,
    id: &mongodb::bson::Bson,
    fields: &Fields<'_>,
    refs: &mut Vec<FileRef>,
    issues: &mut Vec<ScanIssue>,
) {
    let mut c = Collector {
        class: fields.class,
        id,
        refs,
        issues,
    };
    for field in fields.files {
        match doc.get(field) {
            Ok(None) | Ok(Some(RawBsonRef::Null)) | Ok(Some(RawBsonRef::Undefined)) => {}
            Ok(Some(RawBsonRef::String(name))) => c.push(field, name, None, Shape::BareName),
            Ok(Some(RawBsonRef::Document(d))) if is_file_object(d) => {
                file_object(&mut c, d, field, Shape::TopLevelObject)
            }
            Ok(Some(other)) => c.issue(
                field,
                format!(
                    "File field holds {} instead of a file name",
                    type_name(other)
                ),
            ),
            Err(e) => c.issue(field, format!("unreadable value: {e}")),
        }
    }
    for field in fields.containers {
        match doc.get(field) {
            Ok(Some(v)) => walk(&mut c, v, &mut field.clone(), 1),
            Ok(None) => {}
            Err(e) => c.issue(field, format!("unreadable value: {e}")),
        }
    }
}

fn walk(c: &mut Collector<'_>, value: RawBsonRef<'_>, path: &mut String, depth: usize) {
    match value {
        RawBsonRef::Document(d) => {
            if is_file_object(d) {
                file_object(c, d, path, Shape::Nested);
            } else if depth >= MAX_DEPTH {
                c.issue(
                    path,
                    format!("nested deeper than {MAX_DEPTH} levels; not searched further"),
                );
            } else {
                walk_document(c, d, path, depth);
            }
        }
        RawBsonRef::Array(a) => {
            if depth >= MAX_DEPTH {
                c.issue(
                    path,
                    format!("nested deeper than {MAX_DEPTH} levels; not searched further"),
                );
            } else {
                walk_array(c, a, path, depth);
            }
        }
        _ => {}
    }
}

fn walk_document(c: &mut Collector<'_>, d: &RawDocument, path: &mut String, depth: usize) {
    for elem in d.iter_elements() {
        let elem = match elem {
            Ok(e) => e,
            Err(e) => {
                c.issue(path, format!("unreadable sub-document: {e}"));
                return;
            }
        };
        let len = path.len();
        path.push('.');
        path.push_str(elem.key());
        // A string with invalid UTF-8 (or any unreadable scalar) cannot hold a File object, so
        // only containers matter; their read errors are reported where they are.
        if let Ok(v) = elem.value() {
            if matches!(v, RawBsonRef::Document(_) | RawBsonRef::Array(_))
                && elem.key().contains('.')
            {
                if contains_file(v, 0) {
                    c.issue(
                        path,
                        "a File sits under a key containing '.', which an update cannot address",
                    );
                }
            } else {
                walk(c, v, path, depth + 1);
            }
        }
        path.truncate(len);
    }
}

fn walk_array(c: &mut Collector<'_>, a: &RawArray, path: &mut String, depth: usize) {
    for (i, elem) in a.into_iter().enumerate() {
        let len = path.len();
        path.push('.');
        path.push_str(&i.to_string());
        match elem {
            Ok(v) => walk(c, v, path, depth + 1),
            Err(e) => {
                c.issue(path, format!("unreadable array element: {e}"));
                path.truncate(len);
                return;
            }
        }
        path.truncate(len);
    }
}

/// `{__type: "File", ...}`.
fn is_file_object(d: &RawDocument) -> bool {
    matches!(d.get("__type"), Ok(Some(RawBsonRef::String("File"))))
}

fn file_object(c: &mut Collector<'_>, d: &RawDocument, path: &str, shape: Shape) {
    let url = match d.get("url") {
        Ok(Some(RawBsonRef::String(u))) => Some(u.to_string()),
        _ => None,
    };
    match d.get("name") {
        Ok(Some(RawBsonRef::String(name))) => c.push(path, name, url, shape),
        Ok(None) => c.issue(path, "File object without a name"),
        Ok(Some(other)) => c.issue(
            path,
            format!("File object whose name is {}", type_name(other)),
        ),
        Err(e) => c.issue(path, format!("File object with an unreadable name: {e}")),
    }
}

/// Whether a File object occurs anywhere below `v` (used only to report unaddressable ones).
fn contains_file(v: RawBsonRef<'_>, depth: usize) -> bool {
    if depth >= MAX_DEPTH {
        return false;
    }
    match v {
        RawBsonRef::Document(d) => {
            is_file_object(d) || d.iter().flatten().any(|(_, v)| contains_file(v, depth + 1))
        }
        RawBsonRef::Array(a) => a.into_iter().flatten().any(|v| contains_file(v, depth + 1)),
        _ => false,
    }
}

/// A short name of a BSON value's type for messages.
fn type_name(v: RawBsonRef<'_>) -> String {
    format!("{:?}", v.element_type()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{Bson, RawDocumentBuf, doc};

    fn run(
        d: mongodb::bson::Document,
        files: &[&str],
        containers: &[&str],
    ) -> (Vec<FileRef>, Vec<ScanIssue>) {
        let raw = RawDocumentBuf::from_document(&d).unwrap();
        let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        let containers: Vec<String> = containers.iter().map(|s| s.to_string()).collect();
        let (mut refs, mut issues) = (vec![], vec![]);
        let id = d.get("_id").cloned().unwrap_or(Bson::Null);
        extract(
            &raw,
            &id,
            &Fields {
                class: "C",
                files: &files,
                containers: &containers,
            },
            &mut refs,
            &mut issues,
        );
        (refs, issues)
    }

    #[test]
    fn top_level_shapes() {
        let (r, i) = run(
            doc! {"_id": "a", "img": "x.png", "obj": {"__type": "File", "name": "y.png", "url": "http://u"},
            "nul": null, "num": 5, "empty": "", "noname": {"__type": "File"}, "arr": ["z"]},
            &[
                "img", "obj", "nul", "num", "empty", "noname", "arr", "absent",
            ],
            &[],
        );
        let names: Vec<_> = r
            .iter()
            .map(|r| (r.path.as_str(), r.name.as_str(), r.shape))
            .collect();
        assert_eq!(
            names,
            vec![
                ("img", "x.png", Shape::BareName),
                ("obj", "y.png", Shape::TopLevelObject)
            ]
        );
        assert_eq!(r[1].url.as_deref(), Some("http://u"));
        let paths: Vec<_> = i.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, vec!["num", "empty", "noname", "arr"]);
    }

    #[test]
    fn nested_paths() {
        let f = |n: &str| doc! {"__type": "File", "name": n};
        let (r, i) = run(
            doc! {"_id": 1, "meta": {"avatar": f("a"), "deep": {"x": [f("b"), {"file": f("c")}]}},
            "gallery": [f("d"), null, 3, [f("e")]], "plain": {"k": "tfss-not-a-file"}},
            &[],
            &["meta", "gallery", "plain"],
        );
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.path.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("meta.avatar", "a"),
                ("meta.deep.x.0", "b"),
                ("meta.deep.x.1.file", "c"),
                ("gallery.0", "d"),
                ("gallery.3.0", "e"),
            ]
        );
        assert!(r.iter().all(|r| r.shape == Shape::Nested));
        assert!(i.is_empty(), "{i:?}");
    }

    #[test]
    fn depth_limit_reports() {
        let mut v = Bson::Document(doc! {"__type": "File", "name": "deep"});
        for _ in 0..200 {
            v = Bson::Document(doc! {"n": v});
        }
        let (r, i) = run(doc! {"_id": "x", "o": v}, &[], &["o"]);
        assert!(r.is_empty());
        assert_eq!(i.len(), 1);
        assert!(i[0].problem.contains("deeper"));
    }

    #[test]
    fn dotted_keys_are_reported() {
        let (r, i) = run(
            doc! {"_id": "x", "o": {"a.b": {"f": {"__type": "File", "name": "n"}}}},
            &[],
            &["o"],
        );
        assert!(r.is_empty());
        assert_eq!(i[0].path, "o.a.b");
    }
}
