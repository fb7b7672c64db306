//! The GCS test server (fake-gcs-server from `scripts/test-services`, on `127.0.0.2:80`).

pub fn endpoint() -> String {
    super::env("PFM_TEST_GCS_ENDPOINT")
}

/// A new, empty bucket (lowercase, digits, `-`, ≤ 63 chars), created through the JSON API.
pub async fn fresh_bucket(tag: &str) -> String {
    let name = super::bucket_name(tag);
    let url = format!("{}/storage/v1/b?project=test-project", endpoint());
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("POST {url}: {e}\nStart the servers with scripts/test-services start")
        });
    assert!(
        resp.status().is_success(),
        "create bucket {name}: HTTP {}",
        resp.status()
    );
    name
}
