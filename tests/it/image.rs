//! What the container image (deploy/container/Dockerfile) relies on, tested without Docker: the
//! binary runs a real migration as an unprivileged user (uid 65532, the image's), with an empty
//! environment (no HOME, no PFM_*), in a working directory it cannot write, reading nothing but
//! its config file — legacy files from an HTTP server to an fs directory that user owns.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use parse_files_migrate::parse::names::parse_server_name;

use crate::support::faulty::FaultyServer;
use crate::support::{self, app, app::Hosted};

const FILE_KEY: &str = "imageKey";
const UID: &str = "65532";

#[tokio::test]
async fn a_migration_runs_as_an_unprivileged_user_with_only_a_config_file() {
    let db_name = support::unique("image");
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, 12, 0, FILE_KEY).await;
    let server = FaultyServer::healthy(h.files.clone());

    // Everything the process may touch lives in a directory that user can reach: the binary (the
    // build's is under root's home), the config (readable, not writable), the destination (its).
    let dir = support::temp_path("image");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("parse-files-migrate");
    std::fs::copy(app::bin_path(), &bin).unwrap();
    let dest = dir.join("files");
    std::fs::create_dir(&dest).unwrap();
    let chown = Command::new("chown")
        .arg(format!("{UID}:{UID}"))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(chown.success());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}{}",
            app::base_tables(&db_name, FILE_KEY),
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dest),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = Command::new("setpriv")
        .args(["--reuid", UID, "--regid", UID, "--clear-groups", "--"])
        .arg(&bin)
        .args([
            "-c",
            config.to_str().unwrap(),
            "migrate",
            "--yes",
            "--output",
            "jsonl",
        ])
        .env_clear()
        .env("NO_COLOR", "1")
        .current_dir("/")
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Every file byte-identical under its Parse Server name (asserts inside).
    h.check_fs_destination(&dest, parse_server_name);
    let rewritten = h.check_references(&db, parse_server_name).await;
    assert!(
        rewritten > h.files.len(),
        "every reference rewritten: {rewritten}"
    );
    // What the run wrote belongs to that user, not root.
    let owner = std::fs::metadata(dest.read_dir().unwrap().next().unwrap().unwrap().path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    assert_eq!(owner.to_string(), UID);
    let _ = std::fs::remove_file(&bin);
}
