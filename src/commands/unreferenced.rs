//! `migrate --include-unreferenced`: the files the listing of `[source.server]` holds that no
//! reference names (joined with every reference, whatever `--class` / `--field` say, in bounded
//! memory: [`crate::audit`]), copied by [`crate::engine::unreferenced`] before the referenced
//! ones.

use std::sync::Arc;

use crate::audit::{Audit, DEFAULT_RUN_BYTES, Finding, Options, sort::Sorter};
use crate::cli::{Filters, MigrateArgs};
use crate::engine::plan::in_shard;
use crate::engine::{Effects, RunState, Stores, unreferenced};
use crate::exit::usage;
use crate::ledger::Ledger;
use crate::session::discover_with;
use crate::settings::Settings;

pub(super) async fn copy(
    settings: &Settings,
    args: &MigrateArgs,
    effects: &Arc<dyn Effects>,
    state: &Arc<RunState>,
    ledger: &Ledger,
    stores: &Stores,
) -> anyhow::Result<()> {
    if !args.include_unreferenced || args.rewrite_only {
        return Ok(());
    }
    let server = stores.server.as_ref().filter(|s| s.capabilities().list);
    let Some(server) = server else {
        return Err(usage(
            "--include-unreferenced copies from [source.server]: it needs --select server or all, \
             and a [source.server] store that can be listed (fs, gridfs, s3, gcs)",
        ));
    };
    let d = discover_with(settings, &Filters::default(), true).await?;
    let mut audit = Audit::new(&Options::default());
    audit.list(&**server, &mut |_| Ok(())).await?;
    d.for_each_ref(settings, |r| Ok(audit.add_ref(r)?)).await?;
    let mut orphans = Sorter::new(&std::env::temp_dir(), DEFAULT_RUN_BYTES);
    // With `--shard K/N`, this shard's names only (the same split as the referenced files).
    let shard = settings.run.shard;
    audit.finish(&mut |f| match f {
        Finding::Orphan { name, .. } if in_shard(name, shard) => orphans.push(name, &[]),
        _ => Ok(()),
    })?;
    tracing::info!(
        "copying {} unreferenced files of {}",
        orphans.len(),
        server.describe()
    );
    let names = orphans.finish()?.map(|r| r.map(|r| r.key));
    let destination = stores.destination.describe();
    let concurrency = settings.run.concurrency;
    unreferenced::copy_all(effects, state, ledger, &destination, names, concurrency).await
}
