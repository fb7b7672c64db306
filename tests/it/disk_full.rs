//! The destination fills up (issue #20, item 3): an fs destination on a 1 MiB tmpfs, a run of
//! 3 MB of files. The run stops (exit 7) instead of failing every remaining file, with an error
//! naming the path and the bytes needed; nothing half-written stays; nothing is recorded verified
//! that is not there, byte-identical; after making room a re-run completes.
//!
//! Needs `mount -t tmpfs` (the tests run as root). Where mounting is not permitted the test
//! fails saying so; `PFM_TEST_NO_MOUNT=1` opts out of it explicitly (it then prints, loudly,
//! that it did not run).

use std::path::{Path, PathBuf};
use std::process::Command;

use parse_files_migrate::parse::names::{encode_uri_component, parse_server_name};

use crate::support::{self, app};

const FILE_KEY: &str = "fullKey";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = support::temp_path("pfm-full");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        if out.status.success() {
            return Some(Tmpfs(dir));
        }
        let why = String::from_utf8_lossy(&out.stderr);
        if std::env::var("PFM_TEST_NO_MOUNT").as_deref() == Ok("1") {
            eprintln!(
                "\n!!! disk_full: NOT RUN — mounting a tmpfs is not permitted here ({why}) and \
                 PFM_TEST_NO_MOUNT=1 opts out !!!\n"
            );
            return None;
        }
        panic!(
            "disk_full needs `mount -t tmpfs` (run the tests as root): {why}\n\
             set PFM_TEST_NO_MOUNT=1 to opt out of this test explicitly"
        );
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[tokio::test]
async fn a_full_destination_stops_the_run_cleanly_and_a_rerun_completes() {
    let Some(fs) = Tmpfs::mount("1m") else { return };
    let dest = fs.0.join("files");
    let db_name = support::unique("full");
    let db = support::mongo_client().await.database(&db_name);
    let http_dir = support::unique("full");
    let root = PathBuf::from(support::env("PFM_TEST_HTTP_ROOT"))
        .join(&http_dir)
        .join(FILE_KEY);
    std::fs::create_dir_all(&root).unwrap();
    let names: Vec<String> = (0..30)
        .map(|i| format!("tfss-3f2504e0-4f89-11d3-9a0c-{i:012x}-big{i}.bin"))
        .collect();
    let data: Vec<Vec<u8>> = (0..30)
        .map(|i| support::bytes(100_000 + i, i as u64))
        .collect();
    for (n, d) in names.iter().zip(&data) {
        std::fs::write(root.join(n), d).unwrap();
    }
    app::seed_items(&db, &names).await;
    let config = support::temp_path("full").with_extension("toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mongo]
uri = "{uri}"
database = "{db_name}"

[parse]
app_id = "fullApp"
file_key = "{FILE_KEY}"

[source.hosted]
type = "http"
tfss_base_url = "{http}/{http_dir}/{{file_key}}/"

[destination]
type = "fs"
path = "{dest}"
"#,
            uri = support::mongo_uri(),
            http = support::env("PFM_TEST_HTTP_URL"),
            dest = dest.display(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let concurrency = 4;
    let args = [
        "-c",
        cfg,
        "migrate",
        "--yes",
        "--output",
        "jsonl",
        "--concurrency",
        "4",
    ];

    let out = app::run(args);
    assert_eq!(out.code, 7, "the documented exit code: {}", out.stderr);
    let s = out.summary();
    let stopped = s["stopped_by"].as_str().unwrap_or_default();
    assert!(stopped.starts_with("destination full"), "{s}");
    assert!(
        stopped.contains("no space left at") && stopped.contains(&dest.display().to_string()),
        "names the path: {stopped}"
    );
    assert!(
        stopped.contains("the file needs 1000") && stopped.contains("bytes free"),
        "names the bytes needed: {stopped}"
    );
    let copied = s["files"]["copied"].as_u64().unwrap();
    let failed = s["files"]["failed"].as_u64().unwrap();
    assert!(copied > 0 && copied < 30, "{s}");
    assert!(
        (1..=concurrency).contains(&failed),
        "stopped instead of failing every remaining file: {s}"
    );
    // What is there is whole; nothing half-written, no temp file.
    let on_disk = entries(&dest);
    assert_eq!(on_disk.len() as u64, copied, "{on_disk:?}");
    let target = |i: usize| encode_uri_component(&parse_server_name(&names[i]));
    let mut verified = 0;
    for (i, n) in names.iter().enumerate() {
        let rec = support::ledger::file(&db, n).await;
        let state = rec.as_ref().map(|r| r.state.as_str());
        let path = dest.join(target(i));
        if state == Some("verified") {
            verified += 1;
            assert!(
                std::fs::read(&path).unwrap() == data[i],
                "{n}: verified but not whole"
            );
        } else {
            assert!(!path.exists(), "{n} ({state:?}) left at the destination");
        }
    }
    assert_eq!(
        verified, copied,
        "the ledger's verified files are exactly those there"
    );
    eprintln!(
        "disk_full: 1 MiB destination: {copied} files copied and verified, {failed} failed with \
         no space, {} not started; stopped_by: {stopped}",
        30 - copied - failed
    );

    // Room made: the re-run completes, every file whole, every reference rewritten.
    fs.resize("8m");
    let out = app::run(args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut on_disk = entries(&dest);
    on_disk.sort();
    let mut expected: Vec<String> = (0..30).map(target).collect();
    expected.sort();
    assert_eq!(on_disk, expected);
    for (i, d) in data.iter().enumerate() {
        assert!(std::fs::read(dest.join(target(i))).unwrap() == *d);
    }
    for d in app::find_all(&db, "Item").await {
        let i: usize = d.get_str("_id").unwrap()[1..].parse().unwrap();
        assert_eq!(d.get_str("file").unwrap(), parse_server_name(&names[i]));
    }
}
