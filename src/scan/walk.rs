//! Walking one class collection in `_id` order.
//!
//! `_id`s may be strings (Parse's format), ObjectIds (imported data), integers (`_GlobalConfig`)
//! or anything else. MongoDB's range operators only compare values of the same *type bracket*
//! (`{$gt: "abc"}` never matches a number), so resuming a walk with `_id > last` alone would
//! silently skip every later bracket. A walk is read through one cursor sorted by `_id` (BSON
//! order: brackets in turn), a page (`batch_size` documents) per `getMore`; where it resumes
//! from a position (a checkpoint, a lost cursor) the query is `{_id: {$gt: last, $type: <last's
//! bracket>}}` or `{_id: {$type: <any later bracket>}}`: every document is seen exactly once even
//! in a collection with mixed `_id` types.
//!
//! One cursor, not a query per page: the server plans and sorts once. A keyset page per query
//! (`{_id: {$gt: last}}`, `limit`) costs O(page) on MongoDB's `_id` index but O(rest of the
//! collection) on servers without one (the test server: 2.2 s per page of 1,000 at a million
//! objects, a walk of hours), and a query per type bracket is a scan each there. A cursor lost
//! meanwhile (idle past the server's 10-minute cursor timeout while the copies behind the walk
//! are slow, a failover, a dropped connection) is reopened once from the last `_id` read — the
//! position a checkpoint records, so a walk resumes the same way in this process or the next.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::{Collection, Cursor};

use super::nested::{Fields, extract};
use super::{FileRef, ScanIssue};
use crate::parse::schema::ClassSchema;
use crate::parse::urls::Matcher;

/// `_id` type brackets in BSON comparison order (arrays, regexes and undefined cannot be `_id`s).
const BRACKETS: &[&[&str]] = &[
    &["minKey"],
    &["null"],
    &["int", "long", "double", "decimal"],
    &["string", "symbol"],
    &["object"],
    &["binData"],
    &["objectId"],
    &["bool"],
    &["date"],
    &["timestamp"],
    &["maxKey"],
];

/// The bracket of an `_id` value (`None` for a type no `_id` can have).
fn bracket_of(id: &Bson) -> Option<usize> {
    let name = match id {
        Bson::MinKey => "minKey",
        Bson::Null | Bson::Undefined => "null",
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => "int",
        Bson::String(_) | Bson::Symbol(_) => "string",
        Bson::Document(_) => "object",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Timestamp(_) => "timestamp",
        Bson::MaxKey => "maxKey",
        _ => return None,
    };
    BRACKETS.iter().position(|b| b[0] == name)
}

/// How to walk a class.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Documents per page (one round trip each).
    pub page_size: u32,
    /// Search Object/Array fields for nested Files.
    pub nested: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            page_size: 1000,
            nested: true,
        }
    }
}

/// One page of a walk.
#[derive(Debug, Default)]
pub struct Page {
    /// Documents read in this page.
    pub objects: u64,
    pub refs: Vec<FileRef>,
    pub issues: Vec<ScanIssue>,
    /// The last `_id` of the page (where the next page starts).
    pub last_id: Option<Bson>,
}

/// A place in a walk: the `_id` type bracket (by its first type name; `None` = the walk is over)
/// and the last `_id` read in it (`None` = the bracket's start).
#[derive(Debug, Clone, PartialEq)]
pub struct WalkPosition {
    pub bracket: Option<&'static str>,
    pub last: Option<Bson>,
}

impl WalkPosition {
    /// The position of a bracket name read back from storage.
    pub fn named(bracket: Option<&str>, last: Option<Bson>) -> Option<WalkPosition> {
        let bracket = match bracket {
            None => None,
            Some(n) => Some(BRACKETS.iter().find(|b| b[0] == n)?[0]),
        };
        Some(WalkPosition { bracket, last })
    }

    /// Whether the walk is over.
    pub fn is_end(&self) -> bool {
        self.bracket.is_none()
    }
}

/// Walks one class collection page by page. See the module documentation.
pub struct ClassWalker {
    coll: Collection<RawDocumentBuf>,
    class: ClassSchema,
    projection: Document,
    opts: WalkOptions,
    bracket: usize,
    last: Option<Bson>,
    /// The next page of the open cursor over the current bracket after `last`, being read while
    /// the caller works on this one (the cursor is in there).
    ahead: Option<Ahead>,
    /// `--strings`: the String fields to search for file URLs (and the container fields'
    /// strings), with the matcher.
    strings: Option<(Vec<String>, std::sync::Arc<Matcher>)>,
}

impl ClassWalker {
    /// A walker over `coll` that looks at the candidate fields of `class`.
    pub fn new(coll: Collection<RawDocumentBuf>, class: ClassSchema, opts: WalkOptions) -> Self {
        let mut projection = doc! {"_id": 1};
        for f in &class.file_fields {
            projection.insert(f.clone(), 1);
        }
        if opts.nested {
            for f in &class.container_fields {
                projection.insert(f.clone(), 1);
            }
        }
        ClassWalker {
            coll,
            class,
            projection,
            opts,
            bracket: 0,
            last: None,
            ahead: None,
            strings: None,
        }
    }

    /// Also find file URLs in the String fields `fields` and in every string of the container
    /// fields ([`super::strings`]). Nothing changes when `matcher` looks for nothing.
    pub fn with_strings(mut self, fields: &[String], matcher: std::sync::Arc<Matcher>) -> Self {
        if matcher.is_empty() {
            return self;
        }
        for f in fields.iter().chain(&self.class.container_fields) {
            self.projection.insert(f.clone(), 1);
        }
        self.strings = Some((fields.to_vec(), matcher));
        self
    }

    pub fn class(&self) -> &ClassSchema {
        &self.class
    }

    /// Where the next page starts (to checkpoint after a page).
    pub fn position(&self) -> WalkPosition {
        WalkPosition {
            bracket: BRACKETS.get(self.bracket).map(|b| b[0]),
            last: self.last.clone(),
        }
    }

    /// Continue from a position taken by [`position`](Self::position) (maybe by another
    /// process). An unknown bracket name starts from the beginning.
    pub fn resume(&mut self, at: &WalkPosition) {
        self.ahead = None;
        match at.bracket {
            None => {
                self.bracket = BRACKETS.len();
                self.last = None;
            }
            Some(name) => {
                if let Some(i) = BRACKETS.iter().position(|b| b[0] == name) {
                    self.bracket = i;
                    self.last = at.last.clone();
                }
            }
        }
    }

    /// The next page, or `None` when the collection is exhausted.
    pub async fn next_page(&mut self) -> mongodb::error::Result<Option<Page>> {
        while self.bracket < BRACKETS.len() {
            let (docs, exhausted) = self.read_page().await?;
            if docs.is_empty() {
                self.end();
                continue;
            }
            let containers: &[String] = if self.opts.nested {
                &self.class.container_fields
            } else {
                &[]
            };
            let mut page = Page {
                objects: docs.len() as u64,
                ..Page::default()
            };
            let fields = Fields {
                class: &self.class.name,
                files: &self.class.file_fields,
                containers,
            };
            for raw in &docs {
                let id = match raw.get("_id") {
                    Ok(Some(v)) => match v.to_raw_bson().try_into() {
                        Ok(b) => b,
                        Err(_) => Bson::Null,
                    },
                    _ => Bson::Null,
                };
                extract(raw, &id, &fields, &mut page.refs, &mut page.issues);
                if let Some((strings, matcher)) = &self.strings {
                    let fields = (strings.as_slice(), self.class.container_fields.as_slice());
                    let (refs, issues) = (&mut page.refs, &mut page.issues);
                    let class = &self.class.name;
                    super::strings::extract(raw, &id, class, fields, matcher, refs, issues);
                }
                page.last_id = Some(id);
            }
            if exhausted {
                // The cursor's end ends the walk: skip the extra empty query.
                self.end();
            } else if let Some(last) = &page.last_id {
                self.bracket = bracket_of(last).unwrap_or(self.bracket);
                self.last = Some(last.clone());
            }
            return Ok(Some(page));
        }
        Ok(None)
    }

    fn end(&mut self) {
        self.bracket = BRACKETS.len();
        self.last = None;
        self.ahead = None;
    }

    /// Up to a page of documents of the current bracket after `last`, and whether the bracket
    /// has no more. A cursor that fails before the page's first document is reopened once from
    /// `last`; one that fails later ends the page there (the next page reopens it).
    ///
    /// After a full page the next one is read ahead, in a task of its own that holds the cursor,
    /// while the caller works on this one: the server's `getMore` and the tool's work on a page
    /// overlap instead of taking turns (a walk of 1,000,000 objects paid both in full).
    async fn read_page(&mut self) -> mongodb::error::Result<(Vec<RawDocumentBuf>, bool)> {
        let size = self.opts.page_size as usize;
        let mut reopened = false;
        loop {
            let filled = match self.ahead.take() {
                Some(mut ahead) => match (&mut ahead.0).await {
                    Ok(filled) => filled,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // Not reached (only dropping `ahead` cancels it): read again from `last`.
                    Err(_) => continue,
                },
                None => fill(self.open().await?, size).await,
            };
            match filled {
                Filled::Page(cursor, docs) => {
                    self.ahead = Some(Ahead(tokio::spawn(fill(*cursor, size))));
                    return Ok((docs, false));
                }
                Filled::End(docs) => return Ok((docs, true)),
                Filled::Broken(docs, e) => {
                    if !docs.is_empty() {
                        tracing::debug!("the cursor over {} broke mid-page: {e}", self.class.name);
                        return Ok((docs, false));
                    }
                    if reopened {
                        return Err(e);
                    }
                    tracing::debug!("reopening the cursor over {}: {e}", self.class.name);
                    reopened = true;
                }
            }
        }
    }

    /// A sorted cursor over what follows the position: the rest of the current bracket after
    /// `last`, then every later bracket (at the start, the whole collection).
    async fn open(&self) -> mongodb::error::Result<Cursor<RawDocumentBuf>> {
        let types = |brackets: &[&[&str]]| -> Vec<Bson> {
            brackets
                .iter()
                .flat_map(|b| b.iter())
                .map(|t| Bson::String(t.to_string()))
                .collect()
        };
        let later = types(BRACKETS.get(self.bracket + 1..).unwrap_or_default());
        let filter = match &self.last {
            None if self.bracket == 0 => doc! {},
            None => doc! {"_id": {"$type": types(&BRACKETS[self.bracket..])}},
            Some(last) => {
                let rest = doc! {"_id": {"$gt": last.clone(), "$type": types(&BRACKETS[self.bracket..=self.bracket])}};
                if later.is_empty() {
                    rest
                } else {
                    doc! {"$or": [rest, {"_id": {"$type": later}}]}
                }
            }
        };
        self.coll
            .find(filter)
            .projection(self.projection.clone())
            .sort(doc! {"_id": 1})
            .batch_size(self.opts.page_size)
            .await
    }
}

/// What reading a page from a cursor gave: a full page (and the cursor, to read on), the last
/// documents (the cursor ended), or the documents read before the cursor failed.
enum Filled {
    Page(Box<Cursor<RawDocumentBuf>>, Vec<RawDocumentBuf>),
    End(Vec<RawDocumentBuf>),
    Broken(Vec<RawDocumentBuf>, mongodb::error::Error),
}

/// Read up to `size` documents from `cursor`.
async fn fill(mut cursor: Cursor<RawDocumentBuf>, size: usize) -> Filled {
    let mut docs = Vec::with_capacity(size.min(4096));
    loop {
        match cursor.try_next().await {
            Ok(Some(d)) => {
                docs.push(d);
                if docs.len() == size {
                    return Filled::Page(Box::new(cursor), docs);
                }
            }
            Ok(None) => return Filled::End(docs),
            Err(e) => return Filled::Broken(docs, e),
        }
    }
}

/// A page read ahead; dropping it (the walk ended, resumed elsewhere, or was dropped) cancels
/// the read and closes its cursor.
struct Ahead(tokio::task::JoinHandle<Filled>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}
