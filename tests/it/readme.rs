//! Docs that cannot rot: every TOML block in the README, the user guide (`docs/guide.md`) and the
//! benchmarks' README (`bench/README.md`) is a configuration the tool accepts, every
//! `parse-files-migrate …` line in their shell blocks parses with the real command line, and
//! every script they name exists. (What the recipes *do* is tested against real servers
//! elsewhere: the `migrate`, `resume` and `parse_server` modules, and `scripts/demo` in CI.)

use std::path::Path;

use clap::Parser;
use parse_files_migrate::cli::Cli;

use crate::support::app;

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));

/// Every document checked here: the README and the documents beside it.
const DOCS: &[&str] = &[
    README,
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/guide.md")),
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/README.md")),
];

/// The fenced blocks of `lang` in `doc`: their text.
fn blocks_of(doc: &str, lang: &str) -> Vec<String> {
    let mut out = vec![];
    // Inside a fence: `Some(Some(text))` for a block of `lang`, `Some(None)` for another one.
    let mut open: Option<Option<String>> = None;
    for line in doc.lines() {
        match (line.trim_start().strip_prefix("```"), &mut open) {
            (Some(_), Some(block)) => {
                out.extend(block.take());
                open = None;
            }
            (Some(tag), None) => open = Some((tag.trim() == lang).then(String::new)),
            (None, Some(Some(block))) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The fenced blocks of `lang` in every document.
fn blocks(lang: &str) -> Vec<String> {
    DOCS.iter().flat_map(|d| blocks_of(d, lang)).collect()
}

/// Shell command lines of the `sh` blocks: continuations joined, comments and redirections cut.
fn command_lines() -> Vec<String> {
    let mut lines = vec![];
    for block in blocks("sh") {
        let mut pending = String::new();
        for line in block.lines() {
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            let mut cmd = full.as_str();
            for cut in [" # ", " > ", " | ", " 2>", " && "] {
                if let Some(i) = cmd.find(cut) {
                    cmd = &cmd[..i];
                }
            }
            let cmd = cmd.trim();
            if !cmd.is_empty() && !cmd.starts_with('#') {
                lines.push(cmd.to_string());
            }
        }
    }
    lines
}

#[test]
fn the_readme_blocks_are_found() {
    // The parser above must see the blocks (a broken fence would silently check nothing).
    assert!(blocks("toml").len() >= 2, "{:#?}", blocks("toml"));
    let cmds = command_lines();
    assert!(
        cmds.iter()
            .filter(|c| c.starts_with("parse-files-migrate"))
            .count()
            >= 15,
        "{cmds:#?}"
    );
    assert!(cmds.iter().any(|c| c == "scripts/demo"));
    assert!(cmds.iter().any(|c| c == "scripts/test"));
    // The README itself keeps recipes (configurations and commands), not only pointers.
    assert!(blocks_of(README, "toml").len() >= 2);
    assert!(blocks_of(README, "sh").len() >= 4);
}

#[test]
fn the_readme_names_no_issue_numbers() {
    for (i, doc) in DOCS.iter().enumerate() {
        for line in doc.lines() {
            assert!(
                !line.contains("issue #"),
                "document {i} names an issue (a user cannot look it up): {line}"
            );
        }
    }
}

#[test]
fn every_command_line_in_the_readme_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for cmd in command_lines() {
        let words = shlex::split(&cmd).unwrap_or_else(|| panic!("unbalanced quotes: {cmd}"));
        match words[0].as_str() {
            "parse-files-migrate" => {
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("README command does not parse: {cmd}\n{e}");
                }
            }
            s if s.starts_with("scripts/") || s.starts_with("bench/") => {
                let path = root.join(s);
                let meta =
                    std::fs::metadata(&path).unwrap_or_else(|e| panic!("README names {s}: {e}"));
                use std::os::unix::fs::PermissionsExt;
                assert!(
                    meta.permissions().mode() & 0o111 != 0,
                    "{s} is not executable"
                );
            }
            "cargo" | "eval" | "curl" | "docker" => {}
            other => panic!("README runs {other:?}: teach this test how to check it ({cmd})"),
        }
    }
}

#[test]
fn every_toml_block_in_the_readme_is_a_valid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks("toml").into_iter().enumerate() {
        let cfg = dir.path().join(format!("readme-{i}.toml"));
        std::fs::write(&cfg, &block).unwrap();
        let out = app::bin()
            .args(["-c", cfg.to_str().unwrap(), "--show-settings", "list"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "README TOML block {i} is refused:\n{block}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            !shown.contains("secret") && !shown.contains("your-file-key"),
            "secrets of block {i} shown:\n{shown}"
        );
    }
}
