//! The filesystem store's quarantine: `<dir>/.pfm-quarantine+/<encodeURIComponent(name)>`.
//!
//! Parse Server's FS adapter serves `<dir>/<encodeURIComponent(name)>`: one path component, since
//! `/` is encoded, so no name reaches a file inside a sub-directory; and `+` is always encoded, so
//! no name maps to the directory itself either. The listing skips directories, so quarantined
//! files never appear in it.
//!
//! Moves never replace: a hard link to the new place (which fails when it exists), then the old
//! name is unlinked; the directories are made durable by the store's `sync` (one `syncfs` for a
//! batch of moves, which the caller runs before it records them done). A crash between the link and the unlink
//! leaves both names on one inode; repeating the move sees the same inode and finishes it.

use std::io;
use std::path::{Path, PathBuf};

use super::write::blocking;
use super::{FsStore, io_error};
use crate::storage::{Quarantine, StorageError};

/// The quarantine directory inside the store's directory.
pub(super) const QUARANTINE_DIR: &str = ".pfm-quarantine+";

/// What a move found.
enum Moved {
    /// Moved now, or a repeat finished an earlier move.
    Done,
    /// Neither place holds it.
    Missing,
    /// The destination holds another file: nothing changed.
    Taken,
}

impl FsStore {
    /// The quarantine path of `name` (the same encoding as its served path).
    pub(super) fn quarantine_path(&self, name: &str) -> Result<PathBuf, StorageError> {
        let served = self.path_of(name)?;
        let file = served.file_name().unwrap_or_default().to_owned();
        Ok(self.dir.join(QUARANTINE_DIR).join(file))
    }

    /// Move `name` between its served path and its quarantine path (`to_quarantine`).
    pub(super) async fn move_quarantine(
        &self,
        name: &str,
        to_quarantine: bool,
    ) -> Result<(), StorageError> {
        let served = self.path_of(name)?;
        let quarantined = self.quarantine_path(name)?;
        let (from, to) = if to_quarantine {
            (served, quarantined)
        } else {
            (quarantined, served)
        };
        let sync_dirs = !super::BATCHED_SYNC;
        let moved = blocking(name, move || {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            move_no_replace(&from, &to, sync_dirs)
        })
        .await?;
        if super::BATCHED_SYNC {
            // Made durable by the next `sync` (one `syncfs` for a batch of moves).
            self.unsynced
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if !to_quarantine {
            self.drop_empty_quarantine().await;
        }
        let location = self.quarantine_path(name)?.display().to_string();
        match moved {
            Moved::Done => Ok(()),
            Moved::Missing => Err(StorageError::NotFound {
                name: name.to_string(),
                location,
            }),
            Moved::Taken => Err(StorageError::AlreadyExists {
                name: name.to_string(),
                location: if to_quarantine {
                    location
                } else {
                    self.path_of(name)?.display().to_string()
                },
            }),
        }
    }

    /// Delete the quarantined file of `name` (missing: fine).
    pub(super) async fn purge_quarantine(&self, name: &str) -> Result<(), StorageError> {
        let path = self.quarantine_path(name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(name, e)),
        }
        self.drop_empty_quarantine().await;
        Ok(())
    }

    /// Remove the quarantine directory once it is empty (it fails harmlessly while it is not).
    async fn drop_empty_quarantine(&self) {
        let _ = tokio::fs::remove_dir(self.dir.join(QUARANTINE_DIR)).await;
    }
}

/// Move `from` to `to` without ever replacing `to` (see the module documentation); with
/// `sync_dirs`, sync both directories (else the store's `sync` does, for a whole batch).
fn move_no_replace(from: &Path, to: &Path, sync_dirs: bool) -> io::Result<Moved> {
    match std::fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Already moved by an earlier attempt, or gone from both places.
            return Ok(if std::fs::symlink_metadata(to).is_ok() {
                Moved::Done
            } else {
                Moved::Missing
            });
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::MetadataExt;
            let a = match std::fs::symlink_metadata(from) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Moved::Done),
                Err(e) => return Err(e),
            };
            let b = std::fs::symlink_metadata(to)?;
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                return Ok(Moved::Taken);
            }
        }
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(from) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if sync_dirs {
        for dir in [from.parent(), to.parent()].into_iter().flatten() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(Moved::Done)
}

#[async_trait::async_trait]
impl Quarantine for FsStore {
    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.quarantine_path(name)?.display().to_string())
    }

    async fn quarantine(&self, name: &str) -> Result<(), StorageError> {
        self.move_quarantine(name, true).await
    }

    async fn unquarantine(&self, name: &str) -> Result<(), StorageError> {
        self.move_quarantine(name, false).await
    }

    async fn purge(&self, name: &str) -> Result<(), StorageError> {
        self.purge_quarantine(name).await
    }
}
