//! Converting a ledger of the first format (a document per file record and per reference
//! record) into batch documents, once, by the first writing run of this version (under its
//! lease). Idempotent and safe to interrupt: each page of old records becomes one batch
//! document with an `_id` derived from the page (an upsert), and the old records are deleted
//! only after it; a re-run after a crash rebuilds the same batch and finishes the deletes.

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};

use super::{Ledger, RefState, VERSION};
use crate::db::update_stmt;

/// Old records converted per batch document.
const PAGE: i64 = 256;

impl Ledger {
    /// Convert every record of the first format; returns how many were converted.
    pub async fn upgrade(&self) -> anyhow::Result<u64> {
        let files = self.upgrade_coll(&self.files, "n", "f", file_entry).await?;
        let refs = self.upgrade_coll(&self.refs, "k", "r", ref_entry).await?;
        Ok(files + refs)
    }

    async fn upgrade_coll(
        &self,
        coll: &str,
        live: &str,
        entries: &str,
        convert: fn(&Document) -> Option<(String, Document)>,
    ) -> anyhow::Result<u64> {
        let mut converted = 0;
        loop {
            let old: Vec<Document> = self
                .coll(coll)
                .find(doc! {entries: {"$exists": false}})
                .sort(doc! {"_id": 1})
                .limit(PAGE)
                .await
                .with_context(|| format!("reading {coll}"))?
                .try_collect()
                .await
                .with_context(|| format!("reading {coll}"))?;
            let Some(first) = old.first().and_then(|d| d.get("_id")) else {
                return Ok(converted);
            };
            let batch = page_id(first);
            let (names, list): (Vec<String>, Vec<Document>) =
                old.iter().filter_map(convert).unzip();
            let open = list
                .iter()
                .any(|e| e.get_str("s") == Ok(RefState::Pending.as_str()));
            let mut d = doc! {"v": VERSION, "run": self.run, "at": mongodb::bson::DateTime::now(),
            live: names, entries: list};
            if open && entries == "r" {
                d.insert("open", true);
            }
            self.write(
                coll,
                vec![update_stmt(
                    doc! {"_id": batch},
                    doc! {"$setOnInsert": d},
                    true,
                )],
            )
            .await?;
            let ids: Vec<Bson> = old.iter().filter_map(|d| d.get("_id").cloned()).collect();
            self.coll(coll)
                .delete_many(doc! {"_id": {"$in": &ids}})
                .await
                .with_context(|| format!("removing converted records from {coll}"))?;
            converted += ids.len() as u64;
        }
    }
}

/// The batch `_id` of a page of old records: derived from its first record, so a re-run after a
/// crash rebuilds the same batch. Its time part is zero: older than any batch written since.
fn page_id(first: &Bson) -> ObjectId {
    use md5::Digest;
    let digest = md5::Md5::digest(first.to_string().as_bytes());
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&digest[..8]);
    ObjectId::from_bytes(bytes)
}

/// A first-format file record as an entry.
fn file_entry(d: &Document) -> Option<(String, Document)> {
    let name = d.get_str("_id").ok()?.to_string();
    let mut e = doc! {"n": &name};
    for (old, new) in [
        ("target", "t"),
        ("kind", "k"),
        ("destination", "d"),
        ("state", "s"),
        ("attempts", "a"),
        ("size", "size"),
        ("md5", "md5"),
        ("hash_checked", "hc"),
        ("error", "err"),
        ("updated_at", "at"),
    ] {
        if let Some(v) = d.get(old) {
            e.insert(new, v.clone());
        }
    }
    Some((name, e))
}

/// A first-format reference record as an entry.
fn ref_entry(d: &Document) -> Option<(String, Document)> {
    let key = d.get_str("_id").ok()?.to_string();
    let mut e = doc! {"k": &key};
    for (old, new) in [
        ("c", "c"),
        ("o", "o"),
        ("p", "p"),
        ("file", "file"),
        ("old", "old"),
        ("new", "new"),
        ("state", "s"),
        ("error", "err"),
    ] {
        if let Some(v) = d.get(old) {
            e.insert(new, v.clone());
        }
    }
    Some((key, e))
}
