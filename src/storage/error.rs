//! How a storage operation fails ([`StorageError`]), and error text made for people: an error's
//! chain of sources in one line, a MongoDB refusal without the driver's dump.

/// Every way a storage operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist (HTTP 404/403/410, missing key, no GridFS file).
    #[error("{name}: not found at {location}")]
    NotFound { name: String, location: String },
    /// [`PutMode::Create`](super::PutMode::Create) found an object under the name; it was left as it was.
    #[error("{name}: an object already exists at {location}")]
    AlreadyExists { name: String, location: String },
    /// The destination has no room for the write (a full disk or quota): the run stops, since
    /// every later write would fail the same way. Nothing of the write stays.
    #[error("{name}: no space left at {location} ({needed})")]
    NoSpace {
        name: String,
        location: String,
        /// What the write needed, as far as known (e.g. `writing 1048576 bytes`).
        needed: String,
    },
    /// The store refuses every request, not just this one: credentials rejected (unknown or
    /// revoked key, bad signature, expired token) or the bucket gone. The run stops, since every
    /// later request would fail the same way; `fix` says what to change.
    #[error("{name}: {store} refused the request ({code}): {fix}")]
    Refused {
        name: String,
        store: String,
        code: String,
        fix: String,
    },
    /// The name cannot be stored by this backend without changing it.
    #[error("{name:?}: invalid name for this store: {reason}")]
    InvalidName { name: String, reason: String },
    /// The backend does not support this operation (see [`Capabilities`](super::Capabilities)).
    #[error("{operation} is not supported by {store}")]
    Unsupported {
        operation: &'static str,
        store: String,
    },
    /// The bytes do not match what was expected (size, hash, a broken stream).
    #[error("{name}: integrity check failed: {reason}")]
    Integrity { name: String, reason: String },
    /// The server asked us to slow down (HTTP 429, 503): always worth another try, after
    /// `retry_after` when the server said how long (`Retry-After`).
    #[error("{name}: {message}")]
    Throttled {
        name: String,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Any other failure talking to the backend.
    #[error("{name}: {message}")]
    Backend {
        name: String,
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StorageError {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Backend { retryable, .. } => *retryable,
            StorageError::Integrity { .. } | StorageError::Throttled { .. } => true,
            _ => false,
        }
    }

    /// How long the server asked us to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            StorageError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, StorageError::AlreadyExists { .. })
    }

    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }

    /// The store refuses every request ([`StorageError::Refused`]).
    pub fn is_refused(&self) -> bool {
        matches!(self, StorageError::Refused { .. })
    }

    /// A backend failure with its underlying cause.
    pub fn backend(
        name: impl Into<String>,
        retryable: bool,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Backend {
            name: name.into(),
            message: error_chain(&source),
            retryable,
            source: Some(Box::new(source)),
        }
    }

    /// A backend failure described by a message only.
    pub fn message(name: impl Into<String>, retryable: bool, message: impl Into<String>) -> Self {
        StorageError::Backend {
            name: name.into(),
            message: message.into(),
            retryable,
            source: None,
        }
    }
}

/// `a: b: c` from an error and its sources (SDK errors hide the useful part in the chain).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = match err.downcast_ref::<mongodb::error::Error>() {
        Some(e) => mongo_text(e),
        None => err.to_string(),
    };
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// A MongoDB error as a person reads it: a server's refusal as its message, name and code (the
/// driver's own text adds its labels and the raw reply in hex).
pub(crate) fn mongo_text(e: &mongodb::error::Error) -> String {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Command(c) => format!("{} ({} {})", c.message, c.code_name, c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            format!("{} (write error {})", w.message, w.code)
        }
        kind => kind.to_string(),
    }
}

/// What a read pinned to version `wanted` ([`GetOptions::version`](super::GetOptions::version)) answers when the store now
/// holds version `now` under the name.
pub(super) fn changed_since(name: &str, wanted: &str, now: &str) -> StorageError {
    StorageError::Integrity {
        name: name.to_string(),
        reason: format!(
            "the object was replaced while it was being read (version {wanted}, now {now}); \
             it is read again from the start"
        ),
    }
}
