//! The filesystem store's writes: a temp file in the directory, then moved into place — a
//! rename that replaces ([`PutMode::Overwrite`]) or a hard link that never does
//! ([`PutMode::Create`]: the link fails when the name exists, atomically) — and what a failed
//! write leaves: nothing, not even the temp file.
//!
//! On Linux a [`PutMode::Create`] write's temp file has no name at all (`O_TMPFILE`): it is
//! linked into place through `/proc/self/fd`, so a file costs the directory one entry change (the
//! link) instead of three (create the temp name, link, remove the temp name). All writers of a
//! run share one flat directory, and its lock was where the time went: on 20,000 × 20 KiB, the
//! three changes were 64 % of the tool's CPU, most of it spinning on that lock (README
//! "Benchmarks"). A kill mid-write leaves nothing either: the kernel frees an unnamed file when
//! its descriptor closes. Filesystems without `O_TMPFILE`, or a system without `/proc`, keep the
//! named temp file.

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
    /// A body of at most [`SMALL_PUT`] bytes (`small`: its announced size) is gathered first, into
    /// one buffer of that size, and written in a single blocking step; a longer one streams
    /// through Tokio's file, one thread-pool hop per open, write, flush and close.
    pub(super) async fn write_temp(
        &self,
        name: &str,
        tmp: &Path,
        mut body: ByteStream,
        rename_to: Option<(PathBuf, PutMode)>,
        small: Option<usize>,
    ) -> Result<(), StorageError> {
        let (tmp_buf, dir) = (tmp.to_path_buf(), self.dir.clone());
        let anonymous = matches!(rename_to, Some((_, PutMode::Create))) && anonymous_temps();
        let mut head = Vec::with_capacity(small.unwrap_or(0));
        if small.is_some() {
            while let Some(chunk) = body.next().await {
                head.extend_from_slice(&chunk?);
                if head.len() > SMALL_PUT {
                    break; // longer than announced: stream it after all
                }
            }
            if head.len() <= SMALL_PUT {
                let closed = blocking(name, move || {
                    let mut file = create_temp(&dir, &tmp_buf, anonymous)?;
                    let written = std::io::Write::write_all(&mut file.file, &head);
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
            blocking(name, move || create_temp(&dir, &tmp, anonymous)).await?
        };
        let unnamed = created.unnamed;
        let mut file = tokio::fs::File::from_std(created.file);
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
        let file = Temp {
            file: file.into_std().await,
            unnamed,
        };
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

/// The temp file of a write, and the directory if it went missing: with `anonymous`, an unnamed
/// file in `dir` (`O_TMPFILE`) when the filesystem has them, else `tmp` (never an existing file).
fn create_temp(dir: &Path, tmp: &Path, anonymous: bool) -> io::Result<Temp> {
    let open = || -> io::Result<Temp> {
        if anonymous && let Some(file) = open_unnamed(dir)? {
            return Ok(Temp {
                file,
                unnamed: true,
            });
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)?;
        Ok(Temp {
            file,
            unnamed: false,
        })
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            open()
        }
        other => other,
    }
}

/// A write's temp file: named `tmp`, or (`unnamed`) with no name until it is linked into place.
struct Temp {
    file: std::fs::File,
    unnamed: bool,
}

/// Whether this system can link an unnamed file into place: Linux with `/proc` mounted (the
/// link goes through `/proc/self/fd/N`; `AT_EMPTY_PATH` would need `CAP_DAC_READ_SEARCH`).
fn anonymous_temps() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| cfg!(target_os = "linux") && Path::new("/proc/self/fd").is_dir())
}

/// An unnamed file in `dir`, or `None` where the filesystem has no `O_TMPFILE` (it answers
/// `EOPNOTSUPP`, or `EISDIR`/`EINVAL` on kernels that predate the flag).
#[cfg(target_os = "linux")]
fn open_unnamed(dir: &Path) -> io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(file) => Ok(Some(file)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_unnamed(_dir: &Path) -> io::Result<Option<std::fs::File>> {
    Ok(None)
}

/// Give the unnamed `file` the name `path`; fails with `EEXIST` when the name exists.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &std::fs::File, path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: both are NUL-terminated strings alive for the call, and `file` stays open.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &std::fs::File, _path: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported)) // not reached: never unnamed here
}

/// The blocking end of a write: with `rename_to`, move the temp file into place — after an
/// fsync of the file and followed by one of the directory unless [`BATCHED_SYNC`] leaves that to
/// `sync`; without, fsync it. [`PutMode::Create`] links instead of renaming: `link(2)` fails
/// with `EEXIST` rather than replace, and the temp name is removed after (a crash in between
/// leaves a temp file the next start-up removes, never a half object).
fn close_temp(
    temp: Temp,
    tmp: &Path,
    rename_to: Option<(&Path, PutMode)>,
    dir: &Path,
) -> io::Result<()> {
    let Temp { file, unnamed } = temp;
    let Some((path, mode)) = rename_to else {
        return file.sync_all();
    };
    if !BATCHED_SYNC {
        file.sync_all()?;
    }
    match mode {
        PutMode::Create if unnamed => link_unnamed(&file, path)?,
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
