//! The fs store's server-side copies ([`ServerCopy`]): a hard link, within one store (the same
//! directory, holding files the same way: `relayout`). A file and its link share their bytes;
//! nothing in the tool or in Parse Server's FS adapter writes into a file in place (writes,
//! rekeys and moves make a new file and rename it, deletes unlink a name), so the two names stay
//! independent. Between two directories the bytes are copied (as `cp` and rclone do by default:
//! another program writing a file in place there must not change the copy). Create-only by the
//! link itself (`EEXIST`); an overwriting copy links a temp name and renames it over the target.
//! Not taken (the caller streams) where links are refused (`EPERM`, `EMLINK`, `EOPNOTSUPP`).

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{BATCHED_SYNC, FsStore, TEMP_PREFIX, blocking, owner_tag};
use crate::storage::copy::{CopySource, ServerCopy};
use crate::storage::{ObjectMeta, PutMode, StorageError};

/// How a link ended.
enum Linked {
    Done,
    Taken,
    Missing,
    /// Another filesystem, or links refused: stream instead.
    Unlinkable,
}

impl FsStore {
    /// `fs:`, the directory, and how files are held (no key, or which key: a fingerprint, never
    /// the key): equal only for the same store. Worked out once per store.
    fn service(&self) -> String {
        self.link_service
            .get_or_init(|| {
                let held = match &self.key {
                    None => "plain".to_string(),
                    Some(k) => format!("key-{}", k.fingerprint()),
                };
                format!("fs:{}:{held}", super::real_path(&self.dir).display())
            })
            .clone()
    }
}

#[async_trait]
impl ServerCopy for FsStore {
    fn copy_source(&self, name: &str) -> Result<CopySource, StorageError> {
        let path = self.path_of(name)?;
        let key = path.to_str().ok_or_else(|| StorageError::InvalidName {
            name: name.to_string(),
            reason: "the store's directory is not UTF-8".into(),
        })?;
        Ok(CopySource {
            service: self.service(),
            bucket: String::new(),
            key: key.to_string(),
        })
    }

    async fn copy_from(
        &self,
        source: &CopySource,
        _meta: &ObjectMeta,
        name: &str,
        mode: PutMode,
    ) -> Result<Option<()>, StorageError> {
        if source.service != self.service() {
            return Ok(None);
        }
        let from = PathBuf::from(&source.key);
        let to = self.path_of(name)?;
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{}+{}",
            owner_tag(),
            hex::encode(rand::random::<[u8; 12]>())
        ));
        let dir = self.dir.clone();
        let (f, t) = (from.clone(), to.clone());
        let linked = blocking(name, move || {
            let target = if mode == PutMode::Create { &t } else { &tmp };
            let linked = match std::fs::hard_link(&f, target) {
                Ok(()) => Linked::Done,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Linked::Taken,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Linked::Missing,
                // EPERM, EXDEV, EMLINK, EOPNOTSUPP.
                Err(e) if matches!(e.raw_os_error(), Some(1 | 18 | 31 | 95)) => Linked::Unlinkable,
                Err(e) => return Err(e),
            };
            if matches!(linked, Linked::Done) {
                if mode == PutMode::Overwrite
                    && let Err(e) = std::fs::rename(&tmp, &t)
                {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                if !BATCHED_SYNC {
                    std::fs::File::open(&dir)?.sync_all()?;
                }
            }
            Ok(linked)
        })
        .await?;
        match linked {
            Linked::Done => {
                if BATCHED_SYNC {
                    // Made durable by the next `sync`, as a `put` is.
                    self.unsynced.store(true, Ordering::SeqCst);
                }
                Ok(Some(()))
            }
            Linked::Taken => Err(StorageError::AlreadyExists {
                name: name.to_string(),
                location: to.display().to_string(),
            }),
            Linked::Missing => Err(StorageError::NotFound {
                name: name.to_string(),
                location: from.display().to_string(),
            }),
            Linked::Unlinkable => Ok(None),
        }
    }
}
