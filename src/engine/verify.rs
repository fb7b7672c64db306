//! `verify`, the engine side: prove the migration is complete — every reference the run is
//! responsible for resolves at the destination with the size (and MD5) the ledger recorded.
//! Read-only.
//!
//! A reference is checked when its name is of a kind `--select` covers, or when it is the target
//! of a copy the ledger recorded. A selected name that the rename policy would still change is
//! *not migrated*. Optionally each file is also downloaded through a Parse Server (`via`, an
//! HTTP store reading `<server>/files/<app_id>/<name>`), the way clients will get it, and its
//! bytes hashed as they stream.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use mongodb::Database;
use serde::Serialize;

use crate::ledger::{FileRecord, Ledger};
use crate::parse::names::{NameKind, RenamePolicy, Selection, target_name};
use crate::scan::{ClassWalker, FileRef, Target, WalkOptions, log_issues};
use crate::storage::{GetOptions, HashingStream, ObjectStore};

/// Results of distinct names kept to avoid checking a shared file again (a cache).
const CACHE: usize = 10_000;

/// What is wrong with a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// The destination does not have the file.
    Dangling,
    /// The destination's size is not the one the ledger recorded.
    SizeMismatch,
    /// The destination's MD5 is not the one the ledger recorded.
    Md5Mismatch,
    /// A name `--select` covers that the rename policy would still change.
    NotMigrated,
    /// The destination could not be asked.
    Error,
    /// The Parse Server did not serve the file.
    ServedError,
    /// The Parse Server served other bytes.
    ServedMismatch,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Dangling => "dangling",
            Problem::SizeMismatch => "size-mismatch",
            Problem::Md5Mismatch => "md5-mismatch",
            Problem::NotMigrated => "not-migrated",
            Problem::Error => "error",
            Problem::ServedError => "served-error",
            Problem::ServedMismatch => "served-mismatch",
        }
    }
}

/// One reference with a problem.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub problem: Problem,
    pub class: String,
    pub object_id: String,
    pub path: String,
    pub name: String,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub references: u64,
    pub checked: u64,
    pub ok: u64,
    pub not_covered: u64,
    pub problems: u64,
    pub served_checked: u64,
}

/// The outcome of checking one name.
type Checked = Result<(), (Problem, String)>;

/// What to verify against.
pub struct Verify<'a> {
    pub ledger: &'a Ledger,
    pub destination: Arc<dyn ObjectStore>,
    /// Download each file through this store as well (`--via-server`).
    pub via: Option<Arc<dyn ObjectStore>>,
    pub select: Selection,
    pub rename: RenamePolicy,
    pub concurrency: usize,
    pub page_size: u32,
}

impl Verify<'_> {
    /// Walk `targets` in `db`; hand every finding to `found` as it is made.
    pub async fn run(
        &self,
        db: &Database,
        targets: &[Target],
        found: &mut dyn FnMut(&Finding) -> anyhow::Result<()>,
    ) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
        let mut cache: HashMap<String, Checked> = HashMap::new();
        for target in targets {
            let coll = db.collection(&target.collection);
            let opts = WalkOptions {
                page_size: self.page_size,
                nested: true,
            };
            let mut walker = ClassWalker::new(coll, target.class.clone(), opts);
            while let Some(page) = walker.next_page().await.map_err(|e| {
                anyhow::Error::from(e).context(format!("walking {}", target.collection))
            })? {
                log_issues(&page.issues);
                counts.references += page.refs.len() as u64;
                self.check_page(&page.refs, &mut cache, &mut counts).await?;
                for r in &page.refs {
                    self.tally(r, &cache, &mut counts, found)?;
                }
            }
        }
        Ok(counts)
    }

    /// Check each distinct name of a page not in `cache` once, up to `concurrency` at a time.
    async fn check_page(
        &self,
        refs: &[FileRef],
        cache: &mut HashMap<String, Checked>,
        counts: &mut Counts,
    ) -> anyhow::Result<()> {
        // Cleared before this page's names are looked up, so each of them is in it afterwards.
        if cache.len() > CACHE {
            cache.clear();
        }
        let mut names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let records = self.ledger.by_target(&names).await?;
        let here = crate::storage::StoreName::of(self.destination.as_ref());
        let todo: Vec<(String, Option<FileRecord>)> = names
            .iter()
            .filter(|n| !cache.contains_key(**n))
            .filter_map(|n| {
                let rec = records
                    .get(*n)
                    .filter(|r| r.destination.as_deref().is_none_or(|d| here.names(d)))
                    .cloned();
                // Not covered, or not migrated: decided per reference.
                (rec.is_some() || self.migrated(n)).then(|| (n.to_string(), rec))
            })
            .collect();
        let results: Vec<(String, Checked)> = futures::stream::iter(todo)
            .map(|(name, rec)| async move {
                let r = self.check(&name, rec.as_ref()).await;
                (name, r)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        if self.via.is_some() {
            counts.served_checked += results.len() as u64;
        }
        cache.extend(results);
        Ok(())
    }

    /// Whether `name` is covered by `--select` and already has its final name.
    fn migrated(&self, name: &str) -> bool {
        self.select.includes(NameKind::of(name)) && target_name(name, self.rename) == name
    }

    fn tally(
        &self,
        r: &FileRef,
        cache: &HashMap<String, Checked>,
        counts: &mut Counts,
        found: &mut dyn FnMut(&Finding) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let kind = r.kind();
        let problem = match cache.get(&r.name) {
            Some(Ok(())) => None,
            Some(Err((p, detail))) => Some((*p, detail.clone())),
            None if self.select.includes(kind) && !self.migrated(&r.name) => Some((
                Problem::NotMigrated,
                format!("still a {} name", kind.as_str()),
            )),
            None => {
                counts.not_covered += 1;
                return Ok(());
            }
        };
        counts.checked += 1;
        let Some((problem, detail)) = problem else {
            counts.ok += 1;
            return Ok(());
        };
        counts.problems += 1;
        found(&Finding {
            problem,
            class: r.class.clone(),
            object_id: r.object_id(),
            path: r.path.clone(),
            name: r.name.clone(),
            detail,
        })
    }

    /// Check one name at the destination (and through the server).
    async fn check(&self, name: &str, rec: Option<&FileRecord>) -> Checked {
        let meta = match self.destination.stat(name).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Err((Problem::Dangling, e.to_string())),
            Err(e) => return Err((Problem::Error, e.to_string())),
        };
        if let Some(size) = rec.and_then(|r| r.size).filter(|s| *s != meta.size) {
            return Err((
                Problem::SizeMismatch,
                format!(
                    "the ledger recorded {size} bytes, the destination has {}",
                    meta.size
                ),
            ));
        }
        let recorded_md5 = rec.and_then(|r| r.md5.as_deref());
        if let (Some(want), Some(have)) = (recorded_md5, meta.md5.as_deref())
            && want != have
        {
            return Err((
                Problem::Md5Mismatch,
                format!("recorded {want}, destination {have}"),
            ));
        }
        let Some(via) = &self.via else { return Ok(()) };
        let served = |e: crate::storage::StorageError| (Problem::ServedError, e.to_string());
        let got = via
            .get(name, &GetOptions::default())
            .await
            .map_err(served)?;
        let (stream, hashed) = HashingStream::new(got.stream);
        stream
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(served)?;
        let (len, md5) = {
            let h = hashed.lock().unwrap_or_else(|e| e.into_inner());
            (h.size, h.md5_hex())
        };
        if len != meta.size {
            return Err((
                Problem::ServedMismatch,
                format!(
                    "the server sent {len} bytes, the destination has {}",
                    meta.size
                ),
            ));
        }
        if let Some(want) = recorded_md5
            && want != md5
        {
            return Err((
                Problem::ServedMismatch,
                format!("served md5 {md5}, recorded {want}"),
            ));
        }
        Ok(())
    }
}
