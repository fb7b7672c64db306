//! Mapping `aws-sdk-s3` errors to [`StorageError`]: what is a missing object, and what a retry
//! can fix (throttling, 5xx, timeouts, dropped connections) versus what it cannot (4xx).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::byte_stream::error::Error as BodyError;

use crate::storage::{StorageError, error_chain};

/// S3 error codes that mean "slow down / try later" even when the HTTP status is a 4xx
/// (AWS "Error responses" list; `RequestTimeout` is a 400 for an idle upload connection).
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
];

/// S3 error codes that refuse every request, not just this one, with what to change: the run
/// stops on the first ([`StorageError::Refused`]) instead of failing every file the same way.
const REFUSED_CODES: &[(&str, &str)] = &[
    (
        "InvalidAccessKeyId",
        "the server does not know this access key (revoked, deleted, or mistyped): fix \
         access_key_id / secret_access_key (or the credential chain), then run again",
    ),
    (
        "NotSignedUp",
        "the server does not accept this access key (revoked, or not signed up for S3): fix \
         access_key_id / secret_access_key (or the credential chain), then run again",
    ),
    (
        "SignatureDoesNotMatch",
        "the secret key does not match the access key: fix secret_access_key, then run again",
    ),
    (
        "ExpiredToken",
        "the session token expired: renew the credentials, then run again",
    ),
    (
        "TokenRefreshRequired",
        "the session token expired: renew the credentials, then run again",
    ),
    (
        "InvalidToken",
        "the session token is invalid: renew the credentials, then run again",
    ),
    (
        "NoSuchBucket",
        "the bucket does not exist (deleted, or the wrong bucket, region or endpoint): create it \
         or fix the store's table, then run again",
    ),
    (
        "AllAccessDisabled",
        "all access to this bucket or account is disabled: ask its owner",
    ),
    (
        "AccountProblem",
        "the account has a problem that blocks every request: ask its owner",
    ),
];

/// An SDK failure, classified.
pub(super) struct Failure {
    /// HTTP status when the server answered.
    pub status: Option<u16>,
    /// The object does not exist: 404, `NoSuchKey`, `NotFound` (a missing bucket is `refused`;
    /// a HEAD answers without a code, so there a missing bucket still looks like this).
    pub not_found: bool,
    pub retryable: bool,
    /// The error code and what to change, when the store refuses every request.
    pub refused: Option<(String, &'static str)>,
    message: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    /// The failure as a backend error whose message is `<what>: <cause chain>`.
    pub(super) fn into_error(self, name: &str, what: String) -> StorageError {
        if let Some((code, fix)) = self.refused {
            return StorageError::Refused {
                name: name.to_string(),
                store: what,
                code,
                fix: fix.to_string(),
            };
        }
        StorageError::Backend {
            name: name.to_string(),
            message: format!("{what}: {}", self.message),
            retryable: self.retryable,
            source: Some(self.source),
        }
    }
}

/// Classify any SDK operation error.
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let refused = code.as_deref().and_then(|c| {
        REFUSED_CODES
            .iter()
            .find(|(known, _)| *known == c)
            .map(|(known, fix)| (known.to_string(), *fix))
    });
    let (retryable, not_found) = match &err {
        _ if refused.is_some() => (false, false),
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let code_retryable = code
                .as_deref()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c));
            let status_retryable = status.is_some_and(|s| s == 408 || s == 429 || s >= 500);
            let not_found =
                status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey" | "NotFound"));
            // A response the SDK could not parse (no status) is most likely a proxy or a
            // truncated body: worth another try.
            (
                code_retryable || status_retryable || (status.is_none() && !not_found),
                not_found,
            )
        }
        SdkError::TimeoutError(_) => (true, false),
        // A dispatch failure the SDK calls a "user" error is a bad request it built from our
        // settings (e.g. an invalid endpoint URL): retrying cannot help.
        SdkError::DispatchFailure(d) => (!d.is_user(), false),
        // ConstructionFailure: the request could not even be built (bad input).
        _ => (false, false),
    };
    let mut message = error_chain(&err);
    if let Some(code) = code.as_deref().filter(|c| !message.contains(c)) {
        message = format!("{code}: {message}");
    }
    if let Some(s) = status {
        message = format!("HTTP {s}: {message}");
    }
    Failure {
        status,
        not_found,
        retryable,
        refused,
        message,
        source: Box::new(err),
    }
}

/// A failure while streaming a response body: always retryable (the engine resumes with a
/// range read or starts over).
pub(super) fn body_error(name: &str, what: &str, err: BodyError) -> StorageError {
    StorageError::Backend {
        name: name.to_string(),
        message: format!("{what}: reading the body: {}", error_chain(&err)),
        retryable: true,
        source: Some(Box::new(err)),
    }
}
