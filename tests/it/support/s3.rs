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

/// The `[destination]`/`[source.server]` TOML table (without its header) of a bucket on the S3
/// server at `endpoint`, with the test credentials.
pub fn table(bucket: &str, endpoint: &str) -> String {
    format!(
        "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"{}\"\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        super::env("PFM_TEST_S3_REGION"),
        super::env("PFM_TEST_S3_ACCESS_KEY"),
        super::env("PFM_TEST_S3_SECRET_KEY"),
    )
}

/// A client that bypasses the store, to look at what it really wrote.
pub async fn raw_client() -> aws_sdk_s3::Client {
    raw_client_at(&endpoint()).await
}

/// [`raw_client`] for another S3 server with the test credentials (a test's own s3s-fs).
pub async fn raw_client_at(endpoint: &str) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(super::env("PFM_TEST_S3_REGION")))
        .credentials_provider(Credentials::new(
            super::env("PFM_TEST_S3_ACCESS_KEY"),
            super::env("PFM_TEST_S3_SECRET_KEY"),
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
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
    fresh_bucket_at(&endpoint(), tag).await
}

/// [`fresh_bucket`] on another S3 server.
pub async fn fresh_bucket_at(endpoint: &str, tag: &str) -> String {
    let name = super::bucket_name(tag);
    raw_client_at(endpoint)
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create bucket {name} on {endpoint}: {}\nStart the servers with scripts/test-services start",
                parse_files_migrate::storage::error_chain(&e)
            )
        });
    name
}

/// An s3s-fs of the test's own (the binary `scripts/test-services` installed), on a free
/// loopback port with its data in `dir`: a server the test may kill and restart.
pub struct OwnS3 {
    pub port: u16,
    pub dir: std::path::PathBuf,
    /// The credentials it accepts (access key id, secret access key).
    pub keys: (String, String),
    child: Option<std::process::Child>,
}

impl OwnS3 {
    /// Start on a free port with the test credentials; waits until it accepts connections.
    pub async fn start(dir: &std::path::Path) -> OwnS3 {
        let keys = (
            super::env("PFM_TEST_S3_ACCESS_KEY"),
            super::env("PFM_TEST_S3_SECRET_KEY"),
        );
        Self::start_with_keys(dir, keys).await
    }

    /// [`OwnS3::start`] accepting other credentials.
    pub async fn start_with_keys(dir: &std::path::Path, keys: (String, String)) -> OwnS3 {
        let port = super::free_port();
        let mut s = OwnS3 {
            port,
            dir: dir.to_path_buf(),
            keys,
            child: None,
        };
        s.restart().await;
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the server again (same port, same data) after [`OwnS3::kill`].
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        std::fs::create_dir_all(&self.dir).unwrap();
        let bin =
            std::path::Path::new(&super::env("PFM_TEST_SERVICES_DIR")).join("s3s-fs/bin/s3s-fs");
        let child = std::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.keys.0])
            .args(["--secret-key", &self.keys.1])
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (run scripts/test-services install)", bin.display())
            });
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("s3s-fs did not start on port {}", self.port);
    }

    /// SIGKILL: the server vanishes mid-request, as a crashed host would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.kill();
    }
}
