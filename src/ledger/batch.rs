//! How the ledger's records are written into and read back from the entries of a batch document
//! (see the [ledger's layout](super)): the batch header, an intent's and an outcome's entries, the
//! later changes appended to a batch (`o`) and folded back in on read. Reading is strict: a record
//! written by a newer format version, or holding a state this version does not know, is refused
//! with an error naming it — never misread or dropped.

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use super::VERSION;
use super::records::{
    BadRecord, FileRecord, FileResult, FileState, Intent, Loc, RefChange, RefRecord, RefState,
    RefValue,
};
use crate::db::int;

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

/// The header every batch document carries: format, run, time; `live` is the array naming the
/// entries that are current (`n` for files, `k` for references).
pub(super) fn batch_header(batch: ObjectId, run: ObjectId, now: DateTime) -> Document {
    doc! {"_id": batch, "v": VERSION, "run": run, "at": now}
}

/// A file entry of a batch document: an intent (`planned`, the attempt number).
pub(super) fn intent_entry(i: &Intent, now: DateTime) -> Document {
    doc! {"n": i.name, "t": i.target, "k": i.kind, "d": i.destination,
    "s": FileState::Planned.as_str(), "a": i64::from(i.attempts) + 1, "at": now}
}

/// The change an outcome makes to a file entry: every outcome field, a null where it has no
/// value (so an earlier error or size does not survive a later outcome).
pub(super) fn outcome_change(r: &FileResult, now: DateTime) -> Document {
    let opt = |v: Option<Bson>| v.unwrap_or(Bson::Null);
    doc! {"s": r.state.as_str(), "hc": r.hash_checked, "w": r.wrote, "at": now,
    "size": opt(r.size.map(|s| Bson::Int64(s as i64))),
    "md5": opt(r.md5.map(|m| Bson::String(m.to_string()))),
    "err": opt(r.error.map(|e| Bson::String(e.to_string())))}
}

/// A reference entry of a batch document, in `state`.
pub(super) fn ref_entry(c: &RefChange, state: RefState) -> Document {
    let mut d = doc! {"k": c.key(), "c": &c.class, "o": c.id.clone(), "p": &c.path,
    "file": &c.file, "old": c.old.to_bson(), "new": c.new.to_bson(), "s": state.as_str()};
    if let Some(origin) = &c.origin {
        d.insert("orig", origin.to_bson());
    }
    if c.dangling {
        d.insert("dg", true);
    }
    d
}

/// The names (or keys) a batch document holds as current.
fn live(d: &Document, field: &str) -> std::collections::HashSet<String> {
    d.get_array(field)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The entries of a batch document, each with its index and with the later changes recorded
/// for it (`o`: `{i: <index>, <field>: <value>, …}` in the order they were written; a later
/// change wins, a null clears a field) folded in, after the document's format check.
fn entries(
    collection: &str,
    d: &Document,
    field: &str,
) -> Result<Vec<(usize, Document)>, BadRecord> {
    check_version(d).map_err(|w| bad(collection, d, w))?;
    let list = d.get_array(field).map_err(|_| {
        bad(
            collection,
            d,
            "a record of ledger format 1, written by an older parse-files-migrate: the next \
             writing run (migrate, rollback) converts it",
        )
    })?;
    let mut out: Vec<(usize, Document)> = list
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_document().map(|e| (i, e.clone())))
        .collect();
    for change in d
        .get_array(CHANGES)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
    {
        let Some(i) = int(change.get("i")).and_then(|i| usize::try_from(i).ok()) else {
            continue;
        };
        if let Some((_, e)) = out.get_mut(i).filter(|(at, _)| *at == i) {
            for (k, v) in change.iter().filter(|(k, _)| k.as_str() != "i") {
                match v {
                    Bson::Null => {
                        e.remove(k);
                    }
                    v => {
                        e.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The field of a batch document where later changes of its entries are appended.
pub(super) const CHANGES: &str = "o";

/// The current file records of a batch document (entries a newer record replaced are skipped),
/// each decoded or refused.
pub(super) fn file_records(collection: &str, d: &Document) -> Vec<Result<FileRecord, BadRecord>> {
    let entries = match entries(collection, d, "f") {
        Ok(e) => e,
        Err(e) => return vec![Err(e)],
    };
    let Some(batch) = d.get_object_id("_id").ok() else {
        return vec![Err(bad(collection, d, "its _id is not an ObjectId"))];
    };
    let live = live(d, "n");
    entries
        .iter()
        .filter(|(_, e)| e.get_str("n").is_ok_and(|n| live.contains(n)))
        .map(|(index, e)| {
            file_entry(
                collection,
                d,
                e,
                Loc {
                    batch,
                    index: *index,
                },
            )
        })
        .collect()
}

fn file_entry(
    collection: &str,
    d: &Document,
    e: &Document,
    loc: Loc,
) -> Result<FileRecord, BadRecord> {
    let name = e.get_str("n").unwrap_or_default().to_string();
    let state = e.get_str("s").unwrap_or("(none)");
    let state = FileState::parse(state).ok_or_else(|| {
        bad(
            collection,
            d,
            format!("{name}: unknown file state {state:?}"),
        )
    })?;
    Ok(FileRecord {
        target: e.get_str("t").unwrap_or(&name).to_string(),
        state,
        size: int(e.get("size")).and_then(|s| u64::try_from(s).ok()),
        md5: e.get_str("md5").ok().map(str::to_string),
        hash_checked: e.get_bool("hc").unwrap_or(false),
        attempts: int(e.get("a")).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
        error: e.get_str("err").ok().map(str::to_string),
        destination: e.get_str("d").ok().map(str::to_string),
        wrote: e.get_bool("w").unwrap_or(false),
        loc,
        name,
    })
}

/// The current reference records of a batch document, each decoded or refused.
pub(super) fn ref_records(collection: &str, d: &Document) -> Vec<Result<RefRecord, BadRecord>> {
    let entries = match entries(collection, d, "r") {
        Ok(e) => e,
        Err(e) => return vec![Err(e)],
    };
    let Some(batch) = d.get_object_id("_id").ok() else {
        return vec![Err(bad(collection, d, "its _id is not an ObjectId"))];
    };
    let live = live(d, "k");
    entries
        .iter()
        .filter(|(_, e)| e.get_str("k").is_ok_and(|k| live.contains(k)))
        .map(|(index, e)| {
            ref_entry_record(
                collection,
                d,
                e,
                Loc {
                    batch,
                    index: *index,
                },
            )
        })
        .collect()
}

fn ref_entry_record(
    collection: &str,
    d: &Document,
    e: &Document,
    loc: Loc,
) -> Result<RefRecord, BadRecord> {
    let key = e.get_str("k").unwrap_or_default();
    let refused = |why: String| bad(collection, d, format!("{key}: {why}"));
    let state = e.get_str("s").unwrap_or("(none)");
    let state = RefState::parse(state)
        .ok_or_else(|| refused(format!("unknown reference state {state:?}")))?;
    let field = |k: &str, what: &str| {
        e.get_str(k)
            .map(str::to_string)
            .map_err(|_| refused(format!("no {what}")))
    };
    let change = RefChange {
        class: field("c", "class")?,
        id: e
            .get("o")
            .cloned()
            .ok_or_else(|| refused("no object id".into()))?,
        path: field("p", "path")?,
        file: e.get_str("file").unwrap_or_default().to_string(),
        old: RefValue::from_bson(e, "old").map_err(refused)?,
        new: RefValue::from_bson(e, "new").map_err(refused)?,
        origin: match e.contains_key("orig") {
            true => Some(RefValue::from_bson(e, "orig").map_err(refused)?),
            false => None,
        },
        dangling: e.get_bool("dg").unwrap_or(false),
        loc: Some(loc),
    };
    Ok(RefRecord { state, change })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_batch(entries: Vec<Document>, live: Vec<&str>) -> Document {
        doc! {"_id": ObjectId::new(), "v": VERSION, "n": live, "f": entries}
    }

    #[test]
    fn unknown_states_are_refused() {
        let d = files_batch(vec![doc! {"n": "a.png", "s": "teleported"}], vec!["a.png"]);
        let e = file_records("_FileMigration", &d).remove(0).unwrap_err();
        assert!(e.why.contains("unknown file state \"teleported\""), "{e}");
        assert!(e.why.contains("a.png"), "{e}");
    }

    #[test]
    fn records_of_a_newer_or_the_first_format_are_refused_not_misread() {
        let mut d = files_batch(vec![doc! {"n": "a.png", "s": "verified"}], vec!["a.png"]);
        d.insert("v", VERSION + 1);
        let e = file_records("_FileMigration", &d).remove(0).unwrap_err();
        assert!(e.why.contains("newer parse-files-migrate"), "{e}");
        let r = doc! {"_id": ObjectId::new(), "v": VERSION + 1, "k": ["k"], "r": [{"k": "k",
        "s": "rewritten", "c": "A", "o": "x", "p": "f", "old": {"name": "a"}, "new": {"name": "b"}}]};
        assert!(ref_records("_FileMigration.refs", &r).remove(0).is_err());
        // A record of the first format (a document per file) is not a batch: refused, naming
        // the reason, never read as an empty batch.
        let v1 = doc! {"_id": "a.png", "state": "verified", "v": 1};
        let e = file_records("_FileMigration", &v1).remove(0).unwrap_err();
        assert!(e.why.contains("older parse-files-migrate"), "{e}");
        let odd = doc! {"_id": "a.png", "v": VERSION, "n": [], "f": []};
        let e = file_records("_FileMigration", &odd).remove(0).unwrap_err();
        assert!(e.why.contains("ObjectId"), "{e}");
    }

    #[test]
    fn only_current_entries_are_read_with_their_place() {
        let d = files_batch(
            vec![
                doc! {"n": "a.png", "t": "h_a.png", "s": "verified", "size": 3.0, "a": 2_i64},
                doc! {"n": "b.png", "s": "planned"},
            ],
            vec!["a.png"],
        );
        let recs: Vec<FileRecord> = file_records("_FileMigration", &d)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(recs.len(), 1, "b.png was superseded: {recs:?}");
        let a = &recs[0];
        assert_eq!(
            (a.size, a.attempts, a.target.as_str()),
            (Some(3), 2, "h_a.png")
        );
        assert_eq!(a.loc.index, 0);
        assert_eq!(Some(a.loc.batch), d.get_object_id("_id").ok());
    }

    #[test]
    fn reference_records_read_back_typed() {
        let e = doc! {"k": "A/\"x\"/f", "s": "pending", "c": "A", "o": "x",
        "p": "f", "file": "a", "old": {"name": "a"}, "new": {"name": "b"}};
        let batch = ObjectId::new();
        let d = doc! {"_id": batch, "v": VERSION, "k": ["A/\"x\"/f"], "r": [e.clone(), e.clone()]};
        let recs = ref_records("refs", &d);
        // Both entries carry the current key; both are read (a key is current once per batch).
        let rec = recs[1].as_ref().unwrap();
        assert_eq!(rec.state, RefState::Pending);
        assert!(rec.change.is_bare_name());
        assert_eq!(rec.change.new.name, "b");
        assert_eq!(rec.change.loc, Some(Loc { batch, index: 1 }));
        let mut broken = e.clone();
        broken.remove("p");
        let d = doc! {"_id": batch, "v": VERSION, "k": ["A/\"x\"/f"], "r": [broken]};
        let why = ref_records("refs", &d).remove(0).unwrap_err().why;
        assert!(why.contains("no path"), "{why}");
    }

    #[test]
    fn later_changes_are_folded_into_their_entries_in_order() {
        let r = FileResult {
            name: "a.png",
            state: FileState::Failed,
            size: None,
            md5: None,
            hash_checked: false,
            error: Some("boom"),
            wrote: false,
        };
        let mut first = outcome_change(&r, DateTime::now());
        first.insert("i", 0);
        let ok = FileResult {
            state: FileState::Verified,
            size: Some(5),
            md5: Some("m"),
            error: None,
            ..r
        };
        let mut second = outcome_change(&ok, DateTime::now());
        second.insert("i", 0);
        let mut d = files_batch(
            vec![
                doc! {"n": "a.png", "s": "planned", "a": 1},
                doc! {"n": "b.png", "s": "planned", "a": 1},
            ],
            vec!["a.png", "b.png"],
        );
        d.insert(CHANGES, vec![first, doc! {"i": 7, "s": "verified"}, second]);
        let recs: Vec<FileRecord> = file_records("f", &d)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(recs[0].state, FileState::Verified);
        assert_eq!(recs[0].error, None, "the later outcome cleared the error");
        assert_eq!((recs[0].size, recs[0].md5.as_deref()), (Some(5), Some("m")));
        assert_eq!(recs[1].state, FileState::Planned, "no change for b.png");
    }
}
