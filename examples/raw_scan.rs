//! Baseline for `bench/run`: the fastest a plain driver program walks a class — the same
//! collection, the same projection, nothing else (no reference extraction, no output).
//!
//!     raw_scan URI DATABASE COLLECTION FIELD[,FIELD…] cursor|sorted|keyset [PAGE_SIZE]
//!
//! * `cursor`: one `find` cursor over the whole collection, `batch_size` = PAGE_SIZE (what a
//!   throwaway script would do).
//! * `sorted`: the same cursor sorted by `_id` — the tool's query exactly (its walk must be in
//!   `_id` order to resume), so the difference to the tool is the tool's own work. On MongoDB
//!   the `_id` index gives the order for free; a server without one sorts the whole collection.
//! * `keyset`: the same `_id` keyset pages the tool uses (`{_id: {$gt: last}}`, sort, limit), one
//!   `find` per page, so the difference to the tool is the tool's own work, not the query shape.
//!
//! Prints one JSON line: `{"docs":…,"secs":…,"docs_per_sec":…}`.

use std::time::Instant;

use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, db, coll, fields, mode] = match &args[..] {
        [a, b, c, d, e, ..] => [a, b, c, d, e],
        _ => anyhow::bail!(
            "usage: raw_scan URI DATABASE COLLECTION FIELD[,FIELD…] cursor|sorted|keyset [PAGE_SIZE]"
        ),
    };
    let page: u32 = match args.get(5) {
        Some(p) => p.parse()?,
        None => 1000,
    };
    let mut projection = doc! {"_id": 1};
    for f in fields.split(',').filter(|f| !f.is_empty()) {
        projection.insert(f, 1);
    }
    let coll = Client::with_uri_str(uri)
        .await?
        .database(db)
        .collection::<RawDocumentBuf>(coll);
    let start = Instant::now();
    let mut docs = 0u64;
    match mode.as_str() {
        "cursor" | "sorted" => {
            let mut find = coll.find(doc! {}).projection(projection).batch_size(page);
            if mode == "sorted" {
                find = find.sort(doc! {"_id": 1});
            }
            let mut cursor = find.await?;
            while cursor.try_next().await?.is_some() {
                docs += 1;
            }
        }
        "keyset" => {
            let mut last: Option<Bson> = None;
            loop {
                let filter = match &last {
                    None => Document::new(),
                    Some(l) => doc! {"_id": {"$gt": l.clone()}},
                };
                let batch: Vec<RawDocumentBuf> = coll
                    .find(filter)
                    .projection(projection.clone())
                    .sort(doc! {"_id": 1})
                    .limit(i64::from(page))
                    .batch_size(page)
                    .await?
                    .try_collect()
                    .await?;
                docs += batch.len() as u64;
                let Some(end) = batch.last() else { break };
                last = end
                    .get("_id")?
                    .and_then(|v| v.to_raw_bson().try_into().ok());
                if batch.len() < page as usize {
                    break;
                }
            }
        }
        other => anyhow::bail!("unknown mode {other:?}: cursor, sorted or keyset"),
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"docs\":{docs},\"secs\":{secs:.3},\"docs_per_sec\":{:.1}}}",
        docs as f64 / secs
    );
    Ok(())
}
