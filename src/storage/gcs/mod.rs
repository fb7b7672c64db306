//! Google Cloud Storage store, on Google's `google-cloud-storage` crate plus the JSON API.
//!
//! Layout is exactly parse-server-gcs-adapter's: object name = `prefix + name`
//! (`bucket.file(this._bucketPrefix + filename)`; parse-file-storage.md §6).
//!
//! Uploads and downloads go through the crate (`write_object(..).send_buffered()`, resumable
//! for large payloads; `read_object`), see [`upload`]. Metadata, deletes and the bucket check use
//! the JSON API over reqwest ([`json`]) with a bearer token from `google-cloud-auth`: the
//! crate's `StorageControl` speaks gRPC only, which emulators such as fake-gcs-server do not
//! serve (test-services.md §3).
//!
//! Retries: the engine owns retry policy, so the crate makes at most [`SDK_MAX_ATTEMPTS`]
//! attempts per request instead of its default of retrying for 300 s.

mod json;
mod quarantine;
mod upload;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use google_cloud_auth::credentials::{self, Credentials};
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use serde::{Deserialize, Serialize};

use super::{
    ByteStream, Capabilities, GetOptions, GetResult, ListOptions, ListStream, ObjectMeta,
    ObjectStore, PutOptions, PutResult, StorageError, StoreContext, parts,
};

/// Attempts per request made by the crate (first try + retries); see the module docs.
pub const SDK_MAX_ATTEMPTS: u32 = 3;
/// Default size below which an upload is one request (larger ones are resumable).
pub const DEFAULT_RESUMABLE_THRESHOLD: u64 = 8 * 1024 * 1024;
/// Default size of each resumable-upload request (and of the crate's upload buffer).
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
/// GCS requires resumable chunks in multiples of 256 KiB.
const CHUNK_QUANTUM: u64 = 256 * 1024;
/// A download that yields nothing for this long fails (retryably).
const DOWNLOAD_IDLE: Duration = Duration::from_secs(120);
/// GCS answers at most this many objects per listing request.
const MAX_LIST_PAGE: usize = 1000;
/// GCS's maximum object name length in bytes.
const MAX_NAME_BYTES: usize = 1024;

/// The `type = "gcs"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// Bucket name.
    pub bucket: String,
    /// Parse `bucketPrefix`: prepended verbatim to every file name (no `/` is added).
    pub prefix: Option<String>,
    /// API endpoint, e.g. an emulator's `http://127.0.0.2`; default `https://storage.googleapis.com`.
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub endpoint: Option<String>,
    /// Service-account (or `authorized_user`) JSON key file, Parse's `keyFilename`. Default:
    /// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud, metadata server).
    pub credentials_file: Option<PathBuf>,
    /// Send no credentials at all (emulators, public buckets).
    #[serde(default)]
    pub anonymous: bool,
    /// Parse's `projectId`. Object operations do not need a project; accepted so an adapter
    /// configuration carries over unchanged, and shown by `describe()`.
    pub project_id: Option<String>,
    /// `Cache-Control` for uploads that carry none.
    pub cache_control: Option<String>,
    /// Predefined ACL for uploads, e.g. `publicRead` for Parse `directAccess` setups.
    pub predefined_acl: Option<String>,
    /// Uploads smaller than this many bytes are single requests; others are resumable.
    /// Default 8 MiB.
    pub resumable_threshold: Option<u64>,
    /// Bytes per resumable-upload request, a multiple of 256 KiB. Default 8 MiB.
    pub chunk_size: Option<u64>,
}

/// A bucket (and optional name prefix) on Google Cloud Storage or an emulator.
pub struct GcsStore {
    client: Storage,
    http: super::client::LazyClient,
    credentials: Credentials,
    bucket: String,
    prefix: String,
    /// Base URL without a trailing slash.
    endpoint: String,
    project_id: Option<String>,
    cache_control: Option<String>,
    predefined_acl: Option<String>,
    threshold: usize,
    chunk_size: usize,
}

impl std::fmt::Debug for GcsStore {
    // By hand: the credentials must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &crate::secret::redact_url(&self.endpoint))
            .finish_non_exhaustive()
    }
}

impl GcsStore {
    /// GCS at this endpoint, without secrets (`gs:<endpoint>`): what the identity starts with,
    /// and what a server-side copy needs in common.
    fn service(&self) -> String {
        let endpoint = crate::secret::redact_url(&self.endpoint)
            .trim_end_matches('/')
            .to_ascii_lowercase();
        format!("gs:{endpoint}")
    }

    /// Build the clients and credentials. No request is made.
    pub async fn new(cfg: &GcsConfig, _ctx: &StoreContext) -> Result<Self, StorageError> {
        let what = format!("gs://{}", cfg.bucket);
        let invalid = |msg: String| StorageError::message(&what, false, msg);
        if cfg.bucket.is_empty() {
            return Err(StorageError::message("gcs", false, "`bucket` is required"));
        }
        let threshold = cfg
            .resumable_threshold
            .unwrap_or(DEFAULT_RESUMABLE_THRESHOLD);
        let chunk_size = cfg.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
        if chunk_size == 0 || !chunk_size.is_multiple_of(CHUNK_QUANTUM) {
            return Err(invalid(format!(
                "chunk_size {chunk_size} must be a positive multiple of 256 KiB"
            )));
        }
        let to_usize = |v: u64, field: &str| {
            usize::try_from(v).map_err(|_| invalid(format!("{field} {v} is too large")))
        };
        let (threshold, chunk_size) = (
            to_usize(threshold.max(1), "resumable_threshold")?,
            to_usize(chunk_size, "chunk_size")?,
        );
        let credentials = load_credentials(cfg).map_err(invalid)?;

        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| "https://storage.googleapis.com".to_string())
            .trim_end_matches('/')
            .to_string();
        let mut builder = Storage::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(
                google_cloud_storage::retry_policy::RetryableErrors
                    .with_attempt_limit(SDK_MAX_ATTEMPTS),
            )
            .with_resumable_upload_threshold(threshold)
            .with_resumable_upload_buffer_size(chunk_size);
        if cfg.endpoint.is_some() {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let client = builder
            .build()
            .await
            .map_err(|e| StorageError::backend(&what, false, e))?;
        let http = super::client::LazyClient::build(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60)),
        );
        Ok(GcsStore {
            client,
            http,
            credentials,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone().unwrap_or_default(),
            endpoint,
            project_id: cfg.project_id.clone(),
            cache_control: cfg.cache_control.clone(),
            predefined_acl: cfg.predefined_acl.clone(),
            threshold,
            chunk_size,
        })
    }

    /// The object name of `name`: `prefix + name`, as parse-server-gcs-adapter builds it.
    pub fn key(&self, name: &str) -> Result<String, StorageError> {
        let invalid = super::validate_name(name)?;
        let key = format!("{}{name}", self.prefix);
        // https://cloud.google.com/storage/docs/objects#naming
        if key.contains(['\r', '\n']) {
            return Err(invalid("GCS object names cannot contain CR or LF"));
        }
        if key == "." || key == ".." {
            return Err(invalid("GCS object names cannot be `.` or `..`"));
        }
        if key.len() > MAX_NAME_BYTES {
            return Err(invalid(
                "GCS object names are at most 1024 bytes (prefix included)",
            ));
        }
        Ok(key)
    }

    fn url(&self, key: &str) -> String {
        format!("gs://{}/{key}", self.bucket)
    }

    /// The bucket as the crate names it.
    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }
}

/// Anonymous, a key file, or Application Default Credentials.
fn load_credentials(cfg: &GcsConfig) -> Result<Credentials, String> {
    if cfg.anonymous {
        if cfg.credentials_file.is_some() {
            return Err("anonymous = true and credentials_file exclude each other".into());
        }
        return Ok(credentials::anonymous::Builder::new().build());
    }
    let Some(path) = &cfg.credentials_file else {
        return credentials::Builder::default()
            .build()
            .map_err(|e| format!("application default credentials: {e}"));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("credentials_file {}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("credentials_file {}: not JSON: {e}", path.display()))?;
    let built = match json.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => credentials::service_account::Builder::new(json).build(),
        Some("authorized_user") => credentials::user_account::Builder::new(json).build(),
        other => {
            return Err(format!(
                "credentials_file {}: unsupported credential type {other:?} \
                 (expected service_account or authorized_user)",
                path.display()
            ));
        }
    };
    built.map_err(|e| format!("credentials_file {}: {e}", path.display()))
}

#[async_trait]
impl ObjectStore for GcsStore {
    fn put_buffer(&self) -> u64 {
        // See upload.rs: the read-ahead plus the crate's buffer of unacknowledged bytes.
        (self.threshold + self.chunk_size) as u64
    }

    fn describe(&self) -> String {
        let mut s = format!("gs://{}/{}", self.bucket, self.prefix);
        if self.endpoint != "https://storage.googleapis.com" {
            // An endpoint may carry credentials (a proxy's `https://user:pw@…`).
            s.push_str(&format!(
                " (endpoint {})",
                crate::secret::redact_url(&self.endpoint)
            ));
        }
        if let Some(p) = &self.project_id {
            s.push_str(&format!(" (project {p})"));
        }
        s
    }

    fn identity(&self) -> String {
        format!("{}/{}/{}", self.service(), self.bucket, self.prefix)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            stat: true,
            list: true,
            range_reads: true,
            reports_md5: true,
            atomic_create: true,
        }
    }

    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.url(&self.key(name)?))
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta, StorageError> {
        let key = self.key(name)?;
        json::stat(self, name, &key).await
    }

    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError> {
        let key = self.key(name)?;
        let mut req = self.client.read_object(self.bucket_path(), &key);
        if opts.offset > 0 {
            req = req.set_read_range(ReadRange::offset(opts.offset));
        }
        if let Some(g) = opts.version.as_deref().and_then(|g| g.parse::<i64>().ok()) {
            req = req.set_if_generation_match(g);
        }
        let what = format!("read {}", self.url(&key));
        let resp = req.send().await.map_err(|e| {
            match upload::map_error(name, &what, &self.url(&key), None, e) {
                // The only precondition a read sends: the generation it must read.
                e @ StorageError::AlreadyExists { .. } => {
                    opts.check_version(name, None).err().unwrap_or(e)
                }
                e => e,
            }
        })?;
        let object = resp.object();
        let version = Some(object.generation.to_string()).filter(|g| g != "0");
        opts.check_version(name, version.as_deref())?;
        // The crate reads the size from `x-goog-stored-content-length`; servers that omit the
        // header (fake-gcs-server for filesystem-backed objects) yield 0. A 0 is therefore
        // "unknown", never a claim that the object is empty: the stream is the truth.
        let size = u64::try_from(object.size)
            .ok()
            .filter(|s| *s > 0)
            .map(|s| s.saturating_sub(opts.offset));
        let content_type = Some(object.content_type).filter(|t| !t.is_empty());
        let err_name = name.to_string();
        let stream: ByteStream = futures::stream::unfold(Some(resp), move |resp| {
            let (name, what) = (err_name.clone(), what.clone());
            async move {
                let mut resp = resp?;
                match resp.next().await {
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(resp))),
                    // Mid-body failures (reset, checksum mismatch) are worth a retry.
                    Some(Err(e)) => Some((
                        Err(StorageError::Backend {
                            name: name.clone(),
                            message: format!("{what}: {}", super::error_chain(&e)),
                            retryable: true,
                            source: Some(Box::new(e)),
                        }),
                        None,
                    )),
                    None => None,
                }
            }
        })
        .boxed();
        Ok(GetResult {
            size,
            content_type,
            version,
            stream: parts::idle_timeout(stream, DOWNLOAD_IDLE, name.to_string()),
        })
    }

    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult, StorageError> {
        upload::put(self, name, body, opts).await
    }

    fn list(&self, opts: ListOptions) -> ListStream<'_> {
        let page = opts.page_size().min(MAX_LIST_PAGE);
        let prefix = format!("{}{}", self.prefix, opts.prefix());
        // The state: `None` when done, else the next page's token (none at first).
        let start: Option<Option<String>> = Some(None);
        futures::stream::try_unfold(start, move |token| {
            let prefix = prefix.clone();
            async move {
                let Some(token) = token else {
                    return Ok(None);
                };
                let (objects, next) =
                    json::list_page(self, &prefix, page, token.as_deref()).await?;
                Ok::<_, StorageError>(Some((objects, next.map(Some))))
            }
        })
        .boxed()
    }

    fn quarantine(&self) -> Option<&dyn crate::storage::Quarantine> {
        Some(self)
    }

    fn server_copy(&self) -> Option<&dyn crate::storage::copy::ServerCopy> {
        Some(self)
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let key = self.key(name)?;
        json::delete(self, name, &key).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        json::check_bucket(self).await
    }
}
