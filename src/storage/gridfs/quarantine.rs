//! The GridFS store's quarantine: each files document of the name has its `filename` field
//! renamed to [`QUARANTINED`] (one atomic update per document, no chunk copied). Parse Server
//! finds a file by `{filename: <name>}` (`openDownloadStreamByName`), which never matches a
//! document without `filename`, whatever name is asked for; the listing skips such documents.
//! Every revision moves, or an older one would be served in the newest one's place.
//!
//! Restoring renames the field back, refused while a revision of that name newer than every
//! quarantined one exists, an upload since the quarantine (checked just before the update, like
//! a create-only `put` on GridFS: an upload racing it in that window becomes the newest revision
//! and is served, nothing is lost). Older served revisions are what a restore cut short left
//! (`update_many` is not atomic across documents): the next restore finishes it.

use mongodb::bson::{Bson, Document, doc};

use super::{GridFsStore, id_text, mongo_error};
use crate::storage::{Quarantine, StorageError};

/// The field that holds a quarantined revision's name instead of `filename`.
pub(super) const QUARANTINED: &str = "pfmQuarantinedFilename";
/// When it was quarantined.
const QUARANTINED_AT: &str = "pfmQuarantinedAt";

impl GridFsStore {
    pub(super) fn quarantine_location_of(&self, name: &str) -> String {
        format!(
            "gridfs://{}/{}.files?{QUARANTINED}={name}",
            self.db.name(),
            self.bucket_name
        )
    }

    async fn exists(&self, filter: Document, name: &str) -> Result<bool, StorageError> {
        Ok(self
            .files
            .find_one(filter)
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| mongo_error(name, e))?
            .is_some())
    }

    fn not_found(&self, name: &str) -> StorageError {
        StorageError::NotFound {
            name: name.to_string(),
            location: self.quarantine_location_of(name),
        }
    }

    pub(super) async fn quarantine_revisions(&self, name: &str) -> Result<(), StorageError> {
        let _ = crate::storage::validate_name(name)?;
        let moved = self
            .files
            .update_many(
                doc! {"filename": name},
                doc! {
                    "$rename": {"filename": QUARANTINED},
                    "$set": {QUARANTINED_AT: mongodb::bson::DateTime::now()},
                },
            )
            .await
            .map_err(|e| mongo_error(name, e))?;
        if moved.modified_count > 0 || self.exists(doc! {QUARANTINED: name}, name).await? {
            Ok(())
        } else {
            Err(self.not_found(name))
        }
    }

    /// The newest `uploadDate` among the files documents `filter` matches (`Some(None)`: some
    /// match, none with a date).
    async fn newest_date(
        &self,
        filter: Document,
        name: &str,
    ) -> Result<Option<Option<mongodb::bson::DateTime>>, StorageError> {
        let found = self
            .files
            .find_one(filter)
            .sort(doc! {"uploadDate": -1})
            .projection(doc! {"uploadDate": 1})
            .await
            .map_err(|e| mongo_error(name, e))?;
        Ok(found.map(|d| d.get_datetime("uploadDate").ok().copied()))
    }

    pub(super) async fn restore_revisions(&self, name: &str) -> Result<(), StorageError> {
        let _ = crate::storage::validate_name(name)?;
        let quarantined = self.newest_date(doc! {QUARANTINED: name}, name).await?;
        let served = self.newest_date(doc! {"filename": name}, name).await?;
        match (quarantined, served) {
            (None, Some(_)) => return Ok(()),
            (None, None) => return Err(self.not_found(name)),
            // Served revisions all older than the newest quarantined one are revisions from
            // before the quarantine, a restore cut short (a failover between the documents of
            // `update_many`): the rest is restored. One uploaded since is newer, is served, and
            // keeps its place.
            (Some(Some(q)), Some(Some(s))) if s <= q => {}
            (Some(_), Some(_)) => {
                return Err(StorageError::AlreadyExists {
                    name: name.to_string(),
                    location: self.location_of(name),
                });
            }
            (Some(_), None) => {}
        }
        self.files
            .update_many(
                doc! {QUARANTINED: name},
                doc! {"$rename": {QUARANTINED: "filename"}, "$unset": {QUARANTINED_AT: ""}},
            )
            .await
            .map_err(|e| mongo_error(name, e))?;
        Ok(())
    }

    pub(super) async fn purge_revisions(&self, name: &str) -> Result<(), StorageError> {
        for id in self.revision_ids(name, doc! {QUARANTINED: name}).await? {
            self.delete_revision(name, &id).await?;
        }
        Ok(())
    }

    pub(super) async fn delete_old_revision(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(), StorageError> {
        let newest = match self.newest(name).await {
            Ok(r) => r.id,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if id_text(&newest) == version {
            return Err(StorageError::InvalidName {
                name: name.to_string(),
                reason: format!("revision {version} is the newest (served) one; not deleted"),
            });
        }
        let old: Vec<Bson> = self.revisions_except(name, Some(&newest)).await?;
        for id in old.iter().filter(|id| id_text(id) == version) {
            // A revision uploaded at the same millisecond as the newest: which one Parse Server's
            // driver serves is unspecified, so it is not superseded for sure.
            let date = |id: &Bson| {
                let files = self.files.clone();
                let id = id.clone();
                async move {
                    let d = files
                        .find_one(doc! {"_id": id})
                        .projection(doc! {"uploadDate": 1})
                        .await
                        .map_err(|e| mongo_error(name, e))?;
                    Ok::<_, StorageError>(
                        d.and_then(|d| d.get_datetime("uploadDate").ok().copied()),
                    )
                }
            };
            let (this, served) = (date(id).await?, date(&newest).await?);
            if this.is_some() && this == served {
                return Err(StorageError::InvalidName {
                    name: name.to_string(),
                    reason: format!(
                        "revision {version} was uploaded at the same moment as the newest one \
                         (either may be served); not deleted"
                    ),
                });
            }
            self.delete_revision(name, id).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Quarantine for GridFsStore {
    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.quarantine_location_of(name))
    }

    async fn quarantine(&self, name: &str) -> Result<(), StorageError> {
        self.quarantine_revisions(name).await
    }

    async fn unquarantine(&self, name: &str) -> Result<(), StorageError> {
        self.restore_revisions(name).await
    }

    async fn purge(&self, name: &str) -> Result<(), StorageError> {
        self.purge_revisions(name).await
    }

    async fn delete_superseded(&self, name: &str, version: &str) -> Result<(), StorageError> {
        self.delete_old_revision(name, version).await
    }
}
