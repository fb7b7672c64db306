//! GridFS store, laid out like Parse Server's default `GridFSBucketAdapter`
//! (`shared/docs/parse-file-storage.md` §4): bucket `fs` in the app database, chunk size 261120,
//! `filename` = the Parse name exactly, `metadata: {}`, optionally encrypted in Parse's
//! AES-256-GCM format.
//!
//! This module owns revisions: several files documents may share a filename (Parse's
//! `rotateEncryptionKey` and retried uploads create them); readers take the newest `uploadDate`,
//! and `put` uploads a new revision and then removes the older ones. Encryption is the shared code
//! in [`super::crypto`]; the bytes move through the driver's `GridFsBucket` streams.

use async_trait::async_trait;
use bytes::Bytes;
use futures::io::AsyncWriteExt;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::GridFsBucketOptions;
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::crypto::{self, FileKey};
use super::{
    ByteStream, Capabilities, GetOptions, GetResult, HashingStream, ListOptions, ListStream,
    ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult, StorageError, StoreContext,
};

mod chunks;
mod debris;
mod list;
mod quarantine;
mod refusal;
mod rekey;

/// The `type = "gridfs"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFsConfig {
    /// MongoDB connection string. Default: the app's `database_uri`.
    pub uri: Option<crate::secret::Secret>,
    /// Database holding the bucket. Default: the one named in the URI, else the app database.
    pub database: Option<String>,
    /// Bucket name (collections `<bucket>.files` / `<bucket>.chunks`). Default `fs`, as Parse.
    pub bucket: Option<String>,
    /// `"file-key"` or `"none"`. Default: encrypt when a key is available (`encryption_key`, else
    /// the app's `fileKey`, which is what Parse Server ≥ 4.3.0 does), else store plaintext.
    pub encryption: Option<super::Encryption>,
    /// Key to encrypt with instead of the app's `fileKey`.
    pub encryption_key: Option<crate::secret::Secret>,
}

/// The Node driver's default chunk size (255 KiB), which Parse Server uses.
pub const PARSE_CHUNK_SIZE: u32 = 261_120;

/// Chunks fetched per round trip when reading (~1 MiB with Parse's chunk size).
const CHUNKS_PER_BATCH: u32 = 4;

/// Where a chunk-by-chunk read stands.
struct ChunkState {
    name: String,
    cursor: mongodb::Cursor<Document>,
    next: u64,
    total: u64,
    chunk_size: u64,
    length: u64,
    skip: usize,
}

impl ChunkState {
    fn broken(&self, reason: String) -> StorageError {
        StorageError::Integrity {
            name: self.name.clone(),
            reason,
        }
    }
}

/// Sort that puts the revision readers see first: newest upload, ties broken by `_id`.
fn newest_first() -> Document {
    doc! { "uploadDate": -1, "_id": -1 }
}

pub struct GridFsStore {
    db: Database,
    bucket: GridFsBucket,
    bucket_name: String,
    files: Collection<Document>,
    chunks: Collection<Document>,
    key: Option<FileKey>,
    /// The URI with any password redacted, for `describe`.
    shown_uri: String,
    /// The servers of the URI (`mongodb+srv:` its SRV name), sorted: the identity's hosts.
    hosts: String,
}

/// Only what `describe` shows: the driver's own `Debug` output includes client options.
impl std::fmt::Debug for GridFsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GridFsStore")
            .field(&self.describe())
            .finish()
    }
}

/// The newest revision of a name: what readers see.
struct Revision {
    id: Bson,
    length: u64,
    chunk_size: u64,
    md5: Option<String>,
}

impl GridFsStore {
    pub async fn new(cfg: &GridFsConfig, ctx: &StoreContext) -> Result<Self, StorageError> {
        let what = "gridfs store";
        let uri = cfg.uri.as_ref().or(ctx.mongo_uri.as_ref()).ok_or_else(|| {
            StorageError::message(
                what,
                false,
                "the gridfs store needs `uri` or the app's MongoDB URI",
            )
        })?;
        let shown_uri = crate::secret::redact_uri(uri.expose());
        crate::db::check_escapes(uri.expose()).map_err(|why| {
            StorageError::message(
                what,
                false,
                format!("invalid MongoDB URI {shown_uri}: {why}"),
            )
        })?;
        let client = mongodb::Client::with_uri_str(uri.expose())
            .await
            .map_err(|e| {
                // The driver's message can quote parts of the URI, a password's among them.
                let why = crate::secret::redact_echo(&e.kind.to_string(), uri.expose());
                StorageError::message(
                    what,
                    false,
                    format!("invalid MongoDB URI {shown_uri}: {why}"),
                )
            })?;
        crate::db::track(&client);
        let db = match (&cfg.database, client.default_database(), &ctx.database) {
            (Some(name), _, _) => client.database(name),
            (None, Some(db), _) => db,
            (None, None, Some(name)) => client.database(name),
            (None, None, None) => {
                return Err(StorageError::message(
                    what,
                    false,
                    "no database: set `database` or name one in the URI",
                ));
            }
        };
        let key = crypto::resolve_key(what, cfg.encryption, cfg.encryption_key.as_ref(), ctx)?;
        let bucket_name = cfg.bucket.clone().unwrap_or_else(|| "fs".to_string());
        let options = GridFsBucketOptions::builder()
            .bucket_name(bucket_name.clone())
            .chunk_size_bytes(PARSE_CHUNK_SIZE)
            .build();
        Ok(GridFsStore {
            bucket: db.gridfs_bucket(options),
            files: db.collection(&format!("{bucket_name}.files")),
            chunks: db.collection(&format!("{bucket_name}.chunks")),
            bucket_name,
            db,
            key,
            shown_uri,
            hosts: crate::db::hosts_of(uri.expose()),
        })
    }

    async fn newest(&self, name: &str) -> Result<Revision, StorageError> {
        let found = self
            .files
            .find_one(doc! { "filename": name })
            .sort(newest_first())
            .projection(doc! { "_id": 1, "length": 1, "chunkSize": 1, "md5": 1 })
            .await
            .map_err(|e| mongo_error(name, e))?;
        let doc = found.ok_or_else(|| StorageError::NotFound {
            name: name.to_string(),
            location: self.location_of(name),
        })?;
        let length = length_of(doc.get("length")).ok_or_else(|| {
            StorageError::message(name, false, "files document has no valid `length`")
        })?;
        let chunk_size = match doc.get("chunkSize") {
            Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
            Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
            Some(Bson::Double(n)) if *n >= 1.0 && n.fract() == 0.0 => Some(*n as u64),
            _ => None,
        }
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            StorageError::message(name, false, "files document has no valid `chunkSize`")
        })?;
        Ok(Revision {
            id: doc.get("_id").cloned().unwrap_or(Bson::Null),
            length,
            chunk_size,
            md5: doc.get_str("md5").ok().map(str::to_string),
        })
    }

    /// Stream a revision's stored bytes from `offset`.
    ///
    /// Reads `fs.chunks` directly rather than through the driver's download stream: the driver's
    /// cursor takes the server's default first batch (101 chunks, ~26 MB) and then 16 MiB
    /// batches, which alone would break the memory bound. Here each round trip fetches
    /// [`CHUNKS_PER_BATCH`] chunks, a range starts at the chunk that holds `offset`, and a
    /// missing, misnumbered or wrongly sized chunk is an integrity error, never a short file.
    async fn open_at(
        &self,
        name: &str,
        rev: &Revision,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let first = offset / rev.chunk_size;
        let total = rev.length.div_ceil(rev.chunk_size);
        let cursor = self
            .chunks
            .find(doc! { "files_id": rev.id.clone(), "n": { "$gte": first as i64 } })
            .sort(doc! { "n": 1 })
            .batch_size(CHUNKS_PER_BATCH)
            .await
            .map_err(|e| mongo_error(name, e))?;
        let state = ChunkState {
            name: name.to_string(),
            cursor,
            next: first,
            total,
            chunk_size: rev.chunk_size,
            length: rev.length,
            skip: (offset % rev.chunk_size) as usize,
        };
        let stream = futures::stream::try_unfold(state, |mut st| async move {
            if st.next >= st.total {
                return Ok(None);
            }
            let doc = st
                .cursor
                .try_next()
                .await
                .map_err(|e| mongo_error(&st.name, e))?
                .ok_or_else(|| {
                    st.broken(format!("chunk {} of {} is missing", st.next, st.total))
                })?;
            let n = match doc.get("n") {
                Some(Bson::Int32(n)) => i64::from(*n),
                Some(Bson::Int64(n)) => *n,
                _ => -1,
            };
            if n != st.next as i64 {
                return Err(st.broken(format!("expected chunk {}, found chunk {n}", st.next)));
            }
            let data = match doc.get("data") {
                Some(Bson::Binary(b)) => b.bytes.clone(),
                _ => return Err(st.broken(format!("chunk {n} has no binary data"))),
            };
            let want = if st.next + 1 == st.total {
                st.length - st.next * st.chunk_size
            } else {
                st.chunk_size
            };
            if data.len() as u64 != want {
                return Err(st.broken(format!(
                    "chunk {n} holds {} bytes, expected {want}",
                    data.len()
                )));
            }
            let mut bytes = Bytes::from(data);
            if st.skip > 0 {
                bytes = bytes.slice(st.skip.min(bytes.len())..);
                st.skip = 0;
            }
            st.next += 1;
            Ok(Some((bytes, st)))
        });
        Ok(stream.boxed())
    }

    fn location_of(&self, name: &str) -> String {
        format!("gridfs://{}/{}/{name}", self.db.name(), self.bucket_name)
    }

    /// Remove one revision: the files document first, so readers stop seeing it before its
    /// chunks go (what the driver's `delete` does, without failing when it is already gone).
    async fn delete_revision(&self, name: &str, id: &Bson) -> Result<(), StorageError> {
        self.files
            .delete_one(doc! { "_id": id.clone() })
            .await
            .map_err(|e| mongo_error(name, e))?;
        self.chunks
            .delete_many(doc! { "files_id": id.clone() })
            .await
            .map_err(|e| mongo_error(name, e))?;
        Ok(())
    }

    /// Every revision of `name` except `keep`.
    async fn revisions_except(
        &self,
        name: &str,
        keep: Option<&Bson>,
    ) -> Result<Vec<Bson>, StorageError> {
        let mut filter = doc! { "filename": name };
        if let Some(keep) = keep {
            filter.insert("_id", doc! { "$ne": keep.clone() });
        }
        self.revision_ids(name, filter).await
    }

    /// The `_id`s of the files documents (revisions) `filter` matches; `name` for errors.
    async fn revision_ids(&self, name: &str, filter: Document) -> Result<Vec<Bson>, StorageError> {
        let docs: Vec<Document> = self
            .files
            .find(filter)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(|e| mongo_error(name, e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error(name, e))?;
        Ok(docs
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect())
    }

    /// Upload `body` as a new revision; on any failure abort it so no chunks stay behind.
    async fn upload(&self, name: &str, mut body: ByteStream) -> Result<Bson, StorageError> {
        // Made here, by this process: its bytes 4..9 say which run wrote it (`debris`).
        let mut up = self
            .bucket
            .open_upload_stream(name)
            .id(Bson::ObjectId(mongodb::bson::oid::ObjectId::new()))
            .metadata(doc! {})
            .await
            .map_err(|e| mongo_error(name, e))?;
        let id = up.id().clone();
        let here = self.describe();
        let written: Result<(), StorageError> = async {
            while let Some(chunk) = body.next().await {
                up.write_all(&chunk?)
                    .await
                    .map_err(|e| refusal::upload_error(name, &here, e))?;
            }
            // close() writes the last chunk and then the files document: only now the revision
            // becomes visible, complete. On failure the driver removes the chunks itself.
            up.close()
                .await
                .map_err(|e| refusal::upload_error(name, &here, e))
        }
        .await;
        if let Err(e) = written {
            // abort() fails if the driver already closed the stream after its own error; the
            // explicit delete covers that case too.
            let _ = up.abort().await;
            let _ = self
                .chunks
                .delete_many(doc! { "files_id": id.clone() })
                .await;
            return Err(e);
        }
        Ok(id)
    }
}

/// A files document's `length`: drivers write it as int32 or int64 (and old ones as double).
fn length_of(value: Option<&Bson>) -> Option<u64> {
    match value {
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        Some(Bson::Double(n)) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
        _ => None,
    }
}

/// A revision's `_id` as text (an ObjectId as 24 hex digits).
fn id_text(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        other => other.to_string(),
    }
}

/// Driver errors: network trouble and server selection are worth a retry.
fn mongo_error(name: &str, e: mongodb::error::Error) -> StorageError {
    use mongodb::error::ErrorKind;
    let retryable = matches!(
        *e.kind,
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
    ) || e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError");
    StorageError::backend(name, retryable, e)
}

#[async_trait]
impl ObjectStore for GridFsStore {
    fn put_buffer(&self) -> u64 {
        // The driver's upload stream holds one chunk until it is full.
        u64::from(PARSE_CHUNK_SIZE)
    }

    fn describe(&self) -> String {
        let enc = if self.key.is_some() {
            " (encrypted)"
        } else {
            ""
        };
        format!(
            "gridfs {} db={} bucket={}{enc}",
            self.shown_uri,
            self.db.name(),
            self.bucket_name
        )
    }

    fn identity(&self) -> String {
        format!(
            "gridfs:{}/{}/{}",
            self.hosts,
            self.db.name(),
            self.bucket_name
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            // With a key, stat reads the file to check the tag (a database read).
            stat: true,
            list: true,
            range_reads: true,
            reports_md5: false,
            atomic_create: false,
        }
    }

    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.location_of(name))
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta, StorageError> {
        let rev = self.newest(name).await?;
        // A copy is verified by this `stat`: the files document alone would vouch for chunks
        // that may be missing (an upload another run swept as debris; see `check_chunks`).
        self.check_chunks(name, &rev).await?;
        let size = crypto::stored_plain_size(self.key.as_ref(), name, rev.length, |off| {
            self.open_at(name, &rev, off)
        })
        .await?;
        Ok(ObjectMeta {
            size,
            // A stored md5 is of the stored bytes: only the plaintext's when nothing was stripped.
            md5: rev.md5.filter(|_| size == rev.length),
            etag: Some(id_text(&rev.id)),
            ..Default::default()
        })
    }

    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError> {
        let rev = self.newest(name).await?;
        let version = id_text(&rev.id);
        opts.check_version(name, Some(&version))?;
        let plain = crypto::read_stored(self.key.as_ref(), name, rev.length, opts.offset, |off| {
            self.open_at(name, &rev, off)
        })
        .await?;
        Ok(plain.into_get_result(opts.offset, Some(version)))
    }

    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult, StorageError> {
        // Create-only: GridFS has no conditional insert, so the name is checked before the
        // upload and again once it is complete; a revision found then (another writer raced
        // us) wins, and ours is removed. Between our insert and that check a reader may see
        // ours: the race the contract allows without `atomic_create`.
        let create = opts.mode == PutMode::Create;
        let taken = || StorageError::AlreadyExists {
            name: name.to_string(),
            location: self.location(name).unwrap_or_else(|_| self.describe()),
        };
        if create && !self.revisions_except(name, None).await?.is_empty() {
            return Err(taken());
        }
        let (hashing, state) = HashingStream::new(body);
        let body = match &self.key {
            Some(key) => crypto::seal_stream(key, hashing.boxed()),
            None => hashing.boxed(),
        };
        let id = self.upload(name, body).await?;
        if create && !self.revisions_except(name, Some(&id)).await?.is_empty() {
            self.delete_revision(name, &id).await?;
            return Err(taken());
        }
        // Create-only found no other revision: one that appears now is another writer's, racing
        // us, and is never removed. Otherwise the new revision is complete and newest: readers
        // already see it, older revisions are invisible garbage; failing to remove them does not
        // fail the write.
        let old = if create {
            Ok(Vec::new())
        } else {
            self.revisions_except(name, Some(&id)).await
        };
        match old {
            Ok(old) => {
                for old_id in old {
                    if let Err(e) = self.delete_revision(name, &old_id).await {
                        tracing::warn!(name, error = %e, "could not remove an older GridFS revision");
                    }
                }
            }
            Err(e) => tracing::warn!(name, error = %e, "could not list older GridFS revisions"),
        }
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(PutResult {
            size: st.size,
            md5: st.md5_hex(),
            etag: Some(id_text(&id)),
        })
    }

    fn list(&self, opts: ListOptions) -> ListStream<'_> {
        list::list(self, opts)
    }

    fn quarantine(&self) -> Option<&dyn crate::storage::Quarantine> {
        Some(self)
    }

    fn debris(&self) -> Option<&dyn crate::storage::debris::Debris> {
        Some(self)
    }

    fn versioned(
        self: std::sync::Arc<Self>,
    ) -> Option<std::sync::Arc<dyn crate::storage::rekey::Versioned>> {
        Some(self)
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        for id in self.revisions_except(name, None).await? {
            self.delete_revision(name, &id).await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(|e| mongo_error(&self.describe(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn describe_hides_password_and_picks_database() {
        let cfg = GridFsConfig {
            uri: Some("mongodb://admin:hunter2@127.0.0.1:1/appdb".into()),
            ..Default::default()
        };
        let s = GridFsStore::new(&cfg, &StoreContext::default())
            .await
            .unwrap();
        assert_eq!(
            s.describe(),
            "gridfs mongodb://admin:<redacted>@127.0.0.1:1/appdb db=appdb bucket=fs"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        let ctx = StoreContext {
            mongo_uri: Some("mongodb://127.0.0.1:1/".into()),
            database: Some("ctxdb".into()),
            file_key: Some("fk".into()),
            ..Default::default()
        };
        let s = GridFsStore::new(&GridFsConfig::default(), &ctx)
            .await
            .unwrap();
        assert_eq!(s.location("a/b c").unwrap(), "gridfs://ctxdb/fs/a/b c");
        assert!(s.describe().ends_with("(encrypted)"));
        let no_db = StoreContext {
            mongo_uri: Some("mongodb://127.0.0.1:1/".into()),
            ..Default::default()
        };
        assert!(
            GridFsStore::new(&GridFsConfig::default(), &no_db)
                .await
                .is_err()
        );
    }
}
