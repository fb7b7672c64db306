//! Which of a few names a top-level File field still holds, asked of the database directly: one
//! query per class with File fields (`{$or: [{<field>: {$in: names}}, …]}`), for a check right
//! before an action on those names (`audit --quarantine` asks it of each batch just before moving
//! it). Nested Files (in Object/Array fields, Parse Config) have no fixed path to query: only a
//! walk finds them.

use std::collections::HashSet;

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::Target;

/// The names of `names` that some top-level File field of `targets` holds.
pub async fn referenced_top_level(
    db: &Database,
    targets: &[Target],
    names: &[&str],
) -> anyhow::Result<HashSet<String>> {
    let mut found = HashSet::new();
    if names.is_empty() {
        return Ok(found);
    }
    for t in targets.iter().filter(|t| !t.class.file_fields.is_empty()) {
        let fields = &t.class.file_fields;
        let any: Vec<Document> = fields
            .iter()
            .map(|f| doc! {f.as_str(): {"$in": names}})
            .collect();
        let mut projection = doc! {"_id": 0};
        for f in fields {
            projection.insert(f.as_str(), 1);
        }
        let docs: Vec<Document> = db
            .collection::<Document>(&t.collection)
            .find(doc! {"$or": any})
            .projection(projection)
            .await
            .with_context(|| format!("checking {} for references", t.collection))?
            .try_collect()
            .await
            .with_context(|| format!("checking {} for references", t.collection))?;
        for d in &docs {
            for f in fields {
                match d.get(f) {
                    Some(Bson::String(n)) if names.contains(&n.as_str()) => {
                        found.insert(n.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(found)
}
