//! The records the ledger keeps, as typed values, and how each is read back from its stored
//! document. Reading is strict: a record written by a newer format version, or holding a state
//! this version does not know, is refused with an error naming it — never misread or dropped.

use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

use super::VERSION;
use crate::db::int;

/// Where a file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// A copy was started (intent recorded before the first byte moved).
    Planned,
    /// Copied and verified at the destination: references may point at the target.
    Verified,
    /// The source does not have it (404/403/410 or no such object).
    Missing,
    /// Copy or verification failed; `error` says why.
    Failed,
    /// `rollback --delete-copies` removed the copy.
    Deleted,
}

impl FileState {
    pub const ALL: [FileState; 5] = [
        FileState::Planned,
        FileState::Verified,
        FileState::Missing,
        FileState::Failed,
        FileState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Planned => "planned",
            FileState::Verified => "verified",
            FileState::Missing => "missing",
            FileState::Failed => "failed",
            FileState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<FileState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A reference's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefState {
    /// About to be rewritten (old value recorded).
    Pending,
    Rewritten,
    /// The document no longer held the old value: the app changed it; left alone.
    Conflict,
    /// The server refused the update; the reason is recorded.
    Failed,
    /// `rollback` restored the old value.
    RolledBack,
}

impl RefState {
    pub const ALL: [RefState; 5] = [
        RefState::Pending,
        RefState::Rewritten,
        RefState::Conflict,
        RefState::Failed,
        RefState::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefState::Pending => "pending",
            RefState::Rewritten => "rewritten",
            RefState::Conflict => "conflict",
            RefState::Failed => "failed",
            RefState::RolledBack => "rolled-back",
        }
    }

    pub fn parse(s: &str) -> Option<RefState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What the ledger knows of one source file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub name: String,
    pub target: String,
    pub state: FileState,
    pub size: Option<u64>,
    pub md5: Option<String>,
    pub hash_checked: bool,
    pub attempts: u32,
    pub error: Option<String>,
    /// The destination it was copied to (its description; no secrets).
    pub destination: Option<String>,
}

/// A file about to be copied.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub kind: &'a str,
    pub destination: &'a str,
}

/// The outcome of one file, to record.
#[derive(Debug, Clone)]
pub struct FileResult<'a> {
    pub name: &'a str,
    pub state: FileState,
    pub size: Option<u64>,
    pub md5: Option<&'a str>,
    pub hash_checked: bool,
    pub error: Option<&'a str>,
}

/// The values of a File reference (the name, and the `url` of File objects).
///
/// Hosted-era urls embed the app's `fileKey` (`http://files.parsetfss.com/<fileKey>/…`); a
/// secret never goes into the ledger or any output, so such a url is kept with the key replaced
/// by `{file_key}` and `key_redacted` set (a rollback puts the key back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefValue {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key_redacted: bool,
}

/// What stands for the `fileKey` in recorded urls.
pub const KEY_PLACEHOLDER: &str = "{file_key}";

impl RefValue {
    /// A name without a url.
    pub fn name(name: impl Into<String>) -> RefValue {
        RefValue {
            name: name.into(),
            url: None,
            key_redacted: false,
        }
    }

    /// A File object's values, with `secret` (the fileKey) taken out of the url.
    pub fn file(name: impl Into<String>, url: Option<&str>, secret: Option<&str>) -> RefValue {
        let secret = secret.filter(|s| !s.is_empty());
        let (url, key_redacted) = match (url, secret) {
            (Some(u), Some(k)) if u.contains(k) => (Some(u.replace(k, KEY_PLACEHOLDER)), true),
            (u, _) => (u.map(str::to_string), false),
        };
        RefValue {
            name: name.into(),
            url,
            key_redacted,
        }
    }

    pub(super) fn to_bson(&self) -> Document {
        let mut d = doc! {"name": &self.name};
        if let Some(u) = &self.url {
            d.insert("url", u);
        }
        if self.key_redacted {
            d.insert("key_redacted", true);
        }
        d
    }

    fn from_bson(d: &Document, key: &str) -> Result<RefValue, String> {
        let v = d.get_document(key).map_err(|_| format!("no {key} value"))?;
        Ok(RefValue {
            name: v
                .get_str("name")
                .map_err(|_| format!("no {key} name"))?
                .to_string(),
            url: v.get_str("url").ok().map(str::to_string),
            key_redacted: v.get_bool("key_redacted").unwrap_or(false),
        })
    }
}

/// One reference change, as recorded.
#[derive(Debug, Clone)]
pub struct RefChange {
    pub class: String,
    pub id: Bson,
    pub path: String,
    /// The source file's name (links the reference to its file record).
    pub file: String,
    pub old: RefValue,
    pub new: RefValue,
}

impl RefChange {
    /// The record's `_id`: `<class>/<object _id as canonical extended JSON>/<path>` — a string,
    /// unique per reference and cheap to index on every server (the parts are stored as `c`,
    /// `o`, `p` too).
    pub fn key(&self) -> Bson {
        Bson::String(format!(
            "{}/{}/{}",
            self.class,
            self.id.clone().into_canonical_extjson(),
            self.path
        ))
    }

    /// Whether the value at the path is a bare name (a top-level File field) rather than a File
    /// object: recorded changes of bare names carry no url on either side.
    pub fn is_bare_name(&self) -> bool {
        self.old.url.is_none() && self.new.url.is_none()
    }
}

/// A reference record read back: its key, state and the change it recorded.
#[derive(Debug, Clone)]
pub struct RefRecord {
    pub key: Bson,
    pub state: RefState,
    pub change: RefChange,
}

/// A record this version cannot read (newer format, unknown state, missing fields): what it is
/// and why. Commands report it and go on; nothing is done with its contents.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("ledger record {key} in {collection}: {why}")]
pub struct BadRecord {
    pub collection: String,
    pub key: String,
    pub why: String,
}

/// Refuse a record written by a newer format version (absent: version 1, the first).
pub(super) fn check_version(d: &Document) -> Result<(), String> {
    match int(d.get("v")) {
        Some(v) if v > i64::from(VERSION) => Err(format!(
            "written by a newer parse-files-migrate (ledger format {v}, this version reads up to \
             {VERSION}): upgrade the tool"
        )),
        _ => Ok(()),
    }
}

fn bad(collection: &str, d: &Document, why: impl Into<String>) -> BadRecord {
    BadRecord {
        collection: collection.to_string(),
        key: d
            .get("_id")
            .map(|k| k.to_string())
            .unwrap_or_else(|| "?".into()),
        why: why.into(),
    }
}

/// A file record from its stored document.
pub(super) fn file_record(collection: &str, d: &Document) -> Result<FileRecord, BadRecord> {
    check_version(d).map_err(|w| bad(collection, d, w))?;
    let name = d
        .get_str("_id")
        .map_err(|_| bad(collection, d, "its _id is not a file name"))?
        .to_string();
    let state = d.get_str("state").unwrap_or("(none)");
    let state = FileState::parse(state)
        .ok_or_else(|| bad(collection, d, format!("unknown file state {state:?}")))?;
    Ok(FileRecord {
        target: d.get_str("target").unwrap_or(&name).to_string(),
        state,
        size: int(d.get("size")).and_then(|s| u64::try_from(s).ok()),
        md5: d.get_str("md5").ok().map(str::to_string),
        hash_checked: d.get_bool("hash_checked").unwrap_or(false),
        attempts: int(d.get("attempts"))
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32,
        error: d.get_str("error").ok().map(str::to_string),
        destination: d.get_str("destination").ok().map(str::to_string),
        name,
    })
}

/// A reference record from its stored document.
pub(super) fn ref_record(collection: &str, d: &Document) -> Result<RefRecord, BadRecord> {
    check_version(d).map_err(|w| bad(collection, d, w))?;
    let state = d.get_str("state").unwrap_or("(none)");
    let state = RefState::parse(state)
        .ok_or_else(|| bad(collection, d, format!("unknown reference state {state:?}")))?;
    let field = |k: &str, what: &str| {
        d.get_str(k)
            .map(str::to_string)
            .map_err(|_| bad(collection, d, format!("no {what}")))
    };
    let change = RefChange {
        class: field("c", "class")?,
        id: d
            .get("o")
            .cloned()
            .ok_or_else(|| bad(collection, d, "no object id"))?,
        path: field("p", "path")?,
        file: d.get_str("file").unwrap_or_default().to_string(),
        old: RefValue::from_bson(d, "old").map_err(|w| bad(collection, d, w))?,
        new: RefValue::from_bson(d, "new").map_err(|w| bad(collection, d, w))?,
    };
    Ok(RefRecord {
        key: d.get("_id").cloned().unwrap_or(Bson::Null),
        state,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_unknown_ones_are_refused() {
        for s in FileState::ALL {
            assert_eq!(FileState::parse(s.as_str()), Some(s));
        }
        for s in RefState::ALL {
            assert_eq!(RefState::parse(s.as_str()), Some(s));
        }
        let d = doc! {"_id": "a.png", "state": "teleported", "v": 1};
        let e = file_record("_FileMigration", &d).unwrap_err();
        assert!(e.why.contains("unknown file state \"teleported\""), "{e}");
        assert!(e.to_string().contains("a.png"), "{e}");
    }

    #[test]
    fn records_of_a_newer_format_are_refused_not_misread() {
        let d = doc! {"_id": "a.png", "state": "verified", "v": VERSION + 1};
        let e = file_record("_FileMigration", &d).unwrap_err();
        assert!(e.why.contains("newer parse-files-migrate"), "{e}");
        let r = doc! {"_id": "k", "state": "rewritten", "v": VERSION + 1, "c": "A", "o": "x",
        "p": "f", "old": {"name": "a"}, "new": {"name": "b"}};
        assert!(ref_record("_FileMigration.refs", &r).is_err());
        // The current version and records without `v` (the first format) read fine.
        let ok = doc! {"_id": "a.png", "state": "verified", "size": 3.0, "attempts": 2_i64};
        let rec = file_record("_FileMigration", &ok).unwrap();
        assert_eq!((rec.size, rec.attempts), (Some(3), 2));
    }

    #[test]
    fn reference_records_read_back_typed() {
        let r = doc! {"_id": "A/\"x\"/f", "state": "pending", "v": VERSION, "c": "A", "o": "x",
        "p": "f", "file": "a", "old": {"name": "a"}, "new": {"name": "b"}};
        let rec = ref_record("refs", &r).unwrap();
        assert_eq!(rec.state, RefState::Pending);
        assert!(rec.change.is_bare_name());
        assert_eq!(rec.change.new.name, "b");
        let mut broken = r.clone();
        broken.remove("p");
        assert!(
            ref_record("refs", &broken)
                .unwrap_err()
                .why
                .contains("no path")
        );
    }
}
