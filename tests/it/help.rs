//! Every `--help` the binary prints, the main one and each command's, snapshotted with insta
//! (`tests/it/snapshots/it__help__*.snap`), so that a stray character, a lost heading or an option
//! listed where it does not apply fails a test. (No server needed.)
//!
//! The width is fixed (`COLUMNS`: clap wraps to the terminal) and no `PFM_*` setting is inherited
//! (clap shows the values of `[env: …]` variables). After an intended change, rewrite the
//! snapshots and read the diff:
//!
//!     INSTA_UPDATE=always cargo test --locked --test it help::

use clap::CommandFactory;
use parse_files_migrate::cli::Cli;

use crate::support::app;

/// `parse-files-migrate ARGS --help` at 100 columns, as a reader's terminal shows it.
fn help(args: &[&str]) -> String {
    let out = app::command()
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?} --help");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_main_help() {
    insta::assert_snapshot!("main", help(&[]));
}

#[test]
fn every_commands_help() {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    for name in names {
        insta::assert_snapshot!(name.clone(), help(&[&name]));
    }
}

#[test]
fn global_options_have_their_own_heading() {
    for args in [&[][..], &["list"], &["migrate"], &["status"]] {
        let text = help(args);
        let (own, global) = text
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{args:?}: no Global options heading:\n{text}"));
        for flag in ["--mongo-uri", "--file-key", "--show-settings"] {
            assert!(
                !own.contains(flag),
                "{args:?}: {flag} among the command's own"
            );
            assert!(
                global.contains(flag),
                "{args:?}: {flag} not under Global options"
            );
        }
    }
}

#[test]
fn output_lists_only_the_formats_a_command_accepts() {
    let possible = |args: &[&str]| {
        let text = help(args);
        let at = text.find("--output <FORMAT>").expect("--output");
        let rest = &text[at..];
        let end = rest.find("\n\n      --").unwrap_or(rest.len());
        rest[..end].to_string()
    };
    for command in ["list", "audit"] {
        assert!(possible(&[command]).contains("- csv:"), "{command}");
    }
    for command in [
        "schema", "migrate", "verify", "status", "rollback", "rebase", "rekey",
    ] {
        let text = possible(&[command]);
        assert!(text.contains("- jsonl:"), "{command}: {text}");
        assert!(!text.contains("csv"), "{command} offers csv:\n{text}");
    }
}
