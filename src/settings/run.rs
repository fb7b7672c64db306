//! Per-command resolution of a run's options: what the engine gets from the settings and a
//! command's own flags (uv's `XSettings::resolve`), so commands hand the engine a finished
//! config instead of assembling it themselves.

use crate::audit::DEFAULT_RUN_BYTES;
use crate::cli::MigrateArgs;
use crate::engine::{self, Limits, Mode, Plan};
use crate::exit::{Coded, USAGE, usage};
use crate::parse::names::{RenamePolicy, Selection};

use super::{Settings, parse_size};

impl Settings {
    /// What `migrate` (and `--estimate`) will do, from the settings and the flags, writing to
    /// the destination `destination` names.
    pub fn run_config(&self, args: &MigrateArgs, destination: crate::storage::StoreName) -> Plan {
        let settings = self;
        let run = &settings.run;
        Plan {
            select: run.select,
            rename: run.rename,
            concurrency: run.concurrency,
            shard: run.shard,
            mode: match (args.copy_only, args.rewrite_only) {
                (true, _) => Mode::CopyOnly,
                (_, true) => Mode::RewriteOnly,
                _ => Mode::Full,
            },
            retry_missing: args.retry_failed,
            limits: Limits {
                max_files: run.max_files,
                max_bytes: run.max_bytes,
                max_duration: run.max_duration,
                max_errors: run.max_errors,
            },
            urls: settings.url_base(),
            collection_prefix: settings.mongo.collection_prefix.clone(),
            page_size: settings.mongo.page_size,
            file_key: settings.parse.file_key.clone(),
            destination,
            scope: engine::scope_of(run.shard),
            rescan: args.rescan || args.retry_failed,
            layout: None,
        }
    }

    /// The plan of a command that works on one store and every reference, under the exclusive
    /// lease (`rebase`, `relink`, `relayout`): every name, names kept, references rewritten
    /// only, every class walked from the start; the command changes what it does differently.
    /// `max_duration` (`--max-duration`) wins over `[run] max_duration`.
    pub fn store_plan(
        &self,
        store: crate::storage::StoreName,
        max_duration: Option<&str>,
        max_files: Option<u64>,
    ) -> anyhow::Result<Plan> {
        let run = &self.run;
        let max_duration = match max_duration {
            Some(d) => Some(super::parse_max_duration(d)?),
            None => run.max_duration,
        };
        Ok(Plan {
            select: Selection::All,
            rename: RenamePolicy::Keep,
            concurrency: run.concurrency,
            shard: None,
            mode: Mode::RewriteOnly,
            retry_missing: false,
            limits: Limits {
                max_files,
                max_duration,
                max_errors: run.max_errors,
                ..Limits::default()
            },
            urls: self.url_base(),
            collection_prefix: self.mongo.collection_prefix.clone(),
            page_size: self.mongo.page_size,
            file_key: self.parse.file_key.clone(),
            destination: store,
            scope: "all".into(),
            rescan: true,
            layout: None,
        })
    }

    /// Refuse a `migrate` (or `--estimate`) whose flags cannot be right.
    pub fn check_migrate(&self, args: &MigrateArgs) -> anyhow::Result<()> {
        let run = &self.run;
        if run.rename == RenamePolicy::Keep
            && run.select != Selection::Server
            && !args.confirm_file_key_removed
        {
            return Err(Coded::new(
                USAGE,
                "refusing --rename keep for hosted-Parse names (tfss-…, <uuid>-…): Parse Server sends \
                 clients to the dead hosted-Parse hosts for such names for as long as its `fileKey` \
                 option is set",
            )
            .hint(
                "keep the default --rename auto; or remove `fileKey` from the Parse Server \
                 configuration, then add --confirm-file-key-removed",
            )
            .into());
        }
        Ok(())
    }
}

/// `--sort-run-bytes` (the audit's external sort), or the default.
pub fn sort_run_bytes(given: Option<&str>) -> anyhow::Result<usize> {
    Ok(match given {
        Some(s) => parse_size(s)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| usage(format!("--sort-run-bytes {s:?}: not a size such as 64MiB")))?,
        None => DEFAULT_RUN_BYTES,
    })
}
