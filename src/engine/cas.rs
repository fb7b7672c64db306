//! Compare-and-swap writes of references: the one place that builds, sends and settles them, for
//! `migrate` (old → new) and `rollback` (new → old) alike.
//!
//! Every statement is `update({_id, <path>: <old value>}, {$set: <new value>})`: if the app
//! changed the reference since it was read, the filter matches nothing and nothing is
//! overwritten. When a batch matched fewer statements than it had, the documents are read back
//! and each change is settled: the document holds the new value (rewritten — by us, or already
//! before), or something else (a conflict: the app changed it, left alone), or the server
//! refused the statement (failed, with its reason).
//!
//! The shape of the value at the path follows from the recorded change itself
//! ([`RefChange::is_bare_name`]): a bare name string (a top-level File field), or a File object
//! whose `name` (and `url`) are set.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use crate::db::{update_batch, update_stmt};
use crate::ledger::{Ledger, RefChange, RefState, RefValue, Settled as SettledRef};
use crate::parse::schema::collection_name;

/// A state per change, with the server's reason for refused ones.
pub type Settled = Vec<(RefState, Option<String>)>;

/// The compare-and-swap update of one change: the filter holds the old name at the exact path.
pub fn statement(r: &RefChange) -> (Document, Document) {
    if r.is_text() {
        // The whole string: the filter holds it byte for byte, so any edit since is a conflict.
        let text = |v: &RefValue| v.raw_text.clone().map_or(Bson::Null, Bson::String);
        return (
            doc! {"_id": r.id.clone(), &r.path: text(&r.old)},
            doc! {"$set": {&r.path: text(&r.new)}},
        );
    }
    if r.is_bare_name() {
        return (
            doc! {"_id": r.id.clone(), &r.path: &r.old.name},
            doc! {"$set": {&r.path: &r.new.name}},
        );
    }
    let mut set = doc! {format!("{}.name", r.path): &r.new.name};
    let mut u = Document::new();
    match &r.new.url {
        Some(url) => {
            set.insert(format!("{}.url", r.path), url);
        }
        // Only a rollback restores "no url" (a File object stored without one).
        None => {
            u.insert("$unset", doc! {format!("{}.url", r.path): ""});
        }
    }
    u.insert("$set", set);
    let mut q = doc! {"_id": r.id.clone(), format!("{}.name", r.path): &r.old.name};
    // The old url too when it is known exactly: a url the app changed is not overwritten.
    if let Some(url) = r.old.url.as_ref().filter(|_| !r.old.key_redacted) {
        q.insert(format!("{}.url", r.path), url);
    }
    (q, u)
}

/// Run the compare-and-swap updates of `changes` in one collection: one round trip when every
/// statement matched, else a read-back to settle each.
pub async fn apply(
    db: &Database,
    collection: &str,
    changes: &[RefChange],
) -> anyhow::Result<Settled> {
    if changes.iter().any(RefChange::is_text) {
        return apply_texts(db, collection, changes).await;
    }
    let stmts = changes
        .iter()
        .map(|c| {
            let (q, u) = statement(c);
            update_stmt(q, u, false)
        })
        .collect();
    let out = update_batch(db, collection, stmts).await?;
    if out.matched == changes.len() as u64 && out.errors.is_empty() {
        return Ok(vec![(RefState::Rewritten, None); changes.len()]);
    }
    let docs = read_back(db, collection, changes).await?;
    let errors: HashMap<usize, String> = out.errors.into_iter().collect();
    Ok(settle(changes, &docs, &errors))
}

/// Whole strings are written one statement per command ([`TEXT_WRITES`] at once): a string
/// the app edits right after our write no longer equals what we wrote, so a read-back could not
/// tell that from an edit before it; a command's own match count can. Other changes in the same
/// call go as one batch.
async fn apply_texts(
    db: &Database,
    collection: &str,
    changes: &[RefChange],
) -> anyhow::Result<Settled> {
    use futures::StreamExt;
    let (texts, others): (Vec<usize>, Vec<usize>) =
        (0..changes.len()).partition(|i| changes[*i].is_text());
    let mut out: Settled = vec![(RefState::Failed, None); changes.len()];
    if !others.is_empty() {
        let batch: Vec<RefChange> = others.iter().map(|i| changes[*i].clone()).collect();
        let states = Box::pin(apply(db, collection, &batch)).await?;
        for (i, s) in others.into_iter().zip(states) {
            out[i] = s;
        }
    }
    let results: Vec<(usize, anyhow::Result<crate::db::UpdateOutcome>)> =
        futures::stream::iter(texts)
            .map(|i| async move {
                let (q, u) = statement(&changes[i]);
                (
                    i,
                    update_batch(db, collection, vec![update_stmt(q, u, false)]).await,
                )
            })
            .buffer_unordered(TEXT_WRITES)
            .collect()
            .await;
    for (i, r) in results {
        let r = r?;
        out[i] = match (r.errors.into_iter().next(), r.matched) {
            (Some((_, e)), _) => (RefState::Failed, Some(e)),
            (None, 1..) => (RefState::Rewritten, None),
            (None, 0) => (RefState::Conflict, None),
        };
    }
    Ok(out)
}

/// Whole-string writes in flight at once.
const TEXT_WRITES: usize = 16;

/// Tell, per change, whether its document now holds the new value. `docs` are the documents by
/// `_id` key ([`id_key`]); `errors` the server's refusals by statement index.
pub fn settle(
    changes: &[RefChange],
    docs: &HashMap<String, Document>,
    errors: &HashMap<usize, String>,
) -> Settled {
    changes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some(e) = errors.get(&i) {
                return (RefState::Failed, Some(e.clone()));
            }
            if holds_change(current(docs, r), r, &r.new) {
                (RefState::Rewritten, None)
            } else {
                (RefState::Conflict, None)
            }
        })
        .collect()
}

/// The value at a change's path in its read-back document.
fn current<'a>(docs: &'a HashMap<String, Document>, r: &RefChange) -> Option<&'a Bson> {
    docs.get(&id_key(&r.id)).and_then(|d| get_path(d, &r.path))
}

/// Whether the stored value at a change's path is `value` as far as the change can tell: the
/// exact string of a text change, else the File's name.
fn holds_change(v: Option<&Bson>, r: &RefChange, value: &RefValue) -> bool {
    if r.is_text() {
        return matches!((v, &value.raw_text), (Some(Bson::String(s)), Some(t)) if s == t);
    }
    holds_value(v, value, r.is_bare_name())
}

/// Whether a stored File value names `name`: the string itself for a bare name, the `name` of a
/// File object otherwise.
fn holds(v: Option<&Bson>, name: &str, bare: bool) -> bool {
    match v {
        Some(Bson::String(s)) if bare => s == name,
        Some(Bson::Document(d)) => d.get_str("name").ok() == Some(name),
        _ => false,
    }
}

/// Whether a stored File value is exactly `value`: its name, and its url when one is recorded
/// (a recorded url with the key redacted cannot be compared: the name decides).
fn holds_value(v: Option<&Bson>, value: &RefValue, bare: bool) -> bool {
    match (v, &value.url) {
        (Some(Bson::Document(d)), Some(url)) if !value.key_redacted => {
            d.get_str("name").ok() == Some(value.name.as_str())
                && d.get_str("url").ok() == Some(url)
        }
        _ => holds(v, &value.name, bare),
    }
}

/// The current documents of `changes`, projected on their paths, by `_id` key.
pub async fn read_back(
    db: &Database,
    collection: &str,
    changes: &[RefChange],
) -> anyhow::Result<HashMap<String, Document>> {
    let mut ids: Vec<Bson> = Vec::new();
    let mut seen = HashSet::new();
    let mut projection = Document::new();
    for c in changes {
        if seen.insert(id_key(&c.id)) {
            ids.push(c.id.clone());
        }
        // The top-level field: a projection on `gallery.2` would not select array index 2.
        let top = c.path.split('.').next().unwrap_or(&c.path);
        projection.insert(top, 1);
    }
    let mut cursor = db
        .collection::<Document>(collection)
        .find(doc! {"_id": {"$in": ids}})
        .projection(projection)
        .await
        .with_context(|| format!("reading back {collection}"))?;
    let mut docs = HashMap::new();
    while let Some(d) = cursor
        .try_next()
        .await
        .with_context(|| format!("reading back {collection}"))?
    {
        if let Some(id) = d.get("_id") {
            docs.insert(id_key(id), d.clone());
        }
    }
    Ok(docs)
}

/// A run killed between recording references pending and recording their outcomes leaves batch
/// records `open`. Settle them from the documents: holding the new value → `rewritten`; holding
/// the old one → the rewrite is applied now (the same compare-and-swap, whose outcome is
/// recorded); anything else → `conflict`. Returns how many were settled.
///
/// Applying it here, instead of leaving it to the walk, is what keeps the ledger true when the
/// crashed run's last writes are still on their way: the server may carry out an update the
/// killed process sent after this run read the document (the lease is taken over at once on the
/// same machine). Had the record been dropped, that late write would rewrite the reference with
/// no record of it (the walk then finds the new value and has nothing to do); applied here, one
/// of the two identical compare-and-swaps matches and the other is a no-op, and either way the
/// record says `rewritten`.
pub async fn settle_pending(db: &Database, ledger: &Ledger, prefix: &str) -> anyhow::Result<u64> {
    let mut after: Option<Bson> = None;
    let mut settled = 0u64;
    loop {
        let page = ledger
            .refs_page(&[RefState::Pending], after.as_ref(), true)
            .await?;
        let Some(next) = page.next.clone() else {
            break;
        };
        after = Some(next);
        let mut by_collection: BTreeMap<String, Vec<RefChange>> = BTreeMap::new();
        for r in &page.records {
            match r {
                Ok(r) => by_collection
                    .entry(collection_name(prefix, &r.change.class))
                    .or_default()
                    .push(r.change.clone()),
                Err(bad) => tracing::warn!("{bad}; left as it is"),
            }
        }
        let mut all = Vec::new();
        for (collection, changes) in by_collection {
            let docs = read_back(db, &collection, &changes).await?;
            let states = settle(&changes, &docs, &HashMap::new());
            let mut not_applied = Vec::new();
            for (c, (s, _)) in changes.into_iter().zip(states) {
                let now = current(&docs, &c);
                // The new value first: a url-only rewrite (an adapter move rebasing nested
                // urls) keeps the name, so the old name alone does not say it was not applied.
                let text = c.is_text();
                if (text && holds_change(now, &c, &c.new))
                    || (!text && holds_value(now, &c.new, c.is_bare_name()))
                {
                    all.push((c, SettledRef::State(RefState::Rewritten)));
                } else if (text && holds_change(now, &c, &c.old))
                    || (!text && holds(now, &c.old.name, true))
                {
                    not_applied.push(c);
                } else {
                    all.push((c, SettledRef::State(s)));
                }
            }
            if !not_applied.is_empty() {
                let states = apply(db, &collection, &not_applied).await?;
                all.extend(
                    not_applied
                        .into_iter()
                        .zip(states)
                        .map(|(c, (s, _))| (c, SettledRef::State(s))),
                );
            }
        }
        settled += all.len() as u64;
        let marks: Vec<(&RefChange, SettledRef)> = all.iter().map(|(c, s)| (c, *s)).collect();
        ledger.settle_refs(&page, &marks).await?;
    }
    Ok(settled)
}

/// A hashable key for an `_id` of any type.
pub fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

/// The value at a dotted path (`gallery.2.file`), descending into arrays by index.
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get(p)?,
            Bson::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::RefValue;

    fn change(path: &str, old: RefValue, new: RefValue) -> RefChange {
        RefChange {
            class: "Photo".into(),
            id: Bson::String("a1".into()),
            path: path.into(),
            file: old.name.clone(),
            old,
            new,
            origin: None,
            dangling: false,
            loc: None,
        }
    }

    #[test]
    fn a_bare_name_is_swapped_on_its_exact_value() {
        let c = change(
            "image",
            RefValue::name("tfss-x-a.jpg"),
            RefValue::name("h_a.jpg"),
        );
        let (q, u) = statement(&c);
        assert_eq!(q, doc! {"_id": "a1", "image": "tfss-x-a.jpg"});
        assert_eq!(u, doc! {"$set": {"image": "h_a.jpg"}});
    }

    #[test]
    fn a_file_object_is_swapped_on_its_name_and_gets_the_new_url() {
        let c = change(
            "gallery.2.file",
            RefValue::file("my pic.jpg", Some("http://old/x"), None),
            RefValue::file("my pic.jpg", Some("https://new/my%20pic.jpg"), None),
        );
        let (q, u) = statement(&c);
        assert_eq!(
            q,
            doc! {"_id": "a1", "gallery.2.file.name": "my pic.jpg", "gallery.2.file.url": "http://old/x"}
        );
        // A url recorded without the fileKey cannot be compared: the name alone.
        let redacted = change(
            "f",
            RefValue::file("n", Some("http://files.parsetfss.com/K/n"), Some("K")),
            RefValue::file("n", Some("https://new/n"), None),
        );
        assert_eq!(statement(&redacted).0, doc! {"_id": "a1", "f.name": "n"});
        assert_eq!(
            u,
            doc! {"$set": {"gallery.2.file.name": "my pic.jpg",
            "gallery.2.file.url": "https://new/my%20pic.jpg"}}
        );
        // A rollback to a File object stored without a url removes the url.
        let back = change(
            "f",
            RefValue::file("n.jpg", Some("https://new/n.jpg"), None),
            RefValue::file("o.jpg", None, None),
        );
        let (_, u) = statement(&back);
        assert_eq!(
            u,
            doc! {"$unset": {"f.url": ""}, "$set": {"f.name": "o.jpg"}}
        );
    }

    #[test]
    fn settle_tells_rewritten_from_conflicts_and_refusals() {
        let mk = |path: &str, old: &str, new: &str| {
            change(path, RefValue::name(old), RefValue::name(new))
        };
        let changes = vec![
            mk("a", "o1", "n1"),
            mk("b", "o2", "n2"),
            mk("c", "o3", "n3"),
        ];
        let mut docs = HashMap::new();
        docs.insert(
            id_key(&Bson::String("a1".into())),
            doc! {"_id": "a1", "a": "n1", "b": "app-wrote-this", "c": "o3"},
        );
        let errors = HashMap::from([(2usize, "too big".to_string())]);
        let s = settle(&changes, &docs, &errors);
        assert_eq!(s[0].0, RefState::Rewritten);
        assert_eq!(s[1].0, RefState::Conflict);
        assert_eq!(s[2], (RefState::Failed, Some("too big".into())));
        // A File-object change is not satisfied by a bare string of the new name.
        let nested = change(
            "a",
            RefValue::file("o1", Some("http://old/o1"), None),
            RefValue::file("n1", Some("http://new/n1"), None),
        );
        assert_eq!(
            settle(&[nested], &docs, &HashMap::new())[0].0,
            RefState::Conflict
        );
    }

    #[test]
    fn a_string_is_swapped_whole_and_settled_on_its_exact_text() {
        let c = change(
            "body",
            RefValue::text(
                "tfss-1.jpg",
                "see http://files.parsetfss.com/K/tfss-1.jpg",
                None,
            )
            .unwrap(),
            RefValue::text("tfss-1.jpg", "see https://new/files/app/h_1.jpg", None).unwrap(),
        );
        assert!(c.is_text() && !c.is_bare_name());
        let (q, u) = statement(&c);
        assert_eq!(
            q,
            doc! {"_id": "a1", "body": "see http://files.parsetfss.com/K/tfss-1.jpg"}
        );
        assert_eq!(
            u,
            doc! {"$set": {"body": "see https://new/files/app/h_1.jpg"}}
        );
        let mut docs = HashMap::new();
        let key = id_key(&Bson::String("a1".into()));
        docs.insert(
            key.clone(),
            doc! {"_id": "a1", "body": "see https://new/files/app/h_1.jpg"},
        );
        assert_eq!(
            settle(std::slice::from_ref(&c), &docs, &HashMap::new())[0].0,
            RefState::Rewritten
        );
        docs.insert(key, doc! {"_id": "a1", "body": "edited by the app"});
        assert_eq!(
            settle(&[c], &docs, &HashMap::new())[0].0,
            RefState::Conflict
        );
    }

    #[test]
    fn get_path_walks_objects_and_arrays() {
        let d = doc! {"g": [{"f": {"name": "x"}}, {"f": {"name": "y"}}], "p": {"q": 1}};
        assert_eq!(get_path(&d, "g.1.f.name"), Some(&Bson::String("y".into())));
        assert_eq!(get_path(&d, "p.q"), Some(&Bson::Int32(1)));
        assert_eq!(get_path(&d, "g.9.f"), None);
        assert_eq!(get_path(&d, "p.q.r"), None);
    }
}
