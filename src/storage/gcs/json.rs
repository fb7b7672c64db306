//! The few GCS JSON API calls the store makes itself (object metadata, listing, delete, bucket
//! check),
//! over reqwest with a bearer token from `google-cloud-auth`.
//!
//! Why not the crate: its `StorageControl` client is gRPC-only and emulators serve only the
//! JSON API (test-services.md §3). These are single requests with no retry; the engine retries.

use base64::Engine;
use google_cloud_auth::credentials::CacheableResource;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::GcsStore;
use crate::storage::{ListedObject, ObjectMeta, ObjectStore, StorageError, error_chain};

/// Path-segment encoding for object names: everything but RFC 3986 unreserved characters
/// (`/` too — the JSON API wants the whole name as one segment).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The fields of an object resource we use
/// (<https://cloud.google.com/storage/docs/json_api/v1/objects#resource>).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectResource {
    /// A decimal string, as the JSON API encodes 64-bit integers.
    size: Option<String>,
    content_type: Option<String>,
    cache_control: Option<String>,
    /// Base64 MD5; absent for composite objects.
    md5_hash: Option<String>,
    generation: Option<String>,
}

/// An object in a listing (the resource's `name` and `updated` besides the above).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedResource {
    name: String,
    /// RFC 3339.
    updated: Option<String>,
    #[serde(flatten)]
    object: ObjectResource,
}

/// One page of `objects.list`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ListedResource>,
    next_page_token: Option<String>,
}

/// The base64 MD5 of the JSON API as lowercase hex.
fn md5_hex(b64: Option<String>) -> Option<String> {
    b64.and_then(|b| base64::prelude::BASE64_STANDARD.decode(b).ok())
        .filter(|d| d.len() == 16)
        .map(hex::encode)
}

/// One page of the objects whose names start with `prefix` (the store's prefix included),
/// names returned without the store's prefix; and the token of the next page, if any.
/// What to change when the bucket is gone.
const BUCKET_GONE: &str = "the bucket does not exist (deleted, or the wrong bucket or project): \
                           create it or fix the store's table, then run again";
/// What to change when the credentials are rejected.
pub(super) const CREDENTIALS: &str = "the credentials are rejected (revoked key, deleted service \
                                      account, expired token): fix credentials_file (or the \
                                      application default credentials), then run again";

/// A request the store refuses whatever the object ([`StorageError::Refused`]).
pub(super) fn refused(name: &str, what: &str, code: &str, fix: &str) -> StorageError {
    StorageError::Refused {
        name: name.to_string(),
        store: what.to_string(),
        code: code.to_string(),
        fix: fix.to_string(),
    }
}

pub(super) async fn list_page(
    store: &GcsStore,
    prefix: &str,
    page: usize,
    token: Option<&str>,
) -> Result<(Vec<ListedObject>, Option<String>), StorageError> {
    let who = store.describe();
    let what = format!("list {}", store.url(prefix));
    let base = format!(
        "{}/storage/v1/b/{}/o",
        store.endpoint,
        utf8_percent_encode(&store.bucket, SEGMENT)
    );
    let mut url = url::Url::parse(&base).map_err(|e| StorageError::backend(&who, false, e))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("maxResults", &page.to_string());
        if !prefix.is_empty() {
            q.append_pair("prefix", prefix);
        }
        if let Some(t) = token {
            q.append_pair("pageToken", t);
        }
    }
    let resp = send(store, &who, &what, Method::GET, url.as_str()).await?;
    let resp = match resp.status() {
        // A listing has no object to miss: its bucket is gone.
        StatusCode::NOT_FOUND => return Err(refused(&who, &what, "404 Not Found", BUCKET_GONE)),
        StatusCode::UNAUTHORIZED => return Err(refused(&who, &what, "401", CREDENTIALS)),
        _ => check_status(&who, &what, resp).await?,
    };
    let list: ObjectList = resp
        .json()
        .await
        .map_err(|e| StorageError::backend(&who, true, e))?;
    let objects = list
        .items
        .into_iter()
        .filter_map(|o| {
            // Quarantined objects are not the store's (with an empty prefix they would list).
            if o.name.starts_with(crate::storage::QUARANTINE_ROOT) {
                return None;
            }
            let name = o.name.strip_prefix(&store.prefix)?.to_string();
            if name.is_empty() {
                return None;
            }
            Some(ListedObject {
                name,
                size: o.object.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                modified: o
                    .updated
                    .and_then(|t| humantime::parse_rfc3339_weak(&t).ok()),
                md5: md5_hex(o.object.md5_hash),
                version: o.object.generation,
                superseded: false,
            })
        })
        .collect();
    Ok((objects, list.next_page_token.filter(|t| !t.is_empty())))
}

pub(super) async fn stat(
    store: &GcsStore,
    name: &str,
    key: &str,
) -> Result<ObjectMeta, StorageError> {
    let what = format!("get metadata of {}", store.url(key));
    let resp = send(store, name, &what, Method::GET, &object_url(store, key)).await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Err(not_found(store, name, key));
    }
    let resp = check_status(name, &what, resp).await?;
    let obj: ObjectResource = resp
        .json()
        .await
        .map_err(|e| StorageError::backend(name, true, e))?;
    let md5 = md5_hex(obj.md5_hash);
    Ok(ObjectMeta {
        size: obj.size.and_then(|s| s.parse().ok()).unwrap_or(0),
        content_type: obj.content_type,
        cache_control: obj.cache_control,
        md5,
        etag: obj.generation,
    })
}

/// Set the content type of an uploaded object, only if it is still generation `generation`.
///
/// A fallback for servers that drop the type given at upload: fake-gcs-server takes it from
/// the media part's (or chunk's) `Content-Type` instead of the object metadata the crate sends
/// (fsouza/fake-gcs-server#1098, #2114). Real GCS keeps it, so this never runs there.
pub(super) async fn patch_content_type(
    store: &GcsStore,
    name: &str,
    key: &str,
    content_type: &str,
    generation: i64,
) -> Result<(), StorageError> {
    let what = format!("set content type of {}", store.url(key));
    let url = format!("{}?ifGenerationMatch={generation}", object_url(store, key));
    let body = serde_json::json!({ "contentType": content_type });
    let resp = send_with(store, name, &what, Method::PATCH, &url, Some(body)).await?;
    check_status(name, &what, resp).await.map(drop)
}

pub(super) async fn delete(store: &GcsStore, name: &str, key: &str) -> Result<(), StorageError> {
    delete_if(store, name, key, None).await
}

/// Delete `key`; with `generation`, only that generation (`ifGenerationMatch`): another one
/// written since is kept ([`changed`](crate::storage::keymove::changed)). Nothing there is fine.
pub(super) async fn delete_if(
    store: &GcsStore,
    name: &str,
    key: &str,
    generation: Option<&str>,
) -> Result<(), StorageError> {
    let what = format!("delete {}", store.url(key));
    let mut url = object_url(store, key);
    if let Some(g) = generation {
        url = format!(
            "{url}?ifGenerationMatch={}",
            utf8_percent_encode(g, SEGMENT)
        );
    }
    let resp = send(store, name, &what, Method::DELETE, &url).await?;
    match resp.status() {
        StatusCode::NOT_FOUND => Ok(()),
        StatusCode::PRECONDITION_FAILED => {
            Err(crate::storage::keymove::changed(name, &store.url(key)))
        }
        _ => check_status(name, &what, resp).await.map(drop),
    }
}

pub(super) async fn check_bucket(store: &GcsStore) -> Result<(), StorageError> {
    let who = store.describe();
    let url = format!(
        "{}/storage/v1/b/{}",
        store.endpoint,
        utf8_percent_encode(&store.bucket, SEGMENT)
    );
    let what = format!("get bucket {:?}", store.bucket);
    let resp = send(store, &who, &what, Method::GET, &url).await?;
    let hint = match resp.status() {
        StatusCode::NOT_FOUND => format!("bucket {:?} does not exist", store.bucket),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => format!(
            "access to bucket {:?} denied (check credentials and permissions)",
            store.bucket
        ),
        _ => what,
    };
    let resp = check_status(&who, &hint, resp).await?;
    // A bucket with uniform bucket-level access rejects every upload that carries an ACL: say
    // so now, once, rather than fail every file.
    let bucket: serde_json::Value = resp.json().await.unwrap_or_default();
    match ubla_conflict(&bucket, store.predefined_acl.as_deref()) {
        Some(msg) => Err(StorageError::message(who, false, msg)),
        None => Ok(()),
    }
}

/// The fix, when `predefined_acl` is set on a bucket (its JSON resource) that has uniform
/// bucket-level access.
pub(super) fn ubla_conflict(bucket: &serde_json::Value, acl: Option<&str>) -> Option<String> {
    let ubla = &bucket["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"];
    let acl = acl?;
    (ubla.as_bool() == Some(true)).then(|| ubla_fix(acl))
}

/// What to change when GCS refuses per-object ACLs.
pub(super) fn ubla_fix(acl: &str) -> String {
    format!(
        "the bucket has uniform bucket-level access, which rejects per-object ACLs such as \
         predefined_acl = \"{acl}\": remove predefined_acl from this store's table and grant \
         access on the bucket with IAM instead (public files: allUsers → roles/storage.objectViewer)"
    )
}

pub(super) fn object_url(store: &GcsStore, key: &str) -> String {
    format!(
        "{}/storage/v1/b/{}/o/{}",
        store.endpoint,
        utf8_percent_encode(&store.bucket, SEGMENT),
        utf8_percent_encode(key, SEGMENT)
    )
}

fn not_found(store: &GcsStore, name: &str, key: &str) -> StorageError {
    StorageError::NotFound {
        name: name.to_string(),
        location: store.url(key),
    }
}

/// One authenticated request. With anonymous credentials the auth headers are empty, so no
/// `Authorization` header is sent.
async fn send(
    store: &GcsStore,
    name: &str,
    what: &str,
    method: Method,
    url: &str,
) -> Result<reqwest::Response, StorageError> {
    send_with(store, name, what, method, url, None).await
}

async fn send_with(
    store: &GcsStore,
    name: &str,
    what: &str,
    method: Method,
    url: &str,
    json: Option<serde_json::Value>,
) -> Result<reqwest::Response, StorageError> {
    let headers = match store.credentials.headers(http::Extensions::new()).await {
        Ok(CacheableResource::New { data, .. }) => data,
        // Only returned when the caller passes an entity tag, which we never do.
        Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
        Err(e) => {
            return Err(StorageError::Backend {
                name: name.to_string(),
                message: format!("{what}: getting a token: {}", error_chain(&e)),
                retryable: e.is_transient(),
                source: Some(Box::new(e)),
            });
        }
    };
    let http = store.http.get(name, || what.to_string()).await?;
    let mut req = http.request(method, url).headers(headers);
    if let Some(body) = json {
        req = req.json(&body);
    }
    req.send().await.map_err(|e| StorageError::Backend {
        name: name.to_string(),
        message: format!("{what}: {}", error_chain(&e)),
        // Timeouts, refused or reset connections: a retry may work. A request reqwest
        // could not build (bad endpoint URL) or a refused certificate will not.
        retryable: crate::storage::client::transport_retryable(&e),
        source: Some(Box::new(e)),
    })
}

/// The response if it is a success, else an error carrying the API's message.
async fn check_status(
    name: &str,
    what: &str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, StorageError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    // {"error": {"code": 403, "message": "..."}} — fall back to the raw body, shortened.
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(StorageError::message(
        name,
        retryable_status(status.as_u16()),
        format!("{what}: HTTP {status}: {detail}"),
    ))
}

/// 408, 429 and 5xx are worth retrying (GCS "Retry strategy" docs); other 4xx are not.
pub(super) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Copy `from` to `to` in the bucket, server-side, only if `to` does not exist
/// (`ifGenerationMatch=0`: [`StorageError::AlreadyExists`] when it does).
pub(super) async fn copy_new(
    store: &GcsStore,
    name: &str,
    from: &str,
    to: &str,
) -> Result<(), StorageError> {
    copy_to(store, name, (&store.bucket, from), to, (true, false))
        .await
        .map(drop)
}

/// Copy object `key` of bucket `bucket` to `to` in this store's bucket, server-side (`copyTo`);
/// with `create`, only if `to` does not exist ([`StorageError::AlreadyExists`] when it does).
/// With `optional`, `Ok(None)` when the server refuses the copy itself (403: no read access to
/// the source bucket), so the caller can stream instead.
pub(super) async fn copy_to(
    store: &GcsStore,
    name: &str,
    (bucket, key): (&str, &str),
    to: &str,
    (create, optional): (bool, bool),
) -> Result<Option<()>, StorageError> {
    let source = format!("gs://{bucket}/{key}");
    let what = format!("copy {source} to {}", store.url(to));
    let mut url = format!(
        "{}/storage/v1/b/{}/o/{}/copyTo/b/{}/o/{}",
        store.endpoint,
        utf8_percent_encode(bucket, SEGMENT),
        utf8_percent_encode(key, SEGMENT),
        utf8_percent_encode(&store.bucket, SEGMENT),
        utf8_percent_encode(to, SEGMENT)
    );
    let mut query = Vec::new();
    if create {
        query.push("ifGenerationMatch=0".to_string());
    }
    if let Some(acl) = &store.predefined_acl {
        query.push(format!("destinationPredefinedAcl={acl}"));
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let body = Some(serde_json::json!({}));
    let resp = send_with(store, name, &what, Method::POST, &url, body).await?;
    match resp.status() {
        StatusCode::NOT_FOUND => Err(StorageError::NotFound {
            name: name.to_string(),
            location: source,
        }),
        StatusCode::PRECONDITION_FAILED => Err(StorageError::AlreadyExists {
            name: name.to_string(),
            location: store.url(to),
        }),
        StatusCode::FORBIDDEN if optional => Ok(None),
        _ => check_status(name, &what, resp).await.map(|_| Some(())),
    }
}

#[cfg(test)]
mod tests {
    use super::ubla_conflict;

    #[test]
    fn uniform_bucket_level_access_with_an_acl_is_named_with_the_fix() {
        // The bucket resource as the JSON API returns it (storage/docs/json_api/v1/buckets).
        let ubla: serde_json::Value = serde_json::from_str(
            r#"{"kind":"storage#bucket","name":"b","iamConfiguration":{
                "bucketPolicyOnly":{"enabled":true,"lockedTime":"2027-03-01T00:00:00Z"},
                "uniformBucketLevelAccess":{"enabled":true,"lockedTime":"2027-03-01T00:00:00Z"},
                "publicAccessPrevention":"inherited"}}"#,
        )
        .unwrap();
        let fine: serde_json::Value = serde_json::from_str(
            r#"{"kind":"storage#bucket","name":"b","iamConfiguration":{
                "uniformBucketLevelAccess":{"enabled":false}}}"#,
        )
        .unwrap();
        let msg = ubla_conflict(&ubla, Some("publicRead")).unwrap();
        assert!(msg.contains("uniform bucket-level access"), "{msg}");
        assert!(
            msg.contains("remove predefined_acl") && msg.contains("IAM"),
            "{msg}"
        );
        assert_eq!(
            ubla_conflict(&ubla, None),
            None,
            "no ACL asked: nothing to refuse"
        );
        assert_eq!(ubla_conflict(&fine, Some("publicRead")), None);
        assert_eq!(
            ubla_conflict(&serde_json::Value::Null, Some("publicRead")),
            None
        );
    }
}
