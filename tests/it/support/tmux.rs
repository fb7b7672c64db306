//! A real terminal for tests: `parse-files-migrate migrate --yes` run in a detached tmux pane
//! (scripts/test-services installs tmux; without it the test fails and says so), read back
//! screen by screen until the run has printed its exit code.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::app;

/// A tmux server of the test's own, with one pane running `migrate`; killed when dropped.
pub struct Pane {
    socket: String,
}

impl Pane {
    /// Run `migrate --yes -c config` in a `width`×40 pane with `TERM=xterm-256color` (as a real
    /// terminal would set it, `NO_COLOR` unset); the pane prints `EXIT=<code>` after the run.
    /// The script goes into `dir`.
    pub fn migrate(tag: &str, dir: &Path, config: &Path, width: u16) -> Pane {
        let script = dir.join(format!("{tag}-run.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nunset NO_COLOR\n'{}' -c '{}' migrate --yes\necho \"EXIT=$?\"\nsleep 60\n",
                app::bin_path().display(),
                config.display()
            ),
        )
        .unwrap();
        let pane = Pane {
            socket: super::unique(tag),
        };
        let width = width.to_string();
        let out = pane.tmux(&[
            "new-session",
            "-d",
            "-x",
            &width,
            "-y",
            "40",
            "-e",
            "TERM=xterm-256color",
            "sh",
            script.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pane
    }

    /// The screen as it is now.
    pub fn capture(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Read the screen every 100 ms, handing each to `each`, until the run has printed its
    /// exit code (within `limit`, or the test fails); returns that last screen.
    pub async fn watch(&self, limit: Duration, mut each: impl FnMut(&str)) -> String {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < limit,
                "the run did not end in {limit:?}"
            );
            let screen = self.capture();
            each(&screen);
            if screen.contains("EXIT=") {
                return screen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `tmux -L <socket> ARGS…`.
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "tmux is needed for this test ({e}); scripts/test-services install installs it"
                )
            })
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
