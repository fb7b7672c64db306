//! Shared helpers for the integration tests: where the real test servers are (from the env vars
//! `scripts/test-services start` prints), unique names so tests never see each other's data,
//! and byte generators.
//!
//! A test that needs a server which is not configured or not reachable **fails** with a message
//! saying how to start it; nothing here skips silently.

#![allow(dead_code)] // each test crate uses a different subset

pub mod app;
pub mod conformance;
pub mod faulty;
pub mod gcs;
pub mod s3;

use std::sync::atomic::{AtomicU64, Ordering};

/// The value of a `PFM_TEST_*` variable, or a panic that tells the developer what to run.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the integration tests need the real test servers.\n\
             Start them with: eval \"$(scripts/test-services start)\"  (or run scripts/test)"
        ),
    }
}

/// MongoDB URI of the test server (SecantusDB), e.g. `mongodb://127.0.0.1:27117/?directConnection=true`.
pub fn mongo_uri() -> String {
    env("PFM_TEST_MONGO_URI")
}

/// A name that is unique across tests and test runs: `<prefix>_<pid>_<counter>_<nanos>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A MongoDB client for the test server; panics with a hint if it cannot be reached.
pub async fn mongo_client() -> mongodb::Client {
    let uri = mongo_uri();
    let client = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("cannot parse {uri}: {e}"));
    client
        .database("admin")
        .run_command(mongodb::bson::doc! {"ping": 1})
        .await
        .unwrap_or_else(|e| {
            panic!("MongoDB test server at {uri} is unreachable: {e}\nStart it with scripts/test-services start")
        });
    client
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible and data is not
/// trivially compressible.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
