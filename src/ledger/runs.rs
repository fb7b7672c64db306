//! The run records (`<collection>.runs`) and the walk checkpoints (`<collection>.walk`): what
//! each run was and how it ended, and where an unfinished pass resumes.

use anyhow::Context;
use mongodb::bson::{DateTime, Document, doc};

use super::{Ledger, VERSION};

impl Ledger {
    /// Record the start of this run.
    pub async fn start_run(&self, info: Document) -> anyhow::Result<()> {
        let mut d = doc! {"_id": self.run, "v": VERSION, "started_at": DateTime::now()};
        d.extend(info);
        self.coll(&self.runs)
            .insert_one(d)
            .await
            .with_context(|| format!("writing the ledger {}", self.runs))?;
        Ok(())
    }

    /// Record the end of this run: its counts and exit code.
    pub async fn finish_run(&self, summary: Document, exit_code: i32) -> anyhow::Result<()> {
        self.coll(&self.runs)
            .update_one(
                doc! {"_id": self.run},
                doc! {"$set": {"finished_at": DateTime::now(), "summary": summary,
                "exit_code": exit_code}},
            )
            .await
            .with_context(|| format!("writing the ledger {}", self.runs))?;
        Ok(())
    }

    /// The walk checkpoint of `scope`, as stored (read-only; [`crate::engine::pipeline::checkpoint`]
    /// reads it).
    pub async fn checkpoint(&self, scope: &str) -> anyhow::Result<Option<Document>> {
        let d = self
            .coll(&self.walk)
            .find_one(doc! {"_id": scope})
            .await
            .with_context(|| format!("reading {}", self.walk))?;
        if let Some(d) = &d {
            super::batch::check_version(d)
                .map_err(|why| anyhow::anyhow!("the walk checkpoint {scope} was {why}"))?;
        }
        Ok(d)
    }

    /// Remove the walk checkpoints of every scope (the next pass of each walks every class).
    pub async fn forget_walks(&self) -> anyhow::Result<()> {
        self.coll(&self.walk)
            .delete_many(doc! {})
            .await
            .with_context(|| format!("writing {}", self.walk))?;
        Ok(())
    }

    /// Write the walk checkpoint of `scope` (`None`: the pass is over, remove it).
    pub async fn save_checkpoint(
        &self,
        scope: &str,
        checkpoint: Option<Document>,
    ) -> anyhow::Result<()> {
        let walk = self.coll(&self.walk);
        match checkpoint {
            Some(mut d) => {
                d.insert("run", self.run);
                d.insert("updated", DateTime::now());
                d.insert("v", VERSION);
                walk.replace_one(doc! {"_id": scope}, d)
                    .upsert(true)
                    .await
                    .map(drop)
            }
            None => walk.delete_one(doc! {"_id": scope}).await.map(drop),
        }
        .with_context(|| format!("writing the walk checkpoint in {}", self.walk))
    }
}
