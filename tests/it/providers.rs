//! S3 `provider` presets (#22 item 3): the checksum policy a preset picks is what goes over the
//! wire to the real S3 server (through a byte-for-byte TCP tap), uploads and reads stay
//! byte-identical either way, `--show-settings` shows the effective values, and what a provider
//! cannot do is refused up front with the fix.

use std::sync::Arc;

use parse_files_migrate::storage::s3::Provider;
use parse_files_migrate::storage::{
    self, ObjectStore, PutMode, PutOptions, StoreConfig, StoreContext,
};

use crate::support::app::bin;
use crate::support::conformance::{body, read_all};
use crate::support::wiretap::Tap;
use crate::support::{self, s3};

const PART: u64 = 5 * 1024 * 1024;

/// Upload a one-part and a multipart object through a store of `provider` behind a tap, read
/// both back; returns the tap.
async fn round_trip(provider: Provider, tag: &str) -> Tap {
    let bucket = s3::fresh_bucket(tag).await;
    let upstream = s3::endpoint();
    let tap = Tap::start(upstream.trim_start_matches("http://")).await;
    let mut cfg = s3::config(&bucket);
    cfg.endpoint = Some(tap.url());
    cfg.provider = Some(provider);
    cfg.part_size = Some(PART);
    let store: Arc<dyn ObjectStore> =
        storage::open(&StoreConfig::S3(cfg), &StoreContext::default())
            .await
            .unwrap();
    for (name, len) in [("small.txt", 3000), ("big.bin", PART as usize + 123_457)] {
        let data = support::bytes(len, len as u64);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put(name, body(&data, 70_000), &opts)
            .await
            .unwrap_or_else(|e| panic!("{provider:?} put {name}: {e}"));
        let back = read_all(&*store, name).await.unwrap();
        assert!(back == data, "{provider:?}: {name} not byte-identical");
        assert_eq!(store.stat(name).await.unwrap().size, len as u64);
    }
    tap
}

#[tokio::test(flavor = "multi_thread")]
async fn the_presets_checksum_policy_is_what_goes_over_the_wire() {
    // `other` (like r2, b2, spaces, wasabi): checksums only where the API requires them.
    let tap = round_trip(Provider::Other, "prov-other").await;
    let puts = tap
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT "))
        .count();
    assert!(
        puts >= 3,
        "a PutObject and at least two UploadParts: {:?}",
        tap.requests()
    );
    for header in [
        "x-amz-checksum-",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-trailer",
    ] {
        assert_eq!(
            tap.lines_starting(header),
            Vec::<String>::new(),
            "`other` must not send {header}"
        );
    }
    // Its one transit checksum is Content-MD5, on every upload request.
    assert!(
        tap.lines_starting("content-md5").len() >= puts,
        "`other` sends Content-MD5 with each of its {puts} PUTs: {:?}",
        tap.lines_starting("content-md5")
    );

    // `minio` (like aws): flexible checksums on uploads, validation asked for on reads.
    let tap = round_trip(Provider::Minio, "prov-minio").await;
    let sent: Vec<String> = tap
        .lines_starting("x-amz-checksum-")
        .into_iter()
        .chain(tap.lines_starting("x-amz-sdk-checksum-algorithm"))
        .collect();
    assert!(
        sent.iter()
            .any(|l| l.to_ascii_lowercase().contains("crc32")),
        "`minio` uploads carry CRC32 checksums: {sent:?}"
    );
    assert!(
        !tap.lines_starting("x-amz-checksum-mode").is_empty(),
        "`minio` reads ask for checksum validation"
    );
    // CRC32 is its transit checksum: no Content-MD5 beside it (R2 rejects the two together,
    // and hashing every part twice doubled the tool's CPU).
    assert_eq!(
        tap.lines_starting("content-md5"),
        Vec::<String>::new(),
        "`minio` must not send Content-MD5 beside CRC32"
    );
}

#[test]
fn show_settings_prints_the_effective_values_and_refusals_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = |table: &str| {
        let cfg = dir.path().join("p.toml");
        std::fs::write(
            &cfg,
            format!("[mongo]\nuri = \"mongodb://h/db\"\n[destination]\ntype = \"s3\"\n{table}"),
        )
        .unwrap();
        bin()
            .args(["-c", cfg.to_str().unwrap(), "--show-settings", "list"])
            .output()
            .unwrap()
    };
    let out = run("bucket = \"b\"\nprovider = \"b2\"\nregion = \"us-west-004\"\n");
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "provider = \"b2\"",
        "endpoint = \"https://s3.us-west-004.backblazeb2.com\"",
        "force_path_style = false",
        "request_checksum_calculation = \"when_required\"",
        "response_checksum_validation = \"when_required\"",
    ] {
        assert!(s.contains(want), "{want} not in:\n{s}");
    }
    // An explicit key wins over the preset.
    let out = run(
        "bucket = \"b\"\nprovider = \"r2\"\nendpoint = \"https://acc.r2.cloudflarestorage.com\"\n\
         request_checksum_calculation = \"when_supported\"\n",
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("request_checksum_calculation = \"when_supported\""),
        "{s}"
    );
    assert!(s.contains("region = \"auto\""), "{s}");
    // What the provider cannot do: exit 2, the role and the fix in the message.
    let out = run(
        "bucket = \"b\"\nprovider = \"r2\"\nendpoint = \"https://acc.r2.cloudflarestorage.com\"\nacl = \"public-read\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[destination]") && err.contains("acl"),
        "{err}"
    );
    let out = run("bucket = \"b\"\nprovider = \"minio\"\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("endpoint"), "{err}");
    // A provider that is not one.
    let out = run("bucket = \"b\"\nprovider = \"azure\"\n");
    assert_eq!(out.status.code(), Some(2));
}
