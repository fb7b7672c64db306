//! `migrate`: resolve the run (stores, URL base, rename safety, the write gate), run the engine,
//! report, and pick the exit code.

use std::sync::Arc;

use mongodb::bson;

use crate::cli::MigrateArgs;
use crate::engine::{self, Effects, Limits, Mode, Plan, RunState, Stores, UrlBase};
use crate::exit::{Coded, USAGE};
use crate::parse::names::{RenamePolicy, Selection};
use crate::report::metrics;
use crate::report::migrate::{MigrateFormat, PlanWriter, print_summary};
use crate::session::{self, discover, explain_empty};
use crate::settings::Settings;

pub(super) async fn run(settings: &Settings, args: &MigrateArgs) -> anyhow::Result<i32> {
    let run = &settings.run;
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
    if args.sizing.estimate {
        return super::estimate::run(settings, args).await;
    }
    let destination = session::destination_config(settings, "migrate")?;
    let format = MigrateFormat::choose(args.output, "migrate")?;
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let stores = session::migrate_stores(settings, destination).await?;
    let plan = plan_of(settings, args, &stores);
    if let UrlBase::None { why } = &plan.urls {
        tracing::warn!("{why}; nested File references to renamed files will not be rewritten");
    }

    let guard = session::db_guard(settings, &d.db).await;
    let breaking =
        session::leases_to_break(&ledger, Some(&plan.scope), args.break_lease, args.dry_run)
            .await?;
    let effects: Arc<dyn Effects> = if args.dry_run {
        engine::debris::sweep(&ledger, &*stores.destination, true).await;
        let out = PlanWriter::new(
            format,
            Box::new(crate::report::stdout::stdout()),
            plan.file_key.clone(),
        );
        Arc::new(engine::dry::DryRun::new(stores.clone(), Box::new(out)))
    } else {
        session::consent(
            args.yes,
            "migrate writes to the destination and rewrites documents",
            || {
                session::migrate_consent(settings, &stores, &d.database)
                    + &session::breaking_text(&breaking)
            },
        )?;
        Arc::new(
            engine::live::Live::new(
                stores.clone(),
                ledger.clone(),
                d.db.clone(),
                plan.scope.clone(),
                session::hostname(),
                settings.mongo.collection_prefix.clone(),
                run.retry,
            )
            .breaking(breaking)
            .overwrite(args.overwrite)
            .guard(guard.clone()),
        )
    };

    let info = session::run_info(settings, &plan.scope, &plan.destination)?;
    let (summary, code) = session::recorded(&effects, info, async {
        let state = RunState::guarded(guard);
        let signals = session::on_signals(state.clone());
        let metrics = metrics::start(args.metrics_file.as_deref(), "migrate", &plan.scope, &state);
        let progress = if crate::report::logging::progress_enabled(&settings.output) {
            let total = d.estimated_objects().await;
            Some(crate::report::progress::spawn(state.clone(), total))
        } else {
            None
        };
        super::unreferenced::copy(settings, args, &effects, &state, &ledger, &stores).await?;
        let result =
            engine::strings::run(plan, effects.clone(), &ledger, &d.db, &d.targets, state).await;
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

/// What `migrate` (and `--estimate`) will do, from the settings and the flags.
pub(super) fn plan_of(settings: &Settings, args: &MigrateArgs, stores: &Stores) -> Plan {
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
        destination: stores.destination.describe(),
        scope: engine::scope_of(run.shard),
        rescan: args.rescan || args.retry_failed,
    }
}
