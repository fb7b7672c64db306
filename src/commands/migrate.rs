//! `migrate`: resolve the run (stores, URL base, rename safety, the write gate), run the engine,
//! report, and pick the exit code.

use std::sync::Arc;

use mongodb::bson;

use crate::cli::MigrateArgs;
use crate::engine::pipeline::unreferenced::{self, Unreferenced};
use crate::engine::{self, Effects, RunState, Stores, UrlBase};
use crate::exit::usage;
use crate::hooks::{Hooks, Phase};
use crate::report::metrics;
use crate::report::migrate::{MigrateFormat, print_summary};
use crate::session::gate::GateArgs;
use crate::session::{self, discover, explain_empty};
use crate::settings::Settings;
use crate::storage::StoreName;

pub(super) async fn run(
    settings: &Settings,
    args: &MigrateArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    settings.check_migrate(args)?;
    let destination = session::destination_config(settings, "migrate")?;
    let format = MigrateFormat::choose(args.output, "migrate")?;
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let stores = session::migrate_stores(settings, destination).await?;
    let plan = settings.run_config(args, StoreName::of(stores.destination.as_ref()));
    if let UrlBase::None { why } = &plan.urls {
        tracing::warn!("{why}; nested File references to renamed files will not be rewritten");
    }

    let guard = session::db_guard(settings, &d.db).await;
    let gate = GateArgs {
        dry_run: args.dry_run,
        yes: args.yes,
        break_lease: args.break_lease,
        scope: &plan.scope,
        exclusive: false,
        overwrite: args.overwrite,
        verb: "migrate writes to the destination and rewrites documents",
        format,
        file_key: plan.file_key.clone(),
        guard: Some(guard.clone()),
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &d.db, stores.clone(), gate, || {
        session::migrate_consent(settings, &stores, &d.database)
    })
    .await?;

    let info = session::run_info(settings, &plan.scope, &plan.destination.identity)?;
    let (summary, code) = session::recorded(&effects, hooks, info, async {
        let state = RunState::guarded(guard);
        let signals = session::on_signals(state.clone());
        let metrics = metrics::start(args.metrics_file.as_deref(), "migrate", &plan.scope, &state);
        let progress = if crate::report::logging::progress_enabled(&settings.output) {
            let total = d.estimated_objects().await;
            Some(crate::report::progress::spawn(state.clone(), total))
        } else {
            None
        };
        if args.include_unreferenced && !args.rewrite_only {
            let copy = copy_unreferenced(settings, &effects, &state, &ledger, &stores);
            hooks.phase(Phase::Unreferenced, copy).await?;
        }
        let (e, db) = (effects.clone(), &d.db);
        let result = engine::pipeline::run(plan, e, &ledger, db, &d.targets, state, hooks).await;
        signals.abort();
        if let Some(m) = metrics {
            m.finish(result.as_ref().map_err(crate::exit::code_of));
        }
        if let Some(p) = progress {
            p.abort();
            let _ = p.await;
        }
        let summary = result?;
        let code = summary.exit_code();
        let recorded = bson::to_document(&summary)?;
        Ok((summary, recorded, code))
    })
    .await?;

    if summary.references_found == 0 && summary.malformed_values == 0 {
        let prefix = &settings.mongo.collection_prefix;
        tracing::warn!("no file references found: {}", explain_empty(&d, prefix));
    }
    print_summary(format, &summary, args.report.as_deref())?;
    Ok(code)
}

/// `migrate --include-unreferenced`: check the flags, discover every target (whatever the
/// filters), and let the engine find and copy the unreferenced files.
async fn copy_unreferenced(
    settings: &Settings,
    effects: &Arc<dyn Effects>,
    state: &Arc<RunState>,
    ledger: &crate::ledger::Ledger,
    stores: &Stores,
) -> anyhow::Result<()> {
    let server = stores.server.as_ref().filter(|s| s.capabilities().list);
    let Some(server) = server else {
        return Err(usage(
            "--include-unreferenced copies from [source.server]: it needs --select server or all, \
             and a [source.server] store that can be listed (fs, gridfs, s3, gcs)",
        ));
    };
    let d = session::discover_with(settings, &crate::cli::Filters::default(), true).await?;
    let u = Unreferenced {
        server: &**server,
        db: &d.db,
        targets: &d.targets,
        page_size: settings.mongo.page_size,
        shard: settings.run.shard,
        concurrency: settings.run.concurrency,
    };
    let destination = StoreName::of(stores.destination.as_ref());
    unreferenced::find_and_copy(&u, effects, state, ledger, &destination).await
}
