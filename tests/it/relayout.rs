//! `relayout` against the real database server and an fs store (Parse's FS adapter layout):
//! every referenced file gets its new name from the template (class, createdAt, the name), a
//! file two classes reference gets one, the references (top level, nested with their url,
//! Parse Config) are rewritten, the bytes are identical, a second run finds nothing to do,
//! `verify` is clean, and `rollback --delete-copies` puts the documents back byte for byte and
//! removes the new names; an app writing meanwhile keeps its write; and `kill -9` at random
//! points of a run, then a finishing run, leaves every reference on verified bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};

use crate::support::app::{self, file, find, name_at};
use crate::support::{self};

const KEY: &str = "relayoutFileKey";
/// 2023-11-14T22:13:20Z.
const CREATED: i64 = 1_700_000_000_000;

struct App {
    db: Database,
    config: PathBuf,
    root: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

fn stored(name: &str) -> String {
    name.replace('/', "%2F").replace(' ', "%20")
}

/// `Photo` (File `image`, Object `meta`), `Album` (File `cover`), Parse Config; `extra` photos
/// more, each with its own file.
async fn seed(tag: &str, extra: usize) -> App {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    db.collection::<Document>("_SCHEMA")
        .insert_many(vec![
            doc! {"_id": "Album", "objectId": "string", "cover": "file"},
            doc! {"_id": "Photo", "objectId": "string", "image": "file", "meta": "object",
            "caption": "string"},
        ])
        .await
        .unwrap();
    let root = support::temp_path(&format!("{tag}-store"));
    std::fs::create_dir_all(&root).unwrap();
    let mut files = BTreeMap::new();
    let mut names = vec!["a.jpg", "thumb b.png", "shared.gif", "logo.svg"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    names.extend((0..extra).map(|i| format!("e{i:04}.bin")));
    for (i, n) in names.iter().enumerate() {
        let data = support::bytes(100 + i * 7, i as u64);
        std::fs::write(root.join(stored(n)), &data).unwrap();
        files.insert(n.clone(), data);
    }
    let at = DateTime::from_millis(CREATED);
    let mut photos = vec![
        doc! {"_id": "p1", "_created_at": at, "image": "a.jpg",
        "meta": {"thumb": file("thumb b.png", Some("http://old/thumb"))}},
        doc! {"_id": "p2", "_created_at": at, "image": "shared.gif",
        "caption": "see https://api.example.com/parse/files/layoutApp/a.jpg!"},
    ];
    photos.extend((0..extra).map(|i| {
        doc! {"_id": format!("x{i:04}"), "_created_at": at, "image": format!("e{i:04}.bin")}
    }));
    db.collection::<Document>("Photo")
        .insert_many(photos)
        .await
        .unwrap();
    db.collection::<Document>("Album")
        .insert_one(doc! {"_id": "al1", "_created_at": at, "cover": "shared.gif"})
        .await
        .unwrap();
    db.collection::<Document>("_GlobalConfig")
        .insert_one(doc! {"_id": 1, "params": {"logo": file("logo.svg", None)}})
        .await
        .unwrap();
    let dir = support::temp_path(&format!("{tag}-cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relayout.toml");
    std::fs::write(
        &config,
        format!(
            "[mongo]\nuri = {uri:?}\n\n[parse]\napp_id = \"layoutApp\"\nfile_key = {KEY:?}\n\
             public_server_url = \"https://api.example.com/parse\"\n\n\
             [destination]\ntype = \"fs\"\npath = {root:?}\nencryption = \"none\"\n\n\
             [output]\nprogress = \"never\"\n",
            uri = support::uri_for(&db_name),
            root = root.to_str().unwrap(),
        ),
    )
    .unwrap();
    App {
        db,
        config,
        root,
        files,
    }
}

impl App {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["-c", self.config.to_str().unwrap()];
        all.extend(args);
        all
    }

    fn run(&self, args: &[&str]) -> app::Out {
        app::run(self.args(args))
    }

    /// The app's collections (the ledger's are the tool's own).
    async fn documents(&self) -> BTreeMap<String, Vec<Document>> {
        app::snapshot(&self.db)
            .await
            .into_iter()
            .filter(|(c, _)| !c.starts_with("_FileMigration"))
            .collect()
    }

    fn bytes_of(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.root.join(stored(name)))
            .unwrap_or_else(|e| panic!("{name} at the store: {e}"))
    }

    /// Every reference's name and the original it must hold the bytes of.
    async fn references(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for d in app::find_all(&self.db, "Photo").await {
            out.push(name_at(&d, "image").unwrap());
            if let Some(n) = name_at(&d, "meta.thumb") {
                out.push(n);
            }
        }
        for d in app::find_all(&self.db, "Album").await {
            out.push(name_at(&d, "cover").unwrap());
        }
        out.push(name_at(&find(&self.db, "_GlobalConfig", 1).await, "params.logo").unwrap());
        out.into_iter()
            .map(|n| {
                let original = n.rsplit('/').next().unwrap().to_string();
                (n, original)
            })
            .collect()
    }
}

const TEMPLATE: &str = "{class}/{yyyy}/{mm}/{name}";

#[tokio::test]
async fn every_reference_gets_its_new_name_and_rollback_puts_them_back() {
    let a = seed("pfm_relayout", 0).await;
    let before = a.documents().await;

    let dry = a.run(&[
        "relayout",
        "--template",
        TEMPLATE,
        "--strings",
        "--dry-run",
        "--output",
        "jsonl",
    ]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(a.documents().await, before, "a dry run changes nothing");

    // Exit 3: Parse Config has no createdAt, so its file gets no new name (reported).
    let out = a.run(&[
        "relayout",
        "--template",
        TEMPLATE,
        "--strings",
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    out.assert_hides("fileKey", KEY);
    let s = out.summary();
    assert_eq!(s["files"]["copied"], 3, "{s}");
    assert_eq!(
        s["files"]["server_side"], 3,
        "hard links within the store: {s}"
    );
    // p1.image, p1.meta.thumb, p2.image, al1.cover, and p2.caption's URL (with --strings).
    assert_eq!(s["references"]["rewritten"], 5, "{s}");

    let p1 = find(&a.db, "Photo", "p1").await;
    assert_eq!(name_at(&p1, "image").unwrap(), "Photo/2023/11/a.jpg");
    let thumb = p1
        .get_document("meta")
        .unwrap()
        .get_document("thumb")
        .unwrap();
    assert_eq!(thumb.get_str("name").unwrap(), "Photo/2023/11/thumb b.png");
    assert_eq!(
        thumb.get_str("url").unwrap(),
        "https://api.example.com/parse/files/layoutApp/Photo/2023/11/thumb%20b.png"
    );
    let p2 = find(&a.db, "Photo", "p2").await;
    assert_eq!(
        p2.get_str("caption").unwrap(),
        "see https://api.example.com/parse/files/layoutApp/Photo/2023/11/a.jpg!",
        "the URL in a string moves to the new name, every other byte kept"
    );
    // One new name for a file two classes reference: the first reference met decides.
    let shared = name_at(&find(&a.db, "Photo", "p2").await, "image").unwrap();
    let cover = name_at(&find(&a.db, "Album", "al1").await, "cover").unwrap();
    assert_eq!(shared, cover);
    assert!(shared == "Album/2023/11/shared.gif" || shared == "Photo/2023/11/shared.gif");
    let logo = name_at(&find(&a.db, "_GlobalConfig", 1).await, "params.logo").unwrap();
    assert_eq!(logo, "logo.svg");
    assert_eq!(s["files"]["failed"], 1, "{s}");
    let failed = s["failed"].to_string();
    assert!(failed.contains("no createdAt"), "{failed}");
    for (name, original) in a.references().await {
        assert!(a.bytes_of(&name) == a.files[&original], "{name}");
        assert!(
            a.root.join(stored(&original)).exists(),
            "the old name stays"
        );
    }

    // Nothing more to do: no name laid out twice.
    let again = a.run(&[
        "relayout",
        "--template",
        TEMPLATE,
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(
        again.code, 3,
        "only the Config file fails again: {}",
        again.stderr
    );
    let s2 = again.summary();
    assert_eq!(s2["files"]["copied"], 0, "{s2}");
    assert_eq!(s2["references"]["rewritten"], 0, "{s2}");
    assert!(
        !a.root
            .join(stored("Photo/2023/11/Photo/2023/11/a.jpg"))
            .exists()
    );

    let verify = a.run(&["verify", "--output", "jsonl"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);

    let back = a.run(&["rollback", "--yes", "--delete-copies", "--output", "jsonl"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(
        a.documents().await,
        before,
        "rollback restores the documents"
    );
    assert!(
        !a.root.join(stored("Photo/2023/11/a.jpg")).exists(),
        "new name removed: {}\n{}\n{:?}",
        back.stdout,
        back.stderr,
        app::find_all(&a.db, "_FileMigration").await
    );
    for (name, data) in &a.files {
        assert!(a.bytes_of(name) == *data, "{name} kept");
    }
    let _ = std::fs::remove_dir_all(&a.root);
    a.db.drop().await.unwrap();
}

/// `kill -9` at random moments of relayouts of 300 files, then a run to the end: every
/// reference names a new name holding the original bytes, and `verify` finds each there.
#[tokio::test]
async fn killed_at_random_points_then_finished_every_reference_holds_its_bytes() {
    let a = seed("pfm_relayout_kill", 300).await;
    let args = a.args(&[
        "relayout",
        "--template",
        "{hash2}/{name}",
        "--yes",
        "--output",
        "jsonl",
    ]);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..8 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = app::command()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100 + rng % 900)).await;
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = app::run(&args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for (name, original) in a.references().await {
        assert_ne!(name, original, "laid out");
        assert!(a.bytes_of(&name) == a.files[&original], "{name}");
    }
    let verify = a.run(&["verify", "--output", "jsonl"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let _ = std::fs::remove_dir_all(&a.root);
    a.db.drop().await.unwrap();
}

/// An app writes while a relayout of 300 files runs: it points 60 objects at other names, one
/// every few milliseconds. Afterwards every write of the app stands (a compare-and-swap never
/// overwrites it), and every object it did not touch names its file's new name, with the bytes.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_writing_meanwhile_loses_no_write() {
    let a = seed("pfm_relayout_app", 300).await;
    let args = a.args(&[
        "relayout",
        "--template",
        "{hash2}/{name}",
        "--yes",
        "--output",
        "jsonl",
    ]);
    let child = app::command()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let photos = a.db.collection::<Document>("Photo");
    let mut written = BTreeMap::new();
    for i in (0..300).step_by(5) {
        let id = format!("x{i:04}");
        let value = format!("app-{i}.jpg");
        photos
            .update_one(doc! {"_id": &id}, doc! {"$set": {"image": &value}})
            .await
            .unwrap();
        written.insert(id, value);
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    let out = app::wait(child).await;
    // The app's names are in no store: reported missing (exit 3), or the run was done first.
    assert!(matches!(out.code, 0 | 3), "{}\n{}", out.stdout, out.stderr);
    let s = out.summary();
    let conflicts = s["references"]["conflicts"].as_u64().unwrap();
    assert!(conflicts <= written.len() as u64, "{s}");
    for d in app::find_all(&a.db, "Photo").await {
        let id = d.get_str("_id").unwrap();
        let image = name_at(&d, "image").unwrap();
        match written.get(id) {
            Some(value) => assert_eq!(&image, value, "{id}: the app's write stands"),
            None => {
                let original = image.rsplit('/').next().unwrap();
                assert_ne!(image, original, "{id} laid out");
                assert!(a.bytes_of(&image) == a.files[original], "{id}: {image}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&a.root);
    a.db.drop().await.unwrap();
}
