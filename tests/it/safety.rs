//! Destructive work that cannot lose what the app still uses: `rollback --delete-copies` removes
//! only copies this tool wrote, at the destination configured now, that nothing references when
//! it acts (asked of the database, not only the ledger), recording each delete before it happens.
//! Each test is a regression of the safety review (its finding number in the name's comment).

use std::path::{Path, PathBuf};

use mongodb::Database;
use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::parse_server_name;

use crate::support::{self, app};

/// A Parse-Server-style name (what `--rename auto` keeps, and what `--select server` moves).
const KEPT: &str = "0123456789abcdef0123456789abcdef_a.png";

/// An app whose `Photo.image` (top level) and `Photo.meta` (nested File objects) name files of a
/// plain fs store `server`, migrated to the plain fs `destination`.
struct FsApp {
    db: Database,
    server: PathBuf,
    destination: PathBuf,
    config: PathBuf,
}

impl FsApp {
    /// `server_path` and `destination_path` are written into the configuration as given (so a
    /// test can name one directory twice, differently).
    async fn new(tag: &str, server_path: &str, destination_path: &str) -> FsApp {
        let name = support::unique(tag);
        let db = support::mongo_client().await.database(&name);
        app::photo_schema(&db).await;
        let config = support::temp_path(tag).with_extension("toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[source.server]\ntype = \"fs\"\npath = \"{server_path}\"\nencryption = \
                 \"none\"\n\n[destination]\ntype = \"fs\"\npath = \"{destination_path}\"\n\
                 encryption = \"none\"\n",
                app::base_tables(&name, "unusedKey"),
            ),
        )
        .unwrap();
        FsApp {
            db,
            server: PathBuf::from(server_path.trim_end_matches('/')),
            destination: PathBuf::from(destination_path.trim_end_matches('/')),
            config,
        }
    }

    /// Store `bytes` as `name` in the server directory.
    fn store(&self, dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    async fn photo(&self, id: &str, set: Document) {
        let mut d = doc! {"_id": id};
        d.extend(set);
        self.db
            .collection::<Document>("Photo")
            .insert_one(d)
            .await
            .unwrap();
    }

    fn run(&self, args: &[&str]) -> app::Out {
        let mut all = vec!["-c", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        app::run(all)
    }
}

fn nested(name: &str) -> Document {
    app::file(
        name,
        Some(&format!("{}/files/{}/{name}", app::SERVER_URL, app::APP_ID)),
    )
}

/// Finding 1 (a): the same directory configured twice, described differently (`D` and `D/`).
/// `migrate` finds every file already there; `rollback --delete-copies` deleted the only copy.
#[tokio::test]
async fn the_same_store_described_differently_keeps_its_files() {
    let dir = support::temp_path("pfm-same");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_same", &d, &format!("{d}/")).await;
    a.store(&a.server, KEPT, b"the only copy");
    a.photo("p1", doc! {"image": KEPT}).await;

    let out = a.run(&["migrate", "--select", "all", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = a.run(&["rollback", "--yes", "--delete-copies", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(a.destination.join(KEPT)).expect("the file is still there"),
        b"the only copy"
    );
    assert!(
        out.stdout.contains("\"copies_deleted\":0"),
        "{}",
        out.stdout
    );
}

/// Finding 1 (c): the destination already held identical bytes (an earlier sync, a restored
/// backup). The run never wrote them, so `rollback --delete-copies` must not delete them.
#[tokio::test]
async fn a_copy_found_already_there_is_never_deleted() {
    let server = support::temp_path("pfm-found-src");
    let destination = support::temp_path("pfm-found-dst");
    let a = FsApp::new(
        "safety_found",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    a.store(&a.server, KEPT, b"bytes");
    a.store(&a.destination, KEPT, b"bytes");
    a.store(&a.server, "fresh.png", b"fresh");
    a.photo("p1", doc! {"image": KEPT}).await;
    a.photo("p2", doc! {"image": "fresh.png"}).await;

    let out = a.run(&[
        "migrate", "--select", "server", "--yes", "--output", "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(a.destination.join("fresh.png").exists());
    let out = a.run(&["rollback", "--yes", "--delete-copies", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(a.destination.join(KEPT)).expect("found there: kept"),
        b"bytes"
    );
    // What the run wrote goes (its original is still at the source, names unchanged).
    assert!(!a.destination.join("fresh.png").exists(), "{}", out.stdout);
    assert!(a.server.join("fresh.png").exists());
}

/// Finding 2: references the ledger does not know — a new object reusing a migrated file (top
/// level) and a nested File object saved after the migration — protect the copies they name.
#[tokio::test]
async fn copies_referenced_after_the_migration_are_kept() {
    let server = support::temp_path("pfm-newref-src");
    let destination = support::temp_path("pfm-newref-dst");
    let a = FsApp::new(
        "safety_newref",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    let names = ["mfp_a.png", "mfp_b.png", "mfp_c.png"];
    for (i, n) in names.iter().enumerate() {
        a.store(&a.server, n, format!("file {i}").as_bytes());
        a.photo(&format!("p{i}"), doc! {"image": *n}).await;
    }
    let args = ["--select", "server", "--rename", "parse-server", "--yes"];
    let out = a.run(&[&["migrate"][..], &args[..], &["--output", "jsonl"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let copy = |n: &str| a.destination.join(parse_server_name(n));
    assert!(names.iter().all(|n| copy(n).exists()));

    // The app reuses two of the migrated files.
    a.photo("p9", doc! {"image": parse_server_name(names[0])})
        .await;
    a.photo(
        "p10",
        doc! {"meta": {"pic": nested(&parse_server_name(names[1]))}},
    )
    .await;
    let out = a.run(&["rollback", "--yes", "--delete-copies", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(copy(names[0]).exists(), "top-level reference: kept");
    assert!(copy(names[1]).exists(), "nested reference: kept");
    assert!(!copy(names[2]).exists(), "unreferenced: deleted");
    assert!(
        out.stdout.contains("\"copies_deleted\":1"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"copies_kept\":2"), "{}", out.stdout);
}

/// Finding 3: a store error in the middle of the deletes left the copies deleted before it
/// recorded as verified, and the next `migrate` rewrote references onto them (dangling). Now each
/// delete is recorded first, and the next `migrate` copies again what is gone.
#[tokio::test]
async fn a_failed_delete_leaves_nothing_recorded_verified_that_is_gone() {
    let server = support::temp_path("pfm-eisdir-src");
    let destination = support::temp_path("pfm-eisdir-dst");
    let a = FsApp::new(
        "safety_eisdir",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    let names: Vec<String> = (0..6).map(|i| format!("mfp_{i}.png")).collect();
    for (i, n) in names.iter().enumerate() {
        a.store(&a.server, n, format!("file {i}").as_bytes());
        a.photo(&format!("p{i}"), doc! {"image": n}).await;
    }
    let args = ["--select", "server", "--rename", "parse-server", "--yes"];
    let migrate =
        |a: &FsApp| a.run(&[&["migrate"][..], &args[..], &["--output", "jsonl"]].concat());
    let out = migrate(&a);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // One copy becomes a directory the store cannot delete as a file.
    // The last in the ledger's order, so that the old code had deleted the others first.
    let broken = a.destination.join(parse_server_name(&names[5]));
    std::fs::remove_file(&broken).unwrap();
    std::fs::create_dir_all(broken.join("inside")).unwrap();

    let out = a.run(&["rollback", "--yes", "--delete-copies", "--output", "jsonl"]);
    assert_ne!(
        out.code, 0,
        "the delete of the directory fails: {}",
        out.stderr
    );
    let out = migrate(&a);
    // Every reference names bytes that exist: a copy, or (not rewritten) the original.
    for (i, n) in names.iter().enumerate() {
        let doc = app::find(&a.db, "Photo", format!("p{i}")).await;
        let now = doc.get_str("image").unwrap();
        let there = if now == n.as_str() {
            a.server.join(now)
        } else {
            a.destination.join(now)
        };
        assert!(
            there.is_file(),
            "p{i}.image = {now} names nothing ({}):\n{}",
            there.display(),
            out.stderr
        );
    }
}

/// `audit --quarantine --min-age 0s --yes ARGS…` on the destination; the JSON lines.
fn quarantine(a: &FsApp, args: &[&str]) -> app::Out {
    let base = [
        "audit",
        "--quarantine",
        "--min-age",
        "0s",
        "--yes",
        "--output",
        "jsonl",
    ];
    a.run(&[&base[..], args].concat())
}

async fn schema(db: &Database, collection: &str, class: Document) {
    db.collection::<Document>(collection)
        .insert_one(class)
        .await
        .unwrap();
}

/// Finding 5: a file named only by its URL inside a String field (`avatarUrl`, HTML) is a
/// reference: the quarantine (default settings: no `[scan] strings`) must keep it.
#[tokio::test]
async fn a_file_named_only_in_a_string_is_not_quarantined() {
    let dir = support::temp_path("pfm-q-str");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qstr", &d, &d).await;
    schema(
        &a.db,
        "_SCHEMA",
        doc! {"_id": "Post", "avatarUrl": "string"},
    )
    .await;
    let url = format!("{}/files/{}/{KEPT}", app::SERVER_URL, app::APP_ID);
    a.db.collection::<Document>("Post")
        .insert_one(doc! {"_id": "x", "avatarUrl": &url})
        .await
        .unwrap();
    a.store(&a.destination, KEPT, b"named in a string");
    a.store(&a.destination, "orphan.png", b"nobody's");
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(a.destination.join(KEPT).is_file(), "{}", out.stdout);
    assert!(!a.destination.join("orphan.png").exists(), "{}", out.stdout);
}

/// Finding 6: two Parse apps in one database (`collectionPrefix`) share a store; app A's
/// quarantine must not take app B's referenced files, top-level or nested.
#[tokio::test]
async fn another_apps_files_in_a_shared_store_are_not_quarantined() {
    let dir = support::temp_path("pfm-q-apps");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qapps", &d, &d).await;
    schema(
        &a.db,
        "b__SCHEMA",
        doc! {"_id": "Photo", "image": "file", "meta": "object"},
    )
    .await;
    a.db.collection::<Document>("b_Photo")
        .insert_many([
            doc! {"_id": "1", "image": "fb.png"},
            doc! {"_id": "2", "meta": {"pic": nested("fb-nested.png")}},
        ])
        .await
        .unwrap();
    a.photo("p1", doc! {"image": KEPT}).await;
    for n in [KEPT, "fb.png", "fb-nested.png", "orphan.png"] {
        a.store(&a.destination, n, n.as_bytes());
    }
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for n in [KEPT, "fb.png", "fb-nested.png"] {
        assert!(a.destination.join(n).is_file(), "{n}: {}", out.stdout);
    }
    assert!(!a.destination.join("orphan.png").exists(), "{}", out.stdout);
}

/// Finding 7: a reference saved while a file sat in quarantine (here a nested one, which the
/// top-level check before the moves cannot see) makes `--purge` restore it, not delete it.
#[tokio::test]
async fn purge_restores_a_file_referenced_since_its_quarantine() {
    let dir = support::temp_path("pfm-q-purge");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qpurge", &d, &d).await;
    a.store(&a.destination, "late.png", b"wanted after all");
    a.store(&a.destination, "gone.png", b"nobody's");
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!a.destination.join("late.png").exists());
    a.photo("p1", doc! {"meta": {"pic": nested("late.png")}})
        .await;
    let out = a.run(&[
        "audit",
        "--purge",
        "--older-than",
        "0s",
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(a.destination.join("late.png")).expect("restored"),
        b"wanted after all",
        "{}",
        out.stdout
    );
    assert!(!a.destination.join("gone.png").exists());
}

/// Findings 8 and 4: the copies of a `--copy-only` pass (referenced only once the rewrite runs)
/// and the originals a rollback would restore are the ledger's references: never quarantined.
#[tokio::test]
async fn copies_awaiting_their_rewrite_and_originals_a_rollback_needs_are_kept() {
    let dir = support::temp_path("pfm-q-copyonly");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qcopy", &d, &d).await;
    a.store(&a.server, "mfp_a.png", b"a");
    a.store(&a.server, "mfp_b.png", b"b");
    a.photo("p1", doc! {"image": "mfp_a.png"}).await;
    a.photo("p2", doc! {"image": "mfp_b.png"}).await;
    let migrate = |extra: &[&str]| {
        let base = [
            "migrate",
            "--select",
            "server",
            "--rename",
            "parse-server",
            "--yes",
        ];
        a.run(&[&base[..], extra, &["--output", "jsonl"]].concat())
    };
    let out = migrate(&["--copy-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for n in ["mfp_a.png", "mfp_b.png"] {
        assert!(
            a.destination.join(parse_server_name(n)).is_file(),
            "{}",
            out.stdout
        );
    }
    // The rewrite: now the originals are unreferenced, but a rollback would restore them.
    let out = migrate(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for n in ["mfp_a.png", "mfp_b.png"] {
        assert!(a.destination.join(n).is_file(), "{n}: {}", out.stdout);
    }
}

/// When most references name nothing in the store, it is not the app's store (a wrong path,
/// bucket or prefix): the quarantine refuses instead of taking every file for an orphan.
#[tokio::test]
async fn a_store_the_references_do_not_match_is_refused() {
    let dir = support::temp_path("pfm-q-wrong");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qwrong", &d, &d).await;
    for i in 0..3 {
        a.photo(
            &format!("p{i}"),
            doc! {"image": format!("elsewhere-{i}.png")},
        )
        .await;
    }
    a.store(&a.destination, "someone-elses.png", b"x");
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("name no object"), "{}", out.stderr);
    assert!(a.destination.join("someone-elses.png").is_file());
}

/// Review 15: a value the walk cannot read (here a File under a key holding `.`, which no update
/// path can address) may name a file: the quarantine refuses rather than take it for an orphan.
#[tokio::test]
async fn a_walk_that_met_unreadable_values_moves_nothing() {
    let dir = support::temp_path("pfm-q-unread");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qunread", &d, &d).await;
    a.photo("p1", doc! {"image": KEPT}).await;
    a.photo("p2", doc! {"meta": {"a.b": nested("dotted.png")}})
        .await;
    for n in [KEPT, "dotted.png", "orphan.png"] {
        a.store(&a.destination, n, n.as_bytes());
    }
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("could not read"), "{}", out.stderr);
    for n in [KEPT, "dotted.png", "orphan.png"] {
        assert!(a.destination.join(n).is_file(), "{n}");
    }
}

/// Review 14: rekey does not re-encrypt quarantined files, so after a rotation (and the old key's
/// retirement) a restore would bring back bytes nobody can read: rekey refuses while the store
/// has files in quarantine.
#[tokio::test]
async fn rekey_refuses_while_files_are_in_quarantine() {
    let dir = support::temp_path("pfm-q-rekey");
    let d = dir.display().to_string();
    let a = FsApp::new("safety_qrekey", &d, &d).await;
    a.photo("p1", doc! {"image": KEPT}).await;
    a.store(&a.destination, KEPT, b"kept");
    a.store(&a.destination, "orphan.png", b"orphan");
    let out = quarantine(&a, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!a.destination.join("orphan.png").exists());
    // The same store, now with a key to encrypt under.
    let text = std::fs::read_to_string(&a.config).unwrap();
    let at = text.rfind("encryption = \"none\"").unwrap();
    let keyed = format!(
        "{}encryption_key = \"a-key-for-the-files\"{}",
        &text[..at],
        &text[at + "encryption = \"none\"".len()..]
    );
    std::fs::write(&a.config, keyed).unwrap();
    let out = a.run(&["rekey", "--encrypt", "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("in quarantine"), "{}", out.stderr);
    assert_eq!(std::fs::read(a.destination.join(KEPT)).unwrap(), b"kept");
}

/// Finding 4: after a renaming migration the original may be gone (removed by hand, by another
/// tool, by a lifecycle rule). A rollback that put the old name back, and deleted the copy, left
/// the reference pointing at nothing; now it keeps the reference on its copy and says so.
#[tokio::test]
async fn rollback_keeps_a_reference_whose_original_is_gone() {
    let server = support::temp_path("pfm-gone-src");
    let destination = support::temp_path("pfm-gone-dst");
    let a = FsApp::new(
        "safety_gone",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    for (i, n) in ["mfp_a.png", "mfp_b.png"].iter().enumerate() {
        a.store(&a.server, n, n.as_bytes());
        a.photo(&format!("p{i}"), doc! {"image": *n}).await;
    }
    let args = ["--select", "server", "--rename", "parse-server", "--yes"];
    let out = a.run(&[&["migrate"][..], &args[..], &["--output", "jsonl"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::remove_file(a.server.join("mfp_a.png")).unwrap();

    let out = a.run(&["rollback", "--yes", "--delete-copies", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "incomplete: {}", out.stderr);
    assert!(
        out.stdout.contains("\"originals_missing\":1"),
        "{}",
        out.stdout
    );
    let copy = parse_server_name("mfp_a.png");
    let p0 = app::find(&a.db, "Photo", "p0").await;
    assert_eq!(p0.get_str("image").unwrap(), copy, "kept on its copy");
    assert!(a.destination.join(&copy).is_file(), "the copy is kept");
    let p1 = app::find(&a.db, "Photo", "p1").await;
    assert_eq!(p1.get_str("image").unwrap(), "mfp_b.png", "restored");
    assert!(!a.destination.join(parse_server_name("mfp_b.png")).exists());
}

/// Finding 13: `migrate` renames a nested File and the file URL in a string, then `rebase` (after
/// a domain change) moves both again. `rollback` put back only the rebase's old value, so the
/// references stayed on the renamed copies; it now puts back the value from before the first
/// change, byte for byte.
#[tokio::test]
async fn rollback_after_migrate_then_rebase_restores_the_original() {
    let server = support::temp_path("pfm-chain-src");
    let destination = support::temp_path("pfm-chain-dst");
    let a = FsApp::new(
        "safety_chain",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    let url = format!("{}/files/{}/chain.png", app::SERVER_URL, app::APP_ID);
    a.store(&a.server, "chain.png", b"chained");
    a.photo(
        "p1",
        doc! {"image": "chain.png", "meta": {"pic": nested("chain.png"),
        "html": format!("<img src=\"{url}\">")}},
    )
    .await;
    let before = app::find_all(&a.db, "Photo").await;

    let out = a.run(&[
        "migrate",
        "--select",
        "all",
        "--rename",
        "parse-server",
        "--strings",
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let copy = parse_server_name("chain.png");
    let p1 = app::find(&a.db, "Photo", "p1").await;
    assert_eq!(
        app::name_at(&p1, "meta.pic").as_deref(),
        Some(copy.as_str())
    );

    // The app moves to a new domain: the old one becomes a rebase source.
    let moved = a.config.with_extension("moved.toml");
    let text = std::fs::read_to_string(&a.config).unwrap().replace(
        &format!("public_server_url = \"{}\"", app::SERVER_URL),
        "public_server_url = \"https://new-api.example.com/parse\"",
    );
    std::fs::write(
        &moved,
        format!("{text}\n[rebase]\nfrom = [\"{}/\"]\n", app::SERVER_URL),
    )
    .unwrap();
    let c = moved.to_str().unwrap();
    let out = app::run(["-c", c, "rebase", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p1 = app::find(&a.db, "Photo", "p1").await;
    let meta = p1.get_document("meta").unwrap();
    assert!(
        meta.get_document("pic")
            .unwrap()
            .get_str("url")
            .unwrap()
            .starts_with("https://new-api"),
        "{p1}"
    );
    assert!(
        meta.get_str("html").unwrap().contains("https://new-api"),
        "{p1}"
    );

    let out = app::run(["-c", c, "rollback", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        app::find_all(&a.db, "Photo").await,
        before,
        "rollback restores the values from before the migration, byte for byte"
    );
}

/// Item 3: the default ledger of an app with a collection prefix is `<prefix>_FileMigration`, so
/// two apps of one database never share (or roll back) each other's records; an empty scoped
/// ledger beside runs recorded under the earlier default `_FileMigration` is refused until
/// `[ledger] collection` says which to use.
#[tokio::test]
async fn the_default_ledger_is_scoped_by_the_collection_prefix() {
    let server = support::temp_path("pfm-scoped-src");
    let destination = support::temp_path("pfm-scoped-dst");
    let a = FsApp::new(
        "safety_scoped",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    a.db.collection::<Document>("appA__SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file"})
        .await
        .unwrap();
    a.store(&a.server, KEPT, b"scoped");
    a.db.collection::<Document>("appA_Photo")
        .insert_one(doc! {"_id": "p1", "image": KEPT})
        .await
        .unwrap();
    let migrate = [
        "--collection-prefix",
        "appA_",
        "migrate",
        "--select",
        "all",
        "--yes",
    ];

    let out = a.run(&migrate);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names = a.db.list_collection_names().await.unwrap();
    assert!(
        names.iter().any(|n| n == "appA__FileMigration.runs"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("_FileMigration")),
        "{names:?}"
    );

    // A database where an earlier version recorded this app's runs under `_FileMigration`.
    let b = FsApp::new(
        "safety_unscoped",
        &server.display().to_string(),
        &destination.display().to_string(),
    )
    .await;
    b.db.collection::<Document>("appA__SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file"})
        .await
        .unwrap();
    b.db.collection::<Document>("_FileMigration.runs")
        .insert_one(doc! {"_id": "earlier", "command": "migrate"})
        .await
        .unwrap();
    let out = b.run(&migrate);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("[ledger] collection = \"_FileMigration\""),
        "{}",
        out.stderr
    );
    let names = b.db.list_collection_names().await.unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with("appA__FileMigration")),
        "nothing written: {names:?}"
    );
}

/// Item 1: ledger records name a store by where its bytes live, not by its description. A file
/// quarantined while the store was plain is found by `audit --restore` after an encryption key
/// was configured (the description changed: "(encrypted)"), and through another spelling of
/// the same directory; a different directory finds nothing.
#[tokio::test]
async fn a_store_is_known_by_where_its_bytes_live() {
    let server = support::temp_path("pfm-ident-src");
    let destination = support::temp_path("pfm-ident-dst");
    let d = destination.display().to_string();
    let a = FsApp::new("safety_ident", &server.display().to_string(), &d).await;
    a.store(&a.destination, KEPT, b"referenced");
    a.store(&a.destination, "orphan.bin", b"orphan");
    a.photo("p1", doc! {"image": KEPT}).await;
    let out = a.run(&[
        "audit",
        "--store",
        "destination",
        "--quarantine",
        "--min-age",
        "0s",
        "--yes",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!a.destination.join("orphan.bin").exists(), "quarantined");

    let restore = |config: &Path| {
        let c = config.to_str().unwrap();
        app::run([
            "-c",
            c,
            "audit",
            "--store",
            "destination",
            "--restore",
            "--yes",
        ])
    };

    // Another directory: no record of its own, nothing restored.
    let elsewhere = support::temp_path("pfm-ident-other");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let text = std::fs::read_to_string(&a.config).unwrap();
    let other = a.config.with_extension("other.toml");
    std::fs::write(
        &other,
        text.replace(
            &format!("path = \"{d}\""),
            &format!("path = \"{}\"", elsewhere.display()),
        ),
    )
    .unwrap();
    let out = restore(&other);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!a.destination.join("orphan.bin").exists());

    // The same directory, spelled `D/./` and now with an encryption key: its records.
    let keyed = a.config.with_extension("keyed.toml");
    let dest_table = format!("path = \"{d}\"\nencryption = \"none\"");
    assert!(text.contains(&dest_table), "{text}");
    std::fs::write(
        &keyed,
        text.replace(
            &dest_table,
            &format!("path = \"{d}/./\"\nencryption_key = \"aNewKey\""),
        ),
    )
    .unwrap();
    let out = restore(&keyed);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(a.destination.join("orphan.bin")).expect("restored"),
        b"orphan"
    );
}
