//! File URLs inside text (`--strings`): which fields hold text, and the strings of one raw
//! document that hold URLs of a known form ([`crate::parse::urls`]).
//!
//! Searched: the top-level fields of `_SCHEMA` type `string`, and every string at any depth of
//! the Object/Array fields (and `_GlobalConfig.params`) — except the `name`/`url` of a File
//! object (those are File references of their own) and values under a key containing `.`
//! (which an update cannot address). Each URL found becomes a [`FileRef`] of shape
//! [`Shape::InString`] whose `path` is the string's and whose `url` is the URL as written.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::raw::{RawBsonRef, RawDocument};
use mongodb::bson::{Bson, Document};

use super::nested::MAX_DEPTH;
use super::{FileRef, ScanIssue, Shape};
use crate::parse::schema::{VOLATILE_CLASSES, collection_name};
use crate::parse::urls::{Found, Matcher};

/// Fields every class has that never hold a URL.
const SKIPPED: &[&str] = &["_id", "_metadata", "_client_permissions", "objectId", "ACL"];

/// The String fields of every class in `<prefix>_SCHEMA` (type `string`, or `{type: "String"}`),
/// by class. Volatile classes are left out (Parse Config's strings are in its `params`).
pub async fn string_fields(
    db: &Database,
    prefix: &str,
) -> mongodb::error::Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut cursor = db
        .collection::<Document>(&collection_name(prefix, "_SCHEMA"))
        .find(mongodb::bson::doc! {})
        .await?;
    while let Some(d) = cursor.try_next().await? {
        let Ok(class) = d.get_str("_id") else {
            continue;
        };
        if VOLATILE_CLASSES.contains(&class) {
            continue;
        }
        let fields: Vec<String> = d
            .iter()
            .filter(|(k, _)| !SKIPPED.contains(&k.as_str()))
            .filter(|(_, v)| match v {
                Bson::String(t) => t == "string",
                Bson::Document(t) => matches!(t.get_str("type"), Ok("String") | Ok("string")),
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !fields.is_empty() {
            out.insert(class.to_string(), fields);
        }
    }
    Ok(out)
}

/// One string that holds at least one URL of a known form.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// Dotted path of the string in its document.
    pub path: String,
    pub text: String,
    pub found: Vec<Found>,
}

/// Every string of `doc` holding a URL: the top-level `strings` fields, and the strings inside
/// the `containers` fields. Values that cannot be read are reported in `issues`.
pub fn texts(
    doc: &RawDocument,
    strings: &[String],
    containers: &[String],
    matcher: &Matcher,
    mut issue: impl FnMut(&str, String),
) -> Vec<Text> {
    let mut out = Vec::new();
    let look = |path: &str, s: &str, out: &mut Vec<Text>| {
        let found = matcher.find(s);
        if !found.is_empty() {
            out.push(Text {
                path: path.to_string(),
                text: s.to_string(),
                found,
            });
        }
    };
    for field in strings {
        match doc.get(field) {
            Ok(Some(RawBsonRef::String(s))) => look(field, s, &mut out),
            Ok(_) => {}
            Err(e) => issue(field, format!("unreadable value: {e}")),
        }
    }
    for field in containers {
        if let Ok(Some(v)) = doc.get(field) {
            let mut path = field.clone();
            walk(v, &mut path, 1, &mut |p, s| look(p, s, &mut out));
        }
    }
    out
}

fn walk(v: RawBsonRef<'_>, path: &mut String, depth: usize, each: &mut impl FnMut(&str, &str)) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut child = |key: &str, v: RawBsonRef<'_>, path: &mut String| {
        if key.contains('.') {
            return;
        }
        let len = path.len();
        path.push('.');
        path.push_str(key);
        walk(v, path, depth + 1, each);
        path.truncate(len);
    };
    match v {
        RawBsonRef::String(s) => each(path, s),
        RawBsonRef::Document(d) => {
            if matches!(d.get("__type"), Ok(Some(RawBsonRef::String("File")))) {
                return;
            }
            for (k, v) in d.iter().flatten() {
                child(k, v, path);
            }
        }
        RawBsonRef::Array(a) => {
            for (i, v) in a.into_iter().enumerate() {
                if let Ok(v) = v {
                    child(&i.to_string(), v, path);
                }
            }
        }
        _ => {}
    }
}

/// The references the strings of `doc` hold, one per URL.
pub fn extract(
    doc: &RawDocument,
    id: &Bson,
    class: &str,
    fields: (&[String], &[String]),
    matcher: &Matcher,
    refs: &mut Vec<FileRef>,
    issues: &mut Vec<ScanIssue>,
) {
    let found = texts(doc, fields.0, fields.1, matcher, |path, problem| {
        issues.push(ScanIssue {
            class: class.to_string(),
            object_id: super::id_string(id),
            path: path.to_string(),
            problem,
        })
    });
    for t in found {
        for f in &t.found {
            refs.push(FileRef {
                class: class.to_string(),
                id: id.clone(),
                path: t.path.clone(),
                name: f.name.clone(),
                url: Some(f.url(&t.text).to_string()),
                shape: Shape::InString,
                page: 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{RawDocumentBuf, doc};

    #[test]
    fn strings_at_any_depth_but_not_file_objects_or_dotted_keys() {
        let u = |n: &str| format!("<img src=\"http://files.parsetfss.com/K/{n}\">");
        let d = doc! {"_id": "a", "body": u("tfss-1.jpg"), "other": u("tfss-9.jpg"), "n": 3,
        "meta": {"html": u("tfss-2.jpg"), "list": ["x", u("tfss-3.jpg")],
            "f": {"__type": "File", "name": "tfss-4.jpg", "url": u("tfss-4.jpg")},
            "a.b": u("tfss-5.jpg")}};
        let raw = RawDocumentBuf::from_document(&d).unwrap();
        let (mut refs, mut issues) = (vec![], vec![]);
        extract(
            &raw,
            &Bson::String("a".into()),
            "Post",
            (&["body".into(), "n".into()], &["meta".into()]),
            &Matcher::new(true),
            &mut refs,
            &mut issues,
        );
        let got: Vec<_> = refs
            .iter()
            .map(|r| (r.path.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("body", "tfss-1.jpg"),
                ("meta.html", "tfss-2.jpg"),
                ("meta.list.1", "tfss-3.jpg")
            ]
        );
        assert!(refs.iter().all(|r| r.shape == Shape::InString));
        assert_eq!(
            refs[0].url.as_deref(),
            Some("http://files.parsetfss.com/K/tfss-1.jpg")
        );
        assert!(issues.is_empty());
    }
}
