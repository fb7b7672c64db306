//! `relink` against the real database server and an fs store (Parse's FS adapter layout: a name
//! with `/` is one file, `encodeURIComponent`ed): what is paired and what is left alone, keys that something else
//! references are never taken (another app of the database, a URL in a string), the template
//! rule, sorts forced through temporary files, the hook phases, an app writing the reference
//! between the pairing and the rewrite (compare-and-swap: left alone), and a key that vanishes
//! before the rewrite (refused, exit 3).

use std::path::{Path, PathBuf};

use mongodb::Database;
use mongodb::bson::{Document, doc};

use crate::support::app::{self, file, find, name_at};
use crate::support::{self};

const KEY: &str = "relinkFileKey";

struct App {
    db: Database,
    config: PathBuf,
    root: PathBuf,
}

/// `Photo` (File `image`, Object `meta`, String `caption`), another app (`other_`) and the
/// store's files: `stored` (name → bytes).
async fn seed(tag: &str, extra: &str) -> App {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file",
        "meta": "object", "caption": "string"})
        .await
        .unwrap();
    db.collection::<Document>("other__SCHEMA")
        .insert_one(doc! {"_id": "Doc", "objectId": "string", "f": "file"})
        .await
        .unwrap();
    let root = support::temp_path(&format!("{tag}-store"));
    // As Parse Server's FS adapter writes them: one directory, each name `encodeURIComponent`ed.
    std::fs::create_dir_all(&root).unwrap();
    let put = |name: &str, len: usize| {
        let path = root.join(name.replace('/', "%2F"));
        std::fs::write(path, support::bytes(len, len as u64)).unwrap();
    };
    put("ok.jpg", 10);
    put("gen/top.jpg", 11); // top.jpg's bytes under a generateKey prefix
    put("undefined/nested.png", 12); // nested.png's, under a broken generateKey's
    put("a/two.jpg", 13); // two.jpg: two candidates
    put("b/two.jpg", 14);
    put("x/taken.jpg", 15); // taken.jpg: its one candidate is another app's file
    put("y/said.jpg", 16); // said.jpg: its one candidate is named in a caption
    put("uploads-tpl.jpg", 17); // tpl.jpg: found by a template only
    db.collection::<Document>("Photo")
        .insert_many(vec![
            doc! {"_id": "p1", "image": "ok.jpg", "meta": {"thumb": file("nested.png", None)}},
            doc! {"_id": "p2", "image": "top.jpg"},
            doc! {"_id": "p3", "image": "two.jpg"},
            doc! {"_id": "p4", "image": "taken.jpg"},
            doc! {"_id": "p5", "image": "said.jpg",
            "caption": "see https://api.example.com/parse/files/relinkApp/y%2Fsaid.jpg"},
            doc! {"_id": "p6", "image": "tpl.jpg"},
            doc! {"_id": "p7", "image": "nowhere.jpg"},
        ])
        .await
        .unwrap();
    db.collection::<Document>("other_Doc")
        .insert_one(doc! {"_id": "d1", "f": "x/taken.jpg"})
        .await
        .unwrap();
    let dir = support::temp_path(&format!("{tag}-cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relink.toml");
    std::fs::write(
        &config,
        format!(
            "[mongo]\nuri = {uri:?}\n\n[parse]\napp_id = \"relinkApp\"\nfile_key = {KEY:?}\n\
             public_server_url = \"https://api.example.com/parse\"\n\n\
             [destination]\ntype = \"fs\"\npath = {root:?}\nencryption = \"none\"\n\n\
             [output]\nprogress = \"never\"\n{extra}",
            uri = support::uri_for(&db_name),
            root = root.to_str().unwrap(),
        ),
    )
    .unwrap();
    App { db, config, root }
}

impl App {
    fn run(&self, args: &[&str]) -> app::Out {
        let mut all = vec!["-c", self.config.to_str().unwrap()];
        all.extend(args);
        app::run(all)
    }

    async fn image(&self, id: &str) -> String {
        name_at(&find(&self.db, "Photo", id).await, "image").unwrap()
    }
}

fn left_names(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn pairs_one_candidate_and_never_takes_a_key_something_else_names() {
    let log = support::temp_path("pfm-relink-hooks");
    let hooks = format!(
        "\n[hooks]\nbefore_phase = \"echo before $PFM_HOOK_PHASE >> {l}\"\n\
         after_phase = \"echo after $PFM_HOOK_PHASE $PFM_HOOK_OUTCOME >> {l}\"\n",
        l = log.display()
    );
    let a = seed("pfm_relink", &hooks).await;

    // audit counts what relink would fix: an upper bound, as audit's orphans do not look at
    // strings or the other apps (relink does: taken.jpg and said.jpg are not relinked below).
    let audit = a.run(&["audit", "--output", "jsonl"]);
    assert_eq!(audit.code, 6, "{}", audit.stderr);
    let s = audit.jsonl().last().unwrap().clone();
    assert_eq!(s["relink"]["relinkable_names"], 4, "{s}");
    assert_eq!(s["relink"]["ambiguous_names"], 1, "{s}");
    assert_eq!(s["relink"]["unmatched_names"], 2, "{s}");

    // Sorts through temporary files: the same answer.
    let before = app::snapshot(&a.db).await;
    let dry = a.run(&[
        "relink",
        "--dry-run",
        "--output",
        "jsonl",
        "--sort-run-bytes",
        "100",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        app::snapshot(&a.db).await,
        before,
        "a dry run changes nothing"
    );
    assert_eq!(dry.summary()["references"]["rewritten"], 2);

    let out = a.run(&[
        "relink",
        "--yes",
        "--output",
        "jsonl",
        "--sort-run-bytes",
        "100",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.assert_hides("fileKey", KEY);
    assert_eq!(a.image("p2").await, "gen/top.jpg");
    let p1 = find(&a.db, "Photo", "p1").await;
    assert_eq!(name_at(&p1, "meta.thumb").unwrap(), "undefined/nested.png");
    let url = p1
        .get_document("meta")
        .unwrap()
        .get_document("thumb")
        .unwrap();
    // As Parse Server 9 builds it: each segment `encodeURIComponent`ed.
    assert_eq!(
        url.get_str("url").unwrap(),
        "https://api.example.com/parse/files/relinkApp/undefined/nested.png"
    );
    for (id, name) in [
        ("p1", "ok.jpg"),
        ("p3", "two.jpg"),
        ("p4", "taken.jpg"),
        ("p5", "said.jpg"),
        ("p6", "tpl.jpg"),
        ("p7", "nowhere.jpg"),
    ] {
        assert_eq!(a.image(id).await, name, "{id} left alone");
    }
    let left = left_names(&out.summary());
    let reason = |n: &str| left.iter().find(|(m, _)| m == n).map(|(_, r)| r.clone());
    assert!(
        reason("two.jpg").unwrap().contains("a/two.jpg, b/two.jpg"),
        "{left:?}"
    );
    for n in ["taken.jpg", "said.jpg", "tpl.jpg", "nowhere.jpg"] {
        assert!(reason(n).unwrap().starts_with("no orphan"), "{n}: {left:?}");
    }
    let events = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        events,
        "before pair\nafter pair ok\nbefore relink\nafter relink ok\n"
    );

    // The template rule finds what the suffix rule could not, and only that.
    let tpl = a.run(&[
        "relink",
        "--yes",
        "--output",
        "jsonl",
        "--match",
        "template:uploads-{name}",
    ]);
    assert_eq!(tpl.code, 0, "{}", tpl.stderr);
    assert_eq!(tpl.summary()["references"]["rewritten"], 1);
    assert_eq!(a.image("p6").await, "uploads-tpl.jpg");
    let bad = a.run(&["relink", "--match", "template:uploads-x"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    // Rollback puts every dangling name back.
    let back = a.run(&["rollback", "--yes", "--output", "jsonl"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(
        before_without_ledger(&app::snapshot(&a.db).await),
        before_without_ledger(&before)
    );
    let _ = std::fs::remove_dir_all(&a.root);
    a.db.drop().await.unwrap();
}

/// The app's collections of a snapshot (the ledger's are the tool's own).
fn before_without_ledger(
    s: &std::collections::BTreeMap<String, Vec<Document>>,
) -> std::collections::BTreeMap<String, Vec<Document>> {
    s.iter()
        .filter(|(c, _)| !c.starts_with("_FileMigration"))
        .map(|(c, d)| (c.clone(), d.clone()))
        .collect()
}

/// The app writes a relinkable reference after the pairing, and a paired key vanishes: the
/// first is left as the app wrote it (a conflict), the second is refused; exit 3.
#[tokio::test]
async fn a_write_or_a_vanished_key_between_pairing_and_rewrite_is_left_alone() {
    let dir = support::temp_path("pfm-relink-gate");
    std::fs::create_dir_all(&dir).unwrap();
    let (ready, go) = (dir.join("ready"), dir.join("go"));
    let hooks = format!(
        "\n[hooks]\nbefore_phase = \"test $PFM_HOOK_PHASE != relink || {{ touch {r}; \
         while [ ! -e {g} ]; do sleep 0.05; done; }}\"\n",
        r = ready.display(),
        g = go.display()
    );
    let a = seed("pfm_relink_race", &hooks).await;
    let child = app::command()
        .args([
            "-c",
            a.config.to_str().unwrap(),
            "relink",
            "--yes",
            "--output",
            "jsonl",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < until,
            "the relink phase never began"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The app points p2 elsewhere; nested.png's key goes away.
    a.db.collection::<Document>("Photo")
        .update_one(doc! {"_id": "p2"}, doc! {"$set": {"image": "ok.jpg"}})
        .await
        .unwrap();
    std::fs::remove_file(a.root.join("undefined%2Fnested.png")).unwrap();
    std::fs::write(&go, b"").unwrap();
    let out = app::wait(child).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let s = out.summary();
    assert_eq!(s["references"]["rewritten"], 0, "{s}");
    assert_eq!(s["references"]["conflicts"], 1, "{s}");
    assert_eq!(s["references"]["failed"], 1, "{s}");
    assert_eq!(a.image("p2").await, "ok.jpg", "the app's write stands");
    let p1 = find(&a.db, "Photo", "p1").await;
    assert_eq!(name_at(&p1, "meta.thumb").unwrap(), "nested.png");
    let failed = s["failed_references"].to_string();
    assert!(failed.contains("is gone since it was listed"), "{failed}");
    let _ = std::fs::remove_dir_all(&a.root);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
    a.db.drop().await.unwrap();
}

/// Mid-migration, Parse Server may still read a name from the other configured store: a name
/// that store holds is no dangling reference, and is never relinked (exit 3, said why).
#[tokio::test]
async fn a_name_the_other_store_holds_is_not_relinked() {
    let other = support::temp_path("pfm-relink-other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("top.jpg"), b"still served from here").unwrap();
    let extra = format!(
        "\n[source.server]\ntype = \"fs\"\npath = {:?}\nencryption = \"none\"\n",
        other.to_str().unwrap()
    );
    let a = seed("pfm_relink_other", &extra).await;
    let out = a.run(&["relink", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(a.image("p2").await, "top.jpg", "left alone");
    let p1 = find(&a.db, "Photo", "p1").await;
    assert_eq!(name_at(&p1, "meta.thumb").unwrap(), "undefined/nested.png");
    let failed = out.summary()["failed_references"].to_string();
    assert!(failed.contains("top.jpg is in fs"), "{failed}");
    let _ = std::fs::remove_dir_all(&a.root);
    let _ = std::fs::remove_dir_all(&other);
    a.db.drop().await.unwrap();
}
