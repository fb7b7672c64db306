//! Whether a GridFS revision is whole: its chunks counted against its files document, without
//! reading them (see [`GridFsStore::check_chunks`]). `stat` asks it, so it is part of verifying
//! every copy to a GridFS destination.

use futures::TryStreamExt;
use mongodb::bson::{Bson, doc};

use super::{GridFsStore, Revision, id_text, mongo_error};
use crate::storage::StorageError;

impl GridFsStore {
    /// Whether the chunks of a revision are all there, as its files document describes them:
    /// as many as its `length` needs, numbered from 0, holding `length` bytes in all. One
    /// aggregate over the (`files_id`, `n`) index; no byte is sent back.
    ///
    /// The files document is written last, so it normally proves the chunks were written; but a
    /// run that took this run's lease as expired (a stall, a skewed clock) may have removed the
    /// chunks of this upload in flight as a killed run's debris, and the rest of the upload then
    /// completed it with a hole. Reading the file would find that (`open_at`), but for an
    /// unencrypted store nothing reads it before the copy is recorded verified.
    pub(super) async fn check_chunks(
        &self,
        name: &str,
        rev: &Revision,
    ) -> Result<(), StorageError> {
        let summary = self
            .chunks
            .aggregate([
                doc! {"$match": {"files_id": rev.id.clone()}},
                doc! {"$group": {"_id": Bson::Null, "count": {"$sum": 1},
                "bytes": {"$sum": {"$binarySize": "$data"}},
                "first": {"$min": "$n"}, "last": {"$max": "$n"}}},
            ])
            .await
            .map_err(|e| mongo_error(name, e))?
            .try_next()
            .await
            .map_err(|e| mongo_error(name, e))?
            .unwrap_or_default();
        let int = |f: &str| crate::db::int(summary.get(f));
        let want = rev.length.div_ceil(rev.chunk_size) as i64;
        let (count, bytes) = (int("count").unwrap_or(0), int("bytes").unwrap_or(0));
        let numbered = want == 0 || (int("first") == Some(0) && int("last") == Some(want - 1));
        if count == want && bytes == rev.length as i64 && numbered {
            return Ok(());
        }
        Err(StorageError::Integrity {
            name: name.to_string(),
            reason: format!(
                "revision {} has {count} chunks holding {bytes} bytes, its files document says \
                 {want} chunks and {} bytes",
                id_text(&rev.id),
                rev.length
            ),
        })
    }
}
