//! What `status` reads from the ledger: counts per state, per class, failures by reason, recent
//! runs and unfinished passes. Read-only aggregations; the shapes here are the JSON `status`
//! prints.

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

use super::Ledger;
use crate::db::count;

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
    pub async fn status(&self, runs: i64) -> anyhow::Result<Status> {
        let mut st = Status::default();
        let files = vec![
            doc! {"$group": {"_id": "$state", "n": {"$sum": 1}, "bytes": {"$sum": {"$ifNull": ["$size", 0]}}}},
            doc! {"$sort": {"_id": 1}},
        ];
        for d in self.aggregate(&self.files, files).await? {
            st.files.push(FileCount {
                state: d.get_str("_id").unwrap_or("?").to_string(),
                files: count(&d, "n"),
                bytes: count(&d, "bytes"),
            });
        }
        let refs = vec![
            doc! {"$group": {"_id": {"c": "$c", "s": "$state"}, "n": {"$sum": 1}}},
            doc! {"$sort": {"_id.c": 1, "_id.s": 1}},
        ];
        for d in self.aggregate(&self.refs, refs).await? {
            let id = d.get_document("_id").cloned().unwrap_or_default();
            st.references.push(RefCount {
                class: id.get_str("c").unwrap_or("?").to_string(),
                state: id.get_str("s").unwrap_or("?").to_string(),
                references: count(&d, "n"),
            });
        }
        let problems = vec![
            doc! {"$match": {"state": {"$in": ["missing", "failed"]}}},
            doc! {"$group": {"_id": {"s": "$state", "e": "$error"}, "n": {"$sum": 1}, "example": {"$first": "$_id"}}},
            doc! {"$sort": {"n": -1}},
            doc! {"$limit": 50},
        ];
        for d in self.aggregate(&self.files, problems).await? {
            let id = d.get_document("_id").cloned().unwrap_or_default();
            st.problems.push(Problem {
                state: id.get_str("s").unwrap_or("?").to_string(),
                reason: id.get_str("e").unwrap_or("").to_string(),
                files: count(&d, "n"),
                example: d.get_str("example").unwrap_or("").to_string(),
            });
        }
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
        Ok(st)
    }

    async fn aggregate(
        &self,
        coll: &str,
        pipeline: Vec<Document>,
    ) -> anyhow::Result<Vec<Document>> {
        let cursor = self
            .coll(coll)
            .aggregate(pipeline)
            .await
            .with_context(|| format!("reading {coll}"))?;
        Ok(cursor.try_collect().await?)
    }
}
