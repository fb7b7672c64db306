//! What an operator sees: `migrate` in a real terminal (a tmux pane) draws the progress display
//! while it runs and leaves a clean summary; the same run with stderr going to a file writes
//! plain text without a single control character. Needs `tmux` (scripts/test-services
//! installs it); without it the test fails and says so.

use std::path::Path;
use std::time::Duration;

use crate::support;
use crate::support::app::{self, Hosted};
use crate::support::faulty::FaultyServer;
use crate::support::tmux::Pane;

const FILE_KEY: &str = "termKey";

/// A seeded app (40 files, one missing at the source) behind a source that takes 60 ms per
/// file, so that a run lasts a few seconds; returns the config path.
async fn app(tag: &str, dir: &Path) -> (std::path::PathBuf, FaultyServer) {
    let db_name = support::unique(tag);
    let db = support::mongo_client().await.database(&db_name);
    let h = Hosted::seed(&db, 40, 1, FILE_KEY).await;
    let server = FaultyServer::slow(h.files.clone(), Duration::from_millis(60));
    let config = dir.join(format!("{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            "{}{}{}\n[run]\nconcurrency = 2\n",
            app::base_tables(&db_name, FILE_KEY),
            app::hosted_table(&server.url(), 5),
            app::fs_destination(&dir.join(format!("{tag}-dest")))
        ),
    )
    .unwrap();
    (config, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_shows_progress_and_a_clean_summary_and_a_file_gets_plain_text() {
    let dir = tempfile::tempdir().unwrap();

    // 1. In a terminal: 160×40 tmux pane, TERM as a real terminal would set it.
    let (config, _server) = app("term_tty", dir.path()).await;
    let pane = Pane::migrate("pfm-tmux", dir.path(), &config, 160);
    let mut frames_with_bar = 0;
    let mut bar_example = String::new();
    let last = pane
        .watch(Duration::from_secs(60), |screen| {
            if screen.contains("objects · ETA")
                && screen.contains("files: ")
                && screen.contains("in flight")
            {
                frames_with_bar += 1;
                bar_example = screen.to_string();
            }
        })
        .await;
    drop(pane);
    eprintln!("a frame of the progress display:\n{bar_example}\nthe end:\n{last}");
    assert!(
        frames_with_bar >= 2,
        "the progress display was seen in {frames_with_bar} captures"
    );
    assert!(
        last.contains("EXIT=3"),
        "one file is missing: exit 3\n{last}"
    );
    assert!(last.contains("migration in"), "{last}");
    assert!(last.contains("40 copied"), "{last}");
    assert!(
        !last.contains("ETA"),
        "the bar is cleared before the summary:\n{last}"
    );

    // 2. The same run with stderr to a file (and stdout to another): plain text only.
    let (config, _server) = app("term_file", dir.path()).await;
    let err_path = dir.path().join("stderr.txt");
    let out_path = dir.path().join("stdout.txt");
    let status = app::command()
        .args(["-c", config.to_str().unwrap(), "migrate", "--yes"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    for path in [&err_path, &out_path] {
        let bytes = std::fs::read(path).unwrap();
        let bad: Vec<(usize, u8)> = bytes
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, b)| (*b < 0x20 && *b != b'\n') || *b == 0x7f)
            .collect();
        assert!(
            bad.is_empty(),
            "{}: control characters at {:?}\n{}",
            path.display(),
            &bad[..bad.len().min(10)],
            String::from_utf8_lossy(&bytes)
        );
    }
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        !err.contains("ETA"),
        "no progress display in a file:\n{err}"
    );
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        out.contains("\"action\":\"summary\""),
        "jsonl off a terminal:\n{out}"
    );
}
