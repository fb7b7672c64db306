//! The filesystem store's writes: a temp file in the directory, then moved into place — a
//! rename that replaces ([`PutMode::Overwrite`]) or a hard link that never does
//! ([`PutMode::Create`]: the link fails when the name exists, atomically) — and what a failed
//! write leaves: nothing, not even the temp file.

use std::io;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{BATCHED_SYNC, FsStore, SMALL_PUT, io_error};
use crate::storage::{ByteStream, PutMode, StorageError};

impl FsStore {
    /// Write `body` to a fresh temp file in the directory (created if it went missing), then
    /// close it ([`close_temp`]): with `rename_to`, move it into place (in its mode); without (the start-up
    /// probe), fsync it. On any error the temp file is removed.
    ///
    /// A body of at most [`SMALL_PUT`] bytes (`small`: its announced size) is gathered first and
    /// written in a single blocking step; a longer one streams through Tokio's file, one
    /// thread-pool hop per open, write, flush and close.
    pub(super) async fn write_temp(
        &self,
        name: &str,
        tmp: &Path,
        mut body: ByteStream,
        rename_to: Option<(PathBuf, PutMode)>,
        small: bool,
    ) -> Result<(), StorageError> {
        let (tmp_buf, dir) = (tmp.to_path_buf(), self.dir.clone());
        let mut head = Vec::new();
        if small {
            while let Some(chunk) = body.next().await {
                head.extend_from_slice(&chunk?);
                if head.len() > SMALL_PUT {
                    break; // longer than announced: stream it after all
                }
            }
            if head.len() <= SMALL_PUT {
                let closed = blocking(name, move || {
                    let mut file = create_temp(&dir, &tmp_buf)?;
                    let written = std::io::Write::write_all(&mut file, &head);
                    written.and_then(|()| {
                        close_temp(
                            file,
                            &tmp_buf,
                            rename_to.as_ref().map(|(p, m)| (p.as_path(), *m)),
                            &dir,
                        )
                    })
                })
                .await;
                return discard_failed(tmp, closed).await;
            }
        }
        let created = {
            let (dir, tmp) = (dir.clone(), tmp_buf.clone());
            blocking(name, move || create_temp(&dir, &tmp)).await?
        };
        let mut file = tokio::fs::File::from_std(created);
        let written = async {
            if !head.is_empty() {
                file.write_all(&head).await.map_err(|e| io_error(name, e))?;
            }
            while let Some(chunk) = body.next().await {
                file.write_all(&chunk?)
                    .await
                    .map_err(|e| io_error(name, e))?;
            }
            file.flush().await.map_err(|e| io_error(name, e))
        }
        .await;
        let file = file.into_std().await;
        let closed = match written {
            Ok(()) => {
                blocking(name, move || {
                    close_temp(
                        file,
                        &tmp_buf,
                        rename_to.as_ref().map(|(p, m)| (p.as_path(), *m)),
                        &dir,
                    )
                })
                .await
            }
            Err(e) => {
                drop(file);
                Err(e)
            }
        };
        discard_failed(tmp, closed).await
    }
}

/// Run blocking file work on Tokio's blocking pool; its error is about `name`.
pub(super) async fn blocking<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
        .map_err(|e| io_error(name, e))
}

/// Nothing of a failed write may stay visible, not even under the temp name.
async fn discard_failed(tmp: &Path, result: Result<(), StorageError>) -> Result<(), StorageError> {
    if result.is_err() {
        let _ = tokio::fs::remove_file(tmp).await;
    }
    result
}

/// Create `tmp` (never an existing file), and the directory if it went missing.
fn create_temp(dir: &Path, tmp: &Path) -> io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    match opts.open(tmp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            opts.open(tmp)
        }
        other => other,
    }
}

/// The blocking end of a write: with `rename_to`, move the temp file into place — after an
/// fsync of the file and followed by one of the directory unless [`BATCHED_SYNC`] leaves that to
/// `sync`; without, fsync it. [`PutMode::Create`] links instead of renaming: `link(2)` fails
/// with `EEXIST` rather than replace, and the temp name is removed after (a crash in between
/// leaves a temp file the next start-up removes, never a half object).
fn close_temp(
    file: std::fs::File,
    tmp: &Path,
    rename_to: Option<(&Path, PutMode)>,
    dir: &Path,
) -> io::Result<()> {
    let Some((path, mode)) = rename_to else {
        return file.sync_all();
    };
    if !BATCHED_SYNC {
        file.sync_all()?;
    }
    match mode {
        PutMode::Overwrite => std::fs::rename(tmp, path)?,
        PutMode::Create => {
            std::fs::hard_link(tmp, path)?;
            std::fs::remove_file(tmp)?;
        }
    }
    if !BATCHED_SYNC {
        // Make the rename durable too (best effort: not every platform can open a directory,
        // and the data itself is synced).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
