//! The GridFS store against the real MongoDB-wire test server: the conformance suite (plain and
//! encrypted), Parse's layout, the newest-revision rule, compatibility with Node-encrypted files
//! and plaintext fallback. Each test uses its own database and drops it at the end.

use futures::io::AsyncWriteExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId, spec::BinarySubtype};
use parse_files_migrate::secret::Secret;
use parse_files_migrate::storage::crypto::{self, FileKey};
use parse_files_migrate::storage::gridfs::{GridFsConfig, GridFsStore};
use parse_files_migrate::storage::{ObjectStore, PutOptions, StoreContext};

use crate::support;
use crate::support::conformance::{self, body, read_all};

async fn store(db: &str, key: Option<&str>) -> GridFsStore {
    let cfg = GridFsConfig {
        uri: Some(Secret::new(support::mongo_uri())),
        database: Some(db.to_string()),
        encryption_key: key.map(Into::into),
        ..Default::default()
    };
    GridFsStore::new(&cfg, &StoreContext::default())
        .await
        .expect("gridfs store")
}

async fn files(db: &mongodb::Database) -> Vec<Document> {
    use futures::TryStreamExt;
    let coll = db.collection::<Document>("fs.files");
    coll.find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn count_chunks(db: &mongodb::Database) -> u64 {
    db.collection::<Document>("fs.chunks")
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// Upload raw stored bytes with the driver, as Parse Server would have.
async fn raw_upload(db: &mongodb::Database, name: &str, data: &[u8]) {
    let bucket = db.gridfs_bucket(None);
    let mut up = bucket.open_upload_stream(name).await.unwrap();
    up.write_all(data).await.unwrap();
    up.close().await.unwrap();
}

#[tokio::test]
async fn conformance_plain() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_gridfs");
    conformance::run(&store(&name, None).await).await;
    let db = client.database(&name);
    assert!(files(&db).await.is_empty());
    assert_eq!(
        count_chunks(&db).await,
        0,
        "no orphan chunks (failed puts aborted)"
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn conformance_encrypted() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_gridfs_enc");
    conformance::run(&store(&name, Some("conformance key")).await).await;
    let db = client.database(&name);
    assert_eq!(
        count_chunks(&db).await,
        0,
        "no orphan chunks (failed puts aborted)"
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn layout_matches_parse_and_overwrite_removes_old_revisions() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_gridfs_layout");
    let db = client.database(&name);
    let s = store(&name, Some("k")).await;
    let data = support::bytes(600_000, 1);
    s.put("a/b c.jpg", body(&data, 70_000), &PutOptions::default())
        .await
        .unwrap();
    s.put("a/b c.jpg", body(&data[..10], 3), &PutOptions::default())
        .await
        .unwrap();
    let docs = files(&db).await;
    assert_eq!(docs.len(), 1, "older revision removed: {docs:?}");
    let d = &docs[0];
    assert_eq!(d.get_str("filename").unwrap(), "a/b c.jpg");
    assert_eq!(d.get_i32("chunkSize").unwrap(), 261_120);
    assert_eq!(d.get_document("metadata").unwrap(), &doc! {});
    assert_eq!(count_chunks(&db).await, 1);
    let stored = read_all(&store(&name, None).await, "a/b c.jpg")
        .await
        .unwrap();
    assert_eq!(stored.len(), 10 + 32);
    assert_eq!(
        crypto::open(&FileKey::derive("k"), &stored).unwrap(),
        &data[..10]
    );
    let meta = s.stat("a/b c.jpg").await.unwrap();
    assert_eq!(meta.size, 10);
    assert_eq!(
        meta.etag.as_deref(),
        Some(d.get_object_id("_id").unwrap().to_hex().as_str())
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn reads_newest_upload_date() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_gridfs_rev");
    let db = client.database(&name);
    // Two revisions by hand; the newer uploadDate is inserted first, so it has the lower _id.
    let now = DateTime::now().timestamp_millis();
    for (content, age_ms) in [(&b"newer"[..], 0), (&b"older revision"[..], 60_000)] {
        let id = ObjectId::new();
        db.collection::<Document>("fs.chunks")
            .insert_one(doc! { "files_id": id, "n": 0,
                "data": Bson::Binary(mongodb::bson::Binary { subtype: BinarySubtype::Generic, bytes: content.to_vec() }) })
            .await
            .unwrap();
        db.collection::<Document>("fs.files")
            .insert_one(doc! { "_id": id, "filename": "f.txt", "length": content.len() as i64,
                "chunkSize": 261_120, "uploadDate": DateTime::from_millis(now - age_ms), "md5": "ignored" })
            .await
            .unwrap();
    }
    let s = store(&name, None).await;
    assert_eq!(read_all(&s, "f.txt").await.unwrap(), b"newer");
    assert_eq!(s.stat("f.txt").await.unwrap().size, 5);
    // The listing agrees: the newest is the object, the older revision is superseded.
    s.put("g.txt", body(b"single", 2), &PutOptions::default())
        .await
        .unwrap();
    let (listed, _) = conformance::list_all(&s, None, 1).await;
    let mut seen: Vec<(String, u64, bool)> = listed
        .iter()
        .map(|o| (o.name.clone(), o.size, o.superseded))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("f.txt".to_string(), 5, false),
            ("f.txt".to_string(), 14, true),
            ("g.txt".to_string(), 6, false)
        ]
    );
    assert!(listed.iter().all(|o| o.version.is_some()));
    let (only_f, _) = conformance::list_all(&s, Some("f."), 5).await;
    assert_eq!(
        only_f.len(),
        2,
        "prefix `f.` (a regex metacharacter) lists f.txt's revisions"
    );
    s.delete("g.txt").await.unwrap();
    s.delete("f.txt").await.unwrap();
    assert!(
        files(&db).await.is_empty() && count_chunks(&db).await == 0,
        "delete removes all revisions"
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn node_encrypted_and_plaintext_files() {
    let client = support::mongo_client().await;
    let name = support::unique("pfm_gridfs_node");
    let db = client.database(&name);
    // Produced by Node's crypto exactly as Parse Server's GridFSBucketAdapter encrypts with
    // fileKey 'legacyKey' (script in src/storage/crypto/tests.rs, NODE_STORED).
    let node = hex::decode(
        "e949f2212668b7023c087042e761ce46a71300cd3221227e694b5969076a8b94\
         fbc4dffc04fb2d11a3ffc4000102030405060708090a0b0c0d0e0f\
         ebc867117050b9485ba49e79270b7a3d",
    )
    .unwrap();
    raw_upload(&db, "0123abcd_node.txt", &node).await;
    let big_plain = support::bytes(9 * 1024 * 1024, 4);
    raw_upload(&db, "old plain.bin", &big_plain).await;
    raw_upload(&db, "small plain.txt", b"plain before the key").await;
    // The key comes from the app's fileKey, as with Parse Server's default adapter.
    let cfg = GridFsConfig {
        uri: Some(Secret::new(support::mongo_uri())),
        database: Some(name.clone()),
        ..Default::default()
    };
    let ctx = StoreContext {
        file_key: Some("legacyKey".into()),
        ..Default::default()
    };
    let s = GridFsStore::new(&cfg, &ctx).await.unwrap();
    assert_eq!(
        read_all(&s, "0123abcd_node.txt").await.unwrap(),
        b"Hello from Parse Server, encrypted by node!"
    );
    assert_eq!(s.stat("0123abcd_node.txt").await.unwrap().size, 43);
    assert!(read_all(&s, "old plain.bin").await.unwrap() == big_plain);
    assert_eq!(
        s.stat("old plain.bin").await.unwrap().size,
        big_plain.len() as u64
    );
    assert_eq!(
        read_all(&s, "small plain.txt").await.unwrap(),
        b"plain before the key"
    );
    db.drop().await.unwrap();
}

/// Regression (safety review, finding 10): an unencrypted file was vouched for by its files
/// document's `length` alone, so a copy whose chunks another run had swept as debris while it
/// uploaded (then completed with a hole) was recorded verified. `stat`, which a copy's
/// verification asks, now counts the chunks and their bytes: a missing chunk, or a short one,
/// is an integrity error.
#[tokio::test]
async fn an_unencrypted_file_with_a_missing_chunk_does_not_pass_stat() {
    use parse_files_migrate::storage::StorageError;
    use parse_files_migrate::storage::gridfs::PARSE_CHUNK_SIZE;
    let client = support::mongo_client().await;
    let name = support::unique("pfm_gridfs_hole");
    let db = client.database(&name);
    let s = store(&name, None).await;
    let chunk = PARSE_CHUNK_SIZE as usize;
    let data = support::bytes(3 * chunk + 1000, 11);
    let chunks = db.collection::<Document>("fs.chunks");
    for (file, n) in [("hole.bin", 1), ("short.bin", 3)] {
        s.put(file, body(&data, 65536), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.stat(file).await.unwrap().size, data.len() as u64);
        let id = files(&db)
            .await
            .into_iter()
            .find(|f| f.get_str("filename") == Ok(file))
            .unwrap()
            .get("_id")
            .cloned()
            .unwrap();
        if file == "hole.bin" {
            chunks
                .delete_one(doc! {"files_id": id.clone(), "n": n})
                .await
                .unwrap();
        } else {
            // The last chunk cut short: the count is right, the bytes are not.
            let short = Bson::Binary(mongodb::bson::Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![0; 10],
            });
            chunks
                .update_one(
                    doc! {"files_id": id.clone(), "n": n},
                    doc! {"$set": {"data": short}},
                )
                .await
                .unwrap();
        }
        match s.stat(file).await {
            Err(StorageError::Integrity { reason, .. }) => {
                assert!(reason.contains("files document says 4 chunks"), "{reason}")
            }
            other => panic!("{file}: expected an integrity error, got {other:?}"),
        }
    }
    db.drop().await.unwrap();
}
