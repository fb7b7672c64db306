//! A live app during a migration (#20 item 7): a stock Parse Server 9.10.0 serves the app while
//! `migrate` moves its hosted-era files into the same encrypted GridFS bucket Parse Server uses,
//! and a client writes through the REST API meanwhile — creates objects with new files, points
//! File fields of hosted-era objects at new uploads, deletes objects. Afterwards no write is lost
//! (every created object and every update is there, every deleted object stays deleted), every
//! conflict the run reports is one of the objects the client touched, every reference the client
//! did not touch is migrated, and Parse Server serves every file of every object byte-identical.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::parse_server_name;
use reqwest::Method;
use serde_json::json;

use crate::parse_server::{App, Files, ParseServer, Rest, name_of};
use crate::support::app::{self, Hosted, Ref};
use crate::support::faulty::FaultyServer;
use crate::support::{self, free_port};

const FILES: usize = 60;

#[tokio::test(flavor = "multi_thread")]
async fn a_live_app_loses_no_write_during_a_migration() {
    let tag = support::unique("pfm_live");
    let app = App {
        app_id: "liveApp".into(),
        master_key: format!("mk-{tag}-SECRET"),
        file_key: format!("fk-{tag}-SECRET"),
        database: tag.clone(),
        collection_prefix: String::new(),
        port: free_port(),
    };
    let db = support::mongo_client().await.database(&app.database);
    let h = Hosted::seed(&db, FILES, 0, &app.file_key).await;
    // The old hosts, slow enough that the run lasts while the client writes.
    let source = FaultyServer::slow(h.files.clone(), Duration::from_millis(40));
    let server = ParseServer::start(&app, &Files::Default, "live-app");
    let rest = Rest::new(&app);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("live.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}\n[destination]\ntype = \"gridfs\"\n\n[run]\nconcurrency = 2\n",
            app::base_tables(&app.database, &app.file_key),
            app::hosted_table(&source.url(), 5),
        ),
    )
    .unwrap();
    let child = app::spawn_migrate(&config, &[]);

    // The app, live: uploads and creates, points hosted-era objects at new files, deletes.
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new(); // stored name → bytes
    let mut created = BTreeMap::new(); // objectId → file name
    let mut updated = BTreeMap::new(); // hosted object id → file name
    let mut deleted = BTreeSet::new();
    for i in 0..8 {
        let data = support::bytes(3_000 + i, 500 + i as u64);
        let file = rest
            .upload(&format!("new {i}.jpg"), "image/jpeg", &data)
            .await;
        expected.insert(name_of(&file), data.clone());
        let id = rest
            .create("Photo", json!({"image": file, "title": "new"}))
            .await;
        created.insert(id, name_of(&file));

        let data = support::bytes(4_000 + i, 900 + i as u64);
        let file = rest
            .upload(&format!("replacement {i}.png"), "image/png", &data)
            .await;
        expected.insert(name_of(&file), data);
        let target = format!("p{:04}", 10 + i * 3);
        rest.send(
            &format!("update {target}"),
            rest.req(Method::PUT, &format!("/classes/Photo/{target}"))
                .json(&json!({ "image": file })),
        )
        .await;
        updated.insert(target, name_of(&file));

        if i % 2 == 0 {
            let gone = format!("p{:04}", 41 + i);
            rest.send(
                &format!("delete {gone}"),
                rest.req(Method::DELETE, &format!("/classes/Photo/{gone}")),
            )
            .await;
            deleted.insert(gone);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = app::wait(child).await;
    let summary = out.summary();
    assert!(
        out.code == 0 || out.code == 3,
        "exit {}: {}\n{summary}",
        out.code,
        out.stderr
    );
    assert_eq!(summary["files"]["failed"], 0, "{summary}");

    // No write lost.
    let photos = db.collection::<Document>("Photo");
    for (id, name) in &created {
        let d = photos.find_one(doc! {"_id": id}).await.unwrap();
        let d = d.unwrap_or_else(|| panic!("created object {id} lost"));
        assert_eq!(d.get_str("image").unwrap(), name, "{id}");
    }
    for (id, name) in &updated {
        let d = photos.find_one(doc! {"_id": id}).await.unwrap().unwrap();
        assert_eq!(
            d.get_str("image").unwrap(),
            name,
            "{id}: the app's update was overwritten"
        );
    }
    for id in &deleted {
        assert!(
            photos.find_one(doc! {"_id": id}).await.unwrap().is_none(),
            "{id} came back"
        );
    }
    // Every conflict is an object the client touched.
    let touched: BTreeSet<&String> = updated.keys().chain(&deleted).collect();
    for c in summary["conflicts"].as_array().unwrap() {
        let id = c["object_id"].as_str().unwrap().to_string();
        assert!(
            touched.contains(&id),
            "a conflict on an untouched object: {c}"
        );
    }
    // Every reference the client did not touch is migrated.
    let not_touched = |r: &Ref| !(r.class == "Photo" && touched.contains(&r.id));
    let untouched = h
        .check_where(&db, not_touched, |r| parse_server_name(&r.name))
        .await;
    // Parse Server serves every file of every Photo, byte-identical.
    for (name, data) in &h.files {
        expected.insert(parse_server_name(name), data.clone());
    }
    let list = rest
        .send(
            "list Photo",
            rest.req(Method::GET, "/classes/Photo?limit=1000"),
        )
        .await;
    let mut served = 0;
    for o in list["results"].as_array().unwrap() {
        let Some(file) = o.get("image").filter(|f| f.is_object()) else {
            continue;
        };
        let name = name_of(file);
        let url = file["url"].as_str().unwrap();
        let got = rest
            .download(url)
            .await
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", o["objectId"]));
        let want = expected
            .get(&name)
            .unwrap_or_else(|| panic!("unknown {name}"));
        assert!(got == *want, "{name}: served bytes differ");
        served += 1;
    }
    assert_eq!(
        served,
        FILES + created.len() - deleted.len(),
        "every Photo's image served"
    );
    eprintln!(
        "live_app: {} created, {} updated, {} deleted during the run; {} conflicts reported; \
         {untouched} untouched references migrated; {served} images served byte-identical",
        created.len(),
        updated.len(),
        deleted.len(),
        summary["references"]["conflicts"]
    );

    // A rollback while the app keeps writing: its new writes survive, conflicts are only on
    // what it touched, and every other migrated reference gets its hosted-era name back.
    let child = app::command()
        .args(["-c", config.to_str().unwrap(), "rollback", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut later = BTreeMap::new();
    for i in 0..6 {
        let data = support::bytes(5_000 + i, 1_300 + i as u64);
        let file = rest
            .upload(&format!("later {i}.png"), "image/png", &data)
            .await;
        let target = format!("p{:04}", 11 + i * 3);
        rest.send(
            &format!("update {target}"),
            rest.req(Method::PUT, &format!("/classes/Photo/{target}"))
                .json(&json!({ "image": file })),
        )
        .await;
        later.insert(target, name_of(&file));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = app::wait(child).await;
    assert!(
        back.code == 0 || back.code == 3,
        "rollback exit {}: {}",
        back.code,
        back.stderr
    );
    for (id, name) in later.iter().chain(&updated).chain(&created) {
        let d = photos.find_one(doc! {"_id": id}).await.unwrap().unwrap();
        assert_eq!(
            d.get_str("image").unwrap(),
            name,
            "{id}: the app's write was lost"
        );
    }
    let touched: BTreeSet<&String> = touched.into_iter().chain(later.keys()).collect();
    let not_touched = |r: &Ref| !(r.class == "Photo" && touched.contains(&r.id));
    let restored = h.check_where(&db, not_touched, |r| r.name.clone()).await;
    eprintln!(
        "live_app: rollback with {} more updates during it: {restored} references restored",
        later.len()
    );
    server.stop(&app);
}
