//! Listing an S3 bucket under the store's prefix: `ListObjectsV2`, one request per page, following
//! the continuation token. Keys are returned with the store's prefix removed, so they are the
//! Parse names references hold.

use std::time::SystemTime;

use aws_sdk_s3::types::ServerSideEncryption;
use futures::StreamExt;

use super::errors::classify;
use super::{S3Store, is_md5_hex};
use crate::storage::{ListOptions, ListStream, ListedObject, ObjectStore, StorageError};

/// S3 answers at most this many keys per request.
const MAX_KEYS: usize = 1000;

/// Where a listing stands: `None` when done, else the continuation token (none at first).
type Token = Option<Option<String>>;

pub(super) fn list(store: &S3Store, opts: ListOptions) -> ListStream<'_> {
    let page = opts.page_size().min(MAX_KEYS);
    let prefix = format!("{}{}", store.prefix, opts.prefix());
    // ETags are MD5s of the bytes only for single-part uploads without SSE-KMS (see `stat`).
    let md5_etags = store.sse != Some(ServerSideEncryption::AwsKms);
    let start: Token = Some(None);
    futures::stream::try_unfold(start, move |token| {
        let prefix = prefix.clone();
        async move {
            let Some(token) = token else {
                return Ok(None);
            };
            let mut req = store
                .client
                .list_objects_v2()
                .bucket(&store.bucket)
                .max_keys(page as i32);
            if !prefix.is_empty() {
                req = req.prefix(&prefix);
            }
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = req.send().await.map_err(|e| {
                classify(e).into_error(
                    &store.describe(),
                    format!("ListObjectsV2 {}", store.url(&prefix)),
                )
            })?;
            let objects = out
                .contents()
                .iter()
                .filter_map(|o| {
                    let key = o.key()?;
                    // Quarantined objects are not the store's (with an empty prefix they would
                    // list as names).
                    if key.starts_with(crate::storage::QUARANTINE_ROOT) {
                        return None;
                    }
                    let name = key.strip_prefix(&store.prefix)?;
                    if name.is_empty() {
                        return None;
                    }
                    let etag = o.e_tag().map(|t| t.trim_matches('"').to_string());
                    Some(ListedObject {
                        name: name.to_string(),
                        size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        modified: o
                            .last_modified()
                            .and_then(|d| SystemTime::try_from(*d).ok()),
                        md5: etag
                            .as_deref()
                            .filter(|t| md5_etags && is_md5_hex(t))
                            .map(str::to_ascii_lowercase),
                        version: etag,
                        superseded: false,
                    })
                })
                .collect();
            // A truncated answer without a token would repeat the first page forever: stop.
            let next: Token = match (out.is_truncated(), out.next_continuation_token()) {
                (Some(true), Some(t)) => Some(Some(t.to_string())),
                _ => None,
            };
            Ok::<_, StorageError>(Some((objects, next)))
        }
    })
    .boxed()
}
