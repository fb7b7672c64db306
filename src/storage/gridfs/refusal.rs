//! MongoDB answers to a GridFS write that every later write would get too, so the run stops
//! instead of failing file after file (the fs store's `ENOSPC`, S3's revoked keys):
//!
//! * **no space** ([`StorageError::NoSpace`], exit 7): `OutOfDiskSpace` (14031 in MongoDB's
//!   `error_codes.yml`), and Atlas's shared tiers over their storage quota (`AtlasError` 8000,
//!   "you are over your space quota");
//! * **refused** ([`StorageError::Refused`], exit 4): `Unauthorized` (13: the URI's user may not
//!   write this database) and `AuthenticationFailed` (18).
//!
//! A self-hosted `mongod` whose disk fills shuts down instead (WiredTiger cannot continue): the
//! run sees the connection lost and stops with exit 4 (`tests/it/db_faults.rs`). Everything else
//! keeps the driver's own retry judgement.

use crate::storage::StorageError;

/// What a refused write means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoSpace,
    Permission,
    Credentials,
}

/// Judge a server's error `code` and `message` (pure, so it is unit-tested).
fn judge(code: i32, message: &str) -> Option<Refusal> {
    match code {
        14031 => Some(Refusal::NoSpace),
        8000 if message.to_ascii_lowercase().contains("space quota") => Some(Refusal::NoSpace),
        13 => Some(Refusal::Permission),
        18 => Some(Refusal::Credentials),
        _ => None,
    }
}

/// The server's code and message of a write's error, if the server answered one.
fn server_answer(e: &mongodb::error::Error) -> Option<(i32, String)> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some((c.code, c.message.clone())),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some((w.code, w.message.clone())),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some((w.code, w.message.clone())),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| (w.code, w.message.clone())),
        _ => None,
    }
}

/// A refused write of `name` at `location` as the error that stops the run, if it is one.
pub(super) fn classify(
    name: &str,
    location: &str,
    e: &mongodb::error::Error,
) -> Option<StorageError> {
    let (code, message) = server_answer(e)?;
    Some(match judge(code, &message)? {
        Refusal::NoSpace => StorageError::NoSpace {
            name: name.to_string(),
            location: location.to_string(),
            needed: format!("the server answered {code}: {message}"),
        },
        Refusal::Permission => StorageError::Refused {
            name: name.to_string(),
            store: location.to_string(),
            code: format!("{code} Unauthorized"),
            fix: "give the user of the destination's `uri` the readWrite role on its database"
                .to_string(),
        },
        Refusal::Credentials => StorageError::Refused {
            name: name.to_string(),
            store: location.to_string(),
            code: format!("{code} AuthenticationFailed"),
            fix: "fix the user name and password in the destination's `uri`".to_string(),
        },
    })
}

/// An error of the driver's upload stream (an I/O error wrapping the driver's own): a refusal
/// stops the run, anything else is worth another try.
pub(super) fn upload_error(name: &str, location: &str, e: std::io::Error) -> StorageError {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<mongodb::error::Error>());
    if let Some(refused) = inner.and_then(|m| classify(name, location, m)) {
        return refused;
    }
    StorageError::backend(name, true, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disks_and_quotas_are_no_space() {
        assert_eq!(judge(14031, "Out of disk space"), Some(Refusal::NoSpace));
        assert_eq!(
            judge(
                8000,
                "you are over your space quota, using 513 MB of 512 MB"
            ),
            Some(Refusal::NoSpace)
        );
        // Another Atlas error is not a full disk.
        assert_eq!(judge(8000, "user is not allowed to do action"), None);
    }

    #[test]
    fn permissions_and_credentials_are_refusals() {
        assert_eq!(
            judge(13, "not authorized on app to execute command"),
            Some(Refusal::Permission)
        );
        assert_eq!(
            judge(18, "Authentication failed."),
            Some(Refusal::Credentials)
        );
    }

    #[test]
    fn other_answers_keep_the_usual_judgement() {
        // InternalError, NotWritablePrimary, WriteConflict, a duplicate key.
        for code in [1, 10107, 112, 11000] {
            assert_eq!(judge(code, "x"), None, "code {code}");
        }
        let io = std::io::Error::other("connection reset");
        assert!(upload_error("a.png", "GridFS app/fs", io).is_retryable());
    }
}
