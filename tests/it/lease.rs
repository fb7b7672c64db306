//! Leases hold for the whole of a run, by the database server's clock (safety review, findings
//! 9 and 10): a run of one scope is refused while a conflicting scope's lease is live (`all`
//! beside a shard, either way; shards of different counts); a run that loses its lease mid-run
//! (taken by another run, or a conflicting lease appearing) stops before its next write and
//! records nothing verified after the loss; and a host clock running ahead of the server's does
//! not make a live lease, or a live run's upload in flight, look expired.
//!
//! The app: a GridFS source holding large files, each referenced by an `Item`, copied to an
//! unencrypted GridFS bucket `dest` of the same database, slowly (`--bwlimit`) when a test acts
//! on a run while it lasts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use crate::support::{self, app};

const DESTINATION: &str = "type = \"gridfs\"\nbucket = \"dest\"\nencryption = \"none\"\n";

struct Scenario {
    db: Database,
    config: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

impl Scenario {
    /// `count` files of about `size` bytes; leases last `lease_secs`.
    async fn new(tag: &str, count: usize, size: usize, lease_secs: u64) -> Scenario {
        let files: BTreeMap<String, Vec<u8>> = (0..count)
            .map(|i| {
                let name = format!("{:032x}_clip {i}.mp4", i as u128 * 7919 + 5);
                (name, support::bytes(size + 100 * i, i as u64 + 17))
            })
            .collect();
        let destination = format!("{DESTINATION}\n[ledger]\nlease_secs = {lease_secs}\n");
        let (db, config) =
            app::gridfs_items(tag, "leaseApp", "leaseKey", &files, &destination).await;
        Scenario { db, config, files }
    }

    fn locks(&self) -> mongodb::Collection<Document> {
        self.db.collection("_FileMigration.locks")
    }

    /// Another run's lease on `scope`, unexpired for `secs` by the server's clock (this
    /// machine's: the test server runs here), on another host.
    async fn foreign_lease(&self, scope: &str, secs: i64) {
        let until = DateTime::from_millis(DateTime::now().timestamp_millis() + secs * 1000);
        self.locks()
            .insert_one(
                doc! {"_id": scope, "run": ObjectId::new(), "host": "other-host",
                "pid": 4242_i64, "until": until},
            )
            .await
            .unwrap();
    }

    /// Uploads started in the destination (distinct `files_id` of its chunks).
    async fn uploads(&self) -> usize {
        let mut ids: Vec<Bson> = app::find_all(&self.db, "dest.chunks")
            .await
            .iter()
            .filter_map(|c| c.get("files_id").cloned())
            .collect();
        ids.sort_by_key(|b| b.to_string());
        ids.dedup();
        ids.len()
    }

    /// Nothing was migrated: no upload, nothing verified, every reference as seeded.
    async fn assert_untouched(&self, what: &str) {
        assert_eq!(self.uploads().await, 0, "{what}: nothing copied");
        self.assert_nothing_recorded(what).await;
    }

    async fn assert_nothing_recorded(&self, what: &str) {
        assert_eq!(
            support::ledger::files_in(&self.db, "verified").await,
            0,
            "{what}: nothing recorded verified"
        );
        let names: Vec<&String> = self.files.keys().collect();
        for item in app::find_all(&self.db, "Item").await {
            let file = item.get_str("file").unwrap().to_string();
            assert!(names.contains(&&file), "{what}: {item} was rewritten");
        }
    }
}

/// `migrate --yes --select server ARGS…` with `env` set: exit code and stderr.
fn migrate_with(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = app::command();
    let config = config.to_str().unwrap();
    cmd.args(["-c", config, "migrate", "--yes", "--select", "server"])
        .args(args)
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

/// Review recipe 9: a live `all` lease (a rollback or an audit running) refuses a shard's run,
/// and a live shard's lease refuses a run of `all` and a shard of another count, but not a
/// shard of the same count. Nothing is copied or recorded when refused, and the refused run
/// leaves no lease behind; `--break-lease` offers (and breaks) the lease of the other scope.
#[tokio::test]
async fn a_run_is_refused_beside_a_live_lease_of_a_conflicting_scope() {
    let s = Scenario::new("lease_scopes", 2, 10_000, 60).await;
    s.foreign_lease("all", 3600).await;
    for shard in ["0/2", "1/2"] {
        let (code, stderr) = migrate_with(&s.config, &["--shard", shard], &[]);
        assert_eq!(code, 2, "--shard {shard} beside a live `all`: {stderr}");
        assert!(
            stderr.contains("another run holds the lease on all") && stderr.contains("other-host"),
            "{stderr}"
        );
    }
    s.assert_untouched("beside `all`").await;
    assert_eq!(
        s.locks().count_documents(doc! {}).await.unwrap(),
        1,
        "the refused runs gave their own leases back"
    );

    s.locks().delete_many(doc! {}).await.unwrap();
    s.foreign_lease("1/2", 3600).await;
    for args in [&[][..], &["--shard", "0/3"][..]] {
        let (code, stderr) = migrate_with(&s.config, args, &[]);
        assert_eq!(code, 2, "{args:?} beside a live 1/2: {stderr}");
        assert!(
            stderr.contains("another run holds the lease on 1/2") && stderr.contains("other-host"),
            "{stderr}"
        );
    }
    s.assert_untouched("beside 1/2").await;
    // The other half of the same split runs beside it.
    let (code, stderr) = migrate_with(&s.config, &["--shard", "0/2"], &[]);
    assert_eq!(code, 0, "0/2 beside 1/2: {stderr}");
    assert_eq!(
        s.locks().count_documents(doc! {}).await.unwrap(),
        1,
        "0/2 gave its lease back, 1/2's is left"
    );
    // `--break-lease` offers the lease in the way, though of another scope, and breaks it.
    let (code, stderr) = migrate_with(&s.config, &["--break-lease"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("broke the lease on 1/2") && stderr.contains("other-host"),
        "{stderr}"
    );
    assert_eq!(s.locks().count_documents(doc! {}).await.unwrap(), 0);
    assert_eq!(
        support::ledger::files_in(&s.db, "verified").await,
        s.files.len() as u64
    );
}

/// Start a slow run (`--concurrency 1`, so copies start one after the other) and wait until
/// its first upload is under way.
async fn slow_run(s: &Scenario, args: &[&str]) -> std::process::Child {
    let mut all = vec![
        "--select",
        "server",
        "--concurrency",
        "1",
        "--bwlimit",
        "1MiB",
    ];
    all.extend_from_slice(args);
    let mut child = app::spawn_migrate(&s.config, &all);
    let chunks = s.db.collection::<Document>("dest.chunks");
    let started = Instant::now();
    while chunks.count_documents(doc! {}).await.unwrap() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first upload"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no upload within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// Review finding 10: a run whose lease is lost mid-run — taken by another run (what a stall
/// past the expiry, a skewed clock or `--break-lease` elsewhere lead to), or beside a
/// conflicting lease that appeared — used to log the failed renewal and carry on, recording
/// its copies verified and rewriting references. Now it stops before its next write (exit 2, as
/// for a lease held at start-up): the copy in flight is not recorded verified, no reference is
/// rewritten, no further copy starts, and the other run's lease is left alone.
#[tokio::test]
async fn a_run_that_loses_its_lease_stops_before_its_next_write() {
    for (how, scope) in [("taken", "all"), ("conflict", "0/1")] {
        let s = Scenario::new(&format!("lease_lost_{how}"), 3, 4 * 1024 * 1024, 3).await;
        let shard: &[&str] = if scope == "all" {
            &[]
        } else {
            &["--shard", scope]
        };
        let child = slow_run(&s, shard).await;
        let thief = ObjectId::new();
        let until = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
        if how == "taken" {
            // Another run took this run's lease over (as it would once it looked expired).
            s.locks()
                .update_one(
                    doc! {"_id": scope},
                    doc! {"$set": {"run": thief, "host": "thief-host", "until": until}},
                )
                .await
                .unwrap();
        } else {
            // A run of `all` started beside this shard (as it could while this lease looked
            // expired).
            s.locks()
                .insert_one(doc! {"_id": "all", "run": thief, "host": "thief-host",
                "pid": 4242_i64, "until": until})
                .await
                .unwrap();
        }
        let lost_at = Instant::now();
        let out = app::wait(child).await;
        eprintln!(
            "lease: {how}: the run stopped {:?} after the loss",
            lost_at.elapsed()
        );
        assert_eq!(out.code, 2, "{how}: {}", out.stderr);
        assert!(out.stderr.contains("lease lost"), "{how}: {}", out.stderr);
        let why = if how == "taken" {
            "is no longer this run's"
        } else {
            "covers the same files"
        };
        assert!(
            out.stderr.contains(why) && out.stderr.contains("thief-host"),
            "{how}: {}",
            out.stderr
        );
        s.assert_nothing_recorded(how).await;
        assert_eq!(
            s.uploads().await,
            1,
            "{how}: no copy started after the loss"
        );
        let left = s.locks().find_one(doc! {"run": thief}).await.unwrap();
        assert!(left.is_some(), "{how}: the other run's lease is left alone");
    }
}

/// Review finding 10: expiry was judged by each host's own clock, so a host running ahead saw a
/// live lease as expired and took it over silently. By the server's clock it is live: refused.
/// (`PFM_TEST_CLOCK_SKEW_MS` moves the tool's host clock; the test server runs here, so the
/// server's clock is the test's.)
#[tokio::test]
async fn a_host_clock_running_ahead_does_not_take_a_live_lease_over() {
    let s = Scenario::new("lease_skew", 2, 10_000, 60).await;
    s.foreign_lease("all", 30).await;
    let ahead = [("PFM_TEST_CLOCK_SKEW_MS", "120000")];
    let (code, stderr) = migrate_with(&s.config, &[], &ahead);
    assert_eq!(code, 2, "a lease live for 30 s more: {stderr}");
    assert!(
        stderr.contains("another run holds the lease") && stderr.contains("other-host"),
        "{stderr}"
    );
    s.assert_untouched("skewed host").await;
    // And once it has expired by the server's clock, a host running behind takes it.
    s.locks()
        .update_one(
            doc! {"_id": "all"},
            doc! {"$set": {"until": DateTime::from_millis(DateTime::now().timestamp_millis() - 1000)}},
        )
        .await
        .unwrap();
    let behind = [("PFM_TEST_CLOCK_SKEW_MS", "-120000")];
    let (code, stderr) = migrate_with(&s.config, &[], &behind);
    assert_eq!(code, 0, "an expired lease is taken: {stderr}");
    assert_eq!(
        support::ledger::files_in(&s.db, "verified").await,
        s.files.len() as u64
    );
}

/// Review finding 10, the damage: a run whose host clock ran ahead took a live run for gone and
/// swept its upload in flight as debris. By the server's clock the run is live: a dry run on
/// such a host reports no debris, and the live run ends complete.
#[tokio::test]
async fn a_host_clock_running_ahead_never_sweeps_a_live_runs_upload() {
    let s = Scenario::new("lease_skew_debris", 2, 2 * 1024 * 1024, 60).await;
    let child = slow_run(&s, &["--shard", "0/1"]).await;
    let ahead = [("PFM_TEST_CLOCK_SKEW_MS", "600000")];
    let (code, stderr) = migrate_with(&s.config, &["--dry-run"], &ahead);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("unfinished uploads"), "{stderr}");
    let out = app::wait(child).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        support::ledger::files_in(&s.db, "verified").await,
        s.files.len() as u64
    );
}

/// Two runs of conflicting scopes starting at the same moment (each writes its lease, then looks
/// for conflicting ones): never both start, and, by the tie-break on the run id, never both are
/// refused either. Exactly one of each pair gets its lease, over many rounds.
#[tokio::test]
async fn of_two_conflicting_runs_starting_together_exactly_one_starts() {
    let db = support::mongo_client()
        .await
        .database(&support::unique("lease_race"));
    let locks = db.collection::<Document>("_FileMigration.locks");
    let pairs = [
        ("all", "0/2"),
        ("1/2", "all"),
        ("0/2", "0/3"),
        ("all", "all"),
    ];
    let mut tied = 0;
    for round in 0..40 {
        let (a, b) = pairs[round % pairs.len()];
        let (first, second) = (support::ledger::of(&db), support::ledger::of(&db));
        let (x, y) = tokio::join!(first.lease(a, "host-a"), second.lease(b, "host-b"));
        let won = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round} ({a} / {b}): {x:?} / {y:?}");
        let loser = format!("{:#}", x.as_ref().err().or(y.as_ref().err()).unwrap());
        assert!(loser.contains("another run holds the lease"), "{loser}");
        // It saw the winner's lease still being taken: the tie-break decided.
        tied += usize::from(loser.contains("starting at the same moment"));
        assert_eq!(
            locks.count_documents(doc! {}).await.unwrap(),
            1,
            "round {round}: the refused run gave its lease back"
        );
        locks.delete_many(doc! {}).await.unwrap();
    }
    eprintln!("lease: 40 races, one winner each; {tied} decided by the tie-break");
    db.drop().await.unwrap();
}

/// A run that stalled past its lease (a paused VM, `SIGSTOP`: here its whole runtime blocked)
/// must not write on the moment it wakes, before its renewer had a turn: the check before each
/// write sees that its last confirmed renewal is too old, renews first, and finds the lease
/// expired by the server's clock, and, once another run took it, taken.
#[tokio::test]
async fn a_run_that_stalled_past_its_lease_refuses_its_next_write() {
    let db = support::mongo_client()
        .await
        .database(&support::unique("lease_stall"));
    for other_took_it in [false, true] {
        let lease = Duration::from_secs(1);
        let ledger = support::ledger::of(&db).with_lease(lease);
        ledger.hold("all", "stalled-host", false).await.unwrap();
        ledger.holding().await.unwrap();
        // The current-thread runtime blocked: the renewer cannot run either.
        std::thread::sleep(lease + Duration::from_millis(500));
        if other_took_it {
            let other = support::ledger::of(&db).with_lease(lease);
            other.lease("all", "other-host").await.unwrap();
        }
        let err = ledger.holding().await.unwrap_err();
        let why = if other_took_it {
            "is no longer this run's"
        } else {
            "expired (by the database server's clock)"
        };
        let msg = format!("{err:#}");
        assert!(msg.contains("lease lost") && msg.contains(why), "{msg}");
        assert_eq!(parse_files_migrate::exit::code_of(&err), 2);
        // And it stays refused.
        assert!(ledger.holding().await.is_err());
        ledger.let_go().await.unwrap();
        db.collection::<Document>("_FileMigration.locks")
            .delete_many(doc! {})
            .await
            .unwrap();
    }
    db.drop().await.unwrap();
}
