//! stdout, the data channel, and what it means when its reader goes away.
//!
//! Rust ignores `SIGPIPE`, so writing to a pipe whose reader has closed it (`list | head -1`)
//! fails with `EPIPE` instead of killing the process. That is not a failure of the command: the
//! reader simply wanted no more. Writes through [`stdout`] mark that error ([`ClosedPipe`]), and
//! `main` exits quietly with [`crate::exit::CLOSED_PIPE`] when it sees the mark. The mark is
//! needed because a broken pipe elsewhere (a MongoDB or storage connection reset while writing)
//! is a real error and must keep its message and exit code.

use std::io::{self, Write};

/// stdout was closed by its reader.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct ClosedPipe;

/// stdout; a write to a closed pipe fails with [`ClosedPipe`] inside the `io::Error`. Not locked
/// for the life of the value (each write locks, as `println!` does): a plan writer lives while
/// other tasks print, possibly on other threads.
pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

/// See [`stdout`].
pub struct Stdout(io::Stdout);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

pub(super) fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, ClosedPipe)
    } else {
        e
    }
}

/// Whether `err` is (or was caused by) a write to stdout after its reader closed it.
pub fn closed(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<ClosedPipe>())
    })
}

/// One line on stdout (what `println!` does, but a closed pipe is an error to return, not a
/// panic).
pub fn line(text: impl std::fmt::Display) -> io::Result<()> {
    writeln!(stdout(), "{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_is_quiet() {
        let closed_stdout: anyhow::Error = mark(io::Error::from(io::ErrorKind::BrokenPipe)).into();
        assert!(closed(&closed_stdout));
        let with_context = closed_stdout.context("writing a row");
        assert!(closed(&with_context));
        // A connection's broken pipe is a real error.
        let socket: anyhow::Error = io::Error::from(io::ErrorKind::BrokenPipe).into();
        assert!(!closed(&socket));
        assert!(!closed(&anyhow::anyhow!("boom")));
    }
}
