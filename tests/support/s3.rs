//! The S3 test server (s3s-fs from `scripts/test-services`): store configurations, fresh
//! buckets, and a raw client to look at what a store really wrote.

use aws_sdk_s3::config::{Credentials, Region};
use parse_files_migrate::secret::Secret;
use parse_files_migrate::storage::s3::S3Config;

pub fn endpoint() -> String {
    super::env("PFM_TEST_S3_ENDPOINT")
}

pub fn config(bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint()),
        region: Some(super::env("PFM_TEST_S3_REGION")),
        access_key_id: Some(Box::new(Secret::new(super::env("PFM_TEST_S3_ACCESS_KEY")))),
        secret_access_key: Some(Box::new(Secret::new(super::env("PFM_TEST_S3_SECRET_KEY")))),
        ..Default::default()
    }
}

/// A client that bypasses the store, to look at what it really wrote.
pub async fn raw_client() -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(super::env("PFM_TEST_S3_REGION")))
        .credentials_provider(Credentials::new(
            super::env("PFM_TEST_S3_ACCESS_KEY"),
            super::env("PFM_TEST_S3_SECRET_KEY"),
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint())
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    )
}

/// A new, empty bucket with a DNS-compatible name (lowercase, digits, `-`, ≤ 63 chars).
pub async fn fresh_bucket(tag: &str) -> String {
    let unique = super::unique(tag).to_ascii_lowercase().replace('_', "-");
    let name: String = unique.chars().take(63).collect();
    let name = name.trim_end_matches('-').to_string();
    raw_client()
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create bucket {name} on {}: {}\nStart the servers with scripts/test-services start",
                endpoint(),
                parse_files_migrate::storage::error_chain(&e)
            )
        });
    name
}
