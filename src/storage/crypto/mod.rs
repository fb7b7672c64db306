//! Parse Server's file encryption format, byte-compatible with its GridFS and FS adapters
//! (`shared/docs/parse-file-storage.md` §4.3, §7): AES-256-GCM, key = the 32 ASCII bytes of the
//! first 32 characters of `base64(sha256(key string))`, a random **16-byte** IV, no AAD, stored as
//! `ciphertext ‖ iv(16) ‖ tag(16)`.
//!
//! This module owns the cipher (streaming, bounded memory) and the read/write helpers the GridFS
//! and FS stores share ([`stream`]): which key a store uses, sealing a stream on `put`, and on
//! `get` deciding whether stored bytes are ciphertext for the key or plaintext. It does no I/O of
//! its own.
//!
//! GCM is built here from `aes`, `ctr` and `ghash` rather than used one-shot from `aes-gcm`,
//! because the IV sits at the *end* of the stored bytes and the files can be large: encryption must
//! emit ciphertext as the input arrives, and verification must hash a file without holding it.
//! With a 16-byte IV, GCM (NIST SP 800-38D §7.1) derives `J0 = GHASH_H(IV ‖ 0^64 ‖ [128]_64)`,
//! encrypts with the 32-bit counter starting at `inc32(J0)`, and computes
//! `tag = GHASH_H(C padded ‖ [0]_64 ‖ [len(C)·8]_64) ⊕ E_K(J0)`. The unit tests cross-check this
//! against `aes_gcm::AesGcm<Aes256, U16>` and a vector produced by Node's `crypto`.

pub mod recode;
pub mod stream;

use aes::Aes256;
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine;
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use sha2::Digest;

use super::{Encryption, StorageError, StoreContext};
use crate::secret::Secret;

pub use stream::{Plaintext, read_stored, seal_stream, skip_prefix, stored_plain_size};

/// Length of the IV Parse Server appends (`crypto.randomBytes(16)`).
pub const IV_LEN: usize = 16;
/// Length of the GCM tag Parse Server appends after the IV.
pub const TAG_LEN: usize = 16;
/// `iv ‖ tag`: what follows the ciphertext in stored bytes.
pub const TRAILER_LEN: usize = IV_LEN + TAG_LEN;

type Block = [u8; 16];
type Ctr = ctr::Ctr32BE<Aes256>;

/// An AES-256 key derived the way Parse Server derives it. Never printed.
#[derive(Clone)]
pub struct FileKey([u8; 32]);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

impl FileKey {
    /// `crypto.createHash('sha256').update(String(key)).digest('base64').substring(0, 32)`, used as
    /// raw key bytes (no KDF: that is what Parse Server does).
    pub fn derive(key: &str) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key));
        let mut out = [0u8; 32];
        // A base64 SHA-256 is always 44 ASCII characters, so the first 32 bytes always exist.
        out.copy_from_slice(&b64.as_bytes()[..32]);
        FileKey(out)
    }

    /// 16 hex digits that tell two keys apart and reveal nothing of either (a domain-separated
    /// SHA-256 of the key bytes).
    pub fn fingerprint(&self) -> String {
        let d = sha2::Sha256::digest([b"parse-files-migrate key\0".as_slice(), &self.0].concat());
        hex::encode(&d[..8])
    }

    /// Whether two keys are the same (constant time).
    pub fn same_as(&self, other: &FileKey) -> bool {
        self.0
            .iter()
            .zip(other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn cipher(&self) -> Aes256 {
        Aes256::new(&self.0.into())
    }
}

/// The key a GridFS or FS store encrypts with, from its `encryption` and `encryption_key` settings:
/// unset means "the table's key, else Parse's `fileKey`, else no encryption"; `file-key` requires
/// one of them; `none` stores plaintext and rejects a table key as contradictory.
pub fn resolve_key(
    store: &str,
    encryption: Option<Encryption>,
    table_key: Option<&Secret>,
    ctx: &StoreContext,
) -> Result<Option<FileKey>, StorageError> {
    let available = table_key.or(ctx.file_key.as_ref());
    match (encryption, available) {
        (Some(Encryption::None), _) if table_key.is_some() => Err(StorageError::message(
            store,
            false,
            "encryption = \"none\" conflicts with encryption_key: remove one of them",
        )),
        (Some(Encryption::None), _) => Ok(None),
        (Some(Encryption::FileKey), None) => Err(StorageError::message(
            store,
            false,
            "encryption = \"file-key\" needs encryption_key or the app's fileKey",
        )),
        (_, key) => Ok(key.map(|k| FileKey::derive(k.expose()))),
    }
}

/// GHASH over a byte stream of any chunking: buffers the partial block between calls.
struct GhashStream {
    ghash: GHash,
    partial: Block,
    partial_len: usize,
    len: u64,
}

impl GhashStream {
    fn new(h: &Block) -> Self {
        GhashStream {
            ghash: GHash::new(h.into()),
            partial: [0; 16],
            partial_len: 0,
            len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.partial_len > 0 {
            let take = (16 - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&data[..take]);
            self.partial_len += take;
            data = &data[take..];
            if self.partial_len < 16 {
                return;
            }
            self.ghash.update(&[self.partial.into()]);
            self.partial_len = 0;
        }
        let full = data.len() / 16 * 16;
        for block in data[..full].chunks_exact(16) {
            let mut b = [0u8; 16];
            b.copy_from_slice(block);
            self.ghash.update(&[b.into()]);
        }
        let rest = &data[full..];
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
    }

    /// `GHASH(C padded ‖ [len(AAD)=0]_64 ‖ [len(C)·8]_64)`.
    fn finalize(mut self) -> Block {
        if self.partial_len > 0 {
            self.ghash.update_padded(&self.partial[..self.partial_len]);
        }
        self.ghash.update(&[length_block(self.len * 8)]);
        self.ghash.finalize().into()
    }
}

fn length_block(bits: u64) -> ghash::Block {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&bits.to_be_bytes());
    b.into()
}

fn hash_key(cipher: &Aes256) -> Block {
    let mut h = ghash::Block::default();
    cipher.encrypt_block(&mut h);
    h.into()
}

/// `J0` for a 16-byte IV and `E_K(J0)`, the mask applied to the tag.
fn j0_and_mask(cipher: &Aes256, h: &Block, iv: &[u8; IV_LEN]) -> (Block, Block) {
    let mut g = GHash::new(h.into());
    g.update(&[(*iv).into(), length_block((IV_LEN * 8) as u64)]);
    let j0: Block = g.finalize().into();
    let mut mask = j0.into();
    cipher.encrypt_block(&mut mask);
    (j0, mask.into())
}

fn xor(a: &Block, b: &Block) -> Block {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Constant-time comparison: the tag check must not leak how many bytes matched.
fn tags_equal(a: &Block, b: &[u8]) -> bool {
    b.len() == TAG_LEN && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// GCM keystream plus running GHASH over the ciphertext, shared by [`Sealer`] and [`Opener`].
struct GcmState {
    ctr: Ctr,
    ghash: GhashStream,
    mask: Block,
}

impl GcmState {
    fn new(key: &FileKey, iv: &[u8; IV_LEN]) -> Self {
        let cipher = key.cipher();
        let h = hash_key(&cipher);
        let (j0, mask) = j0_and_mask(&cipher, &h, iv);
        // inc32(J0): the data counter starts one past J0, in the low 32 bits only, which is
        // exactly what `Ctr32BE` increments.
        let mut ctr0 = j0;
        let low = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]).wrapping_add(1);
        ctr0[12..].copy_from_slice(&low.to_be_bytes());
        GcmState {
            ctr: Ctr::new(&key.0.into(), &ctr0.into()),
            ghash: GhashStream::new(&h),
            mask,
        }
    }

    fn tag(self) -> Block {
        xor(&self.ghash.finalize(), &self.mask)
    }
}

/// Streaming encryption: call [`Sealer::update`] on each chunk (encrypted in place, in order),
/// then [`Sealer::finish`] for the `iv ‖ tag` trailer to append.
pub struct Sealer {
    state: GcmState,
    iv: [u8; IV_LEN],
}

impl Sealer {
    /// A sealer with a fresh random IV, as Parse Server uses for every file.
    pub fn new(key: &FileKey) -> Self {
        let iv: [u8; IV_LEN] = rand::random();
        Self::with_iv(key, iv)
    }

    /// A sealer with a given IV (tests and fixed vectors only: reusing an IV breaks GCM).
    pub fn with_iv(key: &FileKey, iv: [u8; IV_LEN]) -> Self {
        Sealer {
            state: GcmState::new(key, &iv),
            iv,
        }
    }

    pub fn update(&mut self, data: &mut [u8]) {
        self.state.ctr.apply_keystream(data);
        self.state.ghash.update(data);
    }

    pub fn finish(self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..IV_LEN].copy_from_slice(&self.iv);
        out[IV_LEN..].copy_from_slice(&self.state.tag());
        out
    }
}

/// Streaming decryption with a known IV. The plaintext it produces is unauthenticated until
/// [`Opener::finish`] says the tag matched; callers verify first (see [`Verifier`]) or discard.
pub struct Opener {
    state: GcmState,
}

impl Opener {
    pub fn new(key: &FileKey, iv: &[u8; IV_LEN]) -> Self {
        Opener {
            state: GcmState::new(key, iv),
        }
    }

    pub fn update(&mut self, data: &mut [u8]) {
        self.state.ghash.update(data);
        self.state.ctr.apply_keystream(data);
    }

    /// Whether the ciphertext seen so far carries `tag`.
    pub fn finish(self, tag: &[u8]) -> bool {
        tags_equal(&self.state.tag(), tag)
    }
}

/// Tag check without decrypting: GHASH of the ciphertext needs only the key, so a file can be
/// verified in one pass even though its IV comes last.
pub struct Verifier {
    cipher: Aes256,
    h: Block,
    ghash: GhashStream,
}

impl Verifier {
    pub fn new(key: &FileKey) -> Self {
        let cipher = key.cipher();
        let h = hash_key(&cipher);
        Verifier {
            ghash: GhashStream::new(&h),
            cipher,
            h,
        }
    }

    /// Feed ciphertext (the stored bytes before the trailer), in order.
    pub fn update(&mut self, ciphertext: &[u8]) {
        self.ghash.update(ciphertext);
    }

    /// Whether the trailer (`iv ‖ tag`) authenticates the ciphertext fed so far.
    pub fn finish(self, trailer: &[u8; TRAILER_LEN]) -> bool {
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&trailer[..IV_LEN]);
        let (_, mask) = j0_and_mask(&self.cipher, &self.h, &iv);
        tags_equal(&xor(&self.ghash.finalize(), &mask), &trailer[IV_LEN..])
    }
}

/// Encrypt a whole buffer into Parse's stored layout (small files and tests).
pub fn seal(key: &FileKey, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + TRAILER_LEN);
    out.extend_from_slice(plaintext);
    let mut sealer = Sealer::new(key);
    sealer.update(&mut out);
    out.extend_from_slice(&sealer.finish());
    out
}

/// Decrypt stored bytes held in memory; `None` when they are not valid ciphertext for `key`
/// (too short, or the tag does not verify): the caller then treats them as plaintext.
pub fn open(key: &FileKey, stored: &[u8]) -> Option<Vec<u8>> {
    let split = stored.len().checked_sub(TRAILER_LEN)?;
    let (ciphertext, trailer) = stored.split_at(split);
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&trailer[..IV_LEN]);
    let mut out = ciphertext.to_vec();
    let mut opener = Opener::new(key, &iv);
    opener.update(&mut out);
    opener.finish(&trailer[IV_LEN..]).then_some(out)
}

#[cfg(test)]
mod tests;
