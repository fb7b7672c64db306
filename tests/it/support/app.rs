//! Shared pieces of the end-to-end tests: running the binary, seeding a hosted-era Parse app with
//! many files, reading documents back, and checking a migration's result.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use parse_files_migrate::parse::names::encode_uri_component;
use serde_json::Value;

pub const APP_ID: &str = "faultApp";
pub const SERVER_URL: &str = "https://api.example.com/parse";

/// A UUID whose last group counts `n` (`…-0305e82c33<n>` for small `n`).
pub fn uuid(n: u64) -> String {
    format!("3f2504e0-4f89-11d3-9a0c-{:012x}", 0x0305_e82c_3300 + n)
}

/// `{__type: "File", name, url?}`.
pub fn file(name: &str, url: Option<&str>) -> Document {
    let mut d = doc! {"__type": "File", "name": name};
    if let Some(u) = url {
        d.insert("url", u);
    }
    d
}

/// Where hosted Parse served a `tfss-` file (the `url` stored beside nested hosted Files).
pub fn tfss_url(file_key: &str, name: &str) -> String {
    format!(
        "http://files.parsetfss.com/{file_key}/{}",
        encode_uri_component(name)
    )
}

/// What one run of the binary did. Every run is checked for panics.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(out: std::process::Output) -> Out {
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Out {
    /// stdout as JSON lines.
    pub fn jsonl(&self) -> Vec<Value> {
        jsonl(self.stdout.as_bytes())
    }

    /// Asserts that `secret` (the `what`) shows neither on stdout nor on stderr.
    pub fn assert_hides(&self, what: &str, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the {what} leaked:\n{}\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// The last JSON line, which must be `migrate`'s summary.
    pub fn summary(&self) -> Value {
        summary(&self.jsonl()).clone()
    }
}

/// Output of `--output jsonl`: every line parsed as JSON (a line that is not fails the test).
pub fn jsonl(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The last line of `migrate --output jsonl`, checked to be the summary.
pub fn summary(lines: &[Value]) -> &Value {
    let s = lines.last().expect("a summary line");
    assert_eq!(s["action"], "summary", "{s}");
    s
}

/// Where Cargo built the binary under test.
pub fn bin_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("parse-files-migrate")
}

/// The binary as a plain `std::process::Command` (to spawn it, signal it, wait for it), with no
/// `PFM_*` settings inherited from the environment (the `PFM_TEST_*` server addresses stay) and
/// `NO_COLOR=1`.
pub fn command() -> std::process::Command {
    let mut c = std::process::Command::new(bin_path());
    for (k, _) in std::env::vars() {
        if k.starts_with("PFM_") && !k.starts_with("PFM_TEST_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1");
    c
}

/// [`command`] as an `assert_cmd` command (`output()` straight away), killed after
/// [`run_limit`].
pub fn bin() -> Command {
    let mut c = Command::from_std(command());
    c.timeout(run_limit());
    c
}

/// Run the binary with `args`; asserts it did not panic.
pub fn run<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let limit = run_limit();
    let started = std::time::Instant::now();
    let out = Out::from(bin().args(&args).output().unwrap());
    assert!(
        started.elapsed() < limit,
        "the tool ran for {limit:?} and was killed (PFM_TEST_RUN_TIMEOUT): {args:?}\n\
         stderr so far:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked"),
        "the process panicked:\n{}",
        out.stderr
    );
    out
}

/// How long one run of the binary may take before the test kills it and fails, naming the run:
/// a hang (the tool's, or a test server's that stopped answering) is a loud failure within
/// minutes, not a test suite that never ends. `PFM_TEST_RUN_TIMEOUT` (seconds) overrides the
/// default of 300 s, far above any single run of the suite.
pub fn run_limit() -> std::time::Duration {
    let secs = std::env::var("PFM_TEST_RUN_TIMEOUT")
        .ok()
        .map(|s| s.parse().expect("PFM_TEST_RUN_TIMEOUT: seconds"))
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// `-c CONFIG migrate ARGS…`.
pub fn migrate(config: &Path, args: &[&str]) -> Out {
    let mut all = vec!["-c", config.to_str().unwrap(), "migrate"];
    all.extend_from_slice(args);
    run(all)
}

/// `-c CONFIG migrate --yes --output jsonl ARGS…` started in the background (stdout and stderr
/// captured), for a test that acts on the run while it lasts.
pub fn spawn_migrate(config: &Path, args: &[&str]) -> std::process::Child {
    command()
        .args([
            "-c",
            config.to_str().unwrap(),
            "migrate",
            "--yes",
            "--output",
            "jsonl",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child started by [`spawn_migrate`] without blocking the test's runtime.
pub async fn wait(child: std::process::Child) -> Out {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
        .into()
}

/// Every collection of `db`, each sorted by `_id`.
pub async fn snapshot(db: &Database) -> BTreeMap<String, Vec<Document>> {
    let mut out = BTreeMap::new();
    for c in db.list_collection_names().await.unwrap() {
        let mut docs: Vec<Document> = futures::TryStreamExt::try_collect(
            db.collection::<Document>(&c).find(doc! {}).await.unwrap(),
        )
        .await
        .unwrap();
        docs.sort_by_key(|d| format!("{:?}", d.get("_id")));
        out.insert(c, docs);
    }
    out
}

/// Every document of `coll`, sorted by `_id` by the server.
pub async fn find_all(db: &Database, coll: &str) -> Vec<Document> {
    futures::TryStreamExt::try_collect(
        db.collection::<Document>(coll)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .unwrap(),
    )
    .await
    .unwrap()
}

/// The document `id` of `coll`.
pub async fn find(db: &Database, coll: &str, id: impl Into<Bson>) -> Document {
    let id = id.into();
    db.collection::<Document>(coll)
        .find_one(doc! {"_id": id.clone()})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{coll} {id} not found"))
}

/// The file name at a dotted `path` of `doc`: a bare name, or the `name` of a File object.
pub fn name_at(doc: &Document, path: &str) -> Option<String> {
    let mut cur = Bson::Document(doc.clone());
    for seg in path.split('.') {
        cur = match cur {
            Bson::Document(d) => d.get(seg)?.clone(),
            Bson::Array(a) => a.get(seg.parse::<usize>().ok()?)?.clone(),
            _ => return None,
        };
    }
    match cur {
        Bson::String(s) => Some(s),
        Bson::Document(d) => d.get_str("name").ok().map(str::to_string),
        _ => None,
    }
}

/// `_SCHEMA` of a hosted-era app: `Photo` with File fields `image`, `thumb`, Object `meta` and
/// Array `gallery`; `_User` with File `avatar`.
pub async fn photo_schema(db: &Database) {
    db.collection::<Document>("_SCHEMA")
        .insert_many([
            doc! {"_id": "Photo", "objectId": "string", "image": "file", "thumb": "file",
            "meta": "object", "gallery": "array"},
            doc! {"_id": "_User", "objectId": "string", "avatar": "file"},
        ])
        .await
        .unwrap();
}

/// One seeded reference.
#[derive(Debug, Clone)]
pub struct Ref {
    pub class: &'static str,
    pub id: String,
    pub path: String,
    pub name: String,
}

/// A seeded hosted-era app: the legacy files its source must serve, and every reference.
#[derive(Debug, Default)]
pub struct Hosted {
    /// Files present at the source: name → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Referenced names with no bytes anywhere.
    pub missing: Vec<String>,
    pub refs: Vec<Ref>,
}

/// A hosted-Parse name for file `i`: `tfss-<uuid>-…` mostly, `<uuid>-…` (files.parse.com) for
/// every third, with spaces and unicode in some.
pub fn hosted_name(i: usize) -> String {
    let rest = match i % 5 {
        0 => format!("photo {i}.jpg"),
        1 => format!("doc-{i}.pdf"),
        2 => format!("ünïcødé-{i}.png"),
        3 => format!("clip_{i}.mp4"),
        _ => format!("{i}"),
    };
    if i % 3 == 2 {
        format!("{}-{rest}", uuid(i as u64))
    } else {
        format!("tfss-{}-{rest}", uuid(i as u64))
    }
}

/// Size of file `i`: mostly tens of KB, one empty file, a few of several hundred KB.
fn hosted_size(i: usize) -> usize {
    match i {
        7 => 0,
        _ if i.is_multiple_of(17) => 300_000 + i * 1000,
        _ => 1 + (i * 7919) % 60_000,
    }
}

impl Hosted {
    /// Seed `db` with `files` legacy files (and `missing` referenced names that have no bytes):
    /// `_SCHEMA`, a `Photo` class with top-level, object and array File fields (one document per
    /// file, files shared between documents), `_User` avatars and Parse Config entries.
    pub async fn seed(db: &Database, files: usize, missing: usize, file_key: &str) -> Hosted {
        assert!(files >= 10);
        let mut h = Hosted::default();
        let names: Vec<String> = (0..files).map(hosted_name).collect();
        for (i, n) in names.iter().enumerate() {
            h.files
                .insert(n.clone(), super::bytes(hosted_size(i), 1000 + i as u64));
        }
        let url = |n: &str| tfss_url(file_key, n);
        photo_schema(db).await;
        let mut photos = Vec::new();
        let add = |h: &mut Hosted, class: &'static str, id: &str, path: String, name: &str| {
            h.refs.push(Ref {
                class,
                id: id.to_string(),
                path,
                name: name.to_string(),
            })
        };
        for (j, name) in names.iter().enumerate() {
            let id = format!("p{j:04}");
            let thumb = &names[(j * 7 + 3) % files];
            let mut d = doc! {"_id": &id, "image": name, "thumb": thumb, "title": format!("#{j}")};
            add(&mut h, "Photo", &id, "image".into(), name);
            add(&mut h, "Photo", &id, "thumb".into(), thumb);
            if j.is_multiple_of(4) {
                let n = &names[(j * 13 + 5) % files];
                d.insert(
                    "meta",
                    doc! {"avatar": file(n, Some(&url(n))), "n": j as i32},
                );
                add(&mut h, "Photo", &id, "meta.avatar".into(), n);
            }
            if j.is_multiple_of(5) {
                let (a, b) = (&names[(j + 1) % files], &names[(j + 2) % files]);
                d.insert(
                    "gallery",
                    vec![
                        Bson::Document(file(a, None)),
                        Bson::Null,
                        Bson::Document(file(b, Some(&url(b)))),
                    ],
                );
                add(&mut h, "Photo", &id, "gallery.0".into(), a);
                add(&mut h, "Photo", &id, "gallery.2".into(), b);
            }
            photos.push(d);
        }
        for k in 0..missing {
            let name = format!("tfss-{}-missing-{k}.jpg", uuid(900_000 + k as u64));
            let id = format!("m{k:04}");
            photos.push(doc! {"_id": &id, "image": &name});
            add(&mut h, "Photo", &id, "image".into(), &name);
            h.missing.push(name);
        }
        db.collection::<Document>("Photo")
            .insert_many(photos)
            .await
            .unwrap();
        let users: Vec<Document> = (0..files / 10)
            .map(|u| {
                let id = format!("u{u:03}");
                let n = &names[(u * 31 + 1) % files];
                add(&mut h, "_User", &id, "avatar".into(), n);
                doc! {"_id": id, "avatar": n}
            })
            .collect();
        db.collection::<Document>("_User")
            .insert_many(users)
            .await
            .unwrap();
        let logo = &names[files - 1];
        db.collection::<Document>("_GlobalConfig")
            .insert_one(doc! {"_id": 1, "params": {"logo": file(logo, Some(&url(logo))), "n": 5}})
            .await
            .unwrap();
        h.refs.push(Ref {
            class: "_GlobalConfig",
            id: "1".into(),
            path: "params.logo".into(),
            name: logo.clone(),
        });
        h
    }

    /// Checks every reference in `db`: a present file's references name `target(name)`, a
    /// missing file's keep their name. Returns how many references were rewritten.
    pub async fn check_references(&self, db: &Database, target: impl Fn(&str) -> String) -> usize {
        let want = |r: &Ref| match self.files.contains_key(&r.name) {
            true => target(&r.name),
            false => r.name.clone(),
        };
        self.check_where(db, |_| true, want).await;
        self.refs
            .iter()
            .filter(|r| self.files.contains_key(&r.name))
            .count()
    }

    /// Checks that each reference `keep` selects names `want(reference)` in `db`; returns how
    /// many were checked.
    pub async fn check_where(
        &self,
        db: &Database,
        keep: impl Fn(&Ref) -> bool,
        want: impl Fn(&Ref) -> String,
    ) -> usize {
        let mut checked = 0;
        for r in self.refs.iter().filter(|r| keep(r)) {
            let id: Bson = if r.class == "_GlobalConfig" {
                Bson::Int32(1)
            } else {
                Bson::String(r.id.clone())
            };
            let d = find(db, r.class, id).await;
            assert_eq!(
                name_at(&d, &r.path).as_deref(),
                Some(want(r).as_str()),
                "{} {} {}",
                r.class,
                r.id,
                r.path
            );
            checked += 1;
        }
        checked
    }

    /// Checks that every present file is byte-identical in an fs destination (plaintext) under
    /// `target(name)`, and that no missing one is there. Returns how many files were checked.
    pub fn check_fs_destination(&self, dir: &Path, target: impl Fn(&str) -> String) -> usize {
        for (name, data) in &self.files {
            let path = dir.join(encode_uri_component(&target(name)));
            let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == *data, "{name}: bytes differ at the destination");
        }
        for name in &self.missing {
            assert!(!dir.join(encode_uri_component(&target(name))).exists());
        }
        self.files.len()
    }
}

/// A class `Item` with one top-level File field `file`, and an object `i000`, `i001`, … per name.
pub async fn seed_items(db: &Database, names: &[String]) {
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Item", "objectId": "string", "file": "file"})
        .await
        .unwrap();
    let docs: Vec<Document> = names
        .iter()
        .enumerate()
        .map(|(i, n)| doc! {"_id": format!("i{i:03}"), "file": n})
        .collect();
    db.collection::<Document>("Item")
        .insert_many(docs)
        .await
        .unwrap();
}

/// An app in a database of its own (`tag`) whose GridFS bucket `fs` holds `files` (Parse name →
/// bytes), each referenced by an `Item` ([`seed_items`]), and its config ([`write_config`], app
/// `app_id` with key `file_key`) reading them as a plaintext `[source.server]` and writing to
/// the `[destination]` body `destination`.
pub async fn gridfs_items(
    tag: &str,
    app_id: &str,
    file_key: &str,
    files: &BTreeMap<String, Vec<u8>>,
    destination: &str,
) -> (Database, PathBuf) {
    use parse_files_migrate::storage::{self, StoreConfig, StoreContext};
    let db_name = super::unique(tag);
    let db = super::mongo_client().await.database(&db_name);
    let ctx = StoreContext {
        mongo_uri: Some(super::mongo_uri().into()),
        database: Some(db_name.clone()),
        file_key: None,
        app_id: Some(app_id.into()),
    };
    let gridfs: StoreConfig = toml::from_str("type = \"gridfs\"").unwrap();
    let source = storage::open(&gridfs, &ctx).await.unwrap();
    super::conformance::put_all(&*source, files).await;
    let names: Vec<String> = files.keys().cloned().collect();
    seed_items(&db, &names).await;
    let config = write_config(
        tag,
        &db_name,
        app_id,
        file_key,
        "",
        "[source.server]\ntype = \"gridfs\"\nencryption = \"none\"\n",
        destination,
    );
    (db, config)
}

/// Write `<tag>.toml`: database `db` of the test server (`mongo_extra`: more `[mongo]` keys),
/// app `app_id` with key `file_key` served at [`SERVER_URL`], the `source` tables and the body of
/// the `[destination]` table.
pub fn write_config(
    tag: &str,
    db: &str,
    app_id: &str,
    file_key: &str,
    mongo_extra: &str,
    source: &str,
    destination: &str,
) -> PathBuf {
    let path = super::temp_path(tag).with_extension("toml");
    std::fs::write(
        &path,
        format!(
            r#"
[mongo]
uri = "{uri}"
database = "{db}"
{mongo_extra}

[parse]
app_id = "{app_id}"
file_key = "{file_key}"
public_server_url = "{SERVER_URL}"

{source}

[destination]
{destination}
"#,
            uri = super::mongo_uri(),
        ),
    )
    .unwrap();
    path
}

/// Write `path`: [`base_tables`] of database `db_name` with `file_key`, and `[destination]`
/// with the body `destination`.
pub fn write_destination_config(path: &Path, db_name: &str, file_key: &str, destination: &str) {
    std::fs::write(
        path,
        format!(
            "{}\n[destination]\n{destination}",
            base_tables(db_name, file_key)
        ),
    )
    .unwrap();
}

/// The `[mongo]` and `[parse]` tables for `db_name` on the test server.
pub fn base_tables(db_name: &str, file_key: &str) -> String {
    format!(
        r#"
[mongo]
uri = "{uri}"
database = "{db_name}"
page_size = 50

[parse]
app_id = "{APP_ID}"
file_key = "{file_key}"
public_server_url = "{SERVER_URL}"
"#,
        uri = super::mongo_uri(),
    )
}

/// A `[source.hosted]` table reading both hosted-Parse hosts from `base_url` (`/tfss/<key>/…`
/// and `/legacy/<key>/…`), giving up on a silent response after `timeout_secs`.
pub fn hosted_table(base_url: &str, timeout_secs: u64) -> String {
    format!(
        r#"
[source.hosted]
type = "http"
tfss_base_url = "{base_url}/tfss/{{file_key}}/"
legacy_base_url = "{base_url}/legacy/{{file_key}}/"
timeout_secs = {timeout_secs}
connect_timeout_secs = 2
"#
    )
}

/// A plaintext `[destination]` directory.
pub fn fs_destination(dir: &Path) -> String {
    format!(
        "\n[destination]\ntype = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
        dir.display()
    )
}
