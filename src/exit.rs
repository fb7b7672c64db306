//! Exit codes (the product contract; documented in the README) and the error type that carries
//! one through `anyhow` chains.
//!
//! Code paths that know *why* they fail wrap the error in [`Coded`] (via [`usage`],
//! [`unreachable()`], or [`Coded::new`]); everything else is an internal error (1). `main` prints the
//! chain and the hint, and exits with [`code_of`].

use std::fmt;

/// Done; nothing failed.
pub const OK: i32 = 0;
/// Internal error (a bug, or an unexpected failure).
pub const INTERNAL: i32 = 1;
/// Usage or configuration error.
pub const USAGE: i32 = 2;
/// Finished, but some references could not be migrated; also `list --fail-on` matched.
pub const INCOMPLETE: i32 = 3;
/// Cannot reach MongoDB, the source or the destination at start-up; or MongoDB was lost mid-run
/// (the run stopped; a re-run continues).
pub const UNREACHABLE: i32 = 4;
/// `verify` found a mismatch.
pub const VERIFY_MISMATCH: i32 = 5;
/// `audit` found orphans or dangling references.
pub const AUDIT_FINDINGS: i32 = 6;
/// Stopped because the destination is full (a re-run continues once there is room).
pub const NO_SPACE: i32 = 7;
/// Stopped at `--max-files` / `--max-bytes` / `--max-duration`; a re-run continues.
pub const CUTOFF: i32 = 8;
/// A `before` or `before_phase` hook failed or timed out: the run stopped before its next write
/// (the lease given back). Also a run that succeeded but whose `after`, `after_phase` or
/// `on_error` hook failed (a failed run keeps its own code). See `hooks`.
pub const HOOK_FAILED: i32 = 9;
/// Interrupted (Ctrl-C / SIGTERM); a re-run continues.
pub const INTERRUPTED: i32 = 130;
/// stdout was closed by its reader (`list | head -1`): nothing is printed. 128 + SIGPIPE, the
/// status a shell shows for a writer the signal killed, so `set -o pipefail` treats this tool as
/// it treats `cat`; and a `list --fail-on` gate cut short never passes as a clean 0.
pub const CLOSED_PIPE: i32 = 141;

/// An error with a known exit code and an optional hint for the operator.
#[derive(Debug)]
pub struct Coded {
    pub code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl Coded {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Coded {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A usage or configuration error (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Coded::new(USAGE, message).into()
}

/// A start-up reachability error (exit 4) with a hint.
pub fn unreachable(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Coded::new(UNREACHABLE, message).hint(hint).into()
}

/// The exit code for an error: the outermost [`Coded`] in its chain, else [`INTERNAL`].
/// A MongoDB error that lost the connection (a reset, a timeout, no server to select) is
/// [`UNREACHABLE`] wherever it happens.
pub fn code_of(err: &anyhow::Error) -> i32 {
    match err.chain().find_map(|e| e.downcast_ref::<Coded>()) {
        Some(c) => c.code,
        None if lost_database(err) => UNREACHABLE,
        None => INTERNAL,
    }
}

/// What to do after losing MongoDB mid-run.
pub const LOST_DATABASE_HINT: &str = "the connection to MongoDB was lost (network, restart, \
     failover): everything done so far is recorded; run the same command again once MongoDB is \
     back, and it continues where this run stopped";

/// The hint attached to an error, if any.
pub fn hint_of(err: &anyhow::Error) -> Option<&str> {
    match err.chain().find_map(|e| e.downcast_ref::<Coded>()) {
        Some(c) => c.hint.as_deref(),
        None if lost_database(err) => Some(LOST_DATABASE_HINT),
        None => None,
    }
}

/// Whether the chain holds a MongoDB error of a lost connection: I/O (reset, end of file), a
/// pool cleared after a failed heartbeat, or no server selectable within the timeout.
pub fn lost_database(err: &anyhow::Error) -> bool {
    use mongodb::error::ErrorKind;
    err.chain().any(|e| {
        e.downcast_ref::<mongodb::error::Error>().is_some_and(|m| {
            matches!(
                *m.kind,
                ErrorKind::Io(_)
                    | ErrorKind::ConnectionPoolCleared { .. }
                    | ErrorKind::ServerSelection { .. }
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_survive_context() {
        let e: anyhow::Result<()> = Err(usage("bad flag"));
        let e = e.context("while resolving settings").unwrap_err();
        assert_eq!(code_of(&e), USAGE);
        assert_eq!(code_of(&anyhow::anyhow!("boom")), INTERNAL);
        let e = unreachable("no mongo", "is it running?");
        assert_eq!(code_of(&e), UNREACHABLE);
        assert_eq!(hint_of(&e), Some("is it running?"));
    }

    #[test]
    fn a_lost_database_connection_is_exit_4_with_what_to_do() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let lost: anyhow::Result<()> = Err(mongodb::error::Error::from(io).into());
        let e = lost.context("update on Photo").unwrap_err();
        assert_eq!(code_of(&e), UNREACHABLE);
        assert_eq!(hint_of(&e), Some(LOST_DATABASE_HINT));
        // A server's answer (not a lost connection) stays an internal error.
        let other = anyhow::Error::from(mongodb::error::Error::custom("a server answer"));
        assert_eq!(code_of(&other), INTERNAL);
        assert_eq!(hint_of(&other), None);
    }
}
