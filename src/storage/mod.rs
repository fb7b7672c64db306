//! The storage contract, one module per backend (`s3`, `gcs`, `gridfs`, `fs`, `http`), the optional
//! capabilities' traits (`quarantine`, `debris`, `rekey`, `copy`), and what backends share (`client`,
//! `crypto`, `keymove`, `parts`; opening a configured store: `config.rs`).
//!
//! Everything that moves bytes goes through [`ObjectStore`]: the engine reads a file from a source
//! store and writes it to a destination store without knowing which backends they are. Backends
//! declare what they can do in [`Capabilities`]; callers branch on capabilities, never on the
//! backend's type.
//!
//! This module owns the trait, its error type and the small value types around it. It knows nothing
//! of clap, of progress bars, or of MongoDB documents: a store sees only Parse file *names* (the
//! string stored in the database) and maps them to its own layout, exactly the way Parse Server's
//! own adapter for that backend does (see `shared/docs/parse-file-storage.md` §4–7).
//!
//! # Contract
//!
//! * **Names.** A name is any non-empty UTF-8 string without NUL; it may contain `/`, spaces, `%`,
//!   unicode. Each backend maps it to a location exactly as Parse Server's adapter does (S3/GCS:
//!   `prefix + name`; FS: `<dir>/<encodeURIComponent(name)>`; GridFS: `filename = name`). A name
//!   that cannot be stored safely (it would escape the FS directory, it holds NUL) is refused with
//!   [`StorageError::InvalidName`], never silently altered.
//! * **Reads** ([`ObjectStore::get`]) stream the *plaintext* bytes as [`Bytes`] chunks. A missing
//!   object is [`StorageError::NotFound`] — from `get` itself, before any byte is produced. A
//!   stream that ends early or yields an error must be treated as a failed read, never as a short
//!   file.
//! * **Writes** ([`ObjectStore::put`]) take a stream of unknown length and use memory bounded by
//!   the backend's part size, whatever the object size. They are **atomic**: a reader sees the old
//!   object (or none) until the write has fully succeeded, and a write that fails midway (the input
//!   stream errors, the server fails) leaves nothing visible under the name. In the default
//!   [`PutMode::Overwrite`] a write to an existing name replaces it; in [`PutMode::Create`] (what
//!   the engine uses: the tool never overwrites what it did not write) a write to an existing
//!   name fails with [`StorageError::AlreadyExists`] and leaves the existing object as it was.
//!   Where [`Capabilities::atomic_create`] is set the store decides that atomically with the
//!   write (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`, FS a hard link that never
//!   replaces); elsewhere (GridFS) it checks just before the write becomes visible, and a write
//!   racing another writer of the same name in that window may still replace it.
//! * **Durability** ([`ObjectStore::sync`]). A `put` that returned is readable at once; it
//!   survives a crash of the machine holding it once a later `sync` has returned. Object stores
//!   (S3, GCS) and GridFS acknowledge only stored writes, so their `sync` does nothing; the
//!   filesystem store makes a whole batch durable in one step there instead of two `fsync`s per
//!   file. The engine syncs before it records a copy as verified, so nothing that a crash could
//!   lose is ever pointed at.
//! * **Stat** ([`ObjectStore::stat`]) reports the plaintext size and whatever integrity information
//!   the backend keeps (an MD5 of the plaintext, an opaque ETag), and the content type if stored.
//! * **Errors** say whether a retry can help ([`StorageError::is_retryable`]), and how long the
//!   server asked to wait when it did ([`StorageError::retry_after`]). Backends do not retry on
//!   their own beyond what their SDK does for a single request; the engine owns retry policy
//!   ([`crate::retry`]).
//! * **Listing** ([`ObjectStore::list`], when [`Capabilities::list`]) yields the objects whose
//!   Parse names start with a prefix, a page of at most [`ListOptions::page_size`] at a time, in
//!   memory bounded by the page size whatever the number of objects, in no particular order. Names
//!   are Parse names (the store's own prefix removed, the FS encoding undone); the tool's own temp
//!   and probe objects never appear. Sizes are the *stored* bytes (an encrypted object is 32 bytes
//!   longer than its plaintext). GridFS also lists the older revisions of a name, flagged
//!   [`ListedObject::superseded`] (Parse Server serves only the newest). Stores that cannot list
//!   (the HTTP source) yield one [`StorageError::Unsupported`].
//! * **Optional capabilities** are doors of their own, reached through an accessor that answers
//!   `None` on the stores without them: [`ObjectStore::quarantine`] (a reversible move out of
//!   Parse Server's sight, [`quarantine`]), [`ObjectStore::debris`] (what killed writers left,
//!   [`debris`]), [`ObjectStore::versioned`] (version-level access for `rekey`, [`rekey`]) and
//!   [`ObjectStore::server_copy`] (copies within one service that move no byte through the
//!   tool, [`copy`]).
//!   Wrappers forward the accessors; no flag restates them. None of them, nor any method here,
//!   takes a dry-run switch: the engine's gate decides what runs.
//! * **Encryption.** Stores that support Parse's AES-256-GCM format ([`crypto`]) encrypt on `put`
//!   when configured with a key, and on `get` try the key first and fall back to the plaintext
//!   bytes when the data is not valid ciphertext for that key (files uploaded before the key was
//!   set are plaintext in the same bucket).

pub mod client;
mod config;
pub mod copy;
pub mod crypto;
pub mod debris;
mod error;
pub mod fs;
pub mod gcs;
pub mod gridfs;
pub mod http;
mod keymove;
pub mod parts;
pub mod quarantine;
pub mod rekey;
pub mod s3;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use config::{Encryption, StoreConfig, StoreContext, open};
pub(crate) use error::mongo_text;
pub use error::{StorageError, error_chain};
pub use quarantine::{QUARANTINE_ROOT, Quarantine};

/// A stream of byte chunks, as read from or written to a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// What a backend can do. Callers consult this instead of matching on the backend type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// `put` and `delete` are supported (false for the HTTP source).
    pub write: bool,
    /// `stat` answers without reading the object (false when it would need a full download).
    pub stat: bool,
    /// `list` is supported.
    pub list: bool,
    /// [`GetOptions::offset`] is honoured, so a broken read can be resumed mid-file.
    pub range_reads: bool,
    /// [`ObjectMeta::md5`] is filled for objects written in one piece.
    pub reports_md5: bool,
    /// [`PutMode::Create`] is decided by the server atomically with the write (see the
    /// contract); without it, by a check just before the write becomes visible.
    pub atomic_create: bool,
}

/// What [`ObjectStore::put`] does when the name already holds an object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it.
    #[default]
    Overwrite,
    /// Leave it, and fail with [`StorageError::AlreadyExists`].
    Create,
}

/// Options for [`ObjectStore::get`].
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Start reading at this plaintext byte offset (only when [`Capabilities::range_reads`]).
    pub offset: u64,
    /// A URL stored alongside the name (nested `{__type:"File", url}`); the HTTP source may use it
    /// when no template applies. Other stores ignore it.
    pub url_hint: Option<String>,
    /// Read only this version of the object ([`GetResult::version`] of an earlier read): a
    /// store that can tell answers [`StorageError::Integrity`] when the object was replaced
    /// since, rather than another version's bytes (a read resumed mid-file must continue the
    /// bytes it began with). Stores that keep no version ignore it.
    pub version: Option<String>,
}

impl GetOptions {
    /// Whether a read that found version `now` of `name` (`None`: the store cannot say) may go
    /// on: always, unless it is pinned to another version ([`GetOptions::version`]), which is
    /// [`StorageError::Integrity`]. Every store checks what it read this way, also after sending
    /// the condition to a server that may ignore it.
    pub(crate) fn check_version(&self, name: &str, now: Option<&str>) -> Result<(), StorageError> {
        match &self.version {
            Some(wanted) if now != Some(wanted.as_str()) => {
                Err(error::changed_since(name, wanted, now.unwrap_or("unknown")))
            }
            _ => Ok(()),
        }
    }
}

/// Options for [`ObjectStore::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// `Content-Type` to store; backends that keep none (GridFS, FS) ignore it.
    pub content_type: Option<String>,
    /// `Cache-Control` to store, where the backend keeps one; overrides a store-wide default.
    pub cache_control: Option<String>,
    /// Size of the plaintext if known in advance (lets a backend pick a single-shot upload).
    pub size_hint: Option<u64>,
    /// Replace an existing object, or refuse to (see the contract).
    pub mode: PutMode,
    /// Told of an upload a kill could leave unfinished, before it starts ([`debris`]).
    pub uploads: debris::UploadLogRef,
}

/// What a store knows about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Size of the plaintext in bytes.
    pub size: u64,
    /// Stored content type, if the backend keeps one.
    pub content_type: Option<String>,
    /// Stored cache control, if the backend keeps one.
    pub cache_control: Option<String>,
    /// MD5 of the plaintext as lowercase hex, when the backend reports one it computed itself.
    pub md5: Option<String>,
    /// The backend's opaque version tag (S3 ETag, GCS generation, GridFS `_id`).
    pub etag: Option<String>,
}

/// What [`ObjectStore::list`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only names starting with this (a Parse name prefix: the store's own prefix is added).
    pub prefix: Option<String>,
    /// Objects per page (and per request where the backend pages); default
    /// [`DEFAULT_LIST_PAGE`].
    pub page_size: Option<usize>,
}

/// Objects per listing page unless asked otherwise (S3's and GCS's maximum per request).
pub const DEFAULT_LIST_PAGE: usize = 1000;

impl ListOptions {
    /// The page size to use: at least 1.
    pub fn page_size(&self) -> usize {
        self.page_size.unwrap_or(DEFAULT_LIST_PAGE).max(1)
    }

    /// The name prefix, empty for all.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }
}

/// One stored object, as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The Parse name (what a reference in the database holds).
    pub name: String,
    /// Stored bytes (ciphertext and its trailer for encrypted objects).
    pub size: u64,
    /// Last modified (S3, GCS, FS) or uploaded (GridFS), when the backend says.
    pub modified: Option<std::time::SystemTime>,
    /// MD5 of the stored bytes as lowercase hex, when the backend reports one.
    pub md5: Option<String>,
    /// The backend's id of this version (GridFS `_id`, S3 ETag, GCS generation).
    pub version: Option<String>,
    /// An older GridFS revision of a name that has a newer one (never served).
    pub superseded: bool,
}

/// A listing: pages of objects, each page at most [`ListOptions::page_size`] long (maybe empty).
pub type ListStream<'a> = BoxStream<'a, Result<Vec<ListedObject>, StorageError>>;

/// A successful read: what is known up front, then the bytes.
pub struct GetResult {
    /// How many bytes the stream will yield (the object's size minus [`GetOptions::offset`]), if
    /// the backend knows it before streaming (HTTP without `Content-Length` does not). A value
    /// the backend cannot vouch for is `None`, never a guess: callers treat a mismatch with the
    /// bytes actually streamed as an integrity failure.
    pub size: Option<u64>,
    /// Content type reported by the backend, if any.
    pub content_type: Option<String>,
    /// Which version of the object is read, where the store tells (S3 ETag, GCS generation,
    /// GridFS revision id, HTTP strong ETag or Last-Modified): for [`GetOptions::version`].
    pub version: Option<String>,
    pub stream: ByteStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("size", &self.size)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// A successful write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResult {
    /// Plaintext bytes written.
    pub size: u64,
    /// MD5 of the plaintext as lowercase hex, computed on the stream while writing.
    pub md5: String,
    /// The backend's version tag for the new object, if it returns one.
    pub etag: Option<String>,
}

/// The contract's rule for every backend: a name is non-empty and holds no NUL. Returns a
/// constructor for further [`StorageError::InvalidName`]s about the same name, for the backend's
/// own layout rules.
pub fn validate_name(name: &str) -> Result<impl Fn(&str) -> StorageError + '_, StorageError> {
    let invalid = move |reason: &str| StorageError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name.contains('\0') {
        return Err(invalid("name contains NUL"));
    }
    Ok(invalid)
}

/// How the ledger names a store: by its [`ObjectStore::identity`]. Records of earlier versions
/// named it by its description, which says whether the store encrypts (` (encrypted)`); they are
/// still recognised as this store's, under either form (the key may have been set since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreName {
    pub identity: String,
    /// The earlier versions' description, without and with ` (encrypted)`.
    described: [String; 2],
}

impl StoreName {
    pub fn of(store: &dyn ObjectStore) -> StoreName {
        StoreName::new(store.identity(), &store.describe())
    }

    pub fn new(identity: String, described: &str) -> StoreName {
        let plain = described.trim_end_matches(" (encrypted)");
        StoreName {
            identity,
            described: [plain.to_string(), format!("{plain} (encrypted)")],
        }
    }

    /// Whether a record naming its store `recorded` is about this store.
    pub fn names(&self, recorded: &str) -> bool {
        self.all().contains(&recorded)
    }

    /// Every name a record of this store may carry (for a query's `$in`).
    pub fn all(&self) -> [&str; 3] {
        [&self.identity, &self.described[0], &self.described[1]]
    }
}

/// The storage contract. See the module documentation for the exact semantics.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// A human-readable location with no secrets, e.g. `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// Where the bytes live, the same for every configuration that reaches them and nothing
    /// else (no secrets, no encryption, no credentials): fs the canonical real path; S3 the
    /// endpoint, bucket and prefix; GCS the endpoint, bucket and prefix; GridFS the hosts,
    /// database and bucket. Two stores are one when their identities are equal, and ledger
    /// records name their store by it ([`StoreName`]).
    fn identity(&self) -> String;

    fn capabilities(&self) -> Capabilities;

    /// Where `name` lives in this store (key, path, URL), for plans and reports. No I/O.
    fn location(&self, name: &str) -> Result<String, StorageError>;

    /// Metadata of `name`; [`StorageError::NotFound`] if it does not exist.
    async fn stat(&self, name: &str) -> Result<ObjectMeta, StorageError>;

    /// Stream the plaintext of `name`.
    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError>;

    /// Atomically store `body` under `name`: replacing any existing object, or refusing to
    /// ([`PutOptions::mode`]).
    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult, StorageError>;

    /// Make every `put` that has returned durable (see the contract). Cheap when there is
    /// nothing to do. Stores whose writes are durable when `put` returns keep the default.
    async fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The objects under `opts.prefix`, a page at a time (see the contract). The default, for
    /// stores without [`Capabilities::list`], yields one [`StorageError::Unsupported`].
    fn list(&self, opts: ListOptions) -> ListStream<'_> {
        let _ = opts;
        let err = StorageError::Unsupported {
            operation: "listing",
            store: self.describe(),
        };
        futures::stream::once(async move { Err(err) }).boxed()
    }

    /// The most memory one `put` buffers for itself beyond one input chunk, whatever the
    /// object's size (S3: the part uploading and the next; GCS: the read-ahead and the upload
    /// buffer; GridFS: one chunk; FS: the small-write buffer; 0 where nothing is written).
    /// Projects a run's memory (`migrate --estimate`).
    fn put_buffer(&self) -> u64;

    /// The store's quarantine, if it has one ([`quarantine`]).
    fn quarantine(&self) -> Option<&dyn Quarantine> {
        None
    }

    /// The store's debris of killed writers, if it can find any ([`debris`]).
    fn debris(&self) -> Option<&dyn debris::Debris> {
        None
    }

    /// The store's server-side copies, if it makes any ([`copy`]).
    fn server_copy(&self) -> Option<&dyn copy::ServerCopy> {
        None
    }

    /// Version-level access for `rekey` ([`rekey`]), on the stores that keep Parse-encrypted
    /// files. Takes the `Arc` because the rekey pass's tasks hold the store.
    fn versioned(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn rekey::Versioned>> {
        None
    }

    /// Remove `name`. Removing a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<(), StorageError>;

    /// Check at start-up that the store is reachable and usable (bucket exists, directory
    /// writable…), so a broken destination fails before any work is done.
    async fn check(&self) -> Result<(), StorageError>;
}

/// [`StorageError::Unsupported`] for `operation` on `store`.
pub fn unsupported(store: &dyn ObjectStore, operation: &'static str) -> StorageError {
    StorageError::Unsupported {
        operation,
        store: store.describe(),
    }
}

/// Wraps a stream so that its bytes are counted and hashed as they pass (the hash the engine
/// compares with what the destination reports).
pub struct HashingStream {
    inner: ByteStream,
    state: std::sync::Arc<std::sync::Mutex<HashState>>,
}

/// Running size and MD5 of the bytes that went through a [`HashingStream`].
#[derive(Default)]
pub struct HashState {
    pub size: u64,
    md5: md5::Md5,
}

impl HashState {
    pub fn md5_hex(&self) -> String {
        use md5::Digest;
        hex::encode(self.md5.clone().finalize())
    }
}

impl HashingStream {
    pub fn new(inner: ByteStream) -> (Self, std::sync::Arc<std::sync::Mutex<HashState>>) {
        let state = std::sync::Arc::new(std::sync::Mutex::new(HashState::default()));
        (
            HashingStream {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl futures::Stream for HashingStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use md5::Digest;
        let poll = self.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(chunk))) = &poll {
            // A poisoned lock only means another thread panicked while hashing; the counts are
            // still the best information we have.
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.size += chunk.len() as u64;
            st.md5.update(chunk);
        }
        poll
    }
}

/// Guess a content type from a file name's extension, as Parse Server does (`mime.getType`).
pub fn content_type_for(name: &str) -> Option<String> {
    mime_guess::from_path(name)
        .first()
        .map(|m| m.essence_str().to_string())
}
