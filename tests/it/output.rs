//! One output vocabulary across commands (#22 item 6), against the real test servers: every
//! command takes `--output text|jsonl` (and the old spellings `table` and `json`), `csv` where
//! its output is a table of rows and a usage error elsewhere; JSON lines by default when stdout
//! is not a terminal and text when it is; `--report FILE` holds the summary its last JSON line
//! carries. And each command's human output, compared with `tests/it/snapshots/<name>.txt` after
//! normalising what varies (times, durations, rates, ports, temporary paths, database names).
//! After an intended change of the text, rewrite the snapshots and review the diff:
//!
//!     PFM_UPDATE_SNAPSHOTS=1 /work/pfm-test --test it output::

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::app::{self, Hosted, Out};
use crate::support::faulty::FaultyServer;
use crate::support::{self};

const FILE_KEY: &str = "outputKey";
const HOST: &str = "snapshot-host";

/// Every command, as it is run here (read-only or dry-run where it could write), and whether it
/// has a CSV form.
const COMMANDS: &[(&str, &[&str], bool)] = &[
    ("schema", &["schema"], false),
    ("list", &["list"], true),
    ("migrate", &["migrate", "--dry-run"], false),
    ("verify", &["verify"], false),
    ("status", &["status"], false),
    ("rollback", &["rollback", "--dry-run"], false),
    ("audit", &["audit"], true),
    ("rebase", &["rebase", "--dry-run"], false),
    (
        "rekey",
        &["rekey", "--store", "server", "--encrypt", "--dry-run"],
        false,
    ),
];

/// A seeded hosted-era app (10 files, one missing at its source), a plaintext FS destination,
/// a `[source.server]` FS store holding two plaintext files (for `rekey`), an old base for
/// `rebase`.
struct Fixture {
    dir: tempfile::TempDir,
    db_name: String,
    config: PathBuf,
    server: FaultyServer,
}

impl Fixture {
    async fn new(tag: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db_name = support::unique(tag);
        let db = support::mongo_client().await.database(&db_name);
        let h = Hosted::seed(&db, 10, 1, FILE_KEY).await;
        let server = FaultyServer::healthy(h.files.clone());
        let store = dir.path().join("server");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("plain-a.txt"), b"alpha").unwrap();
        std::fs::write(store.join("plain-b.txt"), vec![7u8; 3000]).unwrap();
        let config = dir.path().join(format!("{tag}.toml"));
        std::fs::write(
            &config,
            format!(
                "{}{}{}\n[source.server]\ntype = \"fs\"\npath = \"{}\"\nencryption = \"file-key\"\n\
                 \n[rebase]\nfrom = [\"https://old-api.example.com/parse/\"]\n\
                 \n[run]\nconcurrency = 1\n",
                app::base_tables(&db_name, FILE_KEY),
                app::hosted_table(&server.url(), 5),
                app::fs_destination(&dir.path().join("dest")),
                store.display()
            ),
        )
        .unwrap();
        Fixture {
            dir,
            db_name,
            config,
            server,
        }
    }

    /// `-c CONFIG ARGS…` with stdout and stderr piped.
    fn run(&self, args: &[&str]) -> Out {
        let out = Out::from(
            app::command()
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .env("HOSTNAME", HOST)
                .output()
                .unwrap(),
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out
    }

    /// What varies between runs, replaced by fixed words.
    fn normalise(&self, text: &str) -> String {
        let mut t = text.replace("\r\n", "\n");
        for (from, to) in [
            (self.dir.path().display().to_string(), "<DIR>"),
            (self.server.url(), "<SOURCE>"),
            (self.db_name.clone(), "<DB>"),
            (support::mongo_hosts(), "<MONGO>"),
        ] {
            t = t.replace(&from, to);
        }
        database_figures(&rates(&times(&t)))
    }
}

/// The summary's `database:` line (write batches and their latencies vary run to run) → its
/// label and `<DB FIGURES>`.
fn database_figures(s: &str) -> String {
    s.lines()
        .map(|l| match l.split_once("database:") {
            Some((indent, _)) if indent.trim().is_empty() => {
                format!("{indent}database: <DB FIGURES>")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if s.ends_with('\n') { "\n" } else { "" }
}

/// RFC 3339 times (`2026-12-05T05:40:52.123Z`) → `<TIME>`.
fn times(s: &str) -> String {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let fits = b.len() - i >= SHAPE.len()
            && SHAPE.iter().zip(&b[i..]).all(|(want, got)| match want {
                b'd' => got.is_ascii_digit(),
                w => w == got,
            });
        if !fits {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        i += SHAPE.len();
        while i < b.len() && (b[i] == b'.' || b[i].is_ascii_digit()) {
            i += 1;
        }
        if i < b.len() && b[i] == b'Z' {
            i += 1;
        }
        out.push_str("<TIME>");
    }
    out
}

/// Decimal numbers that are durations or rates (`0.3 s`, `12.5 files/s`) → `#.#`; byte rates
/// (`4.1 MiB/s`, unit and all) → `<RATE>`.
fn rates(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let at_word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.');
        if at_word_start && b[i].is_ascii_digit() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let rest = &s[j..];
                let unit_end = rest.find([',', ')', '\n']);
                let unit = &rest[..unit_end.unwrap_or(rest.len())];
                if unit.ends_with("B/s") && unit.len() <= " KiB/s".len() {
                    out.push_str("<RATE>");
                    i = j + unit.len();
                    continue;
                }
                let is_rate = unit == " s"
                    || unit.starts_with(" s ")
                    || unit.starts_with(" s:")
                    || unit.starts_with(" files/s");
                if is_rate {
                    out.push_str("#.#");
                    i = j;
                    continue;
                }
                out.push_str(&s[start..j]);
                i = j;
                continue;
            }
        }
        let c = s[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Compare `actual` with `tests/it/snapshots/<name>.txt` (or rewrite it with
/// `PFM_UPDATE_SNAPSHOTS=1`); returns a description of the difference.
fn check_snapshot(name: &str, actual: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("PFM_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want == actual {
        return None;
    }
    let first = want
        .lines()
        .zip(actual.lines())
        .position(|(w, a)| w != a)
        .unwrap_or(want.lines().count().min(actual.lines().count()));
    Some(format!(
        "{} differs from line {}:\n--- expected\n{}\n--- actual\n{}",
        path.display(),
        first + 1,
        want.lines()
            .skip(first)
            .take(5)
            .collect::<Vec<_>>()
            .join("\n"),
        actual
            .lines()
            .skip(first)
            .take(5)
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// Each command's human output (`--output text`, logs off with `-qq`: what remains is what the
/// command itself prints), run in the order an operator would, against one app. A dry run's plan
/// lines are compared sorted.
#[tokio::test(flavor = "multi_thread")]
async fn each_commands_human_output_matches_its_snapshot() {
    let f = Fixture::new("out_snap").await;
    let steps: &[(&str, &[&str])] = &[
        ("schema", &["schema"]),
        ("list", &["list"]),
        ("migrate_dry_run", &["migrate", "--dry-run"]),
        ("migrate", &["migrate", "--yes"]),
        ("verify", &["verify"]),
        ("status", &["status"]),
        ("audit", &["audit"]),
        ("rebase_dry_run", &["rebase", "--dry-run"]),
        (
            "rekey_dry_run",
            &["rekey", "--store", "server", "--encrypt", "--dry-run"],
        ),
        ("rollback_dry_run", &["rollback", "--dry-run"]),
        ("rollback", &["rollback", "--yes"]),
    ];
    let mut problems = Vec::new();
    for (name, args) in steps {
        let mut all = vec!["-qq"];
        all.extend_from_slice(args);
        all.extend(["--output", "text"]);
        let mut out = f.run(&all);
        assert!(
            !out.stdout.lines().any(|l| l.starts_with('{')),
            "{name}: JSON in the text form:\n{}",
            out.stdout
        );
        if name.ends_with("dry_run") {
            // Copies and updates interleave as the pipeline's tasks happen to run: the lines
            // are compared in sorted order.
            let mut lines: Vec<&str> = out.stdout.lines().collect();
            lines.sort_unstable();
            out.stdout = lines.iter().map(|l| format!("{l}\n")).collect();
        }
        let text = format!(
            "$ parse-files-migrate -c <CONFIG> {}\nexit {}\n--- stdout\n{}--- stderr\n{}",
            all.join(" "),
            out.code,
            f.normalise(&out.stdout),
            f.normalise(&out.stderr)
        );
        problems.extend(check_snapshot(name, &text));
    }
    assert!(
        problems.is_empty(),
        "{} snapshots differ (if intended: PFM_UPDATE_SNAPSHOTS=1 /work/pfm-test --test it \
         output::, then review the diff):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// stdout as JSON lines, at least one.
fn json_lines(what: &str, out: &Out) -> Vec<Value> {
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {l:?}\n{}", out.stderr))
        })
        .collect();
    assert!(!lines.is_empty(), "{what}: no output\n{}", out.stderr);
    lines
}

/// Every command accepts every word of the vocabulary (old spellings included) and refuses
/// `csv` with a usage error where it has no rows; without `--output`, stdout being a pipe, it
/// writes JSON lines.
#[tokio::test(flavor = "multi_thread")]
async fn every_command_speaks_the_same_words() {
    let f = Fixture::new("out_words").await;
    let out = f.run(&["migrate", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "one file is missing: {}", out.stderr);
    for (command, args, has_csv) in COMMANDS {
        for word in [
            None,
            Some("text"),
            Some("table"),
            Some("jsonl"),
            Some("json"),
        ] {
            let mut all = args.to_vec();
            if let Some(w) = word {
                all.extend(["--output", w]);
            }
            let what = format!("{command} --output {}", word.unwrap_or("(default)"));
            let out = f.run(&all);
            assert!(
                out.code != 2 && !out.stderr.contains("error:"),
                "{what}: exit {}\n{}",
                out.code,
                out.stderr
            );
            match word {
                None | Some("jsonl" | "json") => {
                    json_lines(&what, &out);
                }
                _ => {
                    assert!(
                        !out.stdout.lines().any(|l| l.starts_with('{')),
                        "{what}: JSON in the text form:\n{}",
                        out.stdout
                    );
                    assert!(
                        !(out.stdout.trim().is_empty() && out.stderr.trim().is_empty()),
                        "{what}: printed nothing"
                    );
                }
            }
        }
        let mut all = args.to_vec();
        all.extend(["--output", "csv"]);
        let out = f.run(&all);
        if *has_csv {
            assert_ne!(out.code, 2, "{command} csv: {}", out.stderr);
            // CSV rows with their header; `audit` found nothing here, and says so on stderr.
            let header = out.stdout.lines().next().unwrap_or_default();
            assert!(
                header.contains(',') || (*command == "audit" && out.stderr.contains("orphans")),
                "{command} csv: {}\n{}",
                out.stdout,
                out.stderr
            );
        } else {
            assert_eq!(out.code, 2, "{command} --output csv: {}", out.stderr);
            assert!(
                out.stderr.contains(&format!("{command} has no csv output")),
                "{command}: {}",
                out.stderr
            );
            assert!(out.stdout.is_empty(), "{command}: {}", out.stdout);
        }
        let out = f.run(&[args, ["--output", "xml"].as_slice()].concat());
        assert_eq!(out.code, 2, "{command} --output xml: {}", out.stderr);
    }
    // rekey's own old spelling.
    let out = f.run(&[
        "rekey",
        "--store",
        "server",
        "--encrypt",
        "--dry-run",
        "--json",
    ]);
    let lines = json_lines("rekey --json", &out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["plaintext"]["files"], 2, "{}", lines[0]);
    // A one-document command prints it as one line, whichever spelling.
    for command in ["schema", "status"] {
        for word in ["json", "jsonl"] {
            let out = f.run(&[command, "--output", word]);
            assert_eq!(out.stdout.lines().count(), 1, "{command}: {}", out.stdout);
        }
    }
}

/// `--report FILE`: valid JSON for every command, the same object as its last JSON line (for
/// `list`, whose lines are rows, a summary counting them), written whole.
#[tokio::test(flavor = "multi_thread")]
async fn every_command_writes_its_summary_to_report() {
    let f = Fixture::new("out_report").await;
    let report = f.dir.path().join("report.json");
    let r = report.to_str().unwrap();
    let check = |command: &str, out: &Out| {
        assert!(out.code != 2, "{command}: {}", out.stderr);
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("{command}: no report ({e})\n{}", out.stderr));
        std::fs::remove_file(&report).unwrap();
        let written: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{command}: the report is not JSON ({e}):\n{text}"));
        assert!(written.is_object(), "{command}: {written}");
        let lines = json_lines(command, out);
        if command == "list" {
            assert_eq!(written["references"], lines.len(), "{written}");
            assert_eq!(written["action"], "summary", "{written}");
        } else {
            assert_eq!(&written, lines.last().unwrap(), "{command}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{command}: {leftovers:?}");
    };
    let out = f.run(&["migrate", "--yes", "--output", "jsonl", "--report", r]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    check("migrate --yes", &out);
    assert_eq!(
        app::summary(&out.jsonl())["files"]["missing"],
        1,
        "{}",
        out.stdout
    );
    let mut commands: Vec<(&str, &[&str])> = COMMANDS.iter().map(|(c, a, _)| (*c, *a)).collect();
    commands.push(("rollback --yes", &["rollback", "--yes"]));
    commands.push((
        "audit --restore",
        &["audit", "--store", "server", "--restore", "--dry-run"],
    ));
    for (command, args) in commands {
        let out = f.run(&[args, &["--output", "jsonl", "--report", r]].concat());
        check(command, &out);
    }
    // A report that cannot be written is an error, and says which file.
    let out = f.run(&["status", "--report", "/nonexistent-dir/r.json"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("/nonexistent-dir/r.json"),
        "{}",
        out.stderr
    );
}

/// On a terminal (a pseudo-terminal from `script`), the commands default to their human form.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_gets_the_human_form_by_default() {
    let f = Fixture::new("out_tty").await;
    f.run(&["migrate", "--yes", "--output", "jsonl"]);
    let bin = app::bin_path();
    for (command, args, _) in COMMANDS {
        let line = format!(
            "'{}' -qq -c '{}' {}",
            bin.display(),
            f.config.display(),
            args.join(" ")
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("NO_COLOR", "1")
            .env("HOSTNAME", HOST)
            .output()
            .unwrap_or_else(|e| panic!("`script` (util-linux) is needed for this test: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let human = match *command {
            "schema" => "references in total",
            "list" => "CLASS",
            "migrate" | "rebase" => "dry run in",
            "verify" => "verify: 30 references",
            "status" => "RECENT RUNS",
            "rollback" => "rollback (dry run)",
            "audit" => "Audit of",
            _ => "rekey encrypt of",
        };
        assert!(
            text.contains(human),
            "{command} on a terminal: no {human:?} in\n{text}"
        );
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with('{')),
            "{command} on a terminal printed JSON:\n{text}"
        );
    }
}

/// `--metrics-file` for the other commands a cron job runs: Prometheus text (read by the
/// reference client's parser), labelled with the command, with the exit code, the duration and
/// — for a pass that changed or checked something and ended with 0 — the last success; `rebase`
/// with its reference counters, as `migrate`.
#[tokio::test(flavor = "multi_thread")]
async fn the_other_cron_commands_write_metrics_files() {
    let f = Fixture::new("out_metrics").await;
    let out = f.run(&["migrate", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rekey: &[&str] = &["rekey", "--store", "server", "--encrypt", "--dry-run"];
    for (command, args, code, success) in [
        ("verify", &["verify"][..], 5, false),
        ("audit", &["audit"], 0, true),
        ("rekey", rekey, 0, false),
        ("rebase", &["rebase", "--dry-run"], 0, false),
        ("rollback", &["rollback", "--yes"], 0, true),
    ] {
        let prom = f.dir.path().join(format!("{command}.prom"));
        let p = prom.to_str().unwrap();
        let out = f.run(&[args, &["--output", "jsonl", "--metrics-file", p]].concat());
        assert_eq!(out.code, code, "{command}: {}", out.stderr);
        let m = support::prometheus_samples(&prom, &[("shard", "all")]);
        let at = |name: &str| m.get(&format!("{name}{{command={command}}}")).copied();
        assert_eq!(
            at("pfm_exit_code"),
            Some(f64::from(code)),
            "{command}: {m:?}"
        );
        assert_eq!(at("pfm_run_running"), Some(0.0), "{command}: {m:?}");
        assert!(at("pfm_run_duration_seconds").is_some(), "{m:?}");
        assert_eq!(
            at("pfm_last_success_timestamp_seconds").is_some(),
            success,
            "{command}: {m:?}"
        );
        if command == "rebase" {
            let found = "pfm_references_total{command=rebase,outcome=unchanged}";
            assert_eq!(m.get(found), Some(&8.0), "{m:?}");
        }
    }
    // A usage error is a run that ended too: exit 2 in the file.
    let prom = f.dir.path().join("bad.prom");
    let out = f.run(&[
        "verify",
        "--output",
        "csv",
        "--metrics-file",
        prom.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let m = support::prometheus_samples(&prom, &[("shard", "all")]);
    assert_eq!(m.get("pfm_exit_code{command=verify}"), Some(&2.0), "{m:?}");
}

/// A reader that stops reading (`list --output jsonl | head -1`) is not an error: the command
/// (`list`, and the others that write data on stdout) exits with 141 (128 + SIGPIPE, what a shell shows for a writer the signal killed) and prints
/// nothing on stderr. Here the pipe's read end is closed before the first row is written, so
/// every run meets the closed pipe, whatever the pipe's buffer holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_a_command_quietly() {
    let f = Fixture::new("out_pipe").await;
    let runs: &[&[&str]] = &[
        &["list", "--output", "jsonl"],
        &["list", "--output", "csv"],
        &["list", "--output", "text"],
        &["schema", "--output", "jsonl"],
        &["audit", "--output", "jsonl"],
        &["migrate", "--dry-run", "--output", "jsonl"],
        &["status", "--output", "jsonl"],
        &["--show-settings", "list"],
        &["completions", "bash"],
        &["man"],
    ];
    for args in runs {
        let format = args.join(" ");
        let mut child = app::command()
            .arg("-c")
            .arg(&f.config)
            .args(*args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = Out::from(child.wait_with_output().unwrap());
        assert_eq!(out.code, 141, "{format}: {}", out.stderr);
        assert!(
            !out.stderr.contains("error") && !out.stderr.contains("panicked"),
            "{format}: {}",
            out.stderr
        );
    }
}

/// `list`'s `status` is where each reference stands in the ledger: all `pending` before any run;
/// after `migrate --copy-only` the copied files' references `copied` and the missing file's
/// `missing`; after the full migration `rewritten` (their rows now name the targets) and still
/// `missing`.
#[tokio::test(flavor = "multi_thread")]
async fn list_shows_each_references_status_from_the_ledger() {
    let f = Fixture::new("out_status").await;
    let statuses = |stage: &str| {
        let out = f.run(&["list", "--output", "jsonl"]);
        assert_eq!(out.code, 0, "{stage}: {}", out.stderr);
        let mut by_status = std::collections::BTreeMap::<String, Vec<String>>::new();
        for row in out.jsonl() {
            if row.get("action").is_some() {
                continue;
            }
            by_status
                .entry(row["status"].as_str().unwrap_or("?").to_string())
                .or_default()
                .push(row["name"].as_str().unwrap_or("?").to_string());
        }
        by_status
    };
    let count =
        |m: &std::collections::BTreeMap<String, Vec<String>>, s: &str| m.get(s).map_or(0, Vec::len);
    let before = statuses("before");
    assert_eq!(before.keys().collect::<Vec<_>>(), ["pending"], "{before:?}");
    assert_eq!(count(&before, "pending"), 30);

    let out = f.run(&[
        "-qq",
        "migrate",
        "--yes",
        "--copy-only",
        "--output",
        "jsonl",
    ]);
    assert_eq!(out.code, 3, "one file is missing: {}", out.stderr);
    let copied = statuses("copy-only");
    assert_eq!(count(&copied, "copied"), 29, "{copied:?}");
    assert_eq!(count(&copied, "missing"), 1, "{copied:?}");
    assert!(copied["missing"][0].contains("missing"), "{copied:?}");
    assert_eq!(copied.len(), 2, "{copied:?}");

    let out = f.run(&["-qq", "migrate", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let done = statuses("migrated");
    assert_eq!(count(&done, "rewritten"), 29, "{done:?}");
    assert_eq!(count(&done, "missing"), 1, "{done:?}");
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(
        done["rewritten"].iter().all(|n| !n.starts_with("tfss-")),
        "rewritten rows name the targets: {done:?}"
    );
}

/// A re-run after a migration says what it found: the references the first run rewrote now hold
/// Parse-Server-style names, which `--select hosted` does not take; the summary counts them as
/// already migrated (they name the target of a verified copy), not as merely "not selected".
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_counts_what_an_earlier_run_migrated() {
    let f = Fixture::new("out_rerun").await;
    let out = f.run(&["-qq", "migrate", "--yes", "--output", "jsonl"]);
    assert_eq!(out.code, 3, "one file is missing: {}", out.stderr);
    assert_eq!(out.summary()["references"]["rewritten"], 29);
    for dry_run in [true, false] {
        let mut args = vec!["-qq", "migrate", "--yes", "--output", "jsonl"];
        if dry_run {
            args.push("--dry-run");
        }
        let out = f.run(&args);
        // A dry run plans nothing and fails nothing (0); the real re-run still has the missing
        // file (3).
        assert_eq!(out.code, if dry_run { 0 } else { 3 }, "{}", out.stderr);
        let r = &out.summary()["references"];
        assert_eq!(r["migrated_before"], 29, "dry run {dry_run}: {r}");
        assert_eq!(r["not_selected"], 0, "dry run {dry_run}: {r}");
        assert_eq!(r["rewritten"], 0, "dry run {dry_run}: {r}");
    }
    let out = f.run(&["-qq", "migrate", "--yes", "--output", "text"]);
    assert!(
        out.stderr
            .contains("references: 0 rewritten, 29 already migrated, 0 already right"),
        "{}",
        out.stderr
    );
}
