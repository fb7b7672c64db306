//! The command line's outside: settings resolution, redaction, configuration errors, exit codes.
//! (No server needed except where a test says so.)

use crate::support::app::bin;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn show_settings_resolves_precedence_and_redacts_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        r#"
[mongo]
uri = "mongodb://admin:file-pw-1@db.example:27017/fromfile?authSource=admin"
collection_prefix = "file_"
[parse]
file_key = "file-key-SECRET-2"
[destination]
type = "gridfs"
encryption_key = "enc-key-SECRET-3"
[run]
concurrency = 5
"#,
    )
    .unwrap();
    let out = bin()
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "--collection-prefix",
            "flag_",
            "--show-settings",
        ])
        .env("PFM_APP_ID", "envApp")
        .args([
            "migrate",
            "--concurrency",
            "9",
            "--max-bytes",
            "2GiB",
            "--shard",
            "1/3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for secret in ["file-pw-1", "file-key-SECRET-2", "enc-key-SECRET-3"] {
        assert!(!s.contains(secret), "{secret} leaked:\n{s}");
    }
    assert!(
        s.contains("admin:<redacted>@db.example:27017/fromfile"),
        "{s}"
    );
    assert!(
        s.contains("collection_prefix = \"flag_\""),
        "flag beats file:\n{s}"
    );
    assert!(s.contains("app_id = \"envApp\""), "env applies:\n{s}");
    assert!(s.contains("concurrency = 9"), "flag beats file:\n{s}");
    assert!(s.contains("max_bytes = 2147483648"), "{s}");
    assert!(s.contains("database = \"fromfile\""), "{s}");

    // Env beats file, flag beats env.
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "--show-settings", "list"])
        .env("PFM_COLLECTION_PREFIX", "env_")
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("collection_prefix = \"env_\""));
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "--show-settings", "list"])
        .env("PFM_MONGO_URI", "mongodb://u:env-pw-4@h/envdb")
        .env("PFM_FILE_KEY", "env-key-5")
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(
        s.contains("u:<redacted>@h/envdb") && !s.contains("env-pw-4") && !s.contains("env-key-5"),
        "{s}"
    );
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[mongo]\nuri = \"mongodb://h/x\"\ncolection_prefix = \"x\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains("colection_prefix") && e.contains("bad.toml"),
        "{e}"
    );

    std::fs::write(&cfg, "[destination]\ntype = \"s3\"\nbukket = \"b\"\n").unwrap();
    let out = bin()
        .args(["-c", cfg.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("bukket"));

    let out = bin()
        .args(["-c", "/nonexistent/x.toml", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/x.toml"));
}

#[test]
fn usage_errors_exit_2() {
    // No MongoDB URI at all.
    let out = bin().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--mongo-uri"),
        "{}",
        text(&out.stderr)
    );
    // A URI without a database.
    let out = bin()
        .args(["--mongo-uri", "mongodb://127.0.0.1:1", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--database"));
    // Bad values.
    for args in [
        &["--mongo-uri", "mongodb://h/d", "migrate", "--shard", "3/3"][..],
        &[
            "--mongo-uri",
            "mongodb://h/d",
            "migrate",
            "--max-bytes",
            "lots",
        ],
        &[
            "--mongo-uri",
            "mongodb://h/d",
            "migrate",
            "--max-duration",
            "forever",
        ],
        &["--mongo-uri", "postgres://h/d", "list"],
        &["list", "--output", "xml"],
        &["frobnicate"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn migrate_refuses_bad_setups_before_touching_anything() {
    // No destination: a configuration error naming the table, before any connection.
    let out = bin()
        .args(["--mongo-uri", "mongodb://127.0.0.1:1/x", "migrate", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[destination]"),
        "{}",
        text(&out.stderr)
    );
    // Keeping legacy names without confirming fileKey is gone.
    let out = bin()
        .args([
            "--mongo-uri",
            "mongodb://127.0.0.1:1/x",
            "migrate",
            "--rename",
            "keep",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--confirm-file-key-removed"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreachable_mongodb_exits_4_without_the_password() {
    let out = bin()
        .args([
            "--mongo-uri",
            "mongodb://user:pw-SECRET@127.0.0.1:1/app?serverSelectionTimeoutMS=300",
        ])
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let e = text(&out.stderr);
    assert!(
        e.contains("cannot reach MongoDB") && e.contains("hint:"),
        "{e}"
    );
    assert!(!e.contains("pw-SECRET"), "{e}");
}

#[test]
fn the_example_config_is_valid_and_complete() {
    let out = bin()
        .args([
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"),
            "--show-settings",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("collection = \"_FileMigration\""), "{s}");
}

#[test]
fn help_lists_every_command_with_examples() {
    let out = bin().arg("--help").output().unwrap();
    let h = text(&out.stdout);
    for cmd in [
        "schema",
        "list",
        "migrate",
        "verify",
        "status",
        "rollback",
        "completions",
        "man",
        "Examples:",
        "PFM_",
    ] {
        assert!(h.contains(cmd), "help lacks {cmd}:\n{h}");
    }
    // Each command's long help has its own examples, and every option a one-line help.
    for cmd in [
        "schema",
        "list",
        "migrate",
        "verify",
        "status",
        "rollback",
        "completions",
    ] {
        let out = bin().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        let h = text(&out.stdout);
        let examples = h.split("Examples:").nth(1).unwrap_or("");
        assert!(
            examples
                .lines()
                .any(|l| l.contains("parse-files-migrate") && l.contains(&format!(" {cmd}"))),
            "{cmd} --help has no examples of {cmd}:\n{h}"
        );
    }
}

#[test]
fn completions_and_man_pages_are_generated_from_the_real_options() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["parse-files-migrate", "migrate", "max-duration", "rescan"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // bash accepts the script.
    let out = bin().args(["completions", "bash"]).output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("c.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success(), "bash -n rejects the completion script");

    let out = bin().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH parse-files-migrate"),
        "{page}"
    );
    assert!(page.contains("migrate"));

    let pages = dir.path().join("man1");
    let out = bin()
        .arg("man")
        .arg("--out-dir")
        .arg(&pages)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in [
        "parse-files-migrate.1",
        "parse-files-migrate-migrate.1",
        "parse-files-migrate-rollback.1",
    ] {
        let p = pages.join(name);
        let body = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(body.contains(".TH"), "{name}");
    }
    let migrate = std::fs::read_to_string(pages.join("parse-files-migrate-migrate.1")).unwrap();
    assert!(
        migrate.contains("max\\-duration") || migrate.contains("max-duration"),
        "{migrate}"
    );
}

#[test]
fn every_alternative_store_table_in_the_example_parses() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    let mut blocks = vec![];
    let mut current: Option<String> = None;
    for line in example.lines() {
        if line == "# [destination]" {
            current = Some(String::from("[destination]\n"));
        } else if let Some(block) = current.as_mut() {
            match line.strip_prefix("# ") {
                Some(l) if !line.trim().is_empty() => {
                    block.push_str(l);
                    block.push('\n');
                }
                _ => blocks.push(current.take().unwrap()),
            }
        }
    }
    assert_eq!(blocks.len(), 4, "gridfs, s3, gcs, http blocks: {blocks:#?}");
    let dir = tempfile::tempdir().unwrap();
    for block in blocks {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, &block).unwrap();
        let out = bin()
            .args(["-c", cfg.to_str().unwrap(), "--show-settings", "list"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{block}\n{}", text(&out.stderr));
    }
}
