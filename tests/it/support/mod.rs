//! Shared helpers for the integration tests: where the real test servers are (from the env vars
//! `scripts/test-services start` prints), unique names, paths and ports so that tests running
//! side by side in this process never see each other's data, and byte generators.
//!
//! A test that needs a server which is not configured or not reachable **fails** with a message
//! saying how to start it; nothing here skips silently.

pub mod app;
pub mod conformance;
pub mod faulty;
pub mod gateway;
pub mod gcs;
pub mod ledger;
pub mod s3;
pub mod tls;
pub mod tmux;
pub mod wiretap;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The value of a `PFM_TEST_*` variable, or a panic that tells the developer what to run.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the integration tests need the real test servers.\n\
             Start them with: eval \"$(scripts/test-services start)\"  (or run scripts/test)"
        ),
    }
}

/// MongoDB URI of the test server (SecantusDB), e.g. `mongodb://127.0.0.1:27117/?directConnection=true`.
pub fn mongo_uri() -> String {
    env("PFM_TEST_MONGO_URI")
}

/// The test server's `host:port` list, e.g. `127.0.0.1:27117`, to build URIs with credentials.
pub fn mongo_hosts() -> String {
    let base = mongo_uri();
    base.split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("no hosts in PFM_TEST_MONGO_URI {base}"))
        .to_string()
}

/// The test server's URI with `db` as its database.
pub fn uri_for(db: &str) -> String {
    let base = mongo_uri();
    let (hosts, query) = base
        .split_once("/?")
        .unwrap_or((base.trim_end_matches('/'), ""));
    format!("{hosts}/{db}?{query}")
}

/// A name that is unique across tests and test runs: `<prefix>_<pid>_<counter>_<nanos>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// [`unique`] as a bucket name S3 and GCS accept: lowercase, digits and `-`, ≤ 63 characters.
pub fn bucket_name(tag: &str) -> String {
    let unique = unique(tag).to_ascii_lowercase().replace('_', "-");
    let name: String = unique.chars().take(63).collect();
    name.trim_end_matches('-').to_string()
}

/// A path under the temp directory that no other test or run uses (not created).
pub fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(unique(tag))
}

/// A loopback port that is free now, for a server the test starts itself, and that this process
/// has not handed out before: two tests starting servers at the same time never get the same
/// port (the kernel may give a just-released port to the next `bind(0)`).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A MongoDB client for the test server; panics with a hint if it cannot be reached.
pub async fn mongo_client() -> mongodb::Client {
    let uri = mongo_uri();
    let client = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("cannot parse {uri}: {e}"));
    client
        .database("admin")
        .run_command(mongodb::bson::doc! {"ping": 1})
        .await
        .unwrap_or_else(|e| {
            panic!("MongoDB test server at {uri} is unreachable: {e}\nStart it with scripts/test-services start")
        });
    client
}

/// FNV-1a: a stable hash of a name, the same on every run and machine (fault schedules, the bytes
/// a source serves for a name).
pub fn fnv1a(s: impl AsRef<[u8]>) -> u64 {
    s.as_ref().iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible and data is not
/// trivially compressible.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The samples of a Prometheus text-format file as `prometheus_client`'s own parser reads them
/// (the test venv's, pinned by scripts/services/tools.sh): `name{label=value,…}` (labels sorted)
/// → value. Every sample must carry each of `fixed`'s labels with its value; those labels are
/// left out of the keys.
pub fn prometheus_samples(
    path: &std::path::Path,
    fixed: &[(&str, &str)],
) -> std::collections::BTreeMap<String, f64> {
    let python = PathBuf::from(env("PFM_TEST_SERVICES_DIR")).join("venv/bin/python");
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        fixed = json.loads(sys.argv[2])\n\
        out = {}\n\
        for fam in parse(open(sys.argv[1]).read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       for k, v in fixed.items():\n\
        \x20           assert s.labels.get(k) == v, (k, v, s)\n\
        \x20       extra = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()) if k not in fixed)\n\
        \x20       out[s.name + '{' + extra + '}'] = s.value\n\
        print(json.dumps(out))\n";
    let fixed: std::collections::BTreeMap<&str, &str> = fixed.iter().copied().collect();
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(path)
        .arg(serde_json::to_string(&fixed).unwrap())
        .output()
        .expect("the test venv's python");
    assert!(
        out.status.success(),
        "prometheus_client refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The store a configuration table describes (`type = "fs"` …), for database `db_name` of the test
/// server (GridFS's default database, the app's).
pub async fn open_store(
    table: &str,
    db_name: &str,
) -> std::sync::Arc<dyn parse_files_migrate::storage::ObjectStore> {
    use parse_files_migrate::storage::{self, StoreConfig, StoreContext};
    let cfg: StoreConfig = toml::from_str(table).unwrap();
    let ctx = StoreContext {
        mongo_uri: Some(mongo_uri().into()),
        database: Some(db_name.to_string()),
        ..Default::default()
    };
    storage::open(&cfg, &ctx).await.unwrap()
}

/// A Parse app's database: `Photo` with the File field `image`, one object `p1` naming `name`.
pub async fn one_photo(tag: &str, name: &str) -> (mongodb::Database, String) {
    use mongodb::bson::{Document, doc};
    let db_name = unique(tag);
    let db = mongo_client().await.database(&db_name);
    db.collection::<Document>("_SCHEMA")
        .insert_one(doc! {"_id": "Photo", "objectId": "string", "image": "file"})
        .await
        .unwrap();
    db.collection::<Document>("Photo")
        .insert_one(doc! {"_id": "p1", "image": name})
        .await
        .unwrap();
    (db, db_name)
}
