//! Everything the operator sees: listings, schema summaries, log setup, error printing.
//!
//! This is the only module that writes to stdout or stderr. stdout carries data (listings,
//! JSON); stderr carries logs, progress and errors. Colour only on a terminal, never with
//! `NO_COLOR`.

pub mod list;
pub mod logging;
pub mod schema;

use std::io::{IsTerminal, Write};

use crate::exit::hint_of;

/// Print an error as `error: …`, its causes, and a hint, on stderr.
pub fn print_error(err: &anyhow::Error) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(out, "  caused by: {cause}");
    }
    if let Some(hint) = hint_of(err) {
        let _ = writeln!(out, "hint: {hint}");
    }
}

/// Whether stdout is a terminal (chooses table vs machine formats by default).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
