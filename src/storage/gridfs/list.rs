//! Listing a GridFS bucket: its files documents through one cursor in `filename` order, a batch
//! per page, each name's revisions grouped so that the newest (what Parse Server serves: latest
//! `uploadDate`, ties to the greatest ObjectId, as [`super::newest_first`]) is the object and the
//! older ones are reported as superseded.
//!
//! The sort `{filename: 1, uploadDate: 1}` is the one the drivers' standard GridFS index
//! provides, so a real MongoDB streams it from the index. Memory: one page plus the revisions of
//! one name.

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};

use super::{GridFsStore, id_text, length_of, mongo_error};
use crate::storage::{ListOptions, ListStream, ListedObject, ObjectStore, StorageError};

/// One revision, as read from the files collection.
struct Revision {
    filename: String,
    id: Bson,
    length: u64,
    uploaded: Option<mongodb::bson::DateTime>,
    md5: Option<String>,
}

impl Revision {
    /// Whether readers take `self` over `other` (a newer upload; a tie to the greater ObjectId).
    fn newer_than(&self, other: &Revision) -> bool {
        match self.uploaded.cmp(&other.uploaded) {
            std::cmp::Ordering::Equal => match (&self.id, &other.id) {
                (Bson::ObjectId(a), Bson::ObjectId(b)) => a > b,
                _ => false,
            },
            order => order.is_gt(),
        }
    }

    fn listed(self, superseded: bool, report_md5: bool) -> ListedObject {
        ListedObject {
            name: self.filename,
            size: self.length,
            modified: self.uploaded.map(mongodb::bson::DateTime::to_system_time),
            md5: self.md5.filter(|_| report_md5),
            version: Some(id_text(&self.id)),
            superseded,
        }
    }
}

/// Where a listing stands: the cursor, the revisions of the name being read, and the objects of
/// the names read before it that did not fit in the last page.
struct Listing {
    cursor: Option<mongodb::Cursor<Document>>,
    group: Vec<Revision>,
    ready: std::collections::VecDeque<ListedObject>,
    done: bool,
}

pub(super) fn list(store: &GridFsStore, opts: ListOptions) -> ListStream<'_> {
    let page = opts.page_size();
    let prefix = opts.prefix().to_string();
    // A stored md5 is of the stored bytes: the plaintext's only when nothing is encrypted.
    let report_md5 = store.key.is_none();
    let state = Listing {
        cursor: None,
        group: Vec::new(),
        ready: Default::default(),
        done: false,
    };
    let what = store.describe();
    futures::stream::try_unfold(state, move |mut st| {
        let (what, prefix) = (what.clone(), prefix.clone());
        async move {
            if st.done && st.ready.is_empty() {
                return Ok(None);
            }
            let mut out = Vec::new();
            loop {
                while out.len() < page
                    && let Some(o) = st.ready.pop_front()
                {
                    out.push(o);
                }
                if out.len() == page || st.done {
                    break;
                }
                let cursor = match &mut st.cursor {
                    Some(c) => c,
                    None => st.cursor.insert(open(store, &prefix, page, &what).await?),
                };
                let Some(doc) = cursor.try_next().await.map_err(|e| mongo_error(&what, e))? else {
                    flush(&mut st.group, &mut st.ready, report_md5);
                    st.done = true;
                    continue;
                };
                let Some(rev) = revision(&doc, &prefix) else {
                    continue;
                };
                if st.group.first().is_some_and(|g| g.filename != rev.filename) {
                    flush(&mut st.group, &mut st.ready, report_md5);
                }
                st.group.push(rev);
            }
            Ok::<_, StorageError>(Some((out, st)))
        }
    })
    .boxed()
}

async fn open(
    store: &GridFsStore,
    prefix: &str,
    page: usize,
    what: &str,
) -> Result<mongodb::Cursor<Document>, StorageError> {
    let filter = if prefix.is_empty() {
        doc! {}
    } else {
        doc! { "filename": { "$regex": format!("^{}", regex_escape(prefix)) } }
    };
    store
        .files
        .find(filter)
        .sort(doc! { "filename": 1, "uploadDate": 1 })
        .projection(doc! { "filename": 1, "length": 1, "uploadDate": 1, "md5": 1 })
        .batch_size(u32::try_from(page).unwrap_or(u32::MAX))
        .allow_disk_use(true)
        .await
        .map_err(|e| mongo_error(what, e))
}

/// A files document as a revision; `None` for one without a string `filename` under `prefix` (not
/// something Parse Server could serve) or without a valid `length` (logged).
fn revision(doc: &Document, prefix: &str) -> Option<Revision> {
    let filename = doc.get_str("filename").ok()?;
    if !filename.starts_with(prefix) || filename.is_empty() {
        return None;
    }
    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
    let Some(length) = length_of(doc.get("length")) else {
        tracing::warn!(
            name = filename,
            id = %id_text(&id),
            "GridFS files document has no valid `length`; not listed"
        );
        return None;
    };
    Some(Revision {
        filename: filename.to_string(),
        id,
        length,
        uploaded: doc.get_datetime("uploadDate").ok().copied(),
        md5: doc.get_str("md5").ok().map(str::to_ascii_lowercase),
    })
}

/// Move one name's revisions to `out`: the newest as the object, the rest as superseded.
fn flush(
    group: &mut Vec<Revision>,
    out: &mut std::collections::VecDeque<ListedObject>,
    report_md5: bool,
) {
    let mut newest = 0;
    for (i, rev) in group.iter().enumerate().skip(1) {
        let best = &group[newest];
        // Equal dates without comparable ids: the later one in the cursor wins.
        let tie = rev.uploaded == best.uploaded && !best.newer_than(rev);
        if rev.newer_than(best) || tie {
            newest = i;
        }
    }
    for (i, rev) in group.drain(..).enumerate() {
        out.push_back(rev.listed(i != newest, report_md5));
    }
}

/// `s` with every regular-expression metacharacter escaped (PCRE and Python `re` alike).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, secs: i64, id: u8) -> Revision {
        Revision {
            filename: name.into(),
            id: Bson::ObjectId(mongodb::bson::oid::ObjectId::from_bytes([id; 12])),
            length: u64::from(id),
            uploaded: Some(mongodb::bson::DateTime::from_millis(secs * 1000)),
            md5: None,
        }
    }

    #[test]
    fn the_newest_revision_is_the_object() {
        let mut out = std::collections::VecDeque::new();
        let mut group = vec![
            rev("a", 1, 1),
            rev("a", 3, 2),
            rev("a", 3, 9),
            rev("a", 2, 4),
        ];
        flush(&mut group, &mut out, false);
        let live: Vec<u64> = out
            .iter()
            .filter(|o| !o.superseded)
            .map(|o| o.size)
            .collect();
        assert_eq!(live, [9]);
        assert_eq!(out.iter().filter(|o| o.superseded).count(), 3);
        assert!(group.is_empty());
    }

    #[test]
    fn escapes_regex_metacharacters() {
        assert_eq!(regex_escape("a+b (1).txt"), "a\\+b \\(1\\)\\.txt");
        assert_eq!(regex_escape("dir/名%20"), "dir/名%20");
    }
}
