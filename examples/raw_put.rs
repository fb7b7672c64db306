//! Baseline for `bench/run`'s large-file rows: the fastest a plain SDK program moves the same
//! files from the same HTTP server into the same store, at the same concurrency and part size as
//! the tool — and nothing else (no MD5, no verification, no ledger, no database).
//!
//!     raw_put TARGET CONCURRENCY URL_PREFIX NAMES_FILE
//!
//! TARGET is one of
//! * `s3:ENDPOINT:BUCKET` — aws-sdk-s3 with the tool's client settings (path style, the SDK's
//!   default checksum policy, credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`):
//!   one `PutObject` below the part size (8 MiB), else a multipart upload whose next part is
//!   read while the previous one uploads (the tool's pipelining);
//! * `gcs:ENDPOINT:BUCKET` — google-cloud-storage's `write_object(..).send_buffered()` with the
//!   tool's resumable threshold and buffer (8 MiB each), anonymous credentials;
//! * `gridfs:URI:DATABASE` — the mongodb driver's GridFS upload stream (bucket `fs`, Parse's
//!   chunk size 255 KiB).
//!
//! Each file (a line of NAMES_FILE) is streamed from `URL_PREFIX + name`; CONCURRENCY files move
//! at once. Prints one JSON line: `{"files":…,"bytes":…,"secs":…,"bytes_per_sec":…}`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::{AsyncWriteExt, StreamExt, TryStreamExt};
use google_cloud_storage::client::Storage;
use google_cloud_storage::streaming_source::{SizeHint, StreamingSource};

const PART: usize = 8 << 20;
const GRIDFS_CHUNK: u32 = 261_120;

enum Target {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
    Gcs {
        client: Box<Storage>,
        bucket: String,
    },
    Gridfs(Box<mongodb::gridfs::GridFsBucket>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, concurrency, prefix, names] = match &args[..] {
        [a, b, c, d] => [a, b, c, d],
        _ => anyhow::bail!("usage: raw_put TARGET CONCURRENCY URL_PREFIX NAMES_FILE"),
    };
    let concurrency: usize = concurrency.parse()?;
    let names: Vec<String> = std::fs::read_to_string(names)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let target = Arc::new(open(target).await?);
    let http = reqwest::Client::new();
    let start = Instant::now();
    let sizes: Vec<u64> = futures::stream::iter(names.iter())
        .map(|name| {
            let (target, http) = (target.clone(), http.clone());
            let url = format!("{prefix}{name}");
            async move {
                let resp = http.get(&url).send().await?.error_for_status()?;
                let size = resp.content_length();
                let body = resp.bytes_stream().map_err(anyhow::Error::from).boxed();
                put(&target, name, size, body)
                    .await
                    .with_context(|| name.to_string())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    let bytes: u64 = sizes.iter().sum();
    println!(
        "{}",
        serde_json::json!({"files": sizes.len(), "bytes": bytes, "secs": secs,
                           "bytes_per_sec": bytes as f64 / secs})
    );
    Ok(())
}

async fn open(target: &str) -> anyhow::Result<Target> {
    let (kind, rest) = target.split_once(':').context("TARGET is kind:…")?;
    // The endpoint contains ':' itself: the bucket / database is after the last one.
    let (endpoint, last) = rest
        .rsplit_once(':')
        .context("TARGET is kind:ENDPOINT:NAME")?;
    Ok(match kind {
        "s3" => {
            let shared = aws_config::from_env()
                .endpoint_url(endpoint)
                .region(aws_config::Region::new("us-east-1"))
                .load()
                .await;
            let cfg = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .build();
            Target::S3 {
                client: aws_sdk_s3::Client::from_conf(cfg),
                bucket: last.to_string(),
            }
        }
        "gcs" => {
            let client = Storage::builder()
                .with_endpoint(endpoint)
                .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
                .with_resumable_upload_threshold(PART)
                .with_resumable_upload_buffer_size(PART)
                .build()
                .await?;
            Target::Gcs {
                client: Box::new(client),
                bucket: format!("projects/_/buckets/{last}"),
            }
        }
        "gridfs" => {
            let db = mongodb::Client::with_uri_str(endpoint)
                .await?
                .database(last);
            Target::Gridfs(Box::new(
                db.gridfs_bucket(
                    mongodb::options::GridFsBucketOptions::builder()
                        .chunk_size_bytes(GRIDFS_CHUNK)
                        .build(),
                ),
            ))
        }
        other => anyhow::bail!("unknown target kind {other}"),
    })
}

type Body = futures::stream::BoxStream<'static, anyhow::Result<Bytes>>;

async fn put(
    target: &Target,
    name: &str,
    size: Option<u64>,
    mut body: Body,
) -> anyhow::Result<u64> {
    match target {
        Target::S3 { client, bucket } => s3_put(client, bucket, name, body).await,
        Target::Gcs { client, bucket } => {
            let source = Source {
                body: std::sync::Mutex::new(body),
                size,
            };
            let obj = client
                .write_object(bucket, name, source)
                .send_buffered()
                .await?;
            Ok(obj.size as u64)
        }
        Target::Gridfs(bucket) => {
            let mut up = bucket.open_upload_stream(name).await?;
            let mut n = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                up.write_all(&chunk).await?;
            }
            up.close().await?;
            Ok(n)
        }
    }
}

/// Fill one part from `body`: `(part, ended)`.
async fn fill(body: &mut Body, carry: &mut BytesMut) -> anyhow::Result<(Bytes, bool)> {
    while carry.len() < PART {
        match body.next().await {
            Some(chunk) => carry.extend_from_slice(&chunk?),
            None => return Ok((carry.split().freeze(), true)),
        }
    }
    Ok((carry.split_to(PART).freeze(), false))
}

async fn s3_put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    mut body: Body,
) -> anyhow::Result<u64> {
    let mut carry = BytesMut::with_capacity(PART);
    let (first, ended) = fill(&mut body, &mut carry).await?;
    if ended && first.len() < PART {
        let n = first.len() as u64;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(first))
            .send()
            .await?;
        return Ok(n);
    }
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let id = upload.upload_id().context("no upload id")?.to_string();
    let mut parts = Vec::new();
    let mut total = 0u64;
    let mut next = Some((first, ended));
    let mut uploading: Option<tokio::task::JoinHandle<anyhow::Result<CompletedPart>>> = None;
    let mut number = 0;
    while let Some((part, ended)) = next.take() {
        if part.is_empty() {
            break;
        }
        number += 1;
        total += part.len() as u64;
        let req = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(part));
        let n = number;
        let task = tokio::spawn(async move {
            let out = req.send().await?;
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(String::from))
                .set_checksum_crc32(out.checksum_crc32().map(String::from))
                .build())
        });
        // One part uploading while the next one fills.
        if let Some(prev) = uploading.replace(task) {
            parts.push(prev.await??);
        }
        if !ended {
            next = Some(fill(&mut body, &mut carry).await?);
        }
    }
    if let Some(last) = uploading {
        parts.push(last.await??);
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(total)
}

/// The HTTP body as the GCS crate's source, with the exact size when the server said it.
struct Source {
    /// In a mutex only to be `Sync`, as the crate wants.
    body: std::sync::Mutex<Body>,
    size: Option<u64>,
}

impl StreamingSource for Source {
    type Error = std::io::Error;

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let body = self.body.get_mut().unwrap_or_else(|e| e.into_inner());
        body.next()
            .await
            .map(|r| r.map_err(|e| std::io::Error::other(format!("{e:#}"))))
    }

    async fn size_hint(&self) -> Result<SizeHint, std::io::Error> {
        Ok(match self.size {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::new(),
        })
    }
}
