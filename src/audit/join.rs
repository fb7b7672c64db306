//! The merge-join of the two sorted sides: stored objects (one record per name) and references
//! (one record per place that names a file, several per name). One pass over both, in name
//! order, holding one name's references at a time: a name only stored is an orphan, a name only
//! referenced is dangling (or a legacy hosted name, counted apart), a name on both sides adds
//! its size to every class and field that references it.

use std::io;
use std::iter::Peekable;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::sort::{Record, parts, push_part};
use super::{Finding, Summary};
use crate::parse::names::NameKind;

/// A stored object's payload: size, then modification time in ms since the epoch (or
/// `i64::MIN` when unknown), little-endian.
pub(crate) fn stored_payload(size: u64, modified: Option<SystemTime>) -> Vec<u8> {
    let ms = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(i64::MIN);
    let mut p = size.to_le_bytes().to_vec();
    p.extend_from_slice(&ms.to_le_bytes());
    p
}

pub(crate) fn decode_stored(p: &[u8]) -> io::Result<(u64, Option<SystemTime>)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad stored record");
    let size = u64::from_le_bytes(p.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let ms = i64::from_le_bytes(
        p.get(8..16)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let modified = u64::try_from(ms)
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    Ok((size, modified))
}

/// A reference's payload: class, object id and path, each `[u32 length][bytes]`. References of
/// one object share a payload prefix, so they sort next to each other within a name.
pub(crate) fn ref_payload(class: &str, object_id: &str, path: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + class.len() + object_id.len() + path.len());
    for part in [class, object_id, path] {
        push_part(&mut p, part);
    }
    p
}

/// A reference's class, object id and path, from its payload ([`ref_payload`]).
pub(crate) fn decode_ref(p: &[u8]) -> io::Result<[&str; 3]> {
    Ok(parts::<3>(p)?.0)
}

/// The File field a reference path belongs to: its first segment (`gallery.2.file` →
/// `gallery`); for Parse Config, the parameter (`params.logo.x` → `params.logo`).
fn field_of<'a>(class: &str, path: &'a str) -> &'a str {
    let mut ends = path.match_indices('.').map(|(i, _)| i);
    let first = ends.next();
    let end = if class == crate::parse::schema::GLOBAL_CONFIG {
        ends.next()
    } else {
        first
    };
    &path[..end.unwrap_or(path.len())]
}

/// Join `stored` and `refs` (both sorted by name), handing each orphan and dangling reference to
/// `sink` and counting everything into `summary`.
pub(crate) fn join(
    stored: impl Iterator<Item = io::Result<Record>>,
    refs: impl Iterator<Item = io::Result<Record>>,
    summary: &mut Summary,
    sink: &mut dyn FnMut(&Finding) -> io::Result<()>,
) -> io::Result<()> {
    let mut stored = stored.peekable();
    let mut refs = refs.peekable();
    loop {
        let s_key = peek_key(&mut stored)?;
        let r_key = peek_key(&mut refs)?;
        let (take_stored, take_refs) = match (&s_key, &r_key) {
            (None, None) => return Ok(()),
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
            (Some(s), Some(r)) => (s <= r, r <= s),
        };
        let object = if take_stored {
            let rec = next(&mut stored)?;
            // A name listed twice (a store that should not) is one object.
            while peek_key(&mut stored)?.as_deref() == Some(rec.key.as_str()) {
                next(&mut stored)?;
            }
            let (size, modified) = decode_stored(&rec.payload)?;
            Some((rec.key, size, modified))
        } else {
            None
        };
        let size = object.as_ref().map(|o| o.1);
        let name = match (&object, &r_key) {
            (Some(o), _) => o.0.clone(),
            (None, Some(k)) => k.clone(),
            (None, None) => return Ok(()),
        };
        let mut objects = 0u64;
        let mut last_object: Option<Vec<u8>> = None;
        if take_refs {
            let hosted = NameKind::of(&name).is_hosted();
            while peek_key(&mut refs)?.as_deref() == Some(name.as_str()) {
                let rec = next(&mut refs)?;
                let [class, object_id, path] = decode_ref(&rec.payload)?.map(str::to_string);
                summary.references += 1;
                if hosted {
                    summary.legacy_references += 1;
                }
                // The payload up to the path identifies the object.
                let id_len = 8 + class.len() + object_id.len();
                let id = rec.payload.get(..id_len).unwrap_or(&rec.payload);
                if last_object.as_deref() != Some(id) {
                    objects += 1;
                    last_object = Some(id.to_vec());
                }
                let field = summary
                    .fields
                    .entry((class.clone(), field_of(&class, &path).to_string()))
                    .or_default();
                field.references += 1;
                match size {
                    Some(size) => field.bytes += size,
                    None if hosted => summary.legacy_unresolved += 1,
                    None => {
                        summary.dangling_references += 1;
                        sink(&Finding::Dangling {
                            class,
                            object_id,
                            path,
                            name: name.clone(),
                        })?;
                    }
                }
            }
        }
        if let Some((name, size, modified)) = object {
            summary.stored_files += 1;
            summary.stored_bytes += size;
            if objects == 0 {
                summary.orphans += 1;
                summary.orphan_bytes += size;
                if super::broken_generated_key(&name).is_some() {
                    summary.broken_keys += 1;
                }
                sink(&Finding::Orphan {
                    name,
                    size,
                    modified,
                })?;
            } else {
                summary.referenced_files += 1;
                if objects > 1 {
                    summary.shared_files += 1;
                }
            }
        }
    }
}

fn peek_key<I: Iterator<Item = io::Result<Record>>>(
    it: &mut Peekable<I>,
) -> io::Result<Option<String>> {
    match it.peek() {
        None => Ok(None),
        Some(Ok(r)) => Ok(Some(r.key.clone())),
        Some(Err(_)) => match it.next() {
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        },
    }
}

fn next<I: Iterator<Item = io::Result<Record>>>(it: &mut Peekable<I>) -> io::Result<Record> {
    it.next()
        .unwrap_or_else(|| Err(io::Error::other("sorted stream ended early")))
}
