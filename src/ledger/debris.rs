//! The upload records (`<collection>.uploads`) and the sweep marks on run records: what a later
//! run needs to remove the debris of a killed one (see `crate::storage::debris`).
//!
//! An upload record (`{run, store, name, id, at}`) is written only for an upload a kill could
//! leave unfinished *and* that the store cannot attribute by itself — an S3 multipart upload
//! (files above one part) — before its first part is sent: one insert per large file, none for
//! the others. A run that finishes forgets its own (each was completed or aborted); a run that
//! was killed keeps them until a later run has swept its debris, which then marks the killed
//! run's record `debris: {by, at, uploads, chunks}` (so `status` can report it, and the run is
//! not swept twice) and removes them.

use anyhow::Context;
use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use super::{Ledger, VERSION};

/// A run that is gone without finishing and whose debris was not swept yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneRun {
    pub run: ObjectId,
    /// Its upload records: (Parse name, upload id).
    pub uploads: Vec<(String, String)>,
}

/// What `status` says about debris of killed runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DebrisStatus {
    /// Killed runs whose debris a later run swept, and what it removed.
    pub runs_swept: u64,
    pub uploads_removed: u64,
    pub chunks_removed: u64,
    /// Runs that never finished, hold no lease, and were not swept yet (the next writing run
    /// to the same destination sweeps them).
    pub runs_unswept: u64,
    /// Killed runs whose destination has nothing the tool sweeps (fs: it removes its dead
    /// processes' temp files by itself; GCS: an unfinished resumable upload expires in a week).
    pub runs_not_sweepable: u64,
}

impl Ledger {
    fn uploads(&self) -> String {
        format!("{}.uploads", self.files)
    }

    /// Record that this run started `upload_id` for `name` in `store` (before its first byte).
    pub async fn record_upload(
        &self,
        store: &str,
        name: &str,
        upload_id: &str,
    ) -> anyhow::Result<()> {
        let d = doc! {"run": self.run, "store": store, "name": name, "id": upload_id,
        "at": DateTime::now(), "v": VERSION};
        self.coll(&self.uploads())
            .insert_one(d)
            .await
            .with_context(|| format!("writing {}", self.uploads()))?;
        Ok(())
    }

    /// Forget this run's upload records (it finished: each upload was completed or aborted).
    pub async fn forget_uploads(&self) -> anyhow::Result<()> {
        self.coll(&self.uploads())
            .delete_many(doc! {"run": self.run})
            .await
            .with_context(|| format!("writing {}", self.uploads()))?;
        Ok(())
    }

    /// The filter of runs that are gone without finishing and not swept: not this one, no
    /// `finished_at`, no `debris` mark, and no unexpired lease — unless its holder ran on this
    /// machine and is certainly gone (the rule a lease is taken over by; a writing run has taken
    /// it over by the time it sweeps, a dry run or `status` has not).
    async fn gone_filter(&self) -> anyhow::Result<Document> {
        let mut live: Vec<mongodb::bson::Bson> = self
            .holders(None)
            .await?
            .into_iter()
            .filter(|h| h.gone_here().is_none())
            .map(|h| h.run.into())
            .collect();
        live.push(self.run.into());
        Ok(
            doc! {"_id": {"$nin": live}, "finished_at": {"$exists": false},
            "debris": {"$exists": false}},
        )
    }

    /// The gone runs that wrote to the store named `store` (any of the names its records may
    /// carry: `StoreName::all`), with their upload records.
    pub async fn gone_runs(&self, store: &[&str]) -> anyhow::Result<Vec<GoneRun>> {
        let mut filter = self.gone_filter().await?;
        filter.insert("destination", doc! {"$in": store});
        let runs: Vec<Document> = self
            .coll(&self.runs)
            .find(filter)
            .projection(doc! {"_id": 1})
            .await
            .with_context(|| format!("reading {}", self.runs))?
            .try_collect()
            .await
            .with_context(|| format!("reading {}", self.runs))?;
        let mut gone = Vec::with_capacity(runs.len());
        for r in runs {
            let Ok(run) = r.get_object_id("_id") else {
                continue;
            };
            let uploads: Vec<Document> = self
                .coll(&self.uploads())
                .find(doc! {"run": run, "store": {"$in": store}})
                .await
                .with_context(|| format!("reading {}", self.uploads()))?
                .try_collect()
                .await
                .with_context(|| format!("reading {}", self.uploads()))?;
            let uploads = uploads
                .iter()
                .filter_map(|u| {
                    Some((
                        u.get_str("name").ok()?.to_string(),
                        u.get_str("id").ok()?.to_string(),
                    ))
                })
                .collect();
            gone.push(GoneRun { run, uploads });
        }
        Ok(gone)
    }

    /// Record that this run swept the debris of the gone run `run` (`sweepable`: false when its
    /// destination has nothing the tool sweeps, so there is nothing to wait for), and forget its
    /// uploads.
    pub async fn mark_swept(
        &self,
        run: ObjectId,
        uploads: u64,
        chunks: u64,
        sweepable: bool,
    ) -> anyhow::Result<()> {
        let mut mark = doc! {"by": self.run, "at": DateTime::now(), "uploads": uploads as i64,
        "chunks": chunks as i64};
        if !sweepable {
            mark.insert("sweepable", false);
        }
        self.coll(&self.runs)
            .update_one(doc! {"_id": run}, doc! {"$set": {"debris": mark}})
            .await
            .with_context(|| format!("writing {}", self.runs))?;
        self.coll(&self.uploads())
            .delete_many(doc! {"run": run})
            .await
            .with_context(|| format!("writing {}", self.uploads()))?;
        Ok(())
    }

    /// What runs swept of killed runs' debris, and how many killed runs wait to be swept.
    pub async fn debris_status(&self) -> anyhow::Result<DebrisStatus> {
        let mut st = DebrisStatus::default();
        let runs = self.coll(&self.runs);
        let mut swept = runs
            .find(doc! {"debris": {"$exists": true}})
            .projection(doc! {"debris": 1})
            .await
            .with_context(|| format!("reading {}", self.runs))?;
        while let Some(d) = swept.try_next().await? {
            let Ok(mark) = d.get_document("debris") else {
                continue;
            };
            if mark.get_bool("sweepable") == Ok(false) {
                st.runs_not_sweepable += 1;
                continue;
            }
            st.runs_swept += 1;
            st.uploads_removed += count(mark, "uploads");
            st.chunks_removed += count(mark, "chunks");
        }
        st.runs_unswept = runs
            .count_documents(self.gone_filter().await?)
            .await
            .with_context(|| format!("reading {}", self.runs))?;
        Ok(st)
    }
}

/// A non-negative count field of a mark (0 when absent or malformed).
fn count(mark: &Document, field: &str) -> u64 {
    crate::db::int(mark.get(field)).map_or(0, |n| n.max(0) as u64)
}
