//! Micro-benchmarks of the per-reference and per-byte hot paths (`cargo bench --bench hot`):
//! name classification, the nested-document walk, URL encoding and Parse's AES-256-GCM format.
//! Kept short (small samples, one-second measurements): they guard against regressions, the
//! end-to-end figures come from `bench/run`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongodb::bson::{Bson, RawDocumentBuf, doc, rawdoc};
use parse_files_migrate::parse::names::{NameKind, encode_uri_component};
use parse_files_migrate::scan::nested::{Fields, extract};
use parse_files_migrate::storage::crypto::{FileKey, Opener, Sealer, Verifier};

const NAMES: &[&str] = &[
    "tfss-0b5c8d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e-photo.jpg",
    "0b5c8d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e-avatar.png",
    "3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e_photo.jpg",
    "0b5c8d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_profile.png",
    "mfp_3f2a9c1e5b7d_photo.jpg",
    "my holiday photo (1).jpg",
];

fn names(c: &mut Criterion) {
    let mut g = c.benchmark_group("names");
    g.throughput(Throughput::Elements(NAMES.len() as u64));
    g.bench_function("NameKind::of", |b| {
        b.iter(|| {
            for n in NAMES {
                black_box(NameKind::of(black_box(n)));
            }
        })
    });
    g.bench_function("encode_uri_component", |b| {
        b.iter(|| {
            for n in NAMES {
                black_box(encode_uri_component(black_box(n)));
            }
        })
    });
    g.finish();
}

/// A typical Parse object: a top-level File, an Object field with a nested File, an Array with a
/// File among other values, and fields that hold no file.
fn object() -> RawDocumentBuf {
    rawdoc! {
        "_id": "a1B2c3D4e5",
        "image": "tfss-0b5c8d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e-photo.jpg",
        "meta": {
            "title": "a title", "size": 1024, "tags": ["a", "b", "c"],
            "thumb": {"__type": "File", "name": "0b5c8d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e-thumb.png",
                      "url": "http://files.parse.com/key/0b5c8d6e-1f2a-4b3c-9d8e-7f6a5b4c3d2e-thumb.png"},
        },
        "gallery": [
            1, "two", {"x": {"y": {"z": true}}},
            {"__type": "File", "name": "3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e_g.jpg", "url": "https://x/y"},
        ],
        "plain": {"a": {"b": {"c": {"d": [1, 2, 3, 4, 5, 6, 7, 8]}}}},
    }
}

fn nested_walk(c: &mut Criterion) {
    let raw = object();
    let id = Bson::String("a1B2c3D4e5".into());
    let files = vec!["image".to_string()];
    let containers = vec!["meta".into(), "gallery".into(), "plain".into()];
    let fields = Fields {
        class: "Photo",
        files: &files,
        containers: &containers,
    };
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(1));
    g.bench_function("nested::extract (3 refs)", |b| {
        let (mut refs, mut issues) = (Vec::new(), Vec::new());
        b.iter(|| {
            refs.clear();
            issues.clear();
            extract(black_box(&raw), &id, &fields, &mut refs, &mut issues);
            assert_eq!(refs.len(), 3);
        })
    });
    // The common case of a scan: an object with no file at all.
    let empty = RawDocumentBuf::from_document(&doc! {"_id": "x", "title": "t", "meta": {"a": 1}})
        .expect("a valid document");
    g.bench_function("nested::extract (no refs)", |b| {
        let (mut refs, mut issues) = (Vec::new(), Vec::new());
        b.iter(|| {
            extract(black_box(&empty), &id, &fields, &mut refs, &mut issues);
        })
    });
    g.finish();
}

fn crypto(c: &mut Criterion) {
    let key = FileKey::derive("benchFileKey");
    let iv = [7u8; 16];
    // One part of a streaming transfer.
    let chunk = vec![0x5au8; 256 * 1024];
    let mut g = c.benchmark_group("crypto (256 KiB)");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("Sealer (encrypt + GHASH)", |b| {
        let mut buf = chunk.clone();
        b.iter(|| {
            let mut s = Sealer::with_iv(&key, iv);
            s.update(&mut buf);
            black_box(s.finish())
        })
    });
    g.bench_function("Opener (GHASH + decrypt)", |b| {
        let mut buf = chunk.clone();
        b.iter(|| {
            let mut o = Opener::new(&key, &iv);
            o.update(&mut buf);
            black_box(o.finish(&[0u8; 16]))
        })
    });
    g.bench_function("Verifier (GHASH only)", |b| {
        b.iter(|| {
            let mut v = Verifier::new(&key);
            v.update(black_box(&chunk));
            black_box(v.finish(&[0u8; 32]))
        })
    });
    g.finish();
}

criterion_group! {
    name = hot;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = names, nested_walk, crypto
}
criterion_main!(hot);
