//! What `status` reads from the ledger: counts per state, per class, failures by reason, recent
//! runs and unfinished passes. Read-only; the shapes here are the JSON `status` prints.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

use super::batch::{file_records, ref_records};
use super::{FileState, Ledger};
use crate::db::count;

/// Distinct (state, reason) groups of missing and failed files counted; past this, files with
/// yet another reason are left out of the groups (not of the counts per state), so a ledger of
/// millions of distinct errors cannot fill the memory.
const PROBLEM_GROUPS: usize = 10_000;

/// What `status` shows.
#[derive(Debug, Default, Serialize)]
pub struct Status {
    /// File records per state.
    pub files: Vec<FileCount>,
    /// Reference records per class and state.
    pub references: Vec<RefCount>,
    /// Missing and failed files grouped by reason (the 50 largest groups).
    pub problems: Vec<Problem>,
    /// The most recent runs, newest first (as stored, without their settings).
    pub runs: Vec<serde_json::Value>,
    /// Passes a cutoff or an interrupt left unfinished.
    pub unfinished_passes: Vec<UnfinishedPass>,
    /// Unfinished uploads of killed runs: removed, and runs still to sweep.
    pub debris: super::DebrisStatus,
}

#[derive(Debug, Serialize)]
pub struct FileCount {
    pub state: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RefCount {
    pub class: String,
    pub state: String,
    pub references: u64,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub state: String,
    pub reason: String,
    pub files: u64,
    /// One file name of the group.
    pub example: String,
}

#[derive(Debug, Serialize)]
pub struct UnfinishedPass {
    /// `all` or the shard `K/N`.
    pub scope: String,
    pub classes_done: u64,
    /// The class being walked when the pass stopped.
    pub walking: Option<String>,
    pub objects_walked: u64,
}

impl Ledger {
    /// Aggregate the ledger (read-only); `runs` is how many recent runs to include.
    ///
    /// The file and reference records are counted by streaming their batch documents once each
    /// (current entries only): memory holds the counts, never the records.
    pub async fn status(&self, runs: i64) -> anyhow::Result<Status> {
        let mut st = Status::default();
        let mut files: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
        let mut problems: HashMap<(&'static str, String), (u64, String)> = HashMap::new();
        let mut cursor = self.all(&self.files).await?;
        while let Some(d) = cursor.try_next().await? {
            for r in file_records(&self.files, &d) {
                let r = r?;
                let (n, bytes) = files.entry(r.state.as_str()).or_default();
                *n += 1;
                *bytes += r.size.unwrap_or(0);
                if matches!(r.state, FileState::Missing | FileState::Failed) {
                    let group = (r.state.as_str(), r.error.unwrap_or_default());
                    if problems.len() < PROBLEM_GROUPS || problems.contains_key(&group) {
                        problems.entry(group).or_insert((0, r.name)).0 += 1;
                    }
                }
            }
        }
        st.files = files
            .into_iter()
            .map(|(state, (files, bytes))| FileCount {
                state: state.to_string(),
                files,
                bytes,
            })
            .collect();
        let mut problems: Vec<_> = problems.into_iter().collect();
        problems.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
        st.problems = problems
            .into_iter()
            .take(50)
            .map(|((state, reason), (files, example))| Problem {
                state: state.to_string(),
                reason,
                files,
                example,
            })
            .collect();
        let mut refs: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
        let mut cursor = self.all(&self.refs).await?;
        while let Some(d) = cursor.try_next().await? {
            for r in ref_records(&self.refs, &d) {
                let r = r?;
                *refs.entry((r.change.class, r.state.as_str())).or_default() += 1;
            }
        }
        st.references = refs
            .into_iter()
            .map(|((class, state), references)| RefCount {
                class,
                state: state.to_string(),
                references,
            })
            .collect();
        let mut cursor = self
            .coll(&self.runs)
            .find(doc! {})
            .sort(doc! {"started_at": -1})
            .limit(runs)
            .projection(doc! {"settings": 0})
            .await
            .with_context(|| format!("reading {}", self.runs))?;
        while let Some(d) = cursor.try_next().await? {
            st.runs.push(Bson::Document(d).into_relaxed_extjson());
        }
        let mut cursor = self
            .coll(&self.walk)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .with_context(|| format!("reading {}", self.walk))?;
        while let Some(d) = cursor.try_next().await? {
            st.unfinished_passes.push(UnfinishedPass {
                scope: d.get_str("_id").unwrap_or("?").to_string(),
                classes_done: d.get_array("done").map_or(0, |a| a.len() as u64),
                walking: d.get_str("class").ok().map(str::to_string),
                objects_walked: count(&d, "objects"),
            });
        }
        st.debris = self.debris_status().await?;
        Ok(st)
    }

    async fn all(&self, coll: &str) -> anyhow::Result<mongodb::Cursor<Document>> {
        self.coll(coll)
            .find(doc! {})
            .await
            .with_context(|| format!("reading {coll}"))
    }
}
