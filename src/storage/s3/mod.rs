//! S3 store (AWS S3 and S3-compatible servers: MinIO, R2, s3s-fs…) on `aws-sdk-s3`.
//!
//! Layout is exactly parse-server-s3-adapter's: key = `prefix + name`, plain concatenation with
//! no `/` added (`_buildCreateFileParams`, `getFileData`; parse-file-storage.md §5.1). This
//! module owns client construction, the read side and error mapping; uploads (single `PutObject`
//! or multipart) live in [`upload`].
//!
//! Retries: the engine owns retry policy, so the SDK makes at most [`SDK_MAX_ATTEMPTS`]
//! attempts per request (enough to ride out a dropped keep-alive connection), and every error
//! says whether retrying can help ([`StorageError::is_retryable`]).

mod copy;
mod debris;
mod errors;
mod list;
mod provider;
mod quarantine;
mod upload;

pub use provider::Provider;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::types::{ObjectCannedAcl, ServerSideEncryption, StorageClass};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use self::errors::{Failure, classify};
use super::{
    ByteStream, Capabilities, GetOptions, GetResult, ListOptions, ListStream, ObjectMeta,
    ObjectStore, PutOptions, PutResult, StorageError, StoreContext,
};
use crate::secret::Secret;

/// Attempts per SDK request (first try + retries); see the module docs.
pub const SDK_MAX_ATTEMPTS: u32 = 3;
/// Default multipart part size (the GCS resumable chunk likewise, `gcs::DEFAULT_CHUNK_SIZE`).
///
/// A `put` holds at most 2 parts + one chunk, so one 1 GiB copy peaked at 43.5 MiB RSS to S3
/// and 37.7 MiB to GCS (target ≤ 64 MiB), and 20 concurrent 20 MiB uploads to S3 at
/// 160–219 MiB (`bench/run`, 2026-11-22). 5 MiB (S3's minimum) would save ~6 MiB per transfer
/// for 60 % more part requests; 16 MiB would put one file at 2 × 16 MiB on top of the process's
/// ~25 MiB, at the edge of that bound.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's minimum part size (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's maximum part size.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's maximum key length in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Server-side encryption requested on upload (`x-amz-server-side-encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sse {
    /// SSE-S3 (S3-managed keys).
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS; `sse_kms_key_id` picks the key (else the bucket's default KMS key).
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// `when_supported` | `when_required`: when the SDK adds/validates flexible checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// On every operation that supports it (the SDK default; AWS, s3s-fs, MinIO).
    WhenSupported,
    /// Only where the API requires it (older S3-compatible servers that reject CRC32 headers).
    WhenRequired,
}

/// The `type = "s3"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// The service (`aws`, `r2`, `b2`, `spaces`, `minio`, `wasabi`, `other`): presets the
    /// endpoint, addressing style and checksum policy it needs (see [`provider`]).
    pub provider: Option<Provider>,
    /// Parse `bucketPrefix`: prepended verbatim to every file name (no `/` is added).
    pub prefix: Option<String>,
    /// Region; default: from the AWS config chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Custom endpoint URL (MinIO, R2, s3s-fs…); default: AWS (or `AWS_ENDPOINT_URL`).
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: true when an endpoint is set.
    pub force_path_style: Option<bool>,
    // The secrets are boxed only to keep `StoreConfig::S3` under clippy's `large_enum_variant`
    // limit (the enum in storage/mod.rs stores its variants inline); the file format is the same.
    /// Access key id; with `secret_access_key`. Default: the AWS credential chain (env, profile,
    /// SSO, web identity, ECS/IMDS).
    pub access_key_id: Option<Box<Secret>>,
    /// Secret access key; with `access_key_id`.
    pub secret_access_key: Option<Box<Secret>>,
    /// Session token for temporary explicit credentials.
    pub session_token: Option<Box<Secret>>,
    /// Named profile from `~/.aws/config` for the credential and region chain.
    pub profile: Option<String>,
    /// Canned ACL for uploaded objects, e.g. `public-read` for Parse `directAccess` setups.
    pub acl: Option<String>,
    /// Storage class for uploaded objects, e.g. `STANDARD_IA`.
    pub storage_class: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms` (Parse's `ServerSideEncryption`).
    pub sse: Option<Sse>,
    /// KMS key id or ARN when `sse = "aws:kms"`.
    pub sse_kms_key_id: Option<String>,
    /// `Cache-Control` for uploads that carry none (Parse's `globalCacheControl`).
    pub cache_control: Option<String>,
    /// Multipart part size in bytes (default 8 MiB, min 5 MiB, max 5 GiB). A `put` holds at most
    /// two parts in memory (see [`upload`]).
    pub part_size: Option<u64>,
    /// When the SDK computes request checksums; `when_required` for servers that reject them.
    pub request_checksum_calculation: Option<ChecksumMode>,
    /// When the SDK validates response checksums.
    pub response_checksum_validation: Option<ChecksumMode>,
    /// Extra trusted certificate authorities (a PEM file of one or more certificates), besides
    /// the system's: for an S3-compatible endpoint behind a company CA.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The SDK's own HTTPS client (rustls with aws-lc, as by default) trusting the system's roots and
/// those of `pem`.
fn https_trusting(pem: Vec<u8>) -> Result<aws_sdk_s3::config::SharedHttpClient, String> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let trust = TrustStore::empty()
        .with_native_roots(true)
        .with_pem_certificate(pem);
    let ctx = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("ca_file: {}", super::error_chain(&e)))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(ctx)
        .build_https())
}

/// A bucket (and optional key prefix) on S3 or an S3-compatible server.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    part_size: u64,
    /// Whether uploads declare CRC32 (true unless `request_checksum_calculation = when_required`).
    crc32: bool,
    acl: Option<ObjectCannedAcl>,
    storage_class: Option<StorageClass>,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    cache_control: Option<String>,
}

impl std::fmt::Debug for S3Store {
    // By hand: the endpoint may carry credentials, and the client's own Debug shows it raw.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("S3Store").field(&self.describe()).finish()
    }
}

impl S3Store {
    /// Build the client from the table and the AWS config chain. No request is made.
    pub async fn new(cfg: &S3Config, _ctx: &StoreContext) -> Result<Self, StorageError> {
        let invalid =
            |msg: String| StorageError::message(format!("s3://{}", cfg.bucket), false, msg);
        let cfg = &cfg.resolved().map_err(invalid)?;
        if cfg.bucket.is_empty() {
            return Err(StorageError::message("s3", false, "`bucket` is required"));
        }
        let part_size = cfg.part_size.unwrap_or(DEFAULT_PART_SIZE);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(invalid(format!(
                "part_size {part_size} is outside S3's limits ({MIN_PART_SIZE}..={MAX_PART_SIZE})"
            )));
        }
        if cfg.sse_kms_key_id.is_some() && cfg.sse != Some(Sse::AwsKms) {
            return Err(invalid("sse_kms_key_id needs sse = \"aws:kms\"".into()));
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    // aws-smithy-http-client applies the read timeout to the whole wait for the
                    // response head, which includes sending the request body: it must allow a
                    // full part to upload on a slow link (8 MiB in 300 s ≈ 28 KB/s). Stalls
                    // mid-body are caught by the SDK's stalled-stream protection instead.
                    .read_timeout(Duration::from_secs(300))
                    .build(),
            );
        if let Some(path) = &cfg.ca_file {
            let pem = super::client::read_ca_file(&format!("s3://{}", cfg.bucket), path)?;
            loader = loader.http_client(https_trusting(pem).map_err(&invalid)?);
        }
        if let Some(profile) = &cfg.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.expose(),
                    secret.expose(),
                    cfg.session_token.as_ref().map(|t| t.expose().to_string()),
                    None,
                    "parse-files-migrate config",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "access_key_id and secret_access_key must be set together".into(),
                ));
            }
        }
        let shared = loader.load().await;

        let mut builder = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            // parse-server-s3-adapter's default region (optionsFromArguments.js).
            builder = builder.region(Region::new("us-east-1"));
        }
        // The Rust SDK reads no environment variable for path style (test-services.md §2), and
        // custom endpoints rarely have wildcard DNS for virtual-hosted buckets.
        let path_style = cfg
            .force_path_style
            .unwrap_or(shared.endpoint_url().is_some());
        builder = builder.force_path_style(path_style);
        if let Some(mode) = cfg.request_checksum_calculation {
            builder = builder.request_checksum_calculation(match mode {
                ChecksumMode::WhenSupported => RequestChecksumCalculation::WhenSupported,
                ChecksumMode::WhenRequired => RequestChecksumCalculation::WhenRequired,
            });
        }
        if let Some(mode) = cfg.response_checksum_validation {
            builder = builder.response_checksum_validation(match mode {
                ChecksumMode::WhenSupported => ResponseChecksumValidation::WhenSupported,
                ChecksumMode::WhenRequired => ResponseChecksumValidation::WhenRequired,
            });
        }

        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone().unwrap_or_default(),
            endpoint: shared.endpoint_url().map(str::to_string),
            part_size,
            crc32: cfg.request_checksum_calculation != Some(ChecksumMode::WhenRequired),
            acl: cfg.acl.as_deref().map(ObjectCannedAcl::from),
            storage_class: cfg.storage_class.as_deref().map(StorageClass::from),
            sse: cfg.sse.map(|s| match s {
                Sse::Aes256 => ServerSideEncryption::Aes256,
                Sse::AwsKms => ServerSideEncryption::AwsKms,
            }),
            sse_kms_key_id: cfg.sse_kms_key_id.clone(),
            cache_control: cfg.cache_control.clone(),
        })
    }

    /// The raw SDK client (tests use it to look behind the store).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The object key of `name`: `prefix + name`, as parse-server-s3-adapter builds it.
    pub fn key(&self, name: &str) -> Result<String, StorageError> {
        let invalid = super::validate_name(name)?;
        let key = format!("{}{name}", self.prefix);
        if key.len() > MAX_KEY_BYTES {
            return Err(invalid("S3 keys are at most 1024 bytes (prefix included)"));
        }
        Ok(key)
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// S3 at this endpoint, without secrets (`s3:<endpoint>`, `s3:aws`): what the identity
    /// starts with, and what a server-side copy needs in common.
    fn service(&self) -> String {
        let endpoint = match &self.endpoint {
            Some(ep) => crate::secret::redact_url(ep)
                .trim_end_matches('/')
                .to_ascii_lowercase(),
            None => "aws".into(),
        };
        format!("s3:{endpoint}")
    }

    /// An SDK failure as a [`StorageError`], with NotFound for a missing object.
    fn fail(&self, op: &str, name: &str, key: &str, f: Failure) -> StorageError {
        if f.not_found {
            return StorageError::NotFound {
                name: name.to_string(),
                location: self.url(key),
            };
        }
        f.into_error(name, format!("{op} {}", self.url(key)))
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn put_buffer(&self) -> u64 {
        // See upload.rs: the part uploading and the next being read.
        2 * self.part_size
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            // An endpoint may carry credentials (`https://key:secret@minio:9000`).
            Some(ep) => format!(
                "s3://{}/{} (endpoint {})",
                self.bucket,
                self.prefix,
                crate::secret::redact_url(ep)
            ),
            None => format!("s3://{}/{}", self.bucket, self.prefix),
        }
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
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.fail("HeadObject", name, &key, classify(e)))?;
        let etag = head.e_tag().map(|t| t.trim_matches('"').to_string());
        // A single-part ETag is the MD5 of the bytes, except under SSE-KMS/SSE-C (AWS docs,
        // "Checking object integrity"); multipart ETags end in `-N`.
        let kms = matches!(
            head.server_side_encryption(),
            Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
        );
        let md5 = etag
            .as_deref()
            .filter(|t| !kms && head.sse_customer_algorithm().is_none() && is_md5_hex(t))
            .map(str::to_ascii_lowercase);
        Ok(ObjectMeta {
            size: head
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            content_type: head.content_type().map(str::to_string),
            cache_control: head.cache_control().map(str::to_string),
            md5,
            etag,
        })
    }

    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError> {
        let key = self.key(name)?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(&key);
        if opts.offset > 0 {
            req = req.range(format!("bytes={}-", opts.offset));
        }
        if let Some(etag) = &opts.version {
            req = req.if_match(format!("\"{etag}\""));
        }
        let out = match req.send().await.map_err(classify) {
            Ok(out) => out,
            // The only precondition a read sends: the version it must read.
            Err(f) if f.status == Some(412) => {
                opts.check_version(name, None)?;
                return Err(self.fail("GetObject", name, &key, f));
            }
            Err(f) => return Err(self.fail("GetObject", name, &key, f)),
        };
        let version = out.e_tag().map(|t| t.trim_matches('"').to_string());
        opts.check_version(name, version.as_deref())?;
        let size = out.content_length().and_then(|n| u64::try_from(n).ok());
        let content_type = out.content_type().map(str::to_string);
        let err_name = name.to_string();
        let what = format!("GetObject {}", self.url(&key));
        // Stream chunk by chunk; a body error (reset, checksum mismatch, stall detected by the
        // SDK's stalled-stream protection) ends the stream with a retryable error.
        let stream: ByteStream = futures::stream::unfold(Some(out.body), move |body| {
            let (name, what) = (err_name.clone(), what.clone());
            async move {
                let mut body = body?;
                match body.next().await {
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                    Some(Err(e)) => Some((Err(errors::body_error(&name, &what, e)), None)),
                    None => None,
                }
            }
        })
        .boxed();
        Ok(GetResult {
            size,
            content_type,
            version,
            stream,
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
        list::list(self, opts)
    }

    fn quarantine(&self) -> Option<&dyn crate::storage::Quarantine> {
        Some(self)
    }

    fn server_copy(&self) -> Option<&dyn crate::storage::copy::ServerCopy> {
        Some(self)
    }

    fn debris(&self) -> Option<&dyn crate::storage::debris::Debris> {
        Some(self)
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let key = self.key(name)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e) {
                f if f.not_found => Ok(()),
                f => Err(f.into_error(name, format!("DeleteObject {}", self.url(&key)))),
            },
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        let what = self.describe();
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = classify(e);
                let hint = match f.status {
                    Some(404) => format!("bucket {:?} does not exist", self.bucket),
                    Some(403) => format!(
                        "access to bucket {:?} denied (check credentials and permissions)",
                        self.bucket
                    ),
                    Some(301) => format!(
                        "bucket {:?} is in another region than the one configured",
                        self.bucket
                    ),
                    _ => format!("bucket {:?} is not reachable", self.bucket),
                };
                Err(f.into_error(&what, format!("HeadBucket: {hint}")))
            }
        }
    }
}

/// `true` for a 32-digit hex string (a plain MD5 ETag).
fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
