//! Filesystem store, laid out like Parse's FS adapter (`@parse/fs-files-adapter`,
//! `shared/docs/parse-file-storage.md` §7): one flat directory, each file at
//! `<path>/<encodeURIComponent(name)>`, optionally encrypted in Parse's AES-256-GCM format.
//!
//! This module owns the name → path mapping (and refusing names that would escape the
//! directory), atomic writes (temp file, rename), durability and local I/O. Encryption is the
//! shared code in [`super::crypto`].
//!
//! Durability: on Linux a `put` does not `fsync`; [`ObjectStore::sync`] makes every write since
//! the last one durable with a single `syncfs(2)` of the directory's filesystem, and the engine
//! calls it once per batch of outcomes, before recording them verified. Two `fsync`s per file
//! (the file, then the directory for the rename) cost a quarter of the wall time of a run of
//! small files (README "Benchmarks"). `syncfs` also flushes whatever else is dirty on that
//! filesystem, so it is slower when another program writes heavily there; it is never less
//! safe. Elsewhere each `put` syncs its file and the directory before it returns.
//!
//! Copies between two fs stores that hold files the same way, on one filesystem, are hard links
//! (`copy`: the store's server-side copy).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncSeekExt;

use super::crypto::{self, FileKey};
use super::{
    ByteStream, Capabilities, GetOptions, GetResult, HashingStream, ListOptions, ListStream,
    ObjectMeta, ObjectStore, PutOptions, PutResult, StorageError, StoreContext,
};
use crate::parse::names::encode_uri_component;

mod copy;
mod list;
mod quarantine;
mod rekey;
mod write;

use write::blocking;

/// The `type = "fs"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The directory holding the files (the FS adapter's `files/<filesSubDirectory>`). Required;
    /// created by `check()` if missing.
    pub path: Option<PathBuf>,
    /// `"file-key"` or `"none"`. Default: encrypt only when `encryption_key` is set (Parse Server
    /// does not hand its `fileKey` to the FS adapter); `"file-key"` with no `encryption_key` uses
    /// the app's `fileKey`.
    pub encryption: Option<super::Encryption>,
    /// The FS adapter's `encryptionKey` option.
    pub encryption_key: Option<crate::secret::Secret>,
}

/// The longest file name most filesystems accept (`NAME_MAX`), in bytes.
const NAME_MAX: usize = 255;

/// Prefix of in-progress writes. `+` is always escaped by `encodeURIComponent`, so no encoded
/// Parse name can ever look like a temp file (a `.pfm-tmp-` prefix alone could: `-` is not
/// escaped).
const TEMP_PREFIX: &str = ".pfm-tmp+";

/// Read buffer size for streaming files.
const READ_BUF: usize = 256 * 1024;

/// Whether `put` leaves durability to [`ObjectStore::sync`] (see the module documentation).
const BATCHED_SYNC: bool = cfg!(target_os = "linux");

/// Bodies announced at most this long are gathered in memory and written in one blocking step
/// (see `write_temp`): at most `concurrency` × 256 KiB held. Streamed, each small file's open,
/// write, flush and close went to the thread pool one by one: 2,000 × 20 KiB --copy-only made
/// 22,000 futex calls, 14,000 this way.
const SMALL_PUT: usize = 256 * 1024;

#[derive(Debug)]
pub struct FsStore {
    dir: PathBuf,
    key: Option<FileKey>,
    /// A `put` returned since the last [`ObjectStore::sync`] (only with [`BATCHED_SYNC`]).
    unsynced: AtomicBool,
    /// Held through a sync: a caller that finds nothing new must still wait for the sync in
    /// progress, which may be the one covering its writes.
    syncing: tokio::sync::Mutex<()>,
    /// What a hard link needs in common with another store ([`copy`]), worked out once (it
    /// resolves the directory's real path).
    link_service: std::sync::OnceLock<String>,
}

impl FsStore {
    pub fn new(cfg: &FsConfig, ctx: &StoreContext) -> Result<Self, StorageError> {
        let dir = cfg.path.clone().ok_or_else(|| {
            StorageError::message("fs store", false, "the fs store needs `path` (a directory)")
        })?;
        // Parse Server never hands its fileKey to the FS adapter (the adapter encrypts only with
        // its own `encryptionKey`): by default only `encryption_key` turns encryption on. A plain
        // FS adapter serves encrypted files with status 200 and the wrong bytes, so guessing
        // "encrypted" would be the dangerous default.
        let ctx = if cfg.encryption.is_none() {
            StoreContext {
                file_key: None,
                ..ctx.clone()
            }
        } else {
            ctx.clone()
        };
        let key = crypto::resolve_key(
            "fs store",
            cfg.encryption,
            cfg.encryption_key.as_ref(),
            &ctx,
        )?;
        Ok(FsStore {
            dir,
            key,
            unsynced: AtomicBool::new(false),
            syncing: tokio::sync::Mutex::new(()),
            link_service: std::sync::OnceLock::new(),
        })
    }

    /// `<dir>/<encodeURIComponent(name)>`, or `InvalidName` for names the adapter layout cannot
    /// hold safely. Encoding turns `/` into `%2F`, so only `.`/`..` could still escape.
    fn path_of(&self, name: &str) -> Result<PathBuf, StorageError> {
        let invalid = super::validate_name(name)?;
        let encoded = encode_uri_component(name);
        if encoded == "." || encoded == ".." {
            return Err(invalid("name would refer to a directory"));
        }
        if encoded.len() > NAME_MAX {
            return Err(invalid("encoded name is longer than 255 bytes"));
        }
        Ok(self.dir.join(encoded))
    }

    /// Stream a file from `offset`, from its own handle (so a rename over the path between the
    /// passes of an encrypted read cannot mix two files).
    async fn open_at(
        name: &str,
        file: &std::fs::File,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let handle = file.try_clone().map_err(|e| io_error(name, e))?;
        // The clones share one file position; the crypto read path opens its passes one after
        // the other, never concurrently, so seeking here is safe.
        let mut f = tokio::fs::File::from_std(handle);
        f.seek(io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error(name, e))?;
        let name = name.to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, READ_BUF)
            .map(move |r| r.map_err(|e| io_error(&name, e)));
        Ok(stream.boxed())
    }

    /// The file at `path`, opened for reading, and its stored length.
    async fn open_file(&self, name: &str) -> Result<(std::fs::File, u64), StorageError> {
        let path = self.path_of(name)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f.into_std().await,
            Err(e) => return Err(read_error(name, &path, e)),
        };
        let meta = file.metadata().map_err(|e| io_error(name, e))?;
        regular_file(name, &path, &meta)?;
        Ok((file, meta.len()))
    }
}

impl FsStore {
    /// The contract's errors for a failed `put` of `name` at `path`: the name taken
    /// ([`crate::storage::PutMode::Create`]), or the filesystem full (`ENOSPC`, `EDQUOT`), with what the write
    /// needed and what is free.
    fn put_error(
        &self,
        name: &str,
        path: &Path,
        size: Option<u64>,
        e: StorageError,
    ) -> StorageError {
        let io = match &e {
            StorageError::Backend {
                source: Some(s), ..
            } => s.downcast_ref::<io::Error>(),
            _ => None,
        };
        let Some(io) = io else { return e };
        let location = path.display().to_string();
        if io.kind() == io::ErrorKind::AlreadyExists {
            return StorageError::AlreadyExists {
                name: name.to_string(),
                location,
            };
        }
        if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            let needed = match size {
                Some(n) => format!("the file needs {n} bytes"),
                None => "the file's size was not announced".to_string(),
            };
            let free = free_bytes(&self.dir)
                .map(|f| format!(", {f} bytes free in {}", self.dir.display()))
                .unwrap_or_default();
            return StorageError::NoSpace {
                name: name.to_string(),
                location,
                needed: format!("{needed}{free}"),
            };
        }
        e
    }
}

/// Bytes available to this user on the filesystem holding `dir`.
/// `dir` with its symbolic links, `.`, `..` and trailing `/` resolved: its canonical path, or
/// (not created yet) its nearest existing ancestor's followed by the rest.
fn real_path(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut rest = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return absolute.components().collect(),
        }
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// An error opening or inspecting the file of `name`: `NotFound` when there is none.
fn read_error(name: &str, path: &Path, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound {
            name: name.to_string(),
            location: path.display().to_string(),
        }
    } else {
        io_error(name, e)
    }
}

/// Only regular files hold objects (a directory under an object's path is an error).
fn regular_file(name: &str, path: &Path, meta: &std::fs::Metadata) -> Result<(), StorageError> {
    if meta.is_file() {
        Ok(())
    } else {
        let msg = format!("{} is not a regular file", path.display());
        Err(StorageError::message(name, false, msg))
    }
}

/// Local I/O errors: only the transient kinds are worth a retry.
fn io_error(name: &str, e: io::Error) -> StorageError {
    let retryable = matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    );
    StorageError::backend(name, retryable, e)
}

#[async_trait]
impl ObjectStore for FsStore {
    fn put_buffer(&self) -> u64 {
        // A small body is gathered before one write; a longer one streams chunk by chunk.
        SMALL_PUT as u64
    }

    fn describe(&self) -> String {
        let enc = if self.key.is_some() {
            " (encrypted)"
        } else {
            ""
        };
        format!("fs {}{enc}", self.dir.display())
    }

    fn identity(&self) -> String {
        format!("fs:{}", real_path(&self.dir).display())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            // With a key, stat reads the file to check the tag (local I/O, never a download).
            stat: true,
            list: true,
            range_reads: true,
            reports_md5: false,
            atomic_create: true,
        }
    }

    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.path_of(name)?.display().to_string())
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta, StorageError> {
        if self.key.is_none() {
            // Plaintext: the size is the file's length, one `statx` (the engine stats every copy).
            let path = self.path_of(name)?;
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| read_error(name, &path, e))?;
            regular_file(name, &path, &meta)?;
            return Ok(ObjectMeta {
                size: meta.len(),
                ..Default::default()
            });
        }
        let (file, stored_len) = self.open_file(name).await?;
        let size = crypto::stored_plain_size(self.key.as_ref(), name, stored_len, |off| {
            Self::open_at(name, &file, off)
        })
        .await?;
        Ok(ObjectMeta {
            size,
            ..Default::default()
        })
    }

    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError> {
        let (file, stored_len) = self.open_file(name).await?;
        let plain = crypto::read_stored(self.key.as_ref(), name, stored_len, opts.offset, |off| {
            Self::open_at(name, &file, off)
        })
        .await?;
        Ok(plain.into_get_result(opts.offset, None))
    }

    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult, StorageError> {
        let path = self.path_of(name)?;
        let (hashing, state) = HashingStream::new(body);
        let body = match &self.key {
            Some(key) => crypto::seal_stream(key, hashing.boxed()),
            None => hashing.boxed(),
        };
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{}+{}",
            owner_tag(),
            hex::encode(rand::random::<[u8; 12]>())
        ));
        // The sealed body is the plaintext followed by the IV and the tag.
        let small = opts
            .size_hint
            .map(|n| n + crypto::TRAILER_LEN as u64)
            .filter(|&n| n <= SMALL_PUT as u64)
            .map(|n| n as usize);
        self.write_temp(name, &tmp, body, Some((path.clone(), opts.mode)), small)
            .await
            .map_err(|e| {
                let e = self.put_error(name, &path, opts.size_hint, e);
                // Found there already: maybe a copy a killed run left in the page cache, which
                // the caller may record verified; the next sync makes it durable first.
                if BATCHED_SYNC && matches!(e, StorageError::AlreadyExists { .. }) {
                    self.unsynced.store(true, Ordering::SeqCst);
                }
                e
            })?;
        if BATCHED_SYNC {
            self.unsynced.store(true, Ordering::SeqCst);
        }
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(PutResult {
            size: st.size,
            md5: st.md5_hex(),
            etag: None,
        })
    }

    async fn sync(&self) -> Result<(), StorageError> {
        let _one_at_a_time = self.syncing.lock().await;
        // A put that returns after the swap sets the flag again: the next sync covers it.
        if !self.unsynced.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let dir = self.dir.clone();
        let synced = blocking(&self.describe(), move || syncfs(&dir)).await;
        if synced.is_err() {
            self.unsynced.store(true, Ordering::SeqCst);
        }
        synced
    }

    fn list(&self, opts: ListOptions) -> ListStream<'_> {
        list::list(self.dir.clone(), opts)
    }

    fn quarantine(&self) -> Option<&dyn crate::storage::Quarantine> {
        Some(self)
    }

    // A hard link names the source by its path: only for a directory with a UTF-8 path.
    fn server_copy(&self) -> Option<&dyn crate::storage::copy::ServerCopy> {
        self.dir
            .to_str()
            .map(|_| self as &dyn crate::storage::copy::ServerCopy)
    }

    fn versioned(
        self: std::sync::Arc<Self>,
    ) -> Option<std::sync::Arc<dyn crate::storage::rekey::Versioned>> {
        Some(self)
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let path = self.path_of(name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(name, e)),
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        let what = self.describe();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_error(&what, e))?;
        // Writable means we can create, sync and remove a file the way put does. The probe
        // carries the owner tag like every temp file, so one a kill left behind is cleaned up.
        let probe = self.dir.join(format!(
            "{TEMP_PREFIX}{}+check-{}",
            owner_tag(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        let result = self
            .write_temp(&what, &probe, futures::stream::empty().boxed(), None, None)
            .await;
        let _ = tokio::fs::remove_file(&probe).await;
        result?;
        self.remove_stale_temps().await;
        Ok(())
    }
}

/// Write back everything dirty on the filesystem holding `dir` (data, inodes, directory
/// entries) and wait for it: `syncfs(2)`.
#[cfg(target_os = "linux")]
fn syncfs(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir)?;
    // SAFETY: `d` is an open descriptor for the whole call; syncfs only reads it.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_dir: &Path) -> io::Result<()> {
    // Not reached: without BATCHED_SYNC nothing is ever left unsynced.
    Ok(())
}

/// `<host hash>+<pid>` of this process: temp files say who writes them, so a later run on the
/// same host can remove those a killed process left (and never those of a live one, nor of
/// another host sharing the directory).
fn owner_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("{}+{}", host_tag(), std::process::id()))
}

fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(host.trim().as_bytes())[..4])
}

impl FsStore {
    /// Remove temp files of dead processes of this host (a `kill -9` mid-write leaves one).
    async fn remove_stale_temps(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        let host = host_tag();
        let mut removed = 0;
        while let Ok(Some(e)) = entries.next_entry().await {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
                continue;
            };
            let mut parts = rest.split('+');
            let (Some(h), Some(pid)) = (parts.next(), parts.next()) else {
                continue;
            };
            let dead = h == host
                && pid.parse::<u32>().is_ok_and(|pid| {
                    pid != std::process::id()
                        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                });
            if dead && tokio::fs::remove_file(e.path()).await.is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                "removed {removed} unfinished temp files left by stopped runs in {}",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
