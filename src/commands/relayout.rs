//! `relayout`: rename every referenced file of one store after a template, through the
//! migration pipeline with the store as both source and destination (each file copied once —
//! on the server where the store can — verified, then every reference rewritten by
//! compare-and-swap; with `--strings`, URLs inside strings after), under the run's lease, the
//! same dry-run gate, ledger, summary and `rollback` as `migrate`. The old names stay: once
//! nothing references them they are `audit`'s.

use std::sync::Arc;

use crate::cli::RelayoutArgs;
use crate::engine::{self, Mode, Plan, RunState, Stores, UrlBase};
use crate::exit::usage;
use crate::hooks::Hooks;
use crate::parse::layout::Layout;
use crate::parse::names::Selection;
use crate::report::migrate::{MigrateFormat, print_summary};
use crate::session::gate::GateArgs;
use crate::session::{self, discover};
use crate::settings::Settings;
use crate::storage::StoreName;

pub(super) async fn run(
    settings: &Settings,
    args: &RelayoutArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    let layout = Layout::parse(&args.template).map_err(|e| usage(format!("--template: {e}")))?;
    let format = MigrateFormat::choose(args.output, "relayout")?;
    let max_duration = args.max_duration.as_deref();
    let (cfg, role) = session::store_by_role(settings, args.store, "relayout")?;
    let store = session::open_checked(settings, cfg, role).await?;
    // With `--strings` (or `[scan] strings`), URLs inside strings move to the new names too,
    // after the copies, as `migrate --strings` moves them.
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let plan = Plan {
        // Hosted-Parse names are not in the store: `migrate` moves those.
        select: Selection::Server,
        mode: Mode::Full,
        rescan: false,
        layout: Some(Arc::new(layout)),
        ..settings.store_plan(StoreName::of(store.as_ref()), max_duration, args.max_files)?
    };
    if let UrlBase::None { why } = &plan.urls {
        tracing::warn!("{why}; nested File references cannot be rewritten to the new names");
    }
    let stores = Stores {
        hosted: None,
        server: Some(store.clone()),
        destination: store.clone(),
    };
    let guard = session::db_guard(settings, &d.db).await;
    let gate = GateArgs {
        dry_run: args.dry_run,
        yes: args.yes,
        break_lease: args.break_lease,
        scope: &plan.scope,
        exclusive: true,
        overwrite: false,
        verb: "relayout copies files under new names and rewrites documents",
        format,
        file_key: plan.file_key.clone(),
        guard: Some(guard.clone()),
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &d.db, stores, gate, || {
        format!(
            "About to give every referenced file of {} a new name after {:?} (copied beside the \
             old one), then rewrite every reference in database {:?}",
            store.describe(),
            args.template,
            d.database
        )
    })
    .await?;
    let info = session::run_info(settings, &plan.scope, &plan.destination.identity)?;
    let (summary, code) = session::recorded(&effects, hooks, info, async {
        let state = RunState::guarded(guard);
        let signals = session::on_signals(state.clone());
        let metrics_file = args.metrics.metrics_file.as_deref();
        let metrics = crate::report::metrics::start(metrics_file, "relayout", "all", &state);
        let (e, db) = (effects.clone(), &d.db);
        let result = engine::pipeline::run(plan, e, &ledger, db, &d.targets, state, hooks).await;
        signals.abort();
        if let Some(m) = metrics {
            m.finish(result.as_ref().map_err(crate::exit::code_of));
        }
        let summary = result?;
        let code = summary.exit_code();
        let recorded = mongodb::bson::to_document(&summary)?;
        Ok((summary, recorded, code))
    })
    .await?;
    print_summary(format, &summary, args.report.as_deref())?;
    Ok(code)
}
