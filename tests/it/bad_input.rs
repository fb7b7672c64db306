//! Bad input: a corpus of broken schemas, malformed File values, hostile names and odd document
//! shapes, each in its own database. For every case `list` and `migrate --yes` (to an fs
//! destination, `--select all`) run as a user would run them, and the test checks:
//!
//! * the process never panics, and exits with the documented code the case expects;
//! * per-item problems are reported on stderr (the case names what must be said);
//! * nothing is lost: every reference found before the run is still there afterwards, naming
//!   either its verified copy (byte-identical at the destination) or, untouched, its old file —
//!   and then the summary reports that file as missing or failed;
//! * no temp file or anything outside the destination directory is left behind.
//!
//! Each case reports by name; the test fails at the end listing every case that failed.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use mongodb::bson::{Binary, Bson, DateTime, Document, RawDocumentBuf, doc, oid::ObjectId};
use parse_files_migrate::exit;
use parse_files_migrate::parse::names::{RenamePolicy, encode_uri_component, target_name};
use serde_json::Value;

use crate::support;
use crate::support::app::{self, Out, file, uuid};
use crate::support::faulty::FaultyServer;

const FILE_KEY: &str = "fk-bad-input-SECRET";

/// The exit codes the README documents.
const DOCUMENTED: &[i32] = &[
    exit::OK,
    exit::INTERNAL,
    exit::USAGE,
    exit::INCOMPLETE,
    exit::UNREACHABLE,
    exit::VERIFY_MISMATCH,
    exit::CUTOFF,
    exit::INTERRUPTED,
];

fn tfss(n: u64, rest: &str) -> String {
    format!("tfss-{}-{rest}", uuid(n))
}

/// `{_id, file: name}`.
fn with_file(id: impl Into<Bson>, name: impl Into<Bson>) -> Document {
    doc! {"_id": id.into(), "file": name.into()}
}

/// A document serialised with every `~~` in its strings replaced by the bytes FF FE: invalid
/// UTF-8 that the bson crate would never produce itself.
fn invalid_utf8(d: Document) -> RawDocumentBuf {
    let mut bytes = mongodb::bson::to_vec(&d).unwrap();
    for i in 0..bytes.len().saturating_sub(1) {
        if &bytes[i..i + 2] == b"~~" {
            bytes[i] = 0xFF;
            bytes[i + 1] = 0xFE;
        }
    }
    RawDocumentBuf::from_bytes(bytes).unwrap()
}

fn raw(d: Document) -> RawDocumentBuf {
    RawDocumentBuf::from_document(&d).unwrap()
}

/// The class schema most cases use.
fn item_schema() -> Document {
    doc! {"_id": "Item", "objectId": "string", "file": "file", "obj": "object", "arr": "array"}
}

/// What a case's run looked like, for its own extra checks.
struct Outcome {
    /// `list --output jsonl` after the migration.
    after: Vec<Value>,
    migrate: Out,
    dest: PathBuf,
}

type Check = fn(&Outcome) -> Result<(), String>;

/// One corpus entry: what to put in the database, and what the runs must say.
struct Case {
    name: &'static str,
    /// `_SCHEMA` documents; `None` = no `_SCHEMA` collection at all.
    schema: Option<Vec<Document>>,
    docs: Vec<(&'static str, RawDocumentBuf)>,
    /// Names the source does not have.
    missing: Vec<String>,
    /// Bytes for particular names (others get bytes derived from the name).
    files: Vec<(String, Vec<u8>)>,
    /// Objects at the destination before the run: (target name, bytes).
    dest_before: Vec<(String, Vec<u8>)>,
    list_code: i32,
    migrate_code: i32,
    /// References `list` must find.
    refs: Option<usize>,
    copied: Option<u64>,
    /// What `list` and `migrate` must say on stderr.
    says: Vec<&'static str>,
    /// What `migrate` must say on stderr.
    migrate_says: Vec<&'static str>,
    /// For documents the test server refuses (SecantusDB rejects invalid UTF-8, MongoDB stores
    /// it): the references and issues the scanner must find in the raw documents instead.
    scanner_only: Option<(usize, usize)>,
    check: Option<Check>,
}

impl Case {
    fn new(name: &'static str) -> Case {
        Case {
            name,
            schema: Some(vec![item_schema()]),
            docs: vec![],
            missing: vec![],
            files: vec![],
            dest_before: vec![],
            list_code: 0,
            migrate_code: 0,
            refs: None,
            copied: None,
            says: vec![],
            migrate_says: vec![],
            scanner_only: None,
            check: None,
        }
    }
    fn schema(mut self, s: Option<Vec<Document>>) -> Self {
        self.schema = s;
        self
    }
    fn doc(mut self, coll: &'static str, d: Document) -> Self {
        self.docs.push((coll, raw(d)));
        self
    }
    fn items(mut self, docs: impl IntoIterator<Item = Document>) -> Self {
        for d in docs {
            self.docs.push(("Item", raw(d)));
        }
        self
    }
    fn raw(mut self, coll: &'static str, d: RawDocumentBuf) -> Self {
        self.docs.push((coll, d));
        self
    }
    fn missing(mut self, name: String) -> Self {
        self.missing.push(name);
        self
    }
    fn file(mut self, name: String, data: Vec<u8>) -> Self {
        self.files.push((name, data));
        self
    }
    fn dest_before(mut self, target: String, data: Vec<u8>) -> Self {
        self.dest_before.push((target, data));
        self
    }
    fn codes(mut self, list: i32, migrate: i32) -> Self {
        self.list_code = list;
        self.migrate_code = migrate;
        self
    }
    fn refs(mut self, n: usize) -> Self {
        self.refs = Some(n);
        self
    }
    fn copied(mut self, n: u64) -> Self {
        self.copied = Some(n);
        self
    }
    fn says(mut self, s: &'static str) -> Self {
        self.says.push(s);
        self
    }
    fn migrate_says(mut self, s: &'static str) -> Self {
        self.migrate_says.push(s);
        self
    }
    fn scanner_only(mut self, refs: usize, issues: usize) -> Self {
        self.scanner_only = Some((refs, issues));
        self
    }
    fn check(mut self, c: Check) -> Self {
        self.check = Some(c);
        self
    }
}

fn corpus() -> Vec<Case> {
    let long = "x".repeat(1000);
    let deep = {
        let mut v = Bson::Document(file(&tfss(900, "deepest.jpg"), None));
        for _ in 0..200 {
            v = Bson::Document(doc! {"n": v});
        }
        v
    };
    let mut big = vec![Bson::Int32(0); 100_000];
    big[0] = Bson::Document(file(&tfss(910, "first.jpg"), None));
    big[50_000] = Bson::Document(file(&tfss(911, "middle.jpg"), None));
    big[99_999] = Bson::Document(file(&tfss(912, "last.jpg"), None));
    vec![
        // --- _SCHEMA ---
        Case::new("schema_missing")
            .schema(None)
            .items([with_file("a", tfss(1, "a.jpg"))])
            .refs(0)
            .says("_SCHEMA"),
        Case::new("schema_empty")
            .schema(Some(vec![]))
            .items([with_file("a", tfss(2, "a.jpg"))])
            .refs(0),
        Case::new("schema_junk_types")
            .schema(Some(vec![doc! {"_id": "Item", "file": "file", "f1": "fyle",
                "f2": "", "f3": "relation<_User>", "f4": "*_User", "f5": "File", "f6": "Object"}]))
            .items([doc! {"_id": "a", "file": tfss(3, "ok.jpg"), "f1": tfss(4, "x.jpg"),
                "f2": tfss(5, "x.jpg"), "f3": tfss(6, "x.jpg"), "f4": tfss(7, "x.jpg"),
                "f5": tfss(8, "x.jpg"), "f6": {"f": file(&tfss(9, "x.jpg"), None)}}]),
        Case::new("schema_non_string_types")
            .schema(Some(vec![doc! {"_id": "Item", "file": "file", "n": 5, "z": Bson::Null,
                "a": ["file"], "o": {"type": "File"}, "b": true}]))
            .items([doc! {"_id": "a", "file": tfss(10, "ok.jpg"), "n": tfss(11, "x.jpg"),
                "a": tfss(12, "x.jpg"), "o": tfss(13, "x.jpg")}])
            // `{type: "File"}` is accepted on purpose (hand-edited schemas); the rest is skipped.
            .refs(2),
        Case::new("schema_odd_ids_and_metadata")
            .schema(Some(vec![
                doc! {"_id": 5, "file": "file"},
                doc! {"_id": ObjectId::new(), "file": "file"},
                doc! {"_id": "", "file": "file"},
                doc! {"_id": "Item", "file": "file", "_metadata": 5, "_client_permissions": "x"},
                doc! {"_id": "Ghost", "file": "file", "obj": "object"},
            ]))
            .items([with_file("a", tfss(14, "ok.jpg"))])
            .refs(1),
        // --- top-level File values ---
        Case::new("file_null_and_undefined")
            .items([
                with_file("a", Bson::Null),
                with_file("b", Bson::Undefined),
                doc! {"_id": "c"},
            ])
            .refs(0),
        Case::new("file_number")
            .items([with_file("a", 42), with_file("b", 4.5), with_file("c", 1i64 << 40)])
            .refs(0)
            .says("instead of a file name"),
        Case::new("file_array")
            .items([with_file("a", vec![Bson::String(tfss(15, "in-array.jpg"))])])
            .refs(0)
            .says("instead of a file name"),
        Case::new("file_object_without_name")
            .items([
                with_file("a", doc! {"__type": "File"}),
                with_file("b", doc! {"__type": "File", "url": "http://x/y"}),
                with_file("c", doc! {"__type": "File", "name": 7}),
                with_file("d", doc! {"__type": "File", "name": Bson::Null}),
            ])
            .refs(0)
            .says("File object without a name"),
        Case::new("file_empty_string")
            .items([with_file("a", ""), with_file("b", doc! {"__type": "File", "name": ""})])
            .refs(0)
            .says("empty name"),
        Case::new("file_other_bson_types")
            .items([
                with_file("a", true),
                with_file("b", DateTime::now()),
                with_file("c", ObjectId::new()),
                with_file("d", Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: b"tfss-x".to_vec() }),
                with_file("e", doc! {"__type": "Pointer", "className": "X", "objectId": "y"}),
                with_file("f", doc! {"name": tfss(16, "no-type.jpg")}),
            ])
            .refs(0),
        Case::new("file_object_at_top_level")
            .items([with_file("a", file(&tfss(17, "top.jpg"), Some("http://old/x")))])
            .refs(1)
            .copied(1),
        // --- names ---
        Case::new("name_dot_dot_slash")
            .items([
                with_file("a", tfss(20, "../../../../etc/passwd")),
                with_file("b", "../../../etc/passwd"),
                with_file("c", "..%2F..%2Fetc%2Fshadow"),
            ])
            .refs(3)
            .copied(3),
        Case::new("name_slashes")
            .items([with_file("a", tfss(21, "a/b/c.jpg")), with_file("b", "/abs/path.jpg"), with_file("c", "dir/")])
            .copied(3),
        Case::new("name_backslashes")
            .items([with_file("a", tfss(22, "a\\b.jpg")), with_file("b", "..\\..\\win.ini")])
            .copied(2),
        Case::new("name_nul")
            .items([with_file("a", tfss(23, "a\0b.jpg")), doc! {"_id": "b", "obj": {"f": file("x\0y", None)}}])
            .refs(0)
            .says("NUL"),
        Case::new("name_control_chars")
            .items([
                with_file("a", tfss(24, "\x01\x1b[31mred\x1b[0m\n\r\t.jpg")),
                with_file("b", "\x7f\u{202e}gnp.exe"),
                with_file("c", tfss(33, "\x1b]0;pwned\x07\x1b[2J.jpg")),
            ])
            .missing(tfss(33, "\x1b]0;pwned\x07\x1b[2J.jpg"))
            .codes(0, exit::INCOMPLETE)
            .copied(2)
            // Logs name the missing file: its escape sequences must not reach the terminal.
            .check(|o| {
                ensure(!o.migrate.stderr.contains('\x1b'), || {
                    format!("raw ESC on stderr: {:?}", o.migrate.stderr)
                })?;
                ensure(o.migrate.stderr.contains("file=tfss-"), || o.migrate.stderr.clone())?;
                ensure(o.migrate.stderr.contains("\\u{1b}]0;pwned\\u{7}"), || {
                    format!("the name is not shown escaped: {}", o.migrate.stderr)
                })
            }),
        Case::new("name_1000_chars")
            .items([with_file("a", tfss(25, &long)), with_file("b", long.clone()), with_file("c", tfss(26, "short.jpg"))])
            .codes(0, exit::INCOMPLETE)
            .copied(1)
            .migrate_says("longer than 255"),
        Case::new("name_unicode")
            .items([
                with_file("a", tfss(27, "ünïcødé Ωμέγα 名前.png")),
                with_file("b", "Ærøskøbing/Åse.pdf"),
                with_file("c", tfss(28, "\u{0301}combining-first.jpg")),
            ])
            .copied(3),
        Case::new("name_emoji")
            .items([with_file("a", tfss(29, "🎉🔥👍🏽.png")), with_file("b", "👨‍👩‍👧‍👦 family.jpg")])
            .copied(2),
        Case::new("name_percent_2f_does_not_collide_with_slash")
            .items([with_file("a", "a%2Fb.jpg"), with_file("b", "a/b.jpg"), with_file("c", "a%252Fb.jpg")])
            .copied(3)
            .check(|o| {
                let n = std::fs::read_dir(&o.dest).map_err(|e| e.to_string())?.count();
                (n == 3).then_some(()).ok_or(format!("3 distinct files expected, found {n}"))
            }),
        Case::new("name_dot_and_dotdot")
            .items([with_file("a", "."), with_file("b", ".."), with_file("c", tfss(30, ".."))])
            .codes(0, exit::INCOMPLETE)
            .copied(1)
            .migrate_says("directory"),
        Case::new("name_looks_like_a_url")
            .items([
                with_file("a", "http://evil.example/steal?x=1"),
                doc! {"_id": "b", "obj": {"f": file(&tfss(31, "u.jpg"), Some("http://evil.example/other"))}},
            ])
            .copied(2),
        Case::new("name_whitespace")
            .items([with_file("a", " "), with_file("b", tfss(32, " trailing .jpg ")), with_file("c", "\u{3000}")])
            .copied(3),
        // --- sharing, sizes, collisions ---
        Case::new("duplicate_names_copied_once")
            .items((0..30).map(|i| with_file(format!("d{i}"), tfss(40, "shared.jpg"))))
            .doc("Item", doc! {"_id": "n", "obj": {"a": file(&tfss(40, "shared.jpg"), None)},
                "arr": [file(&tfss(40, "shared.jpg"), None), file(&tfss(40, "shared.jpg"), None)]})
            .refs(33)
            .copied(1),
        Case::new("zero_byte_file")
            .items([with_file("a", tfss(41, "empty.bin"))])
            .file(tfss(41, "empty.bin"), vec![])
            .copied(1),
        Case::new("missing_at_source")
            .items([with_file("a", tfss(42, "gone.jpg")), with_file("b", tfss(43, "here.jpg"))])
            .missing(tfss(42, "gone.jpg"))
            .codes(0, exit::INCOMPLETE)
            .copied(1)
            .migrate_says("missing at the source"),
        Case::new("hash_renames_never_collide")
            .items([
                with_file("a", tfss(44, "photo.jpg")),
                with_file("b", tfss(45, "photo.jpg")),
                with_file("c", format!("{}-photo.jpg", uuid(46))),
            ])
            .copied(3)
            .check(|o| {
                let targets: std::collections::BTreeSet<&str> =
                    o.after.iter().map(|r| r["name"].as_str().unwrap_or("")).collect();
                (targets.len() == 3 && targets.iter().all(|t| t.ends_with("_photo.jpg")))
                    .then_some(())
                    .ok_or(format!("3 distinct *_photo.jpg targets expected: {targets:?}"))
            }),
        // Never overwritten (issue #20 item 9): a collision, reported; the object stays.
        Case::new("existing_object_at_target_with_other_bytes_is_a_collision_left_alone")
            .items([with_file("a", tfss(47, "clash.jpg"))])
            .dest_before(
                target_name(&tfss(47, "clash.jpg"), RenamePolicy::Auto).into_owned(),
                b"some other file that was there first".to_vec(),
            )
            .codes(0, 3)
            .copied(0)
            .migrate_says("collision")
            .check(|o| {
                let target = target_name(&tfss(47, "clash.jpg"), RenamePolicy::Auto).into_owned();
                let there = std::fs::read(o.dest.join(encode_uri_component(&target)))
                    .map_err(|e| e.to_string())?;
                (there == b"some other file that was there first")
                    .then_some(())
                    .ok_or("the object at the target was overwritten".to_string())?;
                (o.migrate.summary()["files"]["collisions"] == 1)
                    .then_some(())
                    .ok_or(format!("collisions: {}", o.migrate.summary()["files"]))
            }),
        // --- document shapes ---
        Case::new("nesting_200_levels")
            .doc("Item", doc! {"_id": "a", "obj": {"shallow": file(&tfss(50, "shallow.jpg"), None), "deep": deep}})
            .refs(1)
            .copied(1)
            .says("deeper than 128"),
        Case::new("array_100k_elements")
            .doc("Item", doc! {"_id": "a", "arr": big})
            .refs(3)
            .copied(3),
        Case::new("id_mixed_types")
            .items([
                with_file("7", tfss(60, "string-seven.jpg")),
                with_file(7, tfss(61, "int-seven.jpg")),
                with_file(8_000_000_000i64, tfss(62, "long.jpg")),
                with_file(2.5, tfss(63, "double.jpg")),
                with_file(ObjectId::parse_str("5f1d7a2b9c8e4d3f2a1b0c9d").unwrap(), tfss(64, "oid.jpg")),
                with_file(true, tfss(65, "bool.jpg")),
                with_file(DateTime::from_millis(0), tfss(66, "date.jpg")),
                with_file(doc! {"k": 1}, tfss(67, "doc.jpg")),
                with_file(Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] }, tfss(68, "bin.jpg")),
                with_file(Bson::Null, tfss(69, "null.jpg")),
                with_file(Bson::MinKey, tfss(70, "min.jpg")),
                with_file(Bson::MaxKey, tfss(71, "max.jpg")),
            ])
            .refs(12)
            .copied(12),
        Case::new("invalid_utf8_in_file_name")
            .raw("Item", invalid_utf8(with_file("a", tfss(80, "bad~~name.jpg"))))
            .raw("Item", invalid_utf8(doc! {"_id": "b", "obj": {"f": file(&tfss(81, "bad~~nested.jpg"), None)}}))
            .scanner_only(0, 2),
        Case::new("invalid_utf8_elsewhere_in_the_document")
            .raw("Item", invalid_utf8(doc! {"_id": "a", "file": tfss(83, "ok.jpg"), "title": "bad~~title",
                "obj": {"note": "bad~~", "f": file(&tfss(84, "nested-ok.jpg"), None)}}))
            .scanner_only(2, 0),
        Case::new("dotted_and_dollar_keys")
            .items([doc! {"_id": "a", "obj": {"a.b": {"f": file(&tfss(85, "dotted.jpg"), None)},
                "ok": file(&tfss(86, "ok.jpg"), None)}}])
            .refs(1)
            .copied(1)
            .says("key containing '.'"),
        Case::new("global_config_junk")
            .doc("_GlobalConfig", doc! {"_id": 1, "params": 5})
            .doc("_GlobalConfig", doc! {"_id": 2, "params": {"f": file(&tfss(87, "cfg2.jpg"), None)}})
            .doc("_GlobalConfig", doc! {"_id": "1", "params": {"f": file(&tfss(88, "cfg-str.jpg"), None)}})
            .codes(0, 0),
        Case::new("class_collection_missing")
            .schema(Some(vec![item_schema(), doc! {"_id": "Nowhere", "file": "file"}]))
            .items([with_file("a", tfss(89, "ok.jpg"))])
            .refs(1)
            .copied(1),
    ]
}

/// Bytes the source serves for `name`.
fn bytes_for(name: &str) -> Vec<u8> {
    let h = support::fnv1a(name);
    support::bytes(1 + (h % 5000) as usize, h)
}

/// `list --output jsonl` rows: (class, object_id, path) → names.
fn by_place(rows: &[Value]) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut m: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for r in rows {
        let key = (
            r["class"].as_str().unwrap_or("").to_string(),
            r["object_id"].as_str().unwrap_or("").to_string(),
            r["path"].as_str().unwrap_or("").to_string(),
        );
        m.entry(key)
            .or_default()
            .push(r["name"].as_str().unwrap_or("").to_string());
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

async fn cli(args: Vec<String>) -> Out {
    tokio::task::spawn_blocking(move || app::run(args))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// Documents the test server cannot store: run the scanner on the raw bytes, as it would see
/// them coming from MongoDB, and count references and issues.
fn scanner_only(case: &Case, (refs_want, issues_want): (usize, usize)) -> Result<String, String> {
    use parse_files_migrate::scan::nested::{Fields, extract};
    let (files, containers) = (["file".to_string()], ["obj".to_string(), "arr".to_string()]);
    let (mut refs, mut issues) = (Vec::new(), Vec::new());
    for (class, d) in &case.docs {
        let fields = Fields {
            class,
            files: &files,
            containers: &containers,
        };
        let id = Bson::String(d.get_str("_id").map_err(|e| e.to_string())?.to_string());
        extract(d, &id, &fields, &mut refs, &mut issues);
    }
    ensure(
        refs.len() == refs_want && issues.len() == issues_want,
        || format!("scanner: {refs:?} / {issues:?}"),
    )?;
    ensure(
        issues.iter().all(|i| i.problem.contains("unreadable")),
        || format!("{issues:?}"),
    )?;
    Ok(format!(
        "the test server refuses invalid UTF-8 (MongoDB stores it): scanner on the raw BSON \
         found {refs_want} references, reported {issues_want} unreadable values"
    ))
}

/// Run one case; `Err` says what went wrong.
async fn run_case(
    case: &Case,
    server: &FaultyServer,
    client: &mongodb::Client,
) -> Result<String, String> {
    let db_name = support::unique(&format!("bad_{}", &case.name[..case.name.len().min(20)]));
    let db = client.database(&db_name);
    if let Some(schema) = &case.schema {
        db.create_collection("_SCHEMA")
            .await
            .map_err(|e| format!("create _SCHEMA: {e}"))?;
        if !schema.is_empty() {
            db.collection::<Document>("_SCHEMA")
                .insert_many(schema.clone())
                .await
                .map_err(|e| format!("insert _SCHEMA: {e}"))?;
        }
    }
    for (coll, d) in &case.docs {
        let inserted = db
            .collection::<RawDocumentBuf>(coll)
            .insert_one(d.clone())
            .await;
        match (inserted, case.scanner_only) {
            (Ok(_), _) => {}
            (Err(e), Some(want)) if e.to_string().contains("utf-8") => {
                return scanner_only(case, want);
            }
            (Err(e), _) => return Err(format!("the server refused a {coll} document: {e}")),
        }
    }
    let dest = support::temp_path("bad-dest");
    std::fs::create_dir_all(&dest).unwrap();
    for (t, data) in &case.dest_before {
        std::fs::write(dest.join(encode_uri_component(t)), data).unwrap();
    }
    let config = dest.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "{}{}\n[source.server]\ntype = \"http\"\nserver_url = \"{url}/parse\"\ntimeout_secs = 5\n{}\n[run]\n\
             select = \"all\"\nretries = 1\nretry_base_ms = 10\n",
            app::base_tables(&db_name, FILE_KEY),
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dest),
            url = server.url(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let args = |more: &[&str]| -> Vec<String> {
        ["-c", &cfg]
            .iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };

    // list
    let list = cli(args(&["list", "--output", "jsonl"])).await;
    ensure(DOCUMENTED.contains(&list.code), || {
        format!("list: undocumented exit {}", list.code)
    })?;
    ensure(list.code == case.list_code, || {
        format!(
            "list: exit {} (want {}): {}",
            list.code, case.list_code, list.stderr
        )
    })?;
    let before = list.jsonl();
    if let Some(n) = case.refs {
        ensure(before.len() == n, || {
            format!(
                "list found {} references, want {n}: {}",
                before.len(),
                list.stdout
            )
        })?;
    }
    for s in &case.says {
        ensure(list.stderr.contains(s), || {
            format!("list's stderr does not say {s:?}:\n{}", list.stderr)
        })?;
    }

    // the source serves every listed name except the missing ones
    let mut served: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in &before {
        let name = r["name"].as_str().unwrap_or("").to_string();
        if case.missing.contains(&name) {
            continue;
        }
        let data = case
            .files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| bytes_for(&name));
        server.insert(&name, data.clone());
        served.insert(name, data);
    }

    // migrate
    let migrate = cli(args(&["migrate", "--yes", "--output", "jsonl"])).await;
    ensure(DOCUMENTED.contains(&migrate.code), || {
        format!("migrate: undocumented exit {}", migrate.code)
    })?;
    ensure(migrate.code == case.migrate_code, || {
        format!(
            "migrate: exit {} (want {}): {}",
            migrate.code, case.migrate_code, migrate.stderr
        )
    })?;
    ensure(
        !migrate.stdout.contains(FILE_KEY) && !migrate.stderr.contains(FILE_KEY),
        || "fileKey leaked".into(),
    )?;
    let summary = migrate.jsonl().last().cloned().unwrap_or_default();
    if let Some(n) = case.copied {
        ensure(summary["files"]["copied"] == n, || {
            format!("copied: {}", summary["files"])
        })?;
    }
    for s in &case.says {
        ensure(migrate.stderr.contains(s), || {
            format!("migrate's stderr does not say {s:?}:\n{}", migrate.stderr)
        })?;
    }
    let reported: Vec<&str> = ["missing", "failed", "collisions"]
        .iter()
        .flat_map(|k| summary[k].as_array().into_iter().flatten())
        .filter_map(|i| i["name"].as_str())
        .collect();

    // nothing lost
    let after = cli(args(&["list", "--output", "jsonl"])).await;
    ensure(after.code == case.list_code, || {
        format!("list after: exit {}", after.code)
    })?;
    let after_rows = after.jsonl();
    let (was, now) = (by_place(&before), by_place(&after_rows));
    ensure(was.len() == now.len(), || {
        format!("references before {} != after {}", was.len(), now.len())
    })?;
    let mut migrated = 0;
    for (place, names) in &was {
        let mut want: Vec<String> = Vec::new();
        for name in names {
            let target = target_name(name, RenamePolicy::Auto).into_owned();
            let path = dest.join(encode_uri_component(&target));
            if reported.contains(&name.as_str()) {
                want.push(name.clone());
                continue;
            }
            let got = std::fs::read(&path).map_err(|e| format!("{place:?} {name:?}: not reported, yet {target:?} is not at the destination: {e}"))?;
            ensure(Some(&got) == served.get(name), || {
                format!("{name:?}: bytes at the destination differ")
            })?;
            migrated += 1;
            want.push(target);
        }
        want.sort();
        let got = now.get(place).cloned().unwrap_or_default();
        ensure(got == want, || {
            format!("{place:?}: references now {got:?}, want {want:?}")
        })?;
    }
    for e in std::fs::read_dir(&dest).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        ensure(!n.starts_with(".pfm-tmp"), || {
            format!("temp file left behind: {n}")
        })?;
    }
    ensure(!dest.parent().unwrap().join("etc").exists(), || {
        "something was written outside the destination".into()
    })?;
    if let Some(check) = case.check {
        check(&Outcome {
            after: after_rows,
            migrate,
            dest: dest.clone(),
        })?;
    }
    Ok(format!(
        "list {} ({} refs), migrate {} ({} copied, {} reported, {migrated} references verified)",
        list.code,
        was.values().map(Vec::len).sum::<usize>(),
        case.migrate_code,
        summary["files"]["copied"],
        reported.len()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus() {
    let cases = corpus();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let server = Arc::new(FaultyServer::healthy(Vec::<(String, Vec<u8>)>::new()));
    let client = support::mongo_client().await;
    let started = Instant::now();
    let results: Vec<(&'static str, Result<String, String>, std::time::Duration)> =
        futures::stream::iter(cases.iter())
            .map(|case| {
                let (server, client) = (server.clone(), client.clone());
                async move {
                    let t = Instant::now();
                    let r = AssertUnwindSafe(run_case(case, &server, &client))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| {
                            Err(p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panic".into()))
                        });
                    (case.name, r, t.elapsed())
                }
            })
            .buffered(3)
            .collect()
            .await;
    let mut failed = Vec::new();
    for (name, r, took) in &results {
        match r {
            Ok(s) => eprintln!("ok    {name:<62} {took:>6.1?}  {s}"),
            Err(e) => {
                eprintln!("FAIL  {name:<62} {took:>6.1?}  {e}");
                failed.push(*name);
            }
        }
    }
    let panics = results
        .iter()
        .filter(|(_, r, _)| r.as_ref().is_err_and(|e| e.contains("panicked")))
        .count();
    eprintln!(
        "{} cases, {} failed, {panics} processes panicked, in {:.1?}",
        results.len(),
        failed.len(),
        started.elapsed()
    );
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}
