//! Hooks (README "Hooks", issue 33) against the real servers: the order of a run's events, a
//! failing `before` hook (nothing copied, nothing rewritten, the lease given back), a failing
//! run (`on_error`, then `after` with the run's code), a hook that hangs, the hook's environment
//! without a secret, and dry runs.
//!
//! The app: a GridFS source whose files an `Item` each references, migrated to a plaintext
//! directory under Parse-Server-style names (so a rewritten reference shows). Every hook appends `event phase outcome exit-code` to a log file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use crate::support::{self, app};

const FILE_KEY: &str = "hooksFileKey-7Qz";

struct Scenario {
    db: Database,
    config: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    names: Vec<String>,
}

impl Scenario {
    /// `count` files in GridFS, each referenced, and `missing` references to files it lacks;
    /// `hooks`: the `[hooks]` table's body (`LOG` stands for the log's path).
    async fn new(tag: &str, count: usize, missing: usize, hooks: &str) -> Scenario {
        let files: BTreeMap<String, Vec<u8>> = (0..count)
            .map(|i| {
                let name = format!("photo {i}.jpg");
                (name, support::bytes(2000 + i, i as u64 + 3))
            })
            .collect();
        let dir = support::temp_path(&format!("{tag}-dest"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = support::temp_path(&format!("{tag}-log"));
        let hooks = hooks.replace("LOG", log.to_str().unwrap());
        let destination = format!(
            "type = \"fs\"\npath = \"{}\"\nencryption = \"none\"\n\n[run]\nselect = \"all\"\nrename = \"parse-server\"\n\n\
             [hooks]\n{hooks}\n",
            dir.display()
        );
        let (db, config) = app::gridfs_items(tag, "hooksApp", FILE_KEY, &files, &destination).await;
        let mut names: Vec<String> = files.keys().cloned().collect();
        let absent: Vec<Document> = (0..missing)
            .map(|i| {
                let name = format!("gone {i}.jpg");
                names.push(name.clone());
                doc! {"_id": format!("m{i:03}"), "file": name}
            })
            .collect();
        if !absent.is_empty() {
            db.collection::<Document>("Item")
                .insert_many(absent)
                .await
                .unwrap();
        }
        Scenario {
            db,
            config,
            dir,
            log,
            names,
        }
    }

    /// The log's lines, each with its words separated by one space (unset variables vanish).
    fn events(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn run(&self, args: &[&str]) -> app::Out {
        let mut all = vec!["-c", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        app::run(all)
    }

    /// Files at the destination (in any folder of it).
    fn copied(&self) -> usize {
        fn count(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .map(|p| if p.is_dir() { count(&p) } else { 1 })
                    .sum()
            })
        }
        count(&self.dir)
    }

    /// Items whose reference is still the name seeded.
    async fn untouched_refs(&self) -> usize {
        let items = app::find_all(&self.db, "Item").await;
        items
            .iter()
            .filter(|d| {
                d.get_str("file")
                    .is_ok_and(|n| self.names.iter().any(|s| s == n))
            })
            .count()
    }

    async fn leases(&self) -> u64 {
        self.db
            .collection::<Document>("_FileMigration.locks")
            .count_documents(doc! {})
            .await
            .unwrap()
    }
}

/// A hook line for every event but `before`'s own (given separately).
const LOGGER: &str = "echo $PFM_HOOK_EVENT $PFM_HOOK_PHASE $PFM_HOOK_OUTCOME $PFM_EXIT_CODE >> LOG";

fn every_event() -> String {
    ["before", "before_phase", "after_phase", "on_error", "after"]
        .iter()
        .map(|e| format!("{e} = \"{LOGGER}\"\n"))
        .collect()
}

#[tokio::test]
async fn a_successful_migrate_runs_before_then_each_phase_then_after() {
    let summary_copy = support::temp_path("hooks-summary").with_extension("json");
    let hooks = format!(
        "{}after_phase = \"{LOGGER}\"\nafter = \"{LOGGER}; cp $PFM_SUMMARY {}; echo $PFM_RUN_ID \
         $PFM_HOOK_COMMAND $PFM_SHARD $PFM_DRY_RUN >> LOG.ids\"\n",
        ["before", "before_phase", "on_error"]
            .iter()
            .map(|e| format!("{e} = \"{LOGGER}\"\n"))
            .collect::<String>(),
        summary_copy.display()
    );
    let s = Scenario::new("hooks-order", 3, 0, &hooks).await;
    let metrics = support::temp_path("hooks-metrics").with_extension("prom");
    let m = metrics.to_str().unwrap();
    let out = s.run(&["migrate", "--yes", "--strings", "--metrics-file", m]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        s.events(),
        [
            "before",
            "before_phase files",
            "after_phase files ok",
            "before_phase strings",
            "after_phase strings ok",
            "after 0",
        ]
    );
    assert_eq!(s.copied(), 3);
    assert_eq!(
        s.untouched_refs().await,
        0,
        "renamed: every reference rewritten"
    );
    let ids = std::fs::read_to_string(format!("{}.ids", s.log.display())).unwrap();
    let words: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{ids}");
    assert!(words[0].len() == 24 && words[0].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(&words[1..], ["migrate", "all", "0"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_copy).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 0, "{summary}");
    assert_eq!(summary["run_id"], words[0], "{summary}");
    assert_eq!(summary["summary"]["files"]["copied"], 3, "{summary}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for (event, n) in [
        ("before", 1),
        ("before_phase", 2),
        ("after_phase", 2),
        ("after", 1),
    ] {
        let sample = format!(
            "pfm_hooks_total{{command=\"migrate\",shard=\"all\",event=\"{event}\",result=\"ok\"}} {n}"
        );
        assert!(prom.contains(&sample), "{sample} not in\n{prom}");
    }

    // Another writing command: rollback's phase is `restore`.
    std::fs::remove_file(&s.log).unwrap();
    let out = s.run(&["rollback", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e = s.events();
    assert_eq!(
        e[..3],
        ["before", "before_phase restore", "after_phase restore ok"]
    );
    assert_eq!(s.untouched_refs().await, 3, "rolled back");
}

#[tokio::test]
async fn a_failing_before_hook_stops_the_run_before_any_write_and_lets_go_of_the_lease() {
    let hooks = format!(
        "before = \"echo 'the indexer would not pause' >&2; exit 3\"\non_error = \"{LOGGER}\"\n\
         after = \"{LOGGER}\"\nbefore_phase = \"{LOGGER}\"\n"
    );
    let s = Scenario::new("hooks-before", 3, 0, &hooks).await;
    let metrics = support::temp_path("hooks-before-metrics").with_extension("prom");
    let out = s.run(&[
        "migrate",
        "--yes",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 9, "{}", out.stderr);
    let prom = std::fs::read_to_string(&metrics).unwrap();
    let l = "command=\"migrate\",shard=\"all\"";
    for sample in [
        format!("pfm_exit_code{{{l}}} 9"),
        format!("pfm_hooks_total{{{l},event=\"before\",result=\"failed\"}} 1"),
        format!("pfm_hooks_total{{{l},event=\"after\",result=\"ok\"}} 1"),
    ] {
        assert!(prom.contains(&sample), "{sample} not in\n{prom}");
    }
    assert!(
        out.stderr.contains("the before hook failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("the indexer would not pause"),
        "{}",
        out.stderr
    );
    assert_eq!(s.events(), ["on_error 9", "after 9"]);
    assert_eq!(s.copied(), 0, "nothing copied");
    assert_eq!(s.untouched_refs().await, 3, "nothing rewritten");
    assert_eq!(s.leases().await, 0, "the lease was given back");

    // Fixed (an empty flag turns the configured hook off): the next run migrates.
    let out = s.run(&["migrate", "--yes", "--hook-before", ""]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.copied(), 3);
    assert_eq!(s.untouched_refs().await, 0);
}

#[tokio::test]
async fn a_failing_run_runs_on_error_then_after_with_its_exit_code() {
    let s = Scenario::new("hooks-fails", 2, 1, &every_event()).await;
    let out = s.run(&["migrate", "--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        s.events(),
        [
            "before",
            "before_phase files",
            "after_phase files ok",
            "on_error 3",
            "after 3",
        ]
    );

    // Another run holds the lease: this one never began, so its `after` must not undo what
    // that run's `before` did; `on_error` still pages.
    std::fs::remove_file(&s.log).unwrap();
    let locks = s.db.collection::<Document>("_FileMigration.locks");
    let until = DateTime::from_millis(DateTime::now().timestamp_millis() + 60_000);
    let lease = doc! {"_id": "all", "run": ObjectId::new(), "host": "other-host",
    "pid": 4242_i64, "until": until};
    locks.insert_one(lease).await.unwrap();
    let out = s.run(&["migrate", "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(s.events(), ["on_error 2"]);
    locks.delete_many(doc! {}).await.unwrap();

    // A run that cannot start (the destination is unusable) ran no `before`: only `on_error`.
    std::fs::remove_file(&s.log).unwrap();
    std::fs::remove_dir_all(&s.dir).unwrap();
    std::fs::write(&s.dir, b"not a directory").unwrap();
    let out = s.run(&["migrate", "--yes"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(s.events(), ["on_error 4"]);
}

#[tokio::test]
async fn a_hook_that_hangs_is_killed_at_its_timeout_and_the_lease_is_free() {
    let s = Scenario::new(
        "hooks-hang",
        2,
        0,
        "before = \"sleep 60\"\ntimeout = \"1s\"\n",
    )
    .await;
    let started = Instant::now();
    let out = s.run(&["migrate", "--yes"]);
    assert_eq!(out.code, 9, "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        out.stderr.contains("did not finish within 1s"),
        "{}",
        out.stderr
    );
    assert_eq!(s.copied(), 0);
    assert_eq!(s.leases().await, 0);
    let out = s.run(&["migrate", "--yes", "--hook-before", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.copied(), 2);
}

#[tokio::test]
async fn a_hook_sees_no_secret_in_its_environment_or_arguments() {
    const PASSWORD: &str = "hook-Pa55word-xyz";
    const AWS_SECRET: &str = "hookAwsSecretKey123";
    const NEW_KEY: &str = "hookNewFileKey456";
    let dump = support::temp_path("hooks-env");
    let hooks = format!(
        "before = \"env > {0}; echo \\\"$0 $*\\\" >> {0}\"\n",
        dump.display()
    );
    let s = Scenario::new("hooks-env", 1, 0, &hooks).await;
    let db_name = s.db.name().to_string();
    let user = "pfm_hook_user";
    s.db.run_command(doc! {"createUser": user, "pwd": PASSWORD,
    "roles": [{"role": "readWrite", "db": &db_name}]})
        .await
        .expect("createUser");
    let uri = format!(
        "mongodb://{user}:{PASSWORD}@{}/{db_name}?directConnection=true",
        support::mongo_hosts()
    );
    let out = app::Out::from(
        app::bin()
            .args(["-c", s.config.to_str().unwrap(), "-v", "migrate", "--yes"])
            .env("PFM_MONGO_URI", &uri)
            .env("PFM_FILE_KEY", "hookFileKeyFromEnv")
            .env("PFM_NEW_FILE_KEY", NEW_KEY)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .env("HOOK_VISIBLE", "yes")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(
        env.contains("HOOK_VISIBLE=yes"),
        "the rest is inherited:\n{env}"
    );
    assert!(env.contains("PFM_HOOK_EVENT=before"), "{env}");
    for secret in [
        PASSWORD,
        "hookFileKeyFromEnv",
        FILE_KEY,
        AWS_SECRET,
        NEW_KEY,
    ] {
        assert!(!env.contains(secret), "{secret} reached the hook:\n{env}");
        out.assert_hides("secret", secret);
    }
}

#[tokio::test]
async fn dry_runs_run_hooks_only_when_asked() {
    let s = Scenario::new("hooks-dry", 2, 0, &every_event()).await;
    let out = s.run(&["migrate", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(s.events().is_empty(), "{:?}", s.events());
    let dry = "echo $PFM_HOOK_EVENT $PFM_DRY_RUN >> LOG";
    let out = s.run(&[
        "migrate",
        "--dry-run",
        "--hook-in-dry-run",
        "--hook-after",
        &dry.replace("LOG", s.log.to_str().unwrap()),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        s.events(),
        [
            "before",
            "before_phase files",
            "after_phase files ok",
            "after 1"
        ]
    );
    assert_eq!(s.copied(), 0);
}

#[tokio::test]
async fn a_failing_after_hook_turns_a_successful_run_into_exit_9() {
    let s = Scenario::new(
        "hooks-after",
        2,
        0,
        "after = \"echo purging; echo 'cdn purge refused' >&2; exit 1\"\n",
    )
    .await;
    let out = s.run(&["migrate", "--yes"]);
    assert_eq!(out.code, 9, "{}", out.stderr);
    assert!(
        out.stderr.contains("the after hook failed (exit status 1)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cdn purge refused"), "{}", out.stderr);
    // The hook's output goes to the log (stderr), never among the tool's data on stdout.
    assert!(out.stderr.contains("purging"), "{}", out.stderr);
    assert!(!out.stdout.contains("purging"), "{}", out.stdout);
    assert_eq!(s.copied(), 2, "the run itself succeeded");
    assert_eq!(s.untouched_refs().await, 0);
    assert_eq!(s.leases().await, 0);
}
