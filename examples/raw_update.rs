//! Baseline for `bench/run`: the fastest a plain driver program rewrites file references — the
//! same number of `_id`-filtered compare-and-swap updates the tool makes, and nothing else (no
//! ledger, no read-back).
//!
//!     raw_update URI DATABASE COLLECTION FIELD BATCH
//!
//! Reads every document's `_id` and FIELD first (not timed), then times one update per document
//! holding a string in FIELD: filter `{_id, FIELD: old}`, `$set: {FIELD: "raw_" + old}`. BATCH
//! statements go in one `update` command (unordered), as the tool batches; BATCH = 1 sends
//! `update_one` calls one after another (a naive script).
//!
//! Prints one JSON line: `{"updates":…,"matched":…,"secs":…,"updates_per_sec":…}`.

use std::time::Instant;

use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, db, coll, field, batch] = match &args[..] {
        [a, b, c, d, e] => [a, b, c, d, e],
        _ => anyhow::bail!("usage: raw_update URI DATABASE COLLECTION FIELD BATCH"),
    };
    let batch: usize = batch.parse()?;
    anyhow::ensure!(batch >= 1, "BATCH must be at least 1");
    let db = Client::with_uri_str(uri).await?.database(db);
    let c = db.collection::<Document>(coll);
    let targets: Vec<(Bson, String)> = c
        .find(doc! {field.as_str(): {"$type": "string"}})
        .projection(doc! {"_id": 1, field.as_str(): 1})
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .filter_map(|d| Some((d.get("_id")?.clone(), d.get_str(field).ok()?.to_string())))
        .collect();
    let start = Instant::now();
    let mut matched = 0u64;
    if batch == 1 {
        for (id, old) in &targets {
            let r = c
                .update_one(
                    doc! {"_id": id.clone(), field.as_str(): old},
                    doc! {"$set": {field.as_str(): format!("raw_{old}")}},
                )
                .await?;
            matched += r.matched_count;
        }
    } else {
        for chunk in targets.chunks(batch) {
            let updates: Vec<Document> = chunk
                .iter()
                .map(|(id, old)| {
                    doc! {"q": {"_id": id.clone(), field.as_str(): old},
                    "u": {"$set": {field.as_str(): format!("raw_{old}")}}, "upsert": false}
                })
                .collect();
            let reply = db
                .run_command(doc! {"update": coll.as_str(), "updates": updates, "ordered": false})
                .await?;
            matched += match reply.get("n") {
                Some(Bson::Int32(n)) => *n as u64,
                Some(Bson::Int64(n)) => *n as u64,
                _ => 0,
            };
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"updates\":{},\"matched\":{matched},\"secs\":{secs:.3},\"updates_per_sec\":{:.1}}}",
        targets.len(),
        targets.len() as f64 / secs
    );
    Ok(())
}
