//! The records the ledger keeps, as typed values: files, their intents and outcomes, reference
//! changes and their values, and the records this version cannot read. How they are stored in
//! batch documents is [`batch`](super::batch)'s.

use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use serde::Serialize;

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
    /// `rollback --delete-copies` is about to remove the copy: recorded before the delete, so a
    /// crash in between leaves no copy recorded as verified that may be gone (the next migrate
    /// copies it again).
    Deleting,
    /// `rollback --delete-copies` removed the copy.
    Deleted,
}

impl FileState {
    pub const ALL: [FileState; 6] = [
        FileState::Planned,
        FileState::Verified,
        FileState::Missing,
        FileState::Failed,
        FileState::Deleting,
        FileState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Planned => "planned",
            FileState::Verified => "verified",
            FileState::Missing => "missing",
            FileState::Failed => "failed",
            FileState::Deleting => "deleting",
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
    /// This tool wrote the copy (not found there already, identical: an earlier sync, a restored
    /// backup, the original itself). Only such copies are ever deleted by `rollback`.
    pub wrote: bool,
    /// Where the record is stored (its batch document and place in it).
    pub loc: Loc,
}

/// The error of a file record set `deleted` by a `serve` gateway: the file was deleted through
/// it (a DELETE Parse Server answered with success), so neither a later miss nor `migrate` copies
/// it back from the old store.
pub const TOMBSTONE: &str = "deleted through the serve gateway";

impl FileRecord {
    /// Whether the file was deleted through a `serve` gateway (see [`TOMBSTONE`]).
    pub fn is_tombstone(&self) -> bool {
        self.state == FileState::Deleted && self.error.as_deref() == Some(TOMBSTONE)
    }
}

/// Where a record is stored: its batch document and its index in the document's entries. Records
/// read back carry it, so a later state change is one `$set` on that entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    pub batch: ObjectId,
    pub index: usize,
}

/// A file about to be copied.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub kind: &'a str,
    pub destination: &'a str,
    /// Copy attempts recorded before this one (0: the ledger had no record of the file).
    pub attempts: u32,
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
    /// This run wrote the bytes (see [`FileRecord::wrote`]).
    pub wrote: bool,
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
    /// A whole string holding file URLs (`--strings`, `rebase`), as recorded: the fileKey
    /// replaced by `{file_key}` when `key_redacted`. `name` then lists the files it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The exact string, byte for byte (in memory only; `None` for a recorded string whose key
    /// was taken out, until a rollback puts it back).
    #[serde(skip)]
    pub raw_text: Option<String>,
    /// Which fileKey was taken out ([`key_id`]), so a rollback never puts another one back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// What stands for the `fileKey` in recorded urls.
pub const KEY_PLACEHOLDER: &str = "{file_key}";

/// A short fingerprint of a fileKey (16 hex digits of a domain-separated SHA-256): tells two keys
/// apart, reveals nothing of either.
pub fn key_id(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("parse-files-migrate key id\0{key}"));
    hex::encode(&digest[..8])
}

impl RefValue {
    /// The same value as recorded (the string; or the name and url; key taken out or not),
    /// whatever is held in memory only. (A string's `name` lists files, which runs list
    /// differently.)
    pub fn same_as(&self, other: &RefValue) -> bool {
        self.key_redacted == other.key_redacted
            && match (&self.text, &other.text) {
                (Some(a), Some(b)) => a == b,
                (None, None) => self.name == other.name && self.url == other.url,
                _ => false,
            }
    }

    /// A name without a url.
    pub fn name(name: impl Into<String>) -> RefValue {
        RefValue {
            name: name.into(),
            url: None,
            key_redacted: false,
            text: None,
            raw_text: None,
            key_id: None,
        }
    }

    /// A whole string's value, with `secret` (the fileKey) taken out of the recorded form.
    /// `Err` when the string already holds the text `{file_key}` besides the key (the key could
    /// not be put back byte for byte).
    pub fn text(
        names: impl Into<String>,
        text: &str,
        secret: Option<&str>,
    ) -> Result<RefValue, String> {
        let secret = secret.filter(|s| !s.is_empty() && text.contains(*s));
        let (recorded, key_redacted) = match secret {
            Some(_) if text.contains(KEY_PLACEHOLDER) => {
                return Err(format!(
                    "the string holds both the fileKey and the text {KEY_PLACEHOLDER}; left alone"
                ));
            }
            Some(k) => (text.replace(k, KEY_PLACEHOLDER), true),
            None => (text.to_string(), false),
        };
        Ok(RefValue {
            name: names.into(),
            url: None,
            key_redacted,
            text: Some(recorded),
            raw_text: Some(text.to_string()),
            key_id: secret.map(key_id),
        })
    }

    /// Whether this is a whole string's value.
    pub fn is_text(&self) -> bool {
        self.text.is_some()
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
            text: None,
            raw_text: None,
            key_id: secret.filter(|_| key_redacted).map(key_id),
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
        if let Some(id) = &self.key_id {
            d.insert("key_id", id);
        }
        if let Some(t) = &self.text {
            d.insert("text", t);
        }
        d
    }

    pub(super) fn from_bson(d: &Document, key: &str) -> Result<RefValue, String> {
        let v = d.get_document(key).map_err(|_| format!("no {key} value"))?;
        let key_redacted = v.get_bool("key_redacted").unwrap_or(false);
        let text = v.get_str("text").ok();
        Ok(RefValue {
            name: v
                .get_str("name")
                .map_err(|_| format!("no {key} name"))?
                .to_string(),
            url: v.get_str("url").ok().map(str::to_string),
            key_redacted,
            text: text.map(str::to_string),
            raw_text: text.filter(|_| !key_redacted).map(str::to_string),
            key_id: v.get_str("key_id").ok().map(str::to_string),
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
    /// The value before the first of a chain of recorded changes to this reference (an earlier
    /// run rewrote it to `old`: migrate, then rebase, then another move), what `rollback` puts
    /// back; `None` when `old` is that value.
    pub origin: Option<RefValue>,
    /// The value `rollback` puts back ([`original`](Self::original)) named no stored file when
    /// the chain began: `relink` pointed a dangling reference at the bytes found under another
    /// key. A rollback puts such a value back although its store does not hold it (that is what
    /// the app held), where it otherwise keeps a reference whose original is gone on its copy.
    pub dangling: bool,
    /// Where its record is stored, for a change read back from the ledger (`None` for a change
    /// about to be recorded).
    pub loc: Option<Loc>,
}

impl RefChange {
    /// The value `rollback` puts back: the one before the first recorded change.
    pub fn original(&self) -> &RefValue {
        self.origin.as_ref().unwrap_or(&self.old)
    }

    /// The record's `_id`: `<class>/<object _id as canonical extended JSON>/<path>` — a string,
    /// unique per reference and cheap to index on every server (the parts are stored as `c`,
    /// `o`, `p` too).
    pub fn key(&self) -> String {
        ref_key(&self.class, &self.id, &self.path)
    }

    /// Whether the value at the path is a bare name (a top-level File field) rather than a File
    /// object: recorded changes of bare names carry no url on either side.
    pub fn is_bare_name(&self) -> bool {
        self.old.url.is_none() && self.new.url.is_none() && !self.is_text()
    }

    /// Whether the value at the path is a whole string holding file URLs (`--strings`).
    pub fn is_text(&self) -> bool {
        self.old.is_text() || self.new.is_text()
    }
}

/// The key of the reference at `path` in the object `id` of `class` (see [`RefChange::key`]), for
/// looking a found reference's record up ([`Ledger::refs_by_key`](super::Ledger::refs_by_key)).
pub fn ref_key(class: &str, id: &Bson, path: &str) -> String {
    format!("{class}/{}/{path}", id.clone().into_canonical_extjson())
}

/// A reference record read back: its state and the change it recorded (with its [`Loc`]).
#[derive(Debug, Clone)]
pub struct RefRecord {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_take_the_key_out_and_refuse_an_ambiguous_string() {
        let t = "a http://files.parsetfss.com/K3y/tfss-1.jpg b";
        let v = RefValue::text("tfss-1.jpg", t, Some("K3y")).unwrap();
        assert!(v.key_redacted);
        assert_eq!(
            v.text.as_deref(),
            Some("a http://files.parsetfss.com/{file_key}/tfss-1.jpg b")
        );
        assert_eq!(v.raw_text.as_deref(), Some(t));
        let back = RefValue::from_bson(&doc! {"old": v.to_bson()}, "old").unwrap();
        assert_eq!(back.text, v.text);
        assert_eq!(
            back.raw_text, None,
            "the key must come back from the settings"
        );
        let plain = RefValue::text("x", "no key here", Some("K3y")).unwrap();
        assert!(!plain.key_redacted);
        let plain = RefValue::from_bson(&doc! {"o": plain.to_bson()}, "o").unwrap();
        assert_eq!(plain.raw_text.as_deref(), Some("no key here"));
        assert!(RefValue::text("x", "K3y and {file_key}", Some("K3y")).is_err());
    }

    #[test]
    fn states_round_trip() {
        for s in FileState::ALL {
            assert_eq!(FileState::parse(s.as_str()), Some(s));
        }
        for s in RefState::ALL {
            assert_eq!(RefState::parse(s.as_str()), Some(s));
        }
    }
}
