//! FS versions for `rekey` ([`crate::storage::rekey`]): the version readers see is the file at
//! the name's path, identified by `inode:size:mtime`; a staged version is a hidden temp file
//! (`.pfm-tmp+rekey+<id>`, never listed), made visible by a rename over the path — only while
//! the path still holds the version that was read, so a file Parse Server wrote meanwhile is left.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::list::parse_name;
use super::{FsStore, TEMP_PREFIX, io_error};
use crate::storage::crypto::FileKey;
use crate::storage::rekey::{Outcome, Version, Versioned};
use crate::storage::{ByteStream, ObjectStore, StorageError};

fn ident(meta: &std::fs::Metadata) -> String {
    format!(
        "{}:{}:{}.{}",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// A staged id is hex; a visible version's id holds `:`.
fn is_staged(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FsStore {
    fn staged_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{TEMP_PREFIX}rekey+{id}"))
    }

    async fn meta_of(&self, path: &PathBuf) -> Result<Option<std::fs::Metadata>, StorageError> {
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => Ok(Some(m)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path.display().to_string(), e)),
        }
    }
}

#[async_trait]
impl Versioned for FsStore {
    fn describe(&self) -> String {
        ObjectStore::describe(self)
    }

    fn identity(&self) -> String {
        ObjectStore::identity(self)
    }

    fn key(&self) -> Option<&FileKey> {
        self.key.as_ref()
    }

    async fn names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        let (dir, after) = (self.dir.clone(), after.map(str::to_string));
        let limit = limit.max(1);
        let what = dir.display().to_string();
        // One pass over the directory keeping the `limit` smallest names after `after`: memory
        // is one page, whatever the number of files.
        let found = tokio::task::spawn_blocking(move || -> io::Result<Vec<String>> {
            let mut keep = std::collections::BTreeSet::new();
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Some(stored) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if stored.starts_with(TEMP_PREFIX) || !entry.file_type()?.is_file() {
                    continue;
                }
                let name = parse_name(&stored);
                if after.as_ref().is_some_and(|a| name.as_str() <= a.as_str()) {
                    continue;
                }
                keep.insert(name);
                if keep.len() > limit {
                    keep.pop_last();
                }
            }
            Ok(keep.into_iter().collect())
        })
        .await
        .map_err(|e| io_error(&what, io::Error::other(e)))?;
        found.map_err(|e| io_error(&what, e))
    }

    async fn estimate(&self) -> u64 {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::read_dir(dir).map(|d| d.count() as u64))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0)
    }

    async fn current(&self, name: &str) -> Result<Option<Version>, StorageError> {
        let path = self.path_of(name)?;
        Ok(self.meta_of(&path).await?.map(|m| Version {
            name: name.to_string(),
            id: ident(&m),
            size: m.len(),
            chunk_size: 0,
            uploaded_ms: None,
        }))
    }

    async fn find(&self, name: &str, id: &str) -> Result<Option<Version>, StorageError> {
        if is_staged(id) {
            let path = self.staged_path(id);
            return Ok(self.meta_of(&path).await?.map(|m| Version {
                name: name.to_string(),
                id: id.to_string(),
                size: m.len(),
                chunk_size: 0,
                uploaded_ms: None,
            }));
        }
        Ok(self.current(name).await?.filter(|v| v.id == id))
    }

    async fn open(&self, v: &Version, offset: u64) -> Result<ByteStream, StorageError> {
        let path = if is_staged(&v.id) {
            self.staged_path(&v.id)
        } else {
            self.path_of(&v.name)?
        };
        let file = std::fs::File::open(&path).map_err(|e| io_error(&v.name, e))?;
        let meta = file.metadata().map_err(|e| io_error(&v.name, e))?;
        if !is_staged(&v.id) && ident(&meta) != v.id {
            return Err(StorageError::Integrity {
                name: v.name.clone(),
                reason: "the file changed since it was read".into(),
            });
        }
        FsStore::open_at(&v.name, &file, offset).await
    }

    fn new_id(&self) -> String {
        hex::encode(rand::random::<[u8; 12]>())
    }

    async fn stage(
        &self,
        old: &Version,
        id: &str,
        mut stored: ByteStream,
    ) -> Result<Outcome, StorageError> {
        let path = self.staged_path(id);
        let name = &old.name;
        let written: Result<u64, StorageError> = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
                .map_err(|e| io_error(name, e))?;
            let mut n = 0u64;
            while let Some(chunk) = stored.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                f.write_all(&chunk).await.map_err(|e| io_error(name, e))?;
            }
            f.sync_all().await.map_err(|e| io_error(name, e))?;
            Ok(n)
        }
        .await;
        match written {
            Ok(size) => Ok(Outcome::Done(Version {
                name: name.clone(),
                id: id.to_string(),
                size,
                chunk_size: 0,
                uploaded_ms: None,
            })),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        }
    }

    async fn commit(&self, old: &Version, new: &Version) -> Result<Outcome, StorageError> {
        let path = self.path_of(&old.name)?;
        let staged = self.staged_path(&new.id);
        // Compare-and-swap on the version that was read: a file written meanwhile wins.
        let still = self.meta_of(&path).await?.map(|m| ident(&m));
        if still.as_deref() != Some(old.id.as_str()) {
            let _ = tokio::fs::remove_file(&staged).await;
            return Ok(Outcome::Superseded);
        }
        tokio::fs::rename(&staged, &path)
            .await
            .map_err(|e| io_error(&old.name, e))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let m = self.meta_of(&path).await?;
        Ok(Outcome::Done(Version {
            name: old.name.clone(),
            id: m.as_ref().map(ident).unwrap_or_default(),
            size: new.size,
            chunk_size: 0,
            uploaded_ms: None,
        }))
    }

    async fn discard(&self, _name: &str, id: &str) -> Result<(), StorageError> {
        if !is_staged(id) {
            return Ok(());
        }
        match tokio::fs::remove_file(self.staged_path(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(id, e)),
            _ => Ok(()),
        }
    }
}
