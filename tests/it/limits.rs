//! The server's own limits (#20 item 8): a document so close to the 16 MiB BSON limit that its
//! rewrite (a longer nested File `url`) would push it over fails alone — reported as a failed
//! reference, its file still copied — and every other reference of the same batch is rewritten;
//! the run does not stop. Write commands are cut by what `hello` announces (unit-tested in
//! `db.rs`; here the real server's answer to an oversize update).

use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::parse_server_name;

use crate::support::app::{self, Hosted};
use crate::support::faulty::FaultyServer;
use crate::support::{self};

const FILE_KEY: &str = "limitsKey";
const MAX_BSON: usize = 16 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_rewrite_that_would_pass_16_mib_fails_alone_and_the_run_goes_on() {
    let db_name = support::unique("limits");
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, 12, 0, FILE_KEY).await;
    let server = FaultyServer::healthy(h.files.clone());
    // One more Photo whose nested File sits beside a string that fills the document to a few
    // bytes under the limit: the new url is longer than the stored one.
    let name = h.files.keys().next().unwrap().clone();
    let mut big = doc! {
        "_id": "huge",
        "meta": {"avatar": app::file(&name, Some("http://x/y"))},
        "pad": "",
    };
    let used = mongodb::bson::to_vec(&big).unwrap().len();
    big.insert("pad", "p".repeat(MAX_BSON - used - 8));
    let size = mongodb::bson::to_vec(&big).unwrap().len();
    assert!(size <= MAX_BSON && size > MAX_BSON - 64, "{size}");
    let photos = db.collection::<Document>("Photo");
    photos.insert_one(&big).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let config = dir.path().join("limits.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}{}",
            app::base_tables(&db_name, FILE_KEY),
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dest)
        ),
    )
    .unwrap();
    let out = app::migrate(&config, &["--yes", "--output", "jsonl"]);
    let summary = out.summary();
    assert_eq!(
        out.code, 3,
        "incomplete, not stopped: {}\n{summary}",
        out.stderr
    );
    assert_eq!(summary["stopped_by"], serde_json::Value::Null, "{summary}");
    assert_eq!(summary["references"]["failed"], 1, "{summary}");
    let failed = &summary["failed_references"][0];
    assert_eq!(failed["object_id"], "huge", "{summary}");
    assert_eq!(failed["path"], "meta.avatar", "{summary}");
    // Every other reference was rewritten, every file copied byte-identical.
    assert_eq!(h.check_fs_destination(&dest, parse_server_name), 12);
    assert_eq!(
        h.check_references(&db, parse_server_name).await,
        h.refs.len()
    );
    // The big document is as it was.
    let now = photos
        .find_one(doc! {"_id": "huge"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now, big, "the refused document is unchanged");
}
