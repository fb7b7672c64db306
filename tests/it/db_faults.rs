//! The database goes away mid-run (#20 item 2): the connections between the tool and the real
//! MongoDB server are reset, refused for a while (the server is down), or stalled, through a TCP
//! proxy, at points chosen by what the run has done so far (files copied, references
//! rewritten). Each faulty run either completes (the driver retried a read) or stops with exit 4
//! and says the connection was lost — never exit 1, never "a stage stopped" instead of the
//! cause; then a clean re-run completes: every file byte-identical, every reference rewritten to
//! its copy, no conflict (nothing rewritten twice to a different value). The same with the
//! ledger on its own connection (`[ledger] uri`). And the real thing: a MongoDB server of its
//! own, killed (`SIGKILL`) mid-run and started again on its data (`a_killed_server_restarted`).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use parse_files_migrate::parse::names::parse_server_name;
use serde_json::Value;

use crate::support::app::{self, Hosted};
use crate::support::faulty::FaultyServer;
use crate::support::wiretap::Tap;
use crate::support::{self};

const FILE_KEY: &str = "dbFaultKey";
const FILES: usize = 60;

struct Fixture {
    db: mongodb::Database,
    h: Hosted,
    _server: FaultyServer,
    /// The app database's connection.
    app: Tap,
    /// The ledger's own connection (`[ledger] uri`).
    ledger: Tap,
    config: PathBuf,
    dest: PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture(tag: &str) -> Fixture {
    fixture_on(tag, support::mongo_client().await, &support::mongo_hosts()).await
}

/// The fixture on the MongoDB server at `upstream` (`host:port`), reached by `client`.
async fn fixture_on(tag: &str, client: mongodb::Client, upstream: &str) -> Fixture {
    let db_name = support::unique(tag);
    let db = client.database(&db_name);
    let h = Hosted::seed(&db, FILES, 0, FILE_KEY).await;
    let server = FaultyServer::slow(h.files.clone(), Duration::from_millis(20));
    let (app, ledger) = (Tap::start(upstream).await, Tap::start(upstream).await);
    app.stop_recording();
    ledger.stop_recording();
    let uri = |t: &Tap| format!("mongodb://{}/?directConnection=true", t.host_port());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let config = dir.path().join("db.toml");
    let tables = app::base_tables(&db_name, FILE_KEY).replace(&support::mongo_uri(), &uri(&app));
    std::fs::write(
        &config,
        format!(
            "{tables}{}{}\n[ledger]\nuri = \"{}\"\ndatabase = \"{db_name}\"\n\n[run]\nconcurrency = 4\n",
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dest),
            uri(&ledger),
        ),
    )
    .unwrap();
    Fixture {
        db,
        h,
        _server: server,
        app,
        ledger,
        config,
        dest,
        _dir: dir,
    }
}

fn spawn(config: &Path) -> Child {
    app::spawn_migrate(config, &[])
}

async fn finish(child: Child) -> (i32, String, String) {
    let out = app::wait(child).await;
    (out.code, out.stdout, out.stderr)
}

/// Files at the destination so far.
fn copied(dest: &Path) -> usize {
    std::fs::read_dir(dest).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

/// Wait until `ready` (polled), at most 60 s.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut ready: impl FnMut() -> F) {
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(tokio::time::Instant::now() < end, "never reached: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Run a migration while resetting every connection of `tap` every 150 ms; returns its result
/// and how many connections were reset.
async fn flapping(config: &Path, tap: &Tap) -> ((i32, String, String), usize) {
    let mut child = spawn(config);
    let mut resets = 0;
    while child.try_wait().unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(150)).await;
        resets += tap.cut();
    }
    (finish(child).await, resets)
}

/// A faulty run's result: completed (0) or stopped saying the connection was lost (4).
fn assert_stopped_well(what: &str, (code, _, stderr): &(i32, String, String)) {
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error"))
        .unwrap_or("");
    eprintln!("{what}: exit {code} {last}");
    assert!(
        *code == 0 || *code == 4,
        "{what}: exit {code} (want 0, or 4 for a lost database):\n{stderr}"
    );
    if *code == 4 {
        assert!(
            stderr.contains("connection to MongoDB was lost"),
            "{what}: exit 4 without the hint:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("stage stopped"),
        "{what}: a consequence reported instead of the cause:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}:\n{stderr}");
}

/// The clean re-run completes, and everything is where it must be.
async fn assert_rerun_completes(f: &Fixture, what: &str) {
    let (code, stdout, stderr) = finish(spawn(&f.config)).await;
    assert_eq!(code, 0, "{what}: the re-run must complete:\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["references"]["conflicts"], 0, "{what}: {summary}");
    assert_eq!(summary["references"]["failed"], 0, "{what}: {summary}");
    assert_eq!(summary["files"]["failed"], 0, "{what}: {summary}");
    assert_eq!(f.h.check_fs_destination(&f.dest, parse_server_name), FILES);
    let refs = f.h.check_references(&f.db, parse_server_name).await;
    assert_eq!(refs, f.h.refs.len(), "{what}: every reference rewritten");
    // Nothing half-written left at the destination (temp files start with a dot).
    let entries = std::fs::read_dir(&f.dest).unwrap().count();
    assert_eq!(entries, FILES, "{what}: only the copies at the destination");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_reset_again_and_again_during_a_run() {
    let f = fixture("dbf_flap").await;
    // A flapping link: every connection reset every 150 ms for as long as the run lasts, so
    // resets land on reads, ledger writes and compare-and-swap updates alike.
    let (faulty, resets) = flapping(&f.config, &f.app).await;
    assert_stopped_well("app connections reset every 150 ms", &faulty);
    eprintln!("app resets: {resets}");
    assert!(resets > 0, "the faults must hit open connections");
    assert_rerun_completes(&f, "after the resets").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_down_for_seconds_then_back() {
    let f = fixture("dbf_down").await;
    let child = spawn(&f.config);
    until("5 files copied", || async { copied(&f.dest) >= 5 }).await;
    // Down: every open connection reset, every new one refused, for 3 s.
    f.app.refuse(true);
    f.app.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.app.refuse(false);
    let faulty = finish(child).await;
    assert_stopped_well("database down 3 s", &faulty);
    let (_, refused) = f.app.counts();
    assert!(refused > 0, "the outage must have refused connections");
    assert_rerun_completes(&f, "after the outage").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_link_is_waited_out() {
    let f = fixture("dbf_stall").await;
    // A 3 s stall of the app database's link (a hung network path) mid-run.
    let child = spawn(&f.config);
    until("5 files copied", || async { copied(&f.dest) >= 5 }).await;
    f.app.stall(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.app.stall(false);
    let stalled = finish(child).await;
    assert_stopped_well("stall 3 s", &stalled);
    assert_rerun_completes(&f, "after the stall").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_connection_reset_again_and_again() {
    let f = fixture("dbf_ledger").await;
    // The ledger on its own connection (`[ledger] uri`), flapping: its server far away, or
    // failing over.
    let (faulty, resets) = flapping(&f.config, &f.ledger).await;
    assert_stopped_well("ledger connections reset every 150 ms", &faulty);
    eprintln!("ledger resets: {resets}");
    assert!(resets > 0, "the faults must hit open connections");
    assert_rerun_completes(&f, "after the ledger resets").await;
}

/// A MongoDB-wire server of this test's own (the test services' `secantusd-py`, on a free port
/// and its own data directory), so it can be killed and started again; killed on drop.
struct OwnServer {
    child: Option<Child>,
    port: u16,
    data: tempfile::TempDir,
}

impl OwnServer {
    fn start() -> OwnServer {
        let mut s = OwnServer {
            child: None,
            port: support::free_port(),
            data: tempfile::tempdir().unwrap(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let bin =
            PathBuf::from(support::env("PFM_TEST_SERVICES_DIR")).join("venv/bin/secantusd-py");
        // An empty --config: no auto-discovered secantusd.toml may change the port or storage.
        let config = self.data.path().join("secantusd.toml");
        std::fs::write(&config, "").unwrap();
        let child = std::process::Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.data.path().join("db"))
            .args(["--log-level", "WARNING"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
    }

    fn hosts(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client once the server answers `ping` (at most 60 s).
    async fn ready(&self) -> mongodb::Client {
        let uri = format!(
            "mongodb://{}/?directConnection=true&serverSelectionTimeoutMS=1000",
            self.hosts()
        );
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let db = client.database("admin");
        until("the server's own MongoDB answers ping", || async {
            db.run_command(mongodb::bson::doc! {"ping": 1})
                .await
                .is_ok()
        })
        .await;
        client
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_restarted() {
    let mut server = OwnServer::start();
    let client = server.ready().await;
    let f = fixture_on("dbf_kill", client, &server.hosts()).await;
    let mut child = spawn(&f.config);
    until("5 files copied", || async { copied(&f.dest) >= 5 }).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run must still be going when the server dies"
    );
    let killed = copied(&f.dest);
    // The server process dies (SIGKILL: no shutdown, WiredTiger recovers from its journal), is
    // down for 2 s, and starts again on the same data and port.
    server.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.launch();
    let faulty = finish(child).await;
    eprintln!("server killed after {killed} of {FILES} files copied");
    assert_stopped_well("server killed and restarted", &faulty);
    server.ready().await;
    assert_rerun_completes(&f, "after the restart").await;
}
