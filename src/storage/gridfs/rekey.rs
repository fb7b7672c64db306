//! GridFS versions for `rekey` ([`crate::storage::rekey`]): a version is one files document.
//!
//! A staged version is written like the driver writes a file — every chunk first, the files
//! document last — but with an id chosen (and recorded in the ledger) beforehand, the old
//! revision's `metadata`, and an `uploadDate` newer than the old revision's, so that the moment
//! its files document exists, complete, readers (Parse Server: newest `uploadDate`) switch to it.
//! Before and after that insert, a revision newer than the old one that is not ours means Parse
//! Server uploaded under the same name meanwhile: ours is removed and theirs left alone.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};

use super::{GridFsStore, PARSE_CHUNK_SIZE, Revision, id_text, length_of, mongo_error};
use crate::storage::crypto::FileKey;
use crate::storage::rekey::{Outcome, Version, Versioned};
use crate::storage::{ByteStream, ObjectStore, StorageError};

/// A version id back as the `_id` it came from (an ObjectId, else the text itself).
fn id_bson(id: &str) -> Bson {
    ObjectId::parse_str(id)
        .map(Bson::ObjectId)
        .unwrap_or_else(|_| Bson::String(id.to_string()))
}

fn chunk_size_of(doc: &Document) -> Option<u64> {
    match doc.get("chunkSize") {
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        Some(Bson::Double(n)) if *n >= 1.0 && n.fract() == 0.0 => Some(*n as u64),
        _ => None,
    }
    .filter(|n| *n > 0)
}

impl GridFsStore {
    /// The files document of version `id` of `name`.
    async fn files_doc(&self, name: &str, id: &str) -> Result<Option<Document>, StorageError> {
        self.files
            .find_one(doc! {"_id": id_bson(id), "filename": name})
            .await
            .map_err(|e| mongo_error(name, e))
    }

    fn version_of(&self, name: &str, d: &Document) -> Result<Version, StorageError> {
        let length = length_of(d.get("length")).ok_or_else(|| {
            StorageError::message(name, false, "files document has no valid `length`")
        })?;
        Ok(Version {
            name: name.to_string(),
            id: id_text(d.get("_id").unwrap_or(&Bson::Null)),
            size: length,
            chunk_size: chunk_size_of(d).unwrap_or(0),
            uploaded_ms: d
                .get_datetime("uploadDate")
                .ok()
                .map(|t| t.timestamp_millis()),
        })
    }

    /// Revisions of `name` newer than `than` (by `uploadDate`) other than `ours`.
    async fn newer_revisions(
        &self,
        name: &str,
        than: DateTime,
        ours: &Bson,
        old: &Bson,
    ) -> Result<bool, StorageError> {
        let found = self
            .files
            .find_one(doc! {
                "filename": name,
                "uploadDate": {"$gte": than},
                "_id": {"$nin": [ours.clone(), old.clone()]},
            })
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| mongo_error(name, e))?;
        Ok(found.is_some())
    }

    async fn insert_chunk(
        &self,
        name: &str,
        id: &Bson,
        n: i64,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        let data = Binary {
            subtype: BinarySubtype::Generic,
            bytes: data,
        };
        self.chunks
            .insert_one(doc! {"files_id": id.clone(), "n": n, "data": data})
            .await
            .map_err(|e| mongo_error(name, e))?;
        Ok(())
    }

    /// Write every chunk of `stored` under `id`; the number of bytes written.
    async fn write_chunks(
        &self,
        name: &str,
        id: &Bson,
        mut stored: ByteStream,
    ) -> Result<u64, StorageError> {
        let size = PARSE_CHUNK_SIZE as usize;
        let mut buf: Vec<u8> = Vec::with_capacity(size);
        let (mut n, mut total) = (0i64, 0u64);
        while let Some(chunk) = stored.next().await {
            let mut chunk = &chunk?[..];
            total += chunk.len() as u64;
            while !chunk.is_empty() {
                let take = (size - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if buf.len() == size {
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(size));
                    self.insert_chunk(name, id, n, full).await?;
                    n += 1;
                }
            }
        }
        if !buf.is_empty() {
            self.insert_chunk(name, id, n, buf).await?;
        }
        Ok(total)
    }
}

#[async_trait]
impl Versioned for GridFsStore {
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
        let what = ObjectStore::describe(self);
        let filter = match after {
            Some(a) => doc! {"filename": {"$gt": a}},
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .files
            .find(filter)
            .sort(doc! {"filename": 1, "uploadDate": 1})
            .projection(doc! {"filename": 1, "_id": 0})
            .limit(limit.max(1) as i64)
            .await
            .map_err(|e| mongo_error(&what, e))?
            .try_collect()
            .await
            .map_err(|e| mongo_error(&what, e))?;
        let mut out: Vec<String> = Vec::new();
        for d in docs {
            if let Ok(name) = d.get_str("filename")
                && out.last().map(String::as_str) != Some(name)
            {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    async fn estimate(&self) -> u64 {
        self.files.estimated_document_count().await.unwrap_or(0)
    }

    async fn current(&self, name: &str) -> Result<Option<Version>, StorageError> {
        let found = self
            .files
            .find_one(doc! {"filename": name})
            .sort(super::newest_first())
            .projection(doc! {"_id": 1, "length": 1, "chunkSize": 1, "uploadDate": 1})
            .await
            .map_err(|e| mongo_error(name, e))?;
        found.map(|d| self.version_of(name, &d)).transpose()
    }

    async fn find(&self, name: &str, id: &str) -> Result<Option<Version>, StorageError> {
        match self.files_doc(name, id).await? {
            Some(d) => Ok(Some(self.version_of(name, &d)?)),
            None => Ok(None),
        }
    }

    async fn open(&self, v: &Version, offset: u64) -> Result<ByteStream, StorageError> {
        let chunk_size = match v.chunk_size {
            0 => {
                let d = self.files_doc(&v.name, &v.id).await?.ok_or_else(|| {
                    StorageError::NotFound {
                        name: v.name.clone(),
                        location: format!("{} (version {})", self.location_of(&v.name), v.id),
                    }
                })?;
                chunk_size_of(&d).ok_or_else(|| {
                    StorageError::message(&v.name, false, "files document has no valid `chunkSize`")
                })?
            }
            n => n,
        };
        let rev = Revision {
            id: id_bson(&v.id),
            length: v.size,
            chunk_size,
            md5: None,
        };
        self.open_at(&v.name, &rev, offset).await
    }

    fn new_id(&self) -> String {
        ObjectId::new().to_hex()
    }

    async fn stage(
        &self,
        old: &Version,
        id: &str,
        stored: ByteStream,
    ) -> Result<Outcome, StorageError> {
        let name = &old.name;
        let Some(old_doc) = self.files_doc(name, &old.id).await? else {
            return Ok(Outcome::Superseded);
        };
        let (ours, old_id) = (id_bson(id), id_bson(&old.id));
        let old_date = old_doc
            .get_datetime("uploadDate")
            .copied()
            .unwrap_or(DateTime::MIN);
        let written = self.write_chunks(name, &ours, stored).await;
        let length = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = Versioned::discard(self, name, id).await;
                return Err(e);
            }
        };
        if self.newer_revisions(name, old_date, &ours, &old_id).await? {
            Versioned::discard(self, name, id).await?;
            return Ok(Outcome::Superseded);
        }
        // Strictly newer than the old revision even if its clock ran ahead of ours.
        let now = DateTime::now().timestamp_millis();
        let date = DateTime::from_millis(now.max(old_date.timestamp_millis().saturating_add(1)));
        let metadata = old_doc
            .get_document("metadata")
            .cloned()
            .unwrap_or_default();
        let files = doc! {
            "_id": ours.clone(),
            "length": length as i64,
            "chunkSize": PARSE_CHUNK_SIZE as i32,
            "uploadDate": date,
            "filename": name,
            "metadata": metadata,
        };
        if let Err(e) = self.files.insert_one(files).await {
            let _ = Versioned::discard(self, name, id).await;
            return Err(mongo_error(name, e));
        }
        if self.newer_revisions(name, old_date, &ours, &old_id).await? {
            Versioned::discard(self, name, id).await?;
            return Ok(Outcome::Superseded);
        }
        Ok(Outcome::Done(Version {
            name: name.clone(),
            id: id.to_string(),
            size: length,
            chunk_size: PARSE_CHUNK_SIZE as u64,
            uploaded_ms: Some(date.timestamp_millis()),
        }))
    }

    async fn commit(&self, old: &Version, new: &Version) -> Result<Outcome, StorageError> {
        let name = &old.name;
        Versioned::remove_stale(self, old).await?;
        self.delete_revision(name, &id_bson(&old.id)).await?;
        Ok(Outcome::Done(new.clone()))
    }

    async fn discard(&self, name: &str, id: &str) -> Result<(), StorageError> {
        self.delete_revision(name, &id_bson(id)).await
    }

    async fn prepare(&self) -> Result<(), StorageError> {
        // The GridFS spec's indexes: `{filename, uploadDate}` (newest revision of a name) and
        // `{files_id, n}` (a file's chunks in order). A bucket written by Parse Server has them;
        // one written otherwise may not, and every lookup is then a collection scan. An index
        // that exists with other options is left as it is.
        let what = ObjectStore::describe(self);
        for (coll, keys, unique) in [
            (&self.files, doc! {"filename": 1, "uploadDate": 1}, false),
            (&self.chunks, doc! {"files_id": 1, "n": 1}, true),
        ] {
            let names = match coll.list_indexes().await {
                Ok(cursor) => cursor
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| mongo_error(&what, e))?,
                // No such collection: nothing is stored, nothing to index (and no empty
                // collection is made in the app's database).
                Err(e) if namespace_missing(&e) => continue,
                Err(e) => return Err(mongo_error(&what, e)),
            };
            if names.iter().any(|i| i.keys == keys) {
                continue;
            }
            let options = mongodb::options::IndexOptions::builder()
                .unique(unique)
                .build();
            let model = mongodb::IndexModel::builder()
                .keys(keys)
                .options(options)
                .build();
            if let Err(e) = coll.create_index(model).await {
                tracing::warn!("{what}: could not create a GridFS index: {e}");
            }
        }
        Ok(())
    }

    async fn stale(&self, v: &Version) -> Result<u64, StorageError> {
        Ok(self.stale_ids(v).await?.len() as u64)
    }

    async fn remove_stale(&self, v: &Version) -> Result<u64, StorageError> {
        let stale = self.stale_ids(v).await?;
        for id in &stale {
            self.delete_revision(&v.name, id).await?;
        }
        Ok(stale.len() as u64)
    }
}

impl GridFsStore {
    /// The revisions of `v.name` older than `v`.
    async fn stale_ids(&self, v: &Version) -> Result<Vec<Bson>, StorageError> {
        let name = &v.name;
        let date = match v.uploaded_ms {
            Some(ms) => DateTime::from_millis(ms),
            None => match self.files_doc(name, &v.id).await? {
                Some(d) => match d.get_datetime("uploadDate") {
                    Ok(t) => *t,
                    Err(_) => return Ok(Vec::new()),
                },
                None => return Ok(Vec::new()),
            },
        };
        // Older than the revision readers see: never served again, only an old form of the file.
        self.revision_ids(name, doc! {"filename": name, "uploadDate": {"$lt": date}})
            .await
    }
}

/// Whether `e` is MongoDB's answer about a collection that does not exist (`NamespaceNotFound`,
/// code 26), which `listIndexes` gives where a find would simply find nothing.
fn namespace_missing(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 26)
}
