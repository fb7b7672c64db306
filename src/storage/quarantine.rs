//! The quarantine capability: a reversible move of the object served under a name to a place in
//! the *same* store that Parse Server does not serve. Only the stores that can implement
//! [`Quarantine`]; callers find it through [`ObjectStore::quarantine`](super::ObjectStore::quarantine)
//! (no flag that could disagree with the methods: the `Option` *is* the capability).
//!
//! This module owns the trait and its contract. Who may call it is decided above: every move,
//! restore and purge goes through the engine's removal door (`crate::engine::removal`), which
//! records each step in the ledger before it touches the store.
//!
//! # Contract
//!
//! * **Where.** The quarantine is not served under any name Parse Server resolves through this
//!   store's layout where the layout allows it (fs: a sub-directory, which no encoded name can
//!   reach; GridFS: the `filename` field renamed, so no query by name matches; S3/GCS: a key
//!   outside the store's prefix, see [`QUARANTINE_ROOT`]). Quarantined objects never appear in
//!   [`ObjectStore::list`](super::ObjectStore::list).
//! * **Idempotent.** A crash mid-move is finished by repeating it: [`Quarantine::quarantine`]
//!   succeeds when the quarantine already holds the name and the name is gone
//!   ([`Quarantine::unquarantine`] the other way round); an object absent from both places is
//!   [`StorageError::NotFound`].
//! * **Never replaces.** Neither direction ever replaces other bytes: a quarantine already holding
//!   other bytes under the name (or, for `unquarantine`, a name holding an object again) is
//!   [`StorageError::AlreadyExists`], and nothing changes (GridFS keeps revisions instead:
//!   quarantining a name twice keeps both, and a restore brings the newest back as the served
//!   one).
//! * **Verified moves.** Moves verify before they delete: S3 and GCS copy server-side, compare
//!   size and ETag/MD5, then delete the original.
//! * [`Quarantine::delete_superseded`] removes one superseded GridFS revision (never the newest);
//!   the other stores keep no revisions and refuse it.

use async_trait::async_trait;

use super::StorageError;

/// Where the object stores (S3, GCS) keep quarantined objects: the key
/// `QUARANTINE_ROOT + prefix + name`, at the bucket's root, so outside a non-empty store prefix
/// (Parse Server resolves every name to `prefix + name`, and so can never reach it). With an
/// empty prefix every key of the bucket is some name's key: the quarantined object is then not
/// served under its *original* name, but still under the name `QUARANTINE_ROOT + name`.
pub const QUARANTINE_ROOT: &str = ".parse-files-quarantine/";

/// A store's quarantine (see the module's contract).
#[async_trait]
pub trait Quarantine: Send + Sync {
    /// Where `name` is (or would be) kept in quarantine, for plans, reports and the ledger. No I/O.
    fn location(&self, name: &str) -> Result<String, StorageError>;

    /// Move the object served under `name` (GridFS: every revision) into quarantine.
    async fn quarantine(&self, name: &str) -> Result<(), StorageError>;

    /// Move the quarantined object of `name` back under `name`: [`StorageError::AlreadyExists`]
    /// (nothing changed) when the name holds another object meanwhile, [`StorageError::NotFound`]
    /// when neither place holds it.
    async fn unquarantine(&self, name: &str) -> Result<(), StorageError>;

    /// Delete the quarantined object of `name` for good. A missing one is not an error.
    async fn purge(&self, name: &str) -> Result<(), StorageError>;

    /// Delete the superseded revision `version` ([`ListedObject::version`](super::ListedObject::version))
    /// of `name`. Refused with [`StorageError::InvalidName`] when it is the newest revision (the
    /// one Parse Server serves); a missing one is not an error. Stores without revisions refuse
    /// it as [`StorageError::Unsupported`].
    async fn delete_superseded(&self, name: &str, version: &str) -> Result<(), StorageError> {
        let _ = version;
        Err(StorageError::Unsupported {
            operation: "deleting superseded revisions",
            store: format!("a store without revisions (asked for {name:?})"),
        })
    }
}
