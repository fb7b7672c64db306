//! Proof with a real Parse Server (issue #9): a stock Parse Server 9.10.0 (`scripts/parse-server`,
//! installed by `scripts/test-services`) creates an app through its REST API, hosted-era objects
//! are added straight into MongoDB with their bytes on nginx (the stand-in for the dead
//! files.parsetfss.com / files.parse.com), `parse-files-migrate migrate` moves the files, and
//! Parse Server, restarted with the destination's files adapter, must serve every reference —
//! top-level, nested in Object/Array fields, and in Parse Config — byte-identical to the original.
//!
//! After the migration, `verify --via-server` must download every migrated file through that
//! Parse Server byte-identical (and, for the encrypted FS adapter, catch a server without the key:
//! `verify_parse_server`).
//!
//! One test per destination: GridFS plain, GridFS encrypted with `fileKey` (Parse Server's
//! default adapter), the FS adapter (encrypted), S3, and the FS adapter (plain) under a
//! `collectionPrefix`. Each prints `files checked / served byte-identical` on stderr
//! (`cargo test --test it parse_server:: -- --nocapture`). Parse Server's logs of the latest run:
//! `<target dir>/tmp/parse-server/<scenario>-{source,destination}.log`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, DateTime, Document, doc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::support::app::bin;
use crate::support::{self, free_port, uri_for};
use crate::verify_parse_server::{assert_all_mismatched, assert_all_served, verify_via};

/// JavaScript's `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`. Written
/// here rather than taken from the crate, so the test is an independent oracle.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

fn encode(name: &str) -> String {
    utf8_percent_encode(name, URI_COMPONENT).to_string()
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------------------------------------
// Parse Server processes

/// Where Parse Server keeps the bytes of files it creates.
#[derive(Debug, Clone)]
pub(crate) enum Files {
    /// No `filesAdapter`: Parse Server's default GridFS adapter, which encrypts with `fileKey`.
    Default,
    /// `GridFSBucketAdapter` configured explicitly without a key: plaintext although `fileKey`
    /// is set.
    GridfsPlain,
    /// `@parse/fs-files-adapter` with the working directory `root`: files at
    /// `root/files/<subdir>/<encodeURIComponent(name)>`.
    Fs {
        root: PathBuf,
        subdir: String,
        encrypted: bool,
    },
    /// `@parse/s3-files-adapter` on the local S3 server.
    S3 { bucket: String, prefix: String },
}

/// The app every Parse Server of one scenario serves.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) app_id: String,
    pub(crate) master_key: String,
    pub(crate) file_key: String,
    pub(crate) database: String,
    pub(crate) collection_prefix: String,
    pub(crate) port: u16,
}

impl Files {
    /// The FS adapter in `root/files/<subdir>`, and the tool's store table for that directory.
    pub(crate) fn fs_adapter(root: &Path, subdir: &str) -> (Files, String) {
        let table = format!(
            "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n",
            root.join("files").join(subdir).display()
        );
        let files = Files::Fs {
            root: root.to_path_buf(),
            subdir: subdir.into(),
            encrypted: false,
        };
        (files, table)
    }

    /// The S3 adapter on a fresh bucket with the bucket prefix `parse/`, and the tool's store
    /// table for it.
    pub(crate) async fn s3_adapter(tag: &str) -> (Files, String) {
        let bucket = support::s3::fresh_bucket(tag).await;
        let table = format!(
            "{}prefix = \"parse/\"\n",
            support::s3::table(&bucket, &support::s3::endpoint())
        );
        let files = Files::S3 {
            bucket,
            prefix: "parse/".into(),
        };
        (files, table)
    }
}

impl App {
    /// A new app: its own database (named after `tag`), keys and port.
    pub(crate) fn fresh(tag: &str, app_id: &str) -> App {
        let tag = support::unique(tag);
        App {
            app_id: app_id.into(),
            master_key: format!("mk-{tag}-SECRET"),
            file_key: format!("fk-{tag}-SECRET"),
            database: tag.clone(),
            collection_prefix: String::new(),
            port: free_port(),
        }
    }

    pub(crate) fn server_url(&self) -> String {
        format!("http://127.0.0.1:{}/parse", self.port)
    }

    /// The tool's configuration for this app in `dir`: its database, Parse settings, and
    /// `[destination]` = `table` (the store Parse Server uses).
    pub(crate) fn tool_config(&self, dir: &Path, table: &str) -> PathBuf {
        let path = dir.join("pfm.toml");
        std::fs::write(
            &path,
            format!(
                "[mongo]\nuri = {uri:?}\n\n[parse]\napp_id = {app_id:?}\nfile_key = {fk:?}\n\
                 public_server_url = {public:?}\n\n[destination]\n{table}\n\
                 [output]\nprogress = \"never\"\n",
                uri = uri_for(&self.database),
                app_id = self.app_id,
                fk = self.file_key,
                public = self.server_url(),
            ),
        )
        .unwrap();
        path
    }
}

/// A running Parse Server (started by `scripts/parse-server start`); stopped on drop.
pub(crate) struct ParseServer {
    pid: Option<u32>,
    log: PathBuf,
    label: String,
}

impl ParseServer {
    pub(crate) fn start(app: &App, files: &Files, label: &str) -> ParseServer {
        Self::start_with(app, files, label, &[])
    }

    /// [`ParseServer::start`] with more `scripts/parse-server start` options (`--cloud FILE`).
    pub(crate) fn start_with(
        app: &App,
        files: &Files,
        label: &str,
        extra: &[&std::ffi::OsStr],
    ) -> ParseServer {
        let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("parse-server");
        std::fs::create_dir_all(&logs).unwrap();
        // One file per scenario and role, overwritten by the next run: the latest stays to read.
        let log = logs.join(format!("{label}.log"));
        let mut cmd = std::process::Command::new(repo_path("scripts/parse-server"));
        cmd.arg("start")
            .args(["--port", &app.port.to_string()])
            .args(["--database", &app.database])
            .args(["--app-id", &app.app_id])
            .args(["--exit-with", &std::process::id().to_string()])
            .arg("--log")
            .arg(&log)
            .env("PFM_PS_MASTER_KEY", &app.master_key)
            .env("PFM_PS_FILE_KEY", &app.file_key)
            .env_remove("PFM_PS_ENCRYPTION_KEY")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if !app.collection_prefix.is_empty() {
            cmd.args(["--collection-prefix", &app.collection_prefix]);
        }
        cmd.args(extra);
        match files {
            Files::Default => {
                cmd.args(["--files", "default"]);
            }
            Files::GridfsPlain => {
                cmd.args(["--files", "gridfs"]);
            }
            Files::Fs {
                root,
                subdir,
                encrypted,
            } => {
                cmd.args(["--files", "fs", "--fs-subdir", subdir])
                    .arg("--fs-root")
                    .arg(root);
                if *encrypted {
                    cmd.env("PFM_PS_ENCRYPTION_KEY", &app.file_key);
                }
            }
            Files::S3 { bucket, prefix } => {
                cmd.args([
                    "--files",
                    "s3",
                    "--s3-bucket",
                    bucket,
                    "--s3-prefix",
                    prefix,
                ]);
            }
        }
        let t0 = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/parse-server: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/parse-server start ({label}, {files:?}) failed ({}).\nstderr:\n{}\n\
             Is Parse Server installed? Run: eval \"$(scripts/test-services start)\"",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: u32 = stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("scripts/parse-server printed {stdout:?}, not a pid"));
        eprintln!(
            "parse_server: {label}: Parse Server pid {pid} healthy in {:.1} s on {} ({files:?})",
            t0.elapsed().as_secs_f64(),
            app.server_url()
        );
        ParseServer {
            pid: Some(pid),
            log,
            label: label.to_string(),
        }
    }

    /// Stop it and check that its log never showed a secret.
    pub(crate) fn stop(mut self, app: &App) {
        self.kill();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        for (what, secret) in [("master key", &app.master_key), ("fileKey", &app.file_key)] {
            assert!(
                !log.contains(secret.as_str()),
                "{}: the Parse Server log {} shows the {what}",
                self.label,
                self.log.display()
            );
        }
    }

    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = std::process::Command::new(repo_path("scripts/parse-server"))
                .args(["stop", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for ParseServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// REST

pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    app_id: String,
    master_key: String,
}

impl Rest {
    pub(crate) fn new(app: &App) -> Rest {
        Rest {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: app.server_url(),
            app_id: app.app_id.clone(),
            master_key: app.master_key.clone(),
        }
    }

    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("X-Parse-Application-Id", &self.app_id)
            .header("X-Parse-Master-Key", &self.master_key)
    }

    pub(crate) async fn send(&self, what: &str, rb: reqwest::RequestBuilder) -> Value {
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: HTTP {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: bad JSON {body:?}: {e}"))
    }

    /// `POST /files/<name>`; returns the File object Parse Server made (`name` gets its 32-hex
    /// prefix).
    pub(crate) async fn upload(&self, name: &str, content_type: &str, data: &[u8]) -> Value {
        let v = self
            .send(
                &format!("upload {name}"),
                self.req(reqwest::Method::POST, &format!("/files/{}", encode(name)))
                    .header("Content-Type", content_type)
                    .body(data.to_vec()),
            )
            .await;
        json!({"__type": "File", "name": v["name"], "url": v["url"]})
    }

    pub(crate) async fn create(&self, class: &str, body: Value) -> String {
        let v = self
            .send(
                &format!("create {class}"),
                self.req(reqwest::Method::POST, &format!("/classes/{class}"))
                    .json(&body),
            )
            .await;
        v["objectId"].as_str().expect("objectId").to_string()
    }

    pub(crate) async fn get_object(&self, class: &str, id: &str) -> Value {
        self.send(
            &format!("get {class}/{id}"),
            self.req(reqwest::Method::GET, &format!("/classes/{class}/{id}")),
        )
        .await
    }

    pub(crate) async fn put_config(&self, params: Value) {
        self.send(
            "PUT /config",
            self.req(reqwest::Method::PUT, "/config")
                .json(&json!({ "params": params })),
        )
        .await;
    }

    async fn get_config(&self) -> Value {
        self.send("GET /config", self.req(reqwest::Method::GET, "/config"))
            .await
    }

    /// GET a file URL the way an app would (no keys); `Err` with the status on failure.
    pub(crate) async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("GET {url}: body: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The app's references and their original bytes

/// One reference to a file: where it is, and the name it had before the migration.
#[derive(Debug, Clone)]
struct Ref {
    class: String,
    /// Object id; `None` for Parse Config.
    id: Option<String>,
    /// Dotted path as `list` prints it (`image`, `meta.thumb`, `gallery.1`, `params.banner`).
    path: String,
    name: String,
    /// A hosted-Parse name (`tfss-…` or `<uuid>-…`).
    hosted: bool,
}

impl Ref {
    fn nested(&self) -> bool {
        self.id.is_none() || self.path.contains('.')
    }
    fn at(&self) -> String {
        format!(
            "{}/{} {}",
            self.class,
            self.id.as_deref().unwrap_or("config"),
            self.path
        )
    }
}

#[derive(Default)]
struct Seeded {
    refs: Vec<Ref>,
    /// Original bytes by original name.
    bytes: BTreeMap<String, Vec<u8>>,
    /// Top-level File fields, for the raw MongoDB check: (collection class, id, field).
    top_level: Vec<(String, String, String)>,
}

impl Seeded {
    fn add(&mut self, class: &str, id: Option<&str>, path: &str, name: &str, hosted: bool) {
        self.refs.push(Ref {
            class: class.into(),
            id: id.map(Into::into),
            path: path.into(),
            name: name.into(),
            hosted,
        });
        if let (Some(id), false) = (id, path.contains('.')) {
            self.top_level.push((class.into(), id.into(), path.into()));
        }
    }
}

pub(crate) fn name_of(file: &Value) -> String {
    file["name"].as_str().expect("File name").to_string()
}

/// A File object the way hosted Parse left it in Object/Array fields (and in Parse Config).
fn hosted_file(name: &str, file_key: &str) -> Document {
    let host = if name.starts_with("tfss-") {
        "files.parsetfss.com"
    } else {
        "files.parse.com"
    };
    doc! {"__type": "File", "name": name, "url": format!("http://{host}/{file_key}/{}", encode(name))}
}

/// Step a: create the app through Parse Server's REST API, then add hosted-era objects and
/// Config straight into MongoDB, with their bytes under `<http_root>/<http_dir>/`.
async fn seed(
    rest: &Rest,
    db: &mongodb::Database,
    app: &App,
    http_root: &Path,
    http_dir: &str,
) -> Seeded {
    let mut s = Seeded::default();

    // Files uploaded through Parse Server. banner.bin spans two GridFS chunks (261120 bytes).
    let uploads = [
        ("photo.jpg", "image/jpeg", support::bytes(3_000, 1)),
        ("snap shot.png", "image/png", support::bytes(70_000, 2)),
        ("avatar@2x.png", "image/png", support::bytes(517, 3)),
        (
            "banner.bin",
            "application/octet-stream",
            support::bytes(300_001, 4),
        ),
    ];
    let mut f = Vec::new();
    for (name, ct, data) in uploads {
        let file = rest.upload(name, ct, &data).await;
        let stored = name_of(&file);
        assert!(
            stored.len() == 33 + name.len() && stored.ends_with(&format!("_{name}")),
            "Parse Server named {name} {stored}"
        );
        s.bytes.insert(stored, data);
        f.push(file);
    }
    let id = rest
        .create(
            "Photo",
            json!({
                "image": f[0],
                "meta": {"thumb": f[2], "deep": {"list": [f[1]]}},
                "gallery": [f[1], f[3]],
            }),
        )
        .await;
    for (path, file) in [
        ("image", &f[0]),
        ("meta.thumb", &f[2]),
        ("meta.deep.list.0", &f[1]),
        ("gallery.0", &f[1]),
        ("gallery.1", &f[3]),
    ] {
        s.add("Photo", Some(&id), path, &name_of(file), false);
    }
    rest.put_config(json!({"banner": f[3], "screens": [{"hero": f[2]}], "title": "proof"}))
        .await;
    s.add(
        "_GlobalConfig",
        None,
        "params.banner",
        &name_of(&f[3]),
        false,
    );
    s.add(
        "_GlobalConfig",
        None,
        "params.screens.0.hero",
        &name_of(&f[2]),
        false,
    );

    // Hosted-era files: bytes on nginx at <dir>/tfss/<fileKey>/ and <dir>/parse/<fileKey>/.
    let uuid = |n: u32| format!("3f2504e0-4f89-11d3-9a0c-{n:012x}");
    let h_photo = format!("tfss-{}-legacy photo.jpg", uuid(1));
    let h_avatar = format!("{}-old-avatar.png", uuid(2));
    let h_big = format!("tfss-{}-big.jpg", uuid(3));
    let h_nested = format!("tfss-{}-nested.png", uuid(4));
    for (name, data) in [
        (&h_photo, support::bytes(5_000, 11)),
        (&h_avatar, support::bytes(2_048, 12)),
        (&h_big, support::bytes(600_000, 13)),
        (&h_nested, support::bytes(1_000, 14)),
    ] {
        let host = if name.starts_with("tfss-") {
            "tfss"
        } else {
            "parse"
        };
        let dir = http_root.join(http_dir).join(host).join(&app.file_key);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &data).unwrap();
        s.bytes.insert(name.clone(), data);
    }
    let p = &app.collection_prefix;
    let now = Bson::DateTime(DateTime::now());
    let fk = &app.file_key;
    db.collection::<Document>(&format!("{p}Photo"))
        .insert_many([
            doc! {"_id": "legacyPh01", "_created_at": now.clone(), "_updated_at": now.clone(),
            "image": &h_photo,
            "meta": {"thumb": hosted_file(&h_avatar, fk)},
            "gallery": [hosted_file(&h_nested, fk), hosted_file(&h_photo, fk)]},
            doc! {"_id": "legacyPh02", "_created_at": now.clone(), "_updated_at": now.clone(),
            "image": &h_avatar},
            // Mixed: a hosted top-level file and a Parse Server file nested beside it.
            doc! {"_id": "legacyPh03", "_created_at": now.clone(), "_updated_at": now.clone(),
            "image": &h_big,
            "gallery": [{"__type": "File", "name": name_of(&f[0]), "url": f[0]["url"].as_str().unwrap()}]},
        ])
        .await
        .unwrap();
    s.add("Photo", Some("legacyPh01"), "image", &h_photo, true);
    s.add("Photo", Some("legacyPh01"), "meta.thumb", &h_avatar, true);
    s.add("Photo", Some("legacyPh01"), "gallery.0", &h_nested, true);
    s.add("Photo", Some("legacyPh01"), "gallery.1", &h_photo, true);
    s.add("Photo", Some("legacyPh02"), "image", &h_avatar, true);
    s.add("Photo", Some("legacyPh03"), "image", &h_big, true);
    s.add(
        "Photo",
        Some("legacyPh03"),
        "gallery.0",
        &name_of(&f[0]),
        false,
    );

    // A class Parse Server never saw: declared only in _SCHEMA, as hosted Parse exported it.
    db.collection::<Document>(&format!("{p}_SCHEMA"))
        .insert_one(
            doc! {"_id": "LegacyDoc", "objectId": "string", "createdAt": "date",
            "updatedAt": "date", "attachment": "file", "extra": "object",
            "_metadata": {"class_permissions": {"find": {"*": true}, "get": {"*": true},
            "create": {"*": true}, "update": {"*": true}, "delete": {"*": true},
            "addField": {"*": true}}}},
        )
        .await
        .unwrap();
    db.collection::<Document>(&format!("{p}LegacyDoc"))
        .insert_one(
            doc! {"_id": "legacyDoc1", "_created_at": now.clone(), "_updated_at": now.clone(),
            "attachment": &h_big, "extra": {"files": [hosted_file(&h_avatar, fk)]}},
        )
        .await
        .unwrap();
    s.add("LegacyDoc", Some("legacyDoc1"), "attachment", &h_big, true);
    s.add(
        "LegacyDoc",
        Some("legacyDoc1"),
        "extra.files.0",
        &h_avatar,
        true,
    );

    // A hosted file in Parse Config, next to the ones Parse Server wrote.
    let r = db
        .collection::<Document>(&format!("{p}_GlobalConfig"))
        .update_one(
            doc! {"_id": 1},
            doc! {"$set": {"params.legacyLogo": hosted_file(&h_photo, fk)}},
        )
        .await
        .unwrap();
    assert_eq!(
        r.matched_count, 1,
        "Parse Server wrote no _GlobalConfig document"
    );
    s.add("_GlobalConfig", None, "params.legacyLogo", &h_photo, true);
    s
}

// ---------------------------------------------------------------------------------------------
// Step c: what Parse Server serves

/// The File object at a dotted path of a REST response.
fn at_path<'a>(mut v: &'a Value, path: &str) -> Option<&'a Value> {
    for seg in path.split('.') {
        v = match seg.parse::<usize>() {
            Ok(i) if v.is_array() => v.get(i)?,
            _ => v.get(seg)?,
        };
    }
    Some(v)
}

#[derive(Debug, Default)]
struct Tally {
    /// Before the migration: hosted-era references whose URL Parse Server points at a dead
    /// hosted-Parse host.
    dead_host: usize,
    checked: usize,
    identical: usize,
    files: BTreeSet<String>,
    /// The distinct names served for hosted-era references (the ones every scenario migrates).
    hosted_files: BTreeSet<String>,
    failures: Vec<String>,
}

/// Whether a reference is expected to have been moved (and, if hosted, renamed).
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Before the migration: only Parse Server's own files can be served.
    Before,
    /// After: hosted names renamed, every other name kept.
    After,
}

/// Query every reference through Parse Server, download each file from the URL it gives, and
/// compare with the original bytes.
async fn check_served(rest: &Rest, app: &App, seeded: &Seeded, phase: Phase) -> Tally {
    let mut t = Tally::default();
    let public = app.server_url();
    let files_base = format!("{public}/files/{}/", app.app_id);
    let mut cache: BTreeMap<(String, Option<String>), Value> = BTreeMap::new();
    for r in &seeded.refs {
        let key = (r.class.clone(), r.id.clone());
        if !cache.contains_key(&key) {
            let v = match &r.id {
                Some(id) => rest.get_object(&r.class, id).await,
                None => rest.get_config().await,
            };
            cache.insert(key.clone(), v);
        }
        let root = &cache[&key];
        let Some(file) = at_path(root, &r.path) else {
            t.failures
                .push(format!("{}: missing in the REST response {root}", r.at()));
            continue;
        };
        let (Some("File"), Some(name), Some(url)) = (
            file["__type"].as_str(),
            file["name"].as_str(),
            file["url"].as_str(),
        ) else {
            t.failures
                .push(format!("{}: not a File with name and url: {file}", r.at()));
            continue;
        };
        if phase == Phase::Before && r.hosted {
            // The problem the tool solves: with fileKey set, Parse Server sends clients to the
            // hosted-Parse hosts (top level), and nested urls still name them.
            let dead = ["http://files.parsetfss.com/", "http://files.parse.com/"];
            if name == r.name && dead.iter().any(|h| url.starts_with(h)) {
                t.dead_host += 1;
            } else {
                t.failures.push(format!(
                    "{}: before the migration, expected {:?} at a hosted-Parse URL, got {name:?} at {url}",
                    r.at(),
                    r.name
                ));
            }
            continue;
        }
        t.checked += 1;
        // The name it must have now.
        if r.hosted && phase != Phase::Before {
            let stripped = r
                .name
                .strip_prefix("tfss-")
                .unwrap_or(&r.name)
                .get(37..)
                .unwrap_or_default();
            let renamed = name.len() == 33 + stripped.len()
                && name.as_bytes()[32] == b'_'
                && name[..32].bytes().all(|b| b.is_ascii_hexdigit())
                && name.ends_with(stripped);
            if !renamed {
                t.failures.push(format!(
                    "{}: {:?} should have become <32 hex>_{stripped}, is {name:?}",
                    r.at(),
                    r.name
                ));
                continue;
            }
        } else if name != r.name {
            t.failures.push(format!(
                "{}: name changed from {:?} to {name:?}",
                r.at(),
                r.name
            ));
            continue;
        }
        // Every URL must lead to this Parse Server, never to a hosted-Parse host.
        if !url.starts_with(&files_base) {
            t.failures
                .push(format!("{}: url {url} is not under {files_base}", r.at()));
            continue;
        }
        // Nested urls are stored, not computed: they must be exactly Parse Server's format.
        if r.nested() && url != format!("{files_base}{}", encode(name)) {
            t.failures.push(format!(
                "{}: nested url {url} is not {files_base}{}",
                r.at(),
                encode(name)
            ));
            continue;
        }
        let want = &seeded.bytes[&r.name];
        match rest.download(url).await {
            Ok(got) if got == *want => {
                t.identical += 1;
                t.files.insert(name.to_string());
                if r.hosted {
                    t.hosted_files.insert(name.to_string());
                }
            }
            Ok(got) => t.failures.push(format!(
                "{}: {url} served {} bytes that differ from the original {} bytes",
                r.at(),
                got.len(),
                want.len()
            )),
            Err(e) => t.failures.push(format!("{}: {e}", r.at())),
        }
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone)]
enum Dest {
    GridfsPlain,
    GridfsEncrypted,
    Fs { encrypted: bool },
    S3,
}

struct Scenario {
    name: &'static str,
    /// How the source Parse Server stores the files it creates (GridFS either way).
    source_plain: bool,
    dest: Dest,
    /// `--select all` (Parse Server's files move too) instead of the default `hosted`.
    select_all: bool,
    collection_prefix: &'static str,
}

async fn run(sc: Scenario) {
    let t0 = Instant::now();
    let client = support::mongo_client().await;
    let http_root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT"));
    let http_url = support::env("PFM_TEST_HTTP_URL");
    let database = support::unique("ps");
    let db = client.database(&database);
    let tag = support::unique("k");
    let app = App {
        app_id: "proofApp".into(),
        master_key: format!("mk-{tag}-SECRET"),
        file_key: format!("fk-{tag}-SECRET"),
        database: database.clone(),
        collection_prefix: sc.collection_prefix.into(),
        port: free_port(),
    };
    let http_dir = support::unique("pfm_ps");
    let work = tempfile::tempdir().unwrap();
    let label = sc.name;

    // Destination details.
    let fs_root = work.path().join("parse-cwd");
    let fs_subdir = "proof".to_string();
    let s3_bucket = if matches!(sc.dest, Dest::S3) {
        Some(support::s3::fresh_bucket("pfm-ps").await)
    } else {
        None
    };
    let s3_prefix = "parse/".to_string();
    let dest_files = match &sc.dest {
        Dest::GridfsPlain => Files::GridfsPlain,
        Dest::GridfsEncrypted => Files::Default,
        Dest::Fs { encrypted } => Files::Fs {
            root: fs_root.clone(),
            subdir: fs_subdir.clone(),
            encrypted: *encrypted,
        },
        Dest::S3 => Files::S3 {
            bucket: s3_bucket.clone().unwrap(),
            prefix: s3_prefix.clone(),
        },
    };
    let source_files = if sc.source_plain {
        Files::GridfsPlain
    } else {
        Files::Default
    };

    // a. The source app.
    let server = ParseServer::start(&app, &source_files, &format!("{label}-source"));
    let rest = Rest::new(&app);
    let seeded = seed(&rest, &db, &app, &http_root, &http_dir).await;
    let hosted = seeded.refs.iter().filter(|r| r.hosted).count();
    eprintln!(
        "parse_server: {label}: seeded {} references ({hosted} hosted-era, {} Parse Server) to {} files",
        seeded.refs.len(),
        seeded.refs.len() - hosted,
        seeded.bytes.len()
    );
    // The download-and-compare check, proven first on the files Parse Server itself created.
    let before = check_served(&rest, &app, &seeded, Phase::Before).await;
    assert!(
        before.failures.is_empty() && before.checked > 0,
        "{label}: before the migration, Parse Server does not serve its own files:\n{}",
        before.failures.join("\n")
    );
    eprintln!(
        "parse_server: {label}: before migrate: {} Parse Server references checked, {} served \
         byte-identical; {} hosted-era references point at dead hosted-Parse hosts",
        before.checked, before.identical, before.dead_host
    );
    server.stop(&app);

    // b. Migrate.
    let source_server = if sc.source_plain {
        "type = \"gridfs\"\nencryption = \"none\"\n"
    } else {
        "type = \"gridfs\"\n"
    };
    let destination = match &sc.dest {
        Dest::GridfsPlain => "type = \"gridfs\"\nencryption = \"none\"\n".to_string(),
        Dest::GridfsEncrypted => "type = \"gridfs\"\n".to_string(),
        Dest::Fs { encrypted } => format!(
            "type = \"fs\"\npath = {:?}\n{}",
            fs_root.join("files").join(&fs_subdir).to_str().unwrap(),
            // The FS adapter here is given the fileKey as its encryptionKey; the fs store
            // encrypts only when told to (Parse Server never hands fileKey to the FS adapter).
            if *encrypted {
                "encryption = \"file-key\"\n"
            } else {
                ""
            }
        ),
        Dest::S3 => format!(
            "{}prefix = {s3_prefix:?}\nforce_path_style = true\n",
            support::s3::table(s3_bucket.as_deref().unwrap(), &support::s3::endpoint()),
        ),
    };
    let config = format!(
        "[mongo]\nuri = {uri:?}\ncollection_prefix = {prefix:?}\n\n\
         [parse]\napp_id = {app_id:?}\nfile_key = {file_key:?}\npublic_server_url = {public:?}\n\n\
         [source.hosted]\ntype = \"http\"\n\
         tfss_base_url = \"{http_url}/{http_dir}/tfss/{{file_key}}/\"\n\
         legacy_base_url = \"{http_url}/{http_dir}/parse/{{file_key}}/\"\n\n\
         [source.server]\n{source_server}\n[destination]\n{destination}\n\
         [output]\nprogress = \"never\"\n",
        uri = uri_for(&database),
        prefix = app.collection_prefix,
        app_id = app.app_id,
        file_key = app.file_key,
        public = app.server_url(),
    );
    let cfg = work.path().join("migrate.toml");
    std::fs::write(&cfg, &config).unwrap();

    // The tool must see exactly the references seeded (this also validates the config file).
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "list", "--output", "jsonl"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{label}: list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: BTreeSet<(String, String, String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("class"), s("object_id"), s("path"), s("name"))
        })
        .collect();
    let expected: BTreeSet<(String, String, String, String)> = seeded
        .refs
        .iter()
        .map(|r| {
            (
                r.class.clone(),
                r.id.clone().unwrap_or_else(|| "1".into()),
                r.path.clone(),
                r.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        listed, expected,
        "{label}: `list` does not see exactly the seeded references"
    );

    let migrate = || {
        let mut c = bin();
        c.args(["-c", cfg.to_str().unwrap(), "migrate", "--yes"]);
        if sc.select_all {
            c.args(["--select", "all"]);
        }
        c.timeout(Duration::from_secs(300));
        c
    };
    let tm = Instant::now();
    let out = migrate().output().unwrap();
    let migrate_secs = tm.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) && stderr.contains("not implemented") {
        panic!(
            "{label}: `parse-files-migrate migrate` is not implemented yet (exit 2): steps a \
             (seed through Parse Server + hosted-era objects) and the download check passed; \
             b (migrate) cannot run.\nstderr: {stderr}"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "{label}: migrate exited {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "parse_server: {label}: migrate --yes{} took {migrate_secs:.1} s",
        if sc.select_all { " --select all" } else { "" }
    );

    // Top-level File fields still hold a bare name string in MongoDB.
    for (class, id, field) in &seeded.top_level {
        let coll = format!("{}{class}", app.collection_prefix);
        let d = db
            .collection::<Document>(&coll)
            .find_one(doc! {"_id": id})
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{coll}/{id} is gone"));
        assert!(
            matches!(d.get(field), Some(Bson::String(_))),
            "{label}: {coll}/{id}.{field} is not a bare name string after migrate: {:?}",
            d.get(field)
        );
    }

    // c. Parse Server with the destination's adapter serves every reference.
    let server = ParseServer::start(&app, &dest_files, &format!("{label}-destination"));
    let after = check_served(&rest, &app, &seeded, Phase::After).await;
    // `verify --via-server` downloads every migrated file through that same server.
    let via = verify_via(&cfg, &app.server_url());
    server.stop(&app);
    eprintln!(
        "parse_server: {label}: after migrate: {} references checked, {} served byte-identical \
         ({} distinct files) by Parse Server with {dest_files:?}; whole scenario {:.1} s",
        after.checked,
        after.identical,
        after.files.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        after.failures.is_empty() && after.identical == seeded.refs.len(),
        "{label}: {} of {} references not served correctly after migrate:\n{}",
        after.failures.len(),
        seeded.refs.len(),
        after.failures.join("\n")
    );
    let migrated = if sc.select_all {
        after.files.len()
    } else {
        after.hosted_files.len()
    };
    assert_all_served(label, &via, migrated);
    eprintln!(
        "parse_server: {label}: verify --via-server: {} files downloaded through Parse Server, \
         0 problems",
        via.counts["served_checked"]
    );
    // A Parse Server whose FS adapter lacks the key the files were written with serves
    // ciphertext with status 200: `verify --via-server` must catch every file.
    if let Files::Fs {
        root,
        subdir,
        encrypted: true,
    } = &dest_files
    {
        let keyless = Files::Fs {
            root: root.clone(),
            subdir: subdir.clone(),
            encrypted: false,
        };
        let server = ParseServer::start(&app, &keyless, &format!("{label}-keyless"));
        let via = verify_via(&cfg, &app.server_url());
        server.stop(&app);
        assert_all_mismatched(label, &via, migrated);
        eprintln!(
            "parse_server: {label}: verify --via-server through a keyless FS adapter: {} \
             served-mismatch findings, exit {:?}",
            via.findings.len(),
            via.code
        );
    }

    // A re-run finds nothing left to do: exit 0 and not one document changed.
    let snapshot = || async {
        let mut all = Vec::new();
        for class in ["Photo", "LegacyDoc", "_GlobalConfig"] {
            let coll = format!("{}{class}", app.collection_prefix);
            let mut cur = db
                .collection::<Document>(&coll)
                .find(doc! {})
                .sort(doc! {"_id": 1})
                .await
                .unwrap();
            while cur.advance().await.unwrap() {
                all.push((coll.clone(), cur.deserialize_current().unwrap()));
            }
        }
        all
    };
    let before_rerun = snapshot().await;
    let out = migrate().output().unwrap();
    let changed = snapshot().await != before_rerun;
    assert!(
        out.status.code() == Some(0) && !changed,
        "{label}: re-running migrate after a complete run must be a no-op: it exited {:?} \
         and {} documents.\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        if changed { "CHANGED" } else { "did not change" },
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The CI gate of the README: no hosted-era reference left.
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "list", "--output", "jsonl"])
        .args(["--fail-on", "parse-hosted,parse-legacy"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{label}: list --fail-on parse-hosted,parse-legacy after migrate:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Clean up what lives outside the temp dir (only on success: failures keep it to look at).
    let _ = std::fs::remove_dir_all(http_root.join(&http_dir));
    let _ = db.drop().await;
}

#[tokio::test]
async fn gridfs_plain() {
    run(Scenario {
        name: "gridfs-plain",
        source_plain: true,
        dest: Dest::GridfsPlain,
        select_all: false,
        collection_prefix: "",
    })
    .await;
}

#[tokio::test]
async fn gridfs_encrypted_with_file_key() {
    run(Scenario {
        name: "gridfs-encrypted",
        source_plain: false,
        dest: Dest::GridfsEncrypted,
        select_all: false,
        collection_prefix: "",
    })
    .await;
}

#[tokio::test]
async fn fs_adapter_encrypted() {
    run(Scenario {
        name: "fs-encrypted",
        source_plain: false,
        dest: Dest::Fs { encrypted: true },
        select_all: true,
        collection_prefix: "",
    })
    .await;
}

#[tokio::test]
async fn s3_adapter() {
    run(Scenario {
        name: "s3",
        source_plain: false,
        dest: Dest::S3,
        select_all: true,
        collection_prefix: "",
    })
    .await;
}

#[tokio::test]
async fn fs_adapter_plain_with_collection_prefix() {
    run(Scenario {
        name: "prefix-fs-plain",
        source_plain: true,
        dest: Dest::Fs { encrypted: false },
        select_all: true,
        collection_prefix: "pfx_",
    })
    .await;
}
