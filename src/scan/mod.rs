//! Finding every File reference in the database.
//!
//! [`ClassWalker`] walks one class collection in `_id` order through one cursor (never `skip`;
//! reopened from the last `_id` when lost) and hands back, per page, the references found and
//! the problems met.
//! [`nested`] does the per-document work: top-level File fields and a recursive search of
//! Object/Array fields for `{__type: "File"}` values.
//!
//! Memory is O(page): nothing here keeps references beyond the page it returns. Malformed data
//! becomes a [`ScanIssue`] for that one value; a page never fails because of one document.

pub mod lookup;
pub mod nested;
pub mod refs;
pub mod strings;
pub mod targets;
mod walk;

pub use targets::{Filter, Strings, Target, add_strings, targets};
pub use walk::{ClassWalker, Page, WalkOptions, WalkPosition};

use mongodb::bson::Bson;
use serde::Serialize;

use crate::parse::names::NameKind;

/// Documents per scan page: one round trip each; large enough to amortise latency, small
/// enough to keep memory flat.
///
/// Measured: `list` of 20,000 objects peaks at ~19–25 MiB RSS at 1,000 per page, and the peak
/// stays flat up to 1,000,000 objects (`bench/run --curve`).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// How a reference is stored in its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// A top-level File field holding the bare name string (Parse Server's format).
    BareName,
    /// A `{__type: "File", name, url}` object at the top level (accepted defensively).
    TopLevelObject,
    /// A `{__type: "File", name, url}` object inside an Object/Array field or Parse Config.
    Nested,
    /// A file URL inside a string (`--strings`): `url` is the URL as written, `path` the
    /// string's. Rewritten as a whole string, never alone ([`strings`]).
    InString,
}

/// One place in one document that names a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRef {
    pub class: String,
    /// The document's `_id`, exactly as stored (for compare-and-swap updates).
    pub id: Bson,
    /// Dotted path inside the document: `image`, `meta.avatar`, `gallery.2.file`,
    /// `params.logo`. For object shapes this is the path of the File object itself.
    pub path: String,
    pub name: String,
    /// The stored `url` of a File object, if any.
    pub url: Option<String>,
    pub shape: Shape,
    /// The number of the walk page that found it (the engine's checkpoint bookkeeping; 0
    /// elsewhere).
    pub page: u64,
}

impl FileRef {
    pub fn kind(&self) -> NameKind {
        NameKind::of(&self.name)
    }

    /// `_id` as a string: an ObjectId as 24 hex, an integer in decimal, a string as is.
    pub fn object_id(&self) -> String {
        id_string(&self.id)
    }

    pub fn nested(&self) -> bool {
        self.shape == Shape::Nested
    }

    /// `Class.field`: the class and the top-level field that holds it (for Parse Config, the
    /// parameter: `_GlobalConfig.params.logo`). How reports group references.
    pub fn field(&self) -> String {
        let mut parts = self.path.split('.');
        let mut field = parts.next().unwrap_or_default().to_string();
        if self.class == crate::parse::schema::GLOBAL_CONFIG
            && field == "params"
            && let Some(param) = parts.next()
        {
            field = format!("params.{param}");
        }
        format!("{}.{field}", self.class)
    }

    pub fn in_string(&self) -> bool {
        self.shape == Shape::InString
    }
}

/// `_id` as the string the listing shows.
pub fn id_string(id: &Bson) -> String {
    match id {
        Bson::String(s) => s.clone(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(d) => d.to_string(),
        other => other.clone().into_relaxed_extjson().to_string(),
    }
}

/// A value that looks like a file reference but cannot be used, or a part of a document that
/// could not be searched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanIssue {
    pub class: String,
    pub object_id: String,
    pub path: String,
    pub problem: String,
}

/// Report malformed values (as log warnings), one each, with where they are.
pub fn log_issues(issues: &[ScanIssue]) {
    for i in issues {
        tracing::warn!(class = %i.class, object_id = %i.object_id, path = %i.path, "{}", i.problem);
    }
}
