//! A stateful property test of the whole system: random sequences of the writing commands
//! (`migrate` in full, `--copy-only`, `--rewrite-only`, one shard, `--strings`, with each rename
//! policy; `rollback` with and without `--delete-copies`; `audit --quarantine / --restore /
//! --purge` of either store; `rebase`; `rekey --encrypt / --decrypt` of either store), `kill -9`
//! of a run at a random moment followed by its
//! resumption, and app writes between and during them (new objects reusing a file wherever it is
//! now, nested Files, Parse Config params, URLs in strings, string edits, deletes), over an fs
//! store and a GridFS bucket (each the app's store in turn), with a second app (`collectionPrefix`
//! `b_`) that shares the app's store and references some of the same files.
//!
//! After every step the invariant: **every reference either app holds resolves, in the app's
//! store or the destination, to the bytes it was given when the app wrote it** (so nothing
//! referenced was deleted, quarantined or overwritten), and no object the app wrote is gone.
//! Exit codes are not judged (a refusal is safe) except that none is an internal error or a
//! panic.
//!
//! Sequences are generated and shrunk by `proptest` from a seed: `PFM_STATEFUL_SEED` (a number;
//! default fixed, so CI runs the same sequences each time; `random` picks one and prints it),
//! `PFM_STATEFUL_CASES` (default 256, proptest's own default: about 9 minutes, the suite's
//! longest test; soaks ask for more). A failure prints the seed and the shrunk sequence. The kill delays are part of a
//! sequence, but when a kill lands depends on the machine, so a replay is
//! close to, not always exactly, the failing run. A soak: `PFM_STATEFUL_SEED=random
//! PFM_STATEFUL_CASES=2000 cargo test --test it stateful:: -- --nocapture`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use parse_files_migrate::storage::{ObjectStore, PutOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::support::app::{self, APP_ID, SERVER_URL};
use crate::support::conformance::{body, read_all};
use crate::support::{self};

/// An old base of the app's file URLs (`[rebase] from`).
const OLD_BASE: &str = "https://old-api.example.com/parse";

/// Which store kinds play the app's store and the destination.
#[derive(Debug, Clone, Copy)]
enum Topology {
    FsToGridFs,
    GridFsToFs,
}

/// Where a reference sits in the database.
#[derive(Debug, Clone, PartialEq)]
enum Loc {
    /// Top-level File field `image` of `Photo` (a bare name).
    Top { id: String },
    /// `meta.<key>` of `Photo`: a nested `{__type: "File"}`.
    Nested { id: String, key: String },
    /// `gallery.<i>` of `Photo`.
    Array { id: String, i: usize },
    /// `params.<param>` of `_GlobalConfig`.
    Config { param: String },
    /// The `k`-th file URL inside the String field `caption` of `Photo`.
    Str { id: String, k: usize },
}

impl Loc {
    fn object(&self) -> Option<&str> {
        match self {
            Loc::Top { id }
            | Loc::Nested { id, .. }
            | Loc::Array { id, .. }
            | Loc::Str { id, .. } => Some(id),
            Loc::Config { .. } => None,
        }
    }
}

/// One reference the test wrote, and the bytes it must keep resolving to.
#[derive(Debug, Clone)]
struct Slot {
    /// The collection prefix of the app holding it ("" or "b_").
    app: &'static str,
    loc: Loc,
    /// The name the app wrote (the file's bytes are [`content`] of the name it was uploaded as).
    origin: String,
}

/// How the app picks the file a new reference names.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// A new upload to the app's store, Parse-Server-style name or not.
    New { parse_style: bool },
    /// What an existing reference names now (the `n`-th, modulo): a migrated file is reused.
    Reuse(u8),
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Top,
    Nested,
    Array,
    Config,
    /// A caption with two URLs, the second on the old base.
    Str,
}

#[derive(Debug, Clone, Copy)]
enum Write {
    /// App A (or B) inserts a new object (or sets a Config param) of this shape.
    Add { b: bool, shape: Shape, pick: Pick },
    /// App A rewrites the caption of one of its objects (the `n`-th).
    EditString { n: u8, pick: Pick },
    /// App A (or B) deletes one of its objects (the `n`-th).
    Delete { b: bool, n: u8 },
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Full,
    CopyOnly,
    RewriteOnly,
}

#[derive(Debug, Clone, Copy)]
enum Store {
    Server,
    Destination,
}

impl Store {
    fn arg(self) -> &'static str {
        match self {
            Store::Server => "server",
            Store::Destination => "destination",
        }
    }
}

#[derive(Clone, Copy)]
enum Step {
    Migrate {
        mode: Mode,
        rename: &'static str,
        shard: Option<u8>,
        strings: bool,
    },
    Rollback {
        delete_copies: bool,
    },
    Quarantine(Store),
    Restore(Store),
    Purge(Store),
    Rebase,
    /// `rekey --store S --encrypt` (or `--decrypt`): every file of the store written again in
    /// place, with the key or as plaintext (both stores read either).
    Rekey {
        store: Store,
        decrypt: bool,
    },
    /// Start `migrate` (or `rollback --delete-copies`), let the app write meanwhile, `kill -9` it
    /// after `after_ms`, then resume it with `--break-lease`.
    Kill {
        rollback: bool,
        after_ms: u16,
        write: Write,
    },
    App(Write),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::App(w) => write!(f, "{w:?}"),
            Step::Kill {
                rollback,
                after_ms,
                write,
            } => write!(
                f,
                "kill({} after {after_ms} ms, meanwhile {write:?})",
                if *rollback {
                    "rollback --delete-copies"
                } else {
                    "migrate"
                }
            ),
            other => write!(f, "{}", args(other).join(" ")),
        }
    }
}

/// The command line of a tool step (after `-c CONFIG`).
fn args(step: &Step) -> Vec<String> {
    let mut a: Vec<&str> = match *step {
        Step::Migrate {
            mode,
            rename,
            shard,
            strings,
        } => {
            let mut a = vec!["migrate", "--select", "all", "--rename", rename];
            if rename == "keep" {
                // The app's names are not legacy ones: nothing for Parse Server's fileKey to redirect.
                a.push("--confirm-file-key-removed");
            }
            match mode {
                Mode::Full => {}
                Mode::CopyOnly => a.push("--copy-only"),
                Mode::RewriteOnly => a.push("--rewrite-only"),
            }
            match shard {
                Some(0) => a.extend(["--shard", "0/2"]),
                Some(_) => a.extend(["--shard", "1/2"]),
                None => {}
            }
            if strings {
                a.push("--strings");
            }
            a
        }
        Step::Rollback { delete_copies } => {
            let mut a = vec!["rollback"];
            if delete_copies {
                a.push("--delete-copies");
            }
            a
        }
        Step::Quarantine(s) => vec![
            "audit",
            "--store",
            s.arg(),
            "--quarantine",
            "--min-age",
            "0s",
        ],
        Step::Restore(s) => vec!["audit", "--store", s.arg(), "--restore"],
        Step::Purge(s) => vec!["audit", "--store", s.arg(), "--purge", "--older-than", "0s"],
        Step::Rebase => vec!["rebase"],
        Step::Rekey { store, decrypt } => vec![
            "rekey",
            "--store",
            store.arg(),
            if decrypt { "--decrypt" } else { "--encrypt" },
        ],
        Step::Kill { .. } | Step::App(_) => unreachable!("not a tool step"),
    };
    a.extend(["--yes", "--output", "jsonl"]);
    a.into_iter().map(String::from).collect()
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        any::<bool>().prop_map(|parse_style| Pick::New { parse_style }),
        any::<u8>().prop_map(Pick::Reuse),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Top),
        Just(Shape::Nested),
        Just(Shape::Array),
        Just(Shape::Config),
        Just(Shape::Str),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => (any::<bool>(), shape(), pick()).prop_map(|(b, shape, pick)| Write::Add {
            b: b && !matches!(shape, Shape::Config),
            shape,
            pick
        }),
        1 => (any::<u8>(), pick()).prop_map(|(n, pick)| Write::EditString { n, pick }),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(b, n)| Write::Delete { b, n }),
    ]
}

fn store() -> impl Strategy<Value = Store> {
    prop_oneof![Just(Store::Server), Just(Store::Destination)]
}

fn step() -> impl Strategy<Value = Step> {
    let mode = prop_oneof![
        3 => Just(Mode::Full),
        1 => Just(Mode::CopyOnly),
        1 => Just(Mode::RewriteOnly)
    ];
    let rename = prop_oneof![Just("auto"), Just("keep"), Just("parse-server")];
    let shard = prop_oneof![3 => Just(None), 1 => (0u8..2).prop_map(Some)];
    prop_oneof![
        6 => (mode, rename, shard, any::<bool>()).prop_map(|(mode, rename, shard, strings)| {
            Step::Migrate { mode, rename, shard, strings }
        }),
        3 => any::<bool>().prop_map(|delete_copies| Step::Rollback { delete_copies }),
        2 => store().prop_map(Step::Quarantine),
        1 => store().prop_map(Step::Restore),
        1 => store().prop_map(Step::Purge),
        1 => Just(Step::Rebase),
        1 => (store(), any::<bool>()).prop_map(|(store, decrypt)| Step::Rekey { store, decrypt }),
        2 => (any::<bool>(), prop_oneof![0u16..80, 0u16..400], write()).prop_map(|(rollback, after_ms, write)| {
            Step::Kill { rollback, after_ms, write }
        }),
        8 => write().prop_map(Step::App),
    ]
}

/// A sequence: the topology, the app's first writes, then the steps.
fn sequence() -> impl Strategy<Value = (bool, Vec<Step>)> {
    (any::<bool>(), proptest::collection::vec(step(), 5..20))
}

/// The bytes of the file uploaded as `name`: distinct per name, a few hundred bytes to 40 KiB.
fn content(name: &str) -> Vec<u8> {
    let h = support::fnv1a(name);
    support::bytes(200 + (h % 40_000) as usize, h)
}

/// The `/files/<appId>/<name>` URL on `base`.
fn url(base: &str, name: &str) -> String {
    format!("{base}/files/{APP_ID}/{name}")
}

/// The names of the file URLs inside `s`, in order.
fn names_in(s: &str) -> Vec<String> {
    let marker = format!("/files/{APP_ID}/");
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find(&marker) {
        rest = &rest[at + marker.len()..];
        let end = rest.find(['"', '\'', ' ', '<', '>']).unwrap_or(rest.len());
        out.push(
            percent_encoding::percent_decode_str(&rest[..end])
                .decode_utf8_lossy()
                .into_owned(),
        );
        rest = &rest[end..];
    }
    out
}

/// One sequence's world: the database with both apps, the two stores, the configuration.
struct World {
    db: Database,
    server: std::sync::Arc<dyn ObjectStore>,
    destination: std::sync::Arc<dyn ObjectStore>,
    config: PathBuf,
    slots: Vec<Slot>,
    /// Objects each app inserted (and has not deleted), in order.
    objects: BTreeMap<&'static str, Vec<String>>,
    uploads: u32,
    next_id: u32,
    _dir: tempfile::TempDir,
    fs_dir: PathBuf,
    /// Steps run, tool runs made (for the figures).
    runs: u32,
}

/// The app's fileKey, which both stores encrypt with.
const KEY: &str = "statefulKey";

fn table(kind: &str, fs_dir: &Path, db_name: &str, bucket: &str) -> String {
    match kind {
        // Both encrypt with the app's fileKey, as Parse Server's adapters do, and read plaintext
        // too: `rekey` steps turn files one way or the other.
        "fs" => format!(
            "type = \"fs\"\npath = \"{}\"\nencryption = \"file-key\"\nencryption_key = \"{KEY}\"\n",
            fs_dir.display()
        ),
        _ => format!(
            "type = \"gridfs\"\nuri = \"{}\"\ndatabase = \"{db_name}\"\nbucket = \"{bucket}\"\n\
             encryption = \"file-key\"\nencryption_key = \"{KEY}\"\n",
            support::mongo_uri()
        ),
    }
}

impl World {
    async fn new(topology: Topology) -> World {
        let db_name = support::unique("pfm_sm");
        let db = support::mongo_client().await.database(&db_name);
        for prefix in ["", "b_"] {
            db.collection::<Document>(&format!("{prefix}_SCHEMA"))
                .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file",
                "meta": "object", "gallery": "array", "caption": "string"})
                .await
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let fs_dir = dir.path().join("files");
        let (server_kind, destination_kind) = match topology {
            Topology::FsToGridFs => ("fs", "gridfs"),
            Topology::GridFsToFs => ("gridfs", "fs"),
        };
        // Parse's GridFS adapter uses the default bucket `fs`; the destination bucket differs.
        let server_table = table(server_kind, &fs_dir, &db_name, "fs");
        let destination_table = table(destination_kind, &fs_dir, &db_name, "moved");
        let config = dir.path().join("app.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[ledger]\nlease_secs = 2\n\n[rebase]\nfrom = [\"{OLD_BASE}/\"]\n\n\
                 [source.server]\n{server_table}\n[destination]\n{destination_table}",
                app::base_tables(&db_name, KEY),
            ),
        )
        .unwrap();
        World {
            server: support::open_store(&server_table, &db_name).await,
            destination: support::open_store(&destination_table, &db_name).await,
            db,
            config,
            slots: Vec::new(),
            objects: BTreeMap::new(),
            uploads: 0,
            next_id: 0,
            _dir: dir,
            fs_dir,
            runs: 0,
        }
    }

    fn photos(&self, app: &str) -> mongodb::Collection<Document> {
        self.db.collection(&format!("{app}Photo"))
    }

    /// The name a new reference gets: a new upload to the app's store, or what an existing
    /// reference (of either app: they share the store) names now.
    async fn choose(&mut self, pick: Pick, app: &'static str) -> (String, String) {
        if let Pick::Reuse(n) = pick
            && !self.slots.is_empty()
        {
            let slot = self.slots[n as usize % self.slots.len()].clone();
            if app.is_empty() {
                // App A names the file where its reference points now (maybe a migrated copy).
                if let Some(now) = self.current(&slot).await {
                    return (now, slot.origin);
                }
            } else if self.server.stat(&slot.origin).await.is_ok() {
                // App B only knows the shared store: it names the original upload.
                return (slot.origin.clone(), slot.origin);
            }
        }
        self.uploads += 1;
        let name = match pick {
            Pick::New { parse_style: false } => format!("up{}.bin", self.uploads),
            _ => format!(
                "{:032x}_up{}.bin",
                support::fnv1a(self.uploads.to_string()),
                self.uploads
            ),
        };
        self.server
            .put(&name, body(&content(&name), 8192), &PutOptions::default())
            .await
            .unwrap();
        (name.clone(), name)
    }

    async fn apply(&mut self, w: Write) {
        match w {
            Write::Add { b, shape, pick } => {
                let app = if b { "b_" } else { "" };
                let (name, origin) = self.choose(pick, app).await;
                self.next_id += 1;
                let id = format!("o{}", self.next_id);
                let base = if self.next_id.is_multiple_of(3) {
                    OLD_BASE
                } else {
                    SERVER_URL
                };
                let (set, locs) = match shape {
                    Shape::Top => (doc! {"image": &name}, vec![Loc::Top { id: id.clone() }]),
                    Shape::Nested => (
                        doc! {"meta": {"pic": app::file(&name, Some(&url(base, &name)))}},
                        vec![Loc::Nested {
                            id: id.clone(),
                            key: "pic".into(),
                        }],
                    ),
                    Shape::Array => (
                        doc! {"gallery": [app::file(&name, Some(&url(base, &name))), Bson::Null]},
                        vec![Loc::Array {
                            id: id.clone(),
                            i: 0,
                        }],
                    ),
                    Shape::Str => {
                        let (second, second_origin) =
                            self.choose(Pick::Reuse(self.next_id as u8), app).await;
                        let caption = format!(
                            "<img src=\"{}\"> and {} here",
                            url(SERVER_URL, &name),
                            url(OLD_BASE, &second)
                        );
                        let locs = [
                            Loc::Str {
                                id: id.clone(),
                                k: 0,
                            },
                            Loc::Str {
                                id: id.clone(),
                                k: 1,
                            },
                        ];
                        self.record(app, &locs[1..], &second_origin);
                        (doc! {"caption": caption}, locs[..1].to_vec())
                    }
                    Shape::Config => {
                        let param = format!("p{}", self.next_id);
                        self.db
                            .collection::<Document>("_GlobalConfig")
                            .update_one(
                                doc! {"_id": 1},
                                doc! {"$set": {format!("params.{param}"):
                                app::file(&name, Some(&url(base, &name)))}},
                            )
                            .upsert(true)
                            .await
                            .unwrap();
                        self.record(app, &[Loc::Config { param }], &origin);
                        return;
                    }
                };
                let mut d = doc! {"_id": &id};
                d.extend(set);
                self.photos(app).insert_one(d).await.unwrap();
                self.objects.entry(app).or_default().push(id);
                self.record(app, &locs, &origin);
            }
            Write::EditString { n, pick } => {
                let Some(ids) = self.objects.get("").filter(|v| !v.is_empty()) else {
                    return;
                };
                let id = ids[n as usize % ids.len()].clone();
                let (name, origin) = self.choose(pick, "").await;
                let caption = format!("edited: {} !", url(SERVER_URL, &name));
                self.photos("")
                    .update_one(doc! {"_id": &id}, doc! {"$set": {"caption": caption}})
                    .await
                    .unwrap();
                self.slots.retain(|s| {
                    !(s.app.is_empty() && matches!(&s.loc, Loc::Str { id: i, .. } if *i == id))
                });
                self.record("", &[Loc::Str { id, k: 0 }], &origin);
            }
            Write::Delete { b, n } => {
                let app = if b { "b_" } else { "" };
                let Some(ids) = self.objects.get_mut(app).filter(|v| !v.is_empty()) else {
                    return;
                };
                let id = ids.remove(n as usize % ids.len());
                self.photos(app)
                    .delete_one(doc! {"_id": &id})
                    .await
                    .unwrap();
                self.slots
                    .retain(|s| !(s.app == app && s.loc.object() == Some(id.as_str())));
            }
        }
    }

    fn record(&mut self, app: &'static str, locs: &[Loc], origin: &str) {
        for loc in locs {
            self.slots.push(Slot {
                app,
                loc: loc.clone(),
                origin: origin.to_string(),
            });
        }
    }

    /// The name `slot` holds now (`None`: the object or the value is gone).
    async fn current(&self, slot: &Slot) -> Option<String> {
        let doc = match &slot.loc {
            Loc::Config { .. } => self
                .db
                .collection::<Document>("_GlobalConfig")
                .find_one(doc! {"_id": 1})
                .await
                .unwrap()?,
            loc => self
                .photos(slot.app)
                .find_one(doc! {"_id": loc.object().unwrap()})
                .await
                .unwrap()?,
        };
        let name_of = |v: Option<&Bson>| -> Option<String> {
            match v? {
                Bson::Document(f) => f.get_str("name").ok().map(String::from),
                _ => None,
            }
        };
        match &slot.loc {
            Loc::Top { .. } => doc.get_str("image").ok().map(String::from),
            Loc::Nested { key, .. } => name_of(doc.get_document("meta").ok()?.get(key)),
            Loc::Array { i, .. } => name_of(doc.get_array("gallery").ok()?.get(*i)),
            Loc::Config { param } => name_of(doc.get_document("params").ok()?.get(param)),
            Loc::Str { k, .. } => names_in(doc.get_str("caption").ok()?).get(*k).cloned(),
        }
    }

    /// The invariant; `Err` says which reference broke and how.
    async fn check(&self) -> Result<(), String> {
        for slot in &self.slots {
            let Some(name) = self.current(slot).await else {
                return Err(format!("{slot:?}: the reference is gone from the database"));
            };
            let want = content(&slot.origin);
            let mut seen = Vec::new();
            let mut ok = false;
            for (label, store) in [
                ("app's store", &self.server),
                ("destination", &self.destination),
            ] {
                match read_all(store.as_ref(), &name).await {
                    Ok(bytes) if bytes == want => {
                        ok = true;
                        break;
                    }
                    Ok(bytes) => seen.push(format!("{label}: {} other bytes", bytes.len())),
                    Err(e) if e.is_not_found() => seen.push(format!("{label}: absent")),
                    Err(e) => seen.push(format!("{label}: {e}")),
                }
            }
            if !ok {
                return Err(format!(
                    "{slot:?} names {name:?}, which resolves nowhere to its bytes ({})",
                    seen.join("; ")
                ));
            }
        }
        Ok(())
    }

    fn tool(&mut self, args: Vec<String>) -> app::Out {
        self.runs += 1;
        let mut all = vec!["-c".to_string(), self.config.display().to_string()];
        all.extend(args);
        let out = app::run(all.clone());
        if std::env::var_os("PFM_STATEFUL_TRACE").is_some() {
            let summary = out.stdout.lines().last().unwrap_or("");
            eprintln!(
                "  {} → exit {}: {summary:.300}",
                all[2..].join(" "),
                out.code
            );
            if out.code != 0 {
                eprintln!(
                    "    {:.400}",
                    out.stderr.trim_end().lines().last().unwrap_or("")
                );
            }
        }
        out
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match *step {
            Step::App(w) => {
                self.apply(w).await;
                Ok(())
            }
            Step::Kill {
                rollback,
                after_ms,
                write,
            } => {
                let tool = if rollback {
                    Step::Rollback {
                        delete_copies: true,
                    }
                } else {
                    Step::Migrate {
                        mode: Mode::Full,
                        rename: "parse-server",
                        shard: None,
                        strings: true,
                    }
                };
                let mut a = vec!["-c".to_string(), self.config.display().to_string()];
                a.extend(args(&tool));
                let mut child = app::command()
                    .args(&a)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                self.runs += 1;
                let started = Instant::now();
                self.apply(write).await;
                let left = Duration::from_millis(after_ms.into()).saturating_sub(started.elapsed());
                tokio::time::sleep(left).await;
                child.kill().unwrap();
                child.wait().unwrap();
                let mut again = args(&tool);
                again.push("--break-lease".into());
                judge(&self.tool(again))
            }
            ref tool => {
                let out = self.tool(args(tool));
                if out.stderr.contains("lease") && out.code == 2 {
                    // A kill's lease may still be held by the audit's own clock; wait it out once.
                    tokio::time::sleep(Duration::from_millis(2100)).await;
                    return judge(&self.tool(args(tool)));
                }
                judge(&out)
            }
        }
    }
}

/// A tool run may refuse or stop (that is safe), but never with an internal error or a panic.
fn judge(out: &app::Out) -> Result<(), String> {
    if out.code == 1 || out.code == 101 || out.code < 0 {
        return Err(format!("exit {}: {}", out.code, out.stderr));
    }
    Ok(())
}

/// Run one sequence; the figures (steps, tool runs) go to `figures`.
async fn run_sequence(
    gridfs_first: bool,
    steps: &[Step],
    figures: &mut (u64, u64),
) -> Result<(), String> {
    let topology = if gridfs_first {
        Topology::GridFsToFs
    } else {
        Topology::FsToGridFs
    };
    let mut w = World::new(topology).await;
    // The app's first objects, so the first steps have something to move.
    for (i, shape) in [Shape::Top, Shape::Nested, Shape::Str, Shape::Config]
        .into_iter()
        .enumerate()
    {
        w.apply(Write::Add {
            b: false,
            shape,
            pick: Pick::New {
                parse_style: i % 2 == 0,
            },
        })
        .await;
    }
    w.apply(Write::Add {
        b: true,
        shape: Shape::Top,
        pick: Pick::Reuse(0),
    })
    .await;
    w.check()
        .await
        .map_err(|e| format!("before any step: {e}"))?;
    for (i, step) in steps.iter().enumerate() {
        w.step(step)
            .await
            .map_err(|e| format!("step {i} {step:?}: {e}"))?;
        w.check().await.map_err(|e| {
            format!(
                "after step {i} {step:?} ({topology:?}, {}): {e}",
                w.fs_dir.display()
            )
        })?;
        figures.0 += 1;
    }
    figures.1 += u64::from(w.runs);
    w.db.drop().await.unwrap();
    Ok(())
}

fn seed() -> u64 {
    match std::env::var("PFM_STATEFUL_SEED").ok().as_deref() {
        None | Some("") => 0x5afe_c0de,
        Some("random") => rand::random(),
        Some(s) => s.parse().expect("PFM_STATEFUL_SEED: a number or `random`"),
    }
}

#[test]
fn every_reference_keeps_its_bytes_through_random_sequences() {
    let seed = seed();
    let cases: u32 = std::env::var("PFM_STATEFUL_CASES")
        .ok()
        .map(|s| s.parse().expect("PFM_STATEFUL_CASES: a number"))
        .unwrap_or(256);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 300_000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let started = Instant::now();
    let figures = std::cell::Cell::new((0u64, 0u64));
    let sequences = std::cell::Cell::new(0u64);
    let result = runner.run(&sequence(), |(gridfs_first, steps)| {
        sequences.set(sequences.get() + 1);
        let mut f = figures.get();
        // A runtime per sequence: the sequence's MongoDB clients (the test's, the stores') end
        // with it, connections and monitors included. Kept across sequences, each left its
        // connections open, and hundreds of them slowed the test server to a halt.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let r = rt.block_on(run_sequence(gridfs_first, &steps, &mut f));
        drop(rt);
        figures.set(f);
        r.map_err(TestCaseError::fail)
    });
    let (figures, sequences) = (figures.get(), sequences.get());
    eprintln!(
        "stateful: seed {seed}, {sequences} sequences ({cases} cases), {} steps, {} tool runs, {:.0} s",
        figures.0,
        figures.1,
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, (gridfs_first, steps))) => panic!(
            "the invariant broke (seed {seed}; rerun: PFM_STATEFUL_SEED={seed}).\n\
             shrunk sequence ({}):\n  {}\n{why}",
            if gridfs_first {
                "GridFS → fs"
            } else {
                "fs → GridFS"
            },
            steps
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
        Err(e) => panic!("seed {seed}: {e}"),
    }
}
