//! Scanning memory does not grow with the number of objects: `list` over 200,000 objects must
//! peak at about the same RSS as over 20,000 (one page at a time, rows streamed).
//!
//! The page size is 10,000 here, not the default 1,000: the test MongoDB server (SecantusDB)
//! answers every `_id` range query with a collection scan and a sort (its `explain` says
//! `COLLSCAN → SORT` even with an `_id` hint), so each page costs O(collection). Real MongoDB
//! serves the same query from the `_id` index. Fewer, larger pages keep this test to a couple of
//! minutes; the memory claim is the same (O(page), never O(objects)).

use mongodb::bson::{Document, doc};

use crate::support::{self, app};

/// Insert `n` Photo objects, 10% with a top-level file, some of those with a nested one too.
async fn seed(db: &mongodb::Database, n: usize) {
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "image": "file", "meta": "object", "title": "string"})
        .await
        .unwrap();
    let coll = db.collection::<Document>("Photo");
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let mut d = doc! {"_id": format!("obj{i:08}"), "title": "x".repeat(100)};
        if i % 10 == 0 {
            d.insert(
                "image",
                format!("tfss-{i:08x}-0000-0000-0000-000000000000-p.jpg"),
            );
        }
        if i % 40 == 0 {
            d.insert(
                "meta",
                doc! {"f": {"__type": "File", "name": format!("n{i}.png")}},
            );
        }
        batch.push(d);
        if batch.len() == 1000 {
            coll.insert_many(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        coll.insert_many(batch).await.unwrap();
    }
}

/// Run `list` to a file; return (references listed, peak RSS in KiB) of that process.
///
/// The peak is measured by GNU time around the tool, not by `wait4` here: `ru_maxrss` survives
/// `execve`, so a child spawned straight from this test process (the whole integration suite,
/// hundreds of MiB) would report the suite's RSS as its own. time is small when it forks.
fn list_peak_rss(db: &str) -> (usize, i64) {
    let uri = support::uri_for(db);
    let out_path = std::env::temp_dir().join(format!("{db}.jsonl"));
    let rss_path = std::env::temp_dir().join(format!("{db}.rss"));
    let out = std::fs::File::create(&out_path).unwrap();
    let cfg = std::env::temp_dir().join(format!("{db}.toml"));
    std::fs::write(&cfg, "[mongo]\npage_size = 10000\n").unwrap();
    let tool = app::command();
    let mut timed = std::process::Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(&rss_path)
        .arg(tool.get_program())
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "--mongo-uri",
            &uri,
            "-q",
            "list",
        ])
        .args(["--output", "jsonl"])
        .stdout(out);
    for (k, v) in tool.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let status = timed
        .status()
        .expect("/usr/bin/time (scripts/test-services installs it)");
    assert!(status.success(), "list failed: {status}");
    let rss = std::fs::read_to_string(&rss_path).unwrap();
    let rss: i64 = rss.trim().lines().last().unwrap().trim().parse().unwrap();
    let rows = std::fs::read_to_string(&out_path).unwrap().lines().count();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&rss_path);
    (rows, rss)
}

#[tokio::test]
async fn scan_memory_is_flat_in_the_number_of_objects() {
    let client = support::mongo_client().await;
    let small = support::unique("mem_small");
    let large = support::unique("mem_large");
    seed(&client.database(&small), 20_000).await;
    seed(&client.database(&large), 200_000).await;

    // The child runs for minutes: wait for it off the runtime so the driver's monitors keep going.
    let run = |db: String| tokio::task::spawn_blocking(move || list_peak_rss(&db));
    let (rows_small, rss_small) = run(small.clone()).await.unwrap();
    let (rows_large, rss_large) = run(large.clone()).await.unwrap();
    assert_eq!(rows_small, 2_000 + 500);
    assert_eq!(rows_large, 20_000 + 5_000);
    eprintln!("peak RSS: 20k objects {rss_small} KiB, 200k objects {rss_large} KiB");
    // 10× the objects may not cost more than a few MiB (allocator noise), nowhere near 10×.
    assert!(
        rss_large < rss_small + 8 * 1024,
        "RSS grew with the object count: {rss_small} KiB → {rss_large} KiB"
    );
    assert!(rss_large < 100 * 1024, "peak RSS {rss_large} KiB");
    let client = support::mongo_client().await;
    client.database(&small).drop().await.unwrap();
    client.database(&large).drop().await.unwrap();
}
