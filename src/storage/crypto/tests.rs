//! Unit tests of the GCM construction and the shared read/write paths.

use aes_gcm::aead::{Aead, KeyInit as _};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::*;
use crate::storage::ByteStream;

/// Produced with Node 20's crypto (what Parse Server uses):
/// ```js
/// const key = crypto.createHash('sha256').update('legacyKey').digest('base64').substring(0, 32);
/// const iv = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
/// const c = crypto.createCipheriv('aes-256-gcm', key, iv);
/// const data = Buffer.from('Hello from Parse Server, encrypted by node!');
/// Buffer.concat([c.update(data), c.final(), iv, c.getAuthTag()]).toString('hex');
/// ```
const NODE_KEY: &str = "legacyKey";
const NODE_DERIVED: &str = "kAJeloo9C64rzYuOZUtDhb4aJixvBz/k";
const NODE_PLAIN: &[u8] = b"Hello from Parse Server, encrypted by node!";
const NODE_IV: &str = "000102030405060708090a0b0c0d0e0f";
const NODE_STORED: &str = "e949f2212668b7023c087042e761ce46a71300cd3221227e694b5969076a8b94\
                           fbc4dffc04fb2d11a3ffc4000102030405060708090a0b0c0d0e0f\
                           ebc867117050b9485ba49e79270b7a3d";
/// Same key, empty plaintext, IV `f0e0…1000` (same script with `Buffer.alloc(0)`).
const NODE_EMPTY_STORED: &str = "f0e0d0c0b0a090807060504030201000e0e090873d7a2f8ab39d5de706952f33";

fn iv(hex_iv: &str) -> [u8; IV_LEN] {
    hex::decode(hex_iv).unwrap().try_into().unwrap()
}

fn seal_with(key: &FileKey, iv: [u8; IV_LEN], data: &[u8], chunk: usize) -> Vec<u8> {
    let mut sealer = Sealer::with_iv(key, iv);
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut piece = piece.to_vec();
        sealer.update(&mut piece);
        out.extend_from_slice(&piece);
    }
    out.extend_from_slice(&sealer.finish());
    out
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn key_derivation_matches_node() {
    assert_eq!(&FileKey::derive(NODE_KEY).0, NODE_DERIVED.as_bytes());
}

#[test]
fn sealing_matches_node_vector() {
    let key = FileKey::derive(NODE_KEY);
    for chunk in [1, 5, 16, 17, 100] {
        let out = seal_with(&key, iv(NODE_IV), NODE_PLAIN, chunk);
        assert_eq!(hex::encode(out), NODE_STORED, "chunk size {chunk}");
    }
    let empty = seal_with(&key, iv("f0e0d0c0b0a090807060504030201000"), b"", 1);
    assert_eq!(hex::encode(empty), NODE_EMPTY_STORED);
}

#[test]
fn opening_node_vectors() {
    let key = FileKey::derive(NODE_KEY);
    let stored = hex::decode(NODE_STORED).unwrap();
    assert_eq!(open(&key, &stored).as_deref(), Some(NODE_PLAIN));
    assert_eq!(
        open(&key, &hex::decode(NODE_EMPTY_STORED).unwrap()),
        Some(vec![])
    );
    // Wrong key, flipped ciphertext bit, flipped tag bit, truncation: not ciphertext.
    assert_eq!(open(&FileKey::derive("other"), &stored), None);
    for i in [0, stored.len() - 20, stored.len() - 1] {
        let mut bad = stored.clone();
        bad[i] ^= 1;
        assert_eq!(open(&key, &bad), None, "bit flipped at {i}");
    }
    assert_eq!(open(&key, &stored[..31]), None);
}

#[test]
fn matches_aes_gcm_one_shot() {
    type Gcm16 = aes_gcm::AesGcm<aes::Aes256, typenum::U16>;
    let key = FileKey::derive("some app's fileKey");
    let reference = Gcm16::new(&key.0.into());
    for len in [0, 1, 15, 16, 17, 255, 256, 1000, 70_001] {
        let plain = data(len);
        let nonce: [u8; IV_LEN] = rand::random();
        // aes-gcm returns ciphertext ‖ tag; Parse puts the IV between them.
        let ct_tag = reference.encrypt(&nonce.into(), plain.as_slice()).unwrap();
        let mut expected = ct_tag[..len].to_vec();
        expected.extend_from_slice(&nonce);
        expected.extend_from_slice(&ct_tag[len..]);
        for chunk in [1, 7, 16, 4096] {
            if len > 5000 && chunk < 16 {
                continue;
            }
            assert_eq!(seal_with(&key, nonce, &plain, chunk), expected, "len {len}");
        }
        assert_eq!(open(&key, &expected), Some(plain));
    }
}

#[test]
fn verifier_checks_tag_without_iv_first() {
    let key = FileKey::derive("k");
    let stored = seal(&key, &data(1234));
    let (ct, trailer) = stored.split_at(stored.len() - TRAILER_LEN);
    let mut v = Verifier::new(&key);
    for piece in ct.chunks(100) {
        v.update(piece);
    }
    assert!(v.finish(trailer.try_into().unwrap()));
    let mut v = Verifier::new(&FileKey::derive("k2"));
    v.update(ct);
    assert!(!v.finish(trailer.try_into().unwrap()));
}

#[test]
fn resolve_key_rules() {
    let ctx = StoreContext {
        file_key: Some(Secret::new("fk")),
        ..Default::default()
    };
    let none = StoreContext::default();
    let table = Secret::new("tk");
    let derived = |k: Option<FileKey>| k.map(|k| k.0);
    let r = |e, t, c| resolve_key("fs", e, t, c).map(derived);
    assert_eq!(r(None, None, &none).unwrap(), None);
    assert_eq!(r(None, None, &ctx).unwrap(), Some(FileKey::derive("fk").0));
    assert_eq!(
        r(None, Some(&table), &ctx).unwrap(),
        Some(FileKey::derive("tk").0)
    );
    assert_eq!(r(Some(Encryption::None), None, &ctx).unwrap(), None);
    assert!(r(Some(Encryption::None), Some(&table), &none).is_err());
    assert!(r(Some(Encryption::FileKey), None, &none).is_err());
    let err = r(Some(Encryption::FileKey), None, &none)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("fk") && !err.contains("tk"));
}

/// A stored object in memory, opened at an offset in uneven chunks, as a store would.
fn opener(stored: Vec<u8>) -> impl Fn(u64) -> std::future::Ready<Result<ByteStream, StorageError>> {
    let stored = Bytes::from(stored);
    move |off| {
        let rest = stored.slice(off as usize..);
        let chunks: Vec<Result<Bytes, StorageError>> = rest
            .chunks(300_007)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        std::future::ready(Ok(stream::iter(chunks).boxed()))
    }
}

async fn read(key: Option<&FileKey>, stored: Vec<u8>, offset: u64) -> (u64, bool, Vec<u8>) {
    let len = stored.len() as u64;
    let p = read_stored(key, "x", len, offset, opener(stored))
        .await
        .unwrap();
    let chunks: Vec<Bytes> = p.stream.try_collect().await.unwrap();
    (p.size, p.encrypted, chunks.concat())
}

#[tokio::test]
async fn read_paths_small_and_large() {
    let key = FileKey::derive("k");
    for len in [
        0usize,
        40,
        1_000_000,
        super::stream::IN_MEMORY_LIMIT as usize + 12_345,
    ] {
        let plain = data(len);
        let sealed = seal(&key, &plain);
        for offset in [0, len / 3, len] {
            let (size, enc, got) = read(Some(&key), sealed.clone(), offset as u64).await;
            assert_eq!((size, enc), (len as u64, true));
            assert!(got == plain[offset..], "sealed len {len} offset {offset}");
            // Plaintext through a keyed reader: falls back; and through a reader with no key.
            let (size, enc, got) = read(Some(&key), plain.clone(), offset as u64).await;
            assert_eq!((size, enc), (len as u64, false));
            assert!(got == plain[offset..], "plain len {len} offset {offset}");
            let (_, enc, got) = read(None, sealed.clone(), offset as u64).await;
            assert!(!enc && got == sealed[offset..]);
        }
        let size = stored_plain_size(Some(&key), "x", sealed.len() as u64, opener(sealed)).await;
        assert_eq!(size.unwrap(), len as u64);
    }
}

#[tokio::test]
async fn read_reports_changed_object() {
    let key = FileKey::derive("k");
    let big = seal(&key, &data(super::stream::IN_MEMORY_LIMIT as usize + 1));
    // Declared length longer than what the store returns: an integrity error, not a short file.
    let err = read_stored(
        Some(&key),
        "x",
        big.len() as u64 + 1,
        0,
        opener(big.clone()),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, StorageError::Integrity { .. }), "{err}");
    // Replaced between the verification pass and the decrypting pass.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let other = seal(&key, &data(super::stream::IN_MEMORY_LIMIT as usize + 1));
    let p = read_stored(Some(&key), "x", big.len() as u64, 0, |off| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        opener(if n == 0 { big.clone() } else { other.clone() })(off)
    })
    .await
    .unwrap();
    let res: Result<Vec<Bytes>, _> = p.stream.try_collect().await;
    assert!(matches!(res, Err(StorageError::Integrity { .. })));
}

fn chunked(data: &[u8]) -> Vec<Result<Bytes, StorageError>> {
    data.chunks(999)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect()
}

#[tokio::test]
async fn seal_stream_and_skip_prefix() {
    let key = FileKey::derive("k");
    let plain = data(100_000);
    let input = stream::iter(chunked(&plain)).boxed();
    let sealed: Vec<Bytes> = seal_stream(&key, input).try_collect().await.unwrap();
    assert_eq!(open(&key, &sealed.concat()), Some(plain.clone()));
    let input = stream::iter(chunked(&plain)).boxed();
    let rest: Vec<Bytes> = skip_prefix(input, 5000).try_collect().await.unwrap();
    assert!(rest.concat() == plain[5000..]);
}
