//! `rebase`: move nested File `url`s and URLs in strings from the old bases (`[rebase] from`) to
//! the current one ([`engine::pipeline::rebase`]), copying no bytes; the same lease, ledger, dry-run gate,
//! summary and `rollback` as `migrate`. `--check` then HEAD-requests the current URLs.

use crate::cli::RebaseArgs;
use crate::engine::{self, RunState, Stores, UrlBase};
use crate::exit::{INCOMPLETE, usage};
use crate::hooks::Hooks;
use crate::report::migrate::{MigrateFormat, print_summary};
use crate::session::gate::GateArgs;
use crate::session::{self, discover};
use crate::settings::Settings;

pub(super) async fn run(
    settings: &Settings,
    args: &RebaseArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    if settings.rebase.from.is_empty() {
        return Err(usage(
            "rebase needs the old bases: [rebase] from = [\"https://old-api.example.com/parse\"]",
        ));
    }
    let urls = settings.url_base();
    if let UrlBase::None { why } = &urls {
        return Err(usage(format!("rebase has no current base: {why}")));
    }
    let format = MigrateFormat::choose(args.output, "rebase")?;
    // The run's description only: a rebase reads and writes no store.
    let store_cfg = settings
        .destination
        .as_ref()
        .or(settings.source.server.as_ref())
        .ok_or_else(|| {
            usage("rebase needs [destination] or [source.server] (the current store)")
        })?;
    let store = session::open_checked(settings, store_cfg, "current store").await?;
    let mut filters = args.filters.clone();
    filters.strings = !args.no_strings;
    let d = discover(settings, &filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let stores = Stores {
        hosted: None,
        server: None,
        destination: store,
    };
    let destination = crate::storage::StoreName::of(stores.destination.as_ref());
    let plan = settings.store_plan(destination, args.max_duration.as_deref(), None)?;
    let guard = session::db_guard(settings, &d.db).await;
    let gate = GateArgs {
        dry_run: args.dry_run,
        yes: args.yes,
        break_lease: args.break_lease,
        scope: &plan.scope,
        exclusive: true,
        overwrite: false,
        verb: "rebase rewrites documents",
        format,
        file_key: plan.file_key.clone(),
        guard: Some(guard.clone()),
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &d.db, stores.clone(), gate, || {
        format!(
            "About to rewrite every file URL of {:?} in database {:?} to the current base",
            settings.rebase.from, d.database,
        )
    })
    .await?;
    let walker = |t: &crate::scan::Target| d.walker(t, settings);
    let info = session::run_info(settings, &plan.scope, &plan.destination.identity)?;
    let (summary, mut code) = session::recorded(&effects, hooks, info, async {
        let state = RunState::guarded(guard);
        let signals = session::on_signals(state.clone());
        let metrics_file = args.metrics.metrics_file.as_deref();
        let metrics = crate::report::metrics::start(metrics_file, "rebase", "all", &state);
        let result = engine::pipeline::rebase::run(
            &plan,
            effects.clone(),
            &ledger,
            &d.db,
            &d.targets,
            &walker,
            state,
            hooks,
        )
        .await;
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
    if args.check {
        let current = settings.url_matcher(false, false)?;
        let concurrency = settings.run.concurrency;
        let bad =
            engine::pipeline::rebase::check(&d.targets, &walker, &current, concurrency).await?;
        tracing::info!(unreachable = bad, "checked the current URLs");
        if bad > 0 && code == 0 {
            code = INCOMPLETE;
        }
    }
    Ok(code)
}
