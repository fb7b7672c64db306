//! Listing the fs store: its directory read a page at a time on the blocking pool, each entry's
//! file name decoded back to the Parse name (`decodeURIComponent`), temp files of in-progress
//! writes and anything that is not a regular file left out.
//!
//! Memory is one page: the directory is read through one `ReadDir` handle, never collected.

use std::io;
use std::path::PathBuf;

use futures::StreamExt;

use super::{TEMP_PREFIX, io_error};
use crate::parse::names::encode_uri_component;
use crate::storage::{ListOptions, ListStream, ListedObject, StorageError};

/// Where a directory listing stands (moved to the blocking pool and back for each page).
struct Listing {
    dir: PathBuf,
    prefix: String,
    page: usize,
    entries: Option<std::fs::ReadDir>,
    done: bool,
}

pub(super) fn list(dir: PathBuf, opts: ListOptions) -> ListStream<'static> {
    let state = Listing {
        dir,
        prefix: opts.prefix().to_string(),
        page: opts.page_size(),
        entries: None,
        done: false,
    };
    futures::stream::try_unfold(state, |st| async move {
        if st.done {
            return Ok(None);
        }
        let what = st.dir.display().to_string();
        let (st, page) = tokio::task::spawn_blocking(move || {
            let mut st = st;
            let page = st.next_page();
            (st, page)
        })
        .await
        .map_err(|e| io_error(&what, io::Error::other(e)))?;
        let page = page.map_err(|e| io_error(&what, e))?;
        if page.is_empty() && st.done {
            return Ok(None);
        }
        Ok::<_, StorageError>(Some((page, st)))
    })
    .boxed()
}

impl Listing {
    /// Up to `page` objects; sets `done` at the end of the directory. A directory that does not
    /// exist (yet) is an empty store.
    fn next_page(&mut self) -> io::Result<Vec<ListedObject>> {
        let entries = match &mut self.entries {
            Some(e) => e,
            None => match std::fs::read_dir(&self.dir) {
                Ok(e) => self.entries.insert(e),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.done = true;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            },
        };
        let mut out = Vec::new();
        while out.len() < self.page {
            let Some(entry) = entries.next() else {
                self.done = true;
                break;
            };
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(stored) = file_name.to_str() else {
                tracing::warn!(
                    "{}: file name {:?} is not UTF-8, so no Parse name maps to it; skipped",
                    self.dir.display(),
                    file_name
                );
                continue;
            };
            if stored.starts_with(TEMP_PREFIX) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() {
                continue;
            }
            let name = parse_name(stored);
            if !name.starts_with(&self.prefix) {
                continue;
            }
            out.push(ListedObject {
                name,
                size: meta.len(),
                modified: meta.modified().ok(),
                md5: None,
                version: None,
                superseded: false,
            });
        }
        Ok(out)
    }
}

/// The Parse name stored under file name `stored`: its `decodeURIComponent`. A file name the FS
/// adapter would never write (not percent-decodable, or not re-encoding to itself, e.g. a literal
/// space) is reported under the file name itself: no reference resolves to it either way.
pub(super) fn parse_name(stored: &str) -> String {
    match percent_encoding::percent_decode_str(stored).decode_utf8() {
        Ok(name) if encode_uri_component(&name) == stored => name.into_owned(),
        _ => stored.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_decoded_only_when_they_round_trip() {
        assert_eq!(super::parse_name("a%20b%2Fc.txt"), "a b/c.txt");
        assert_eq!(super::parse_name("%C3%A9.bin"), "é.bin");
        assert_eq!(super::parse_name("a b.txt"), "a b.txt");
        assert_eq!(super::parse_name("100%.txt"), "100%.txt");
        assert_eq!(super::parse_name("%FF.txt"), "%FF.txt");
    }
}
