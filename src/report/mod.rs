//! Everything the operator sees: listings, schema summaries, log setup, error printing.
//!
//! This is the only module that writes to stdout or stderr. stdout carries data (listings,
//! JSON); stderr carries logs, progress and errors. Colour only on a terminal, never with
//! `NO_COLOR`.

pub mod audit;
pub mod estimate;
pub mod list;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod output;
pub mod progress;
pub mod quarantine;
pub mod rekey;
pub mod schema;
pub mod status;
pub mod stdout;
pub mod verify;

use std::io::{IsTerminal, Write};

use crate::exit::hint_of;

/// `n` and a noun in the number `n` takes: `1 reference`, `2 references`, `0 copies`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Print an error as `error: …`, its causes, and a hint, on stderr.
/// `--show-settings`: the resolved settings as TOML (secrets already redacted) on stdout.
pub fn print_settings(toml: &str) -> std::io::Result<()> {
    std::io::Write::write_all(&mut stdout::stdout(), toml.as_bytes())
}

pub fn print_error(err: &anyhow::Error) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "error: {}", printable(&err.to_string()));
    for cause in err.chain().skip(1) {
        // A MongoDB refusal as its message, name and code, not the driver's dump of its reply.
        let text = match cause.downcast_ref::<mongodb::error::Error>() {
            Some(e) => crate::storage::mongo_text(e),
            None => cause.to_string(),
        };
        let _ = writeln!(out, "  caused by: {}", printable(&text));
    }
    if let Some(hint) = hint_of(err) {
        let _ = writeln!(out, "hint: {hint}");
    }
}

/// `s` with control characters escaped (`\u{1b}`, `\n`): file names come from the database and
/// may hold terminal escape sequences, which must never reach an operator's terminal as such.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect::<String>()
        .into()
}

/// Whether stdout is a terminal (chooses text vs JSON lines by default: [`output::resolve`]).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether a person can answer a prompt: stdin and stderr are both terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Show `what` on stderr and ask once; only `y` or `yes` proceeds.
pub fn confirm(what: &str) -> std::io::Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "{what}\nProceed? [y/N] ")?;
    err.flush()?;
    drop(err);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(super::printable("ünï 🎉.jpg"), "ünï 🎉.jpg");
        assert_eq!(
            super::printable("a\u{1b}]0;x\u{7}\nb\u{9b}"),
            "a\\u{1b}]0;x\\u{7}\\nb\\u{9b}"
        );
    }
}
