//! `relink`: point each dangling reference at the one orphan whose key holds its bytes (the
//! engine's [`Relink`]), under the run's lease, through the same dry-run gate, ledger and
//! `rollback` as `migrate`. Copies and deletes nothing.

use crate::audit::relink::Rule;
use crate::cli::RelinkArgs;
use crate::engine::relink::Relink;
use crate::engine::{RunState, Stores};
use crate::exit::usage;
use crate::hooks::Hooks;
use crate::report::migrate::{MigrateFormat, print_summary};
use crate::session::{self, gate::GateArgs};
use crate::settings::{Settings, sort_run_bytes};

pub(super) async fn run(
    settings: &Settings,
    args: &RelinkArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    let rule = Rule::parse(&args.rule).map_err(|e| usage(format!("--match: {e}")))?;
    let format = MigrateFormat::choose(args.output, "relink")?;
    let run_bytes = sort_run_bytes(args.sort_run_bytes.as_deref())?;
    let store = session::open_listed(settings, args.store, "relink").await?;
    // The other configured store (mid-migration, Parse Server may still read from it): a name it
    // holds is not dangling for the app, whatever this store says.
    let other = match args.store {
        crate::cli::StoreRole::Destination => settings.source.server.as_ref(),
        crate::cli::StoreRole::Server => settings.destination.as_ref(),
    };
    let other = match other {
        Some(cfg) => Some(session::open_checked(settings, cfg, "other store").await?),
        None => None,
    };
    // Every reference protects its key: strings and the database's other apps too.
    let d = session::discover_everything(settings).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let destination = crate::storage::StoreName::of(store.as_ref());
    let plan = settings.store_plan(destination, args.max_duration.as_deref(), None)?;
    let stores = Stores {
        hosted: None,
        server: None,
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
        verb: "relink rewrites documents",
        format,
        file_key: plan.file_key.clone(),
        guard: Some(guard.clone()),
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &d.db, stores, gate, || {
        format!(
            "About to point the dangling references of database {:?} at the keys of {} that match \
             them ({})",
            d.database,
            store.describe(),
            rule.describe()
        )
    })
    .await?;
    let info = session::run_info(settings, &plan.scope, &plan.destination.identity)?;
    let (summary, code) = session::recorded(&effects, hooks, info, async {
        let state = RunState::guarded(guard);
        let signals = session::on_signals(state.clone());
        let metrics_file = args.metrics.metrics_file.as_deref();
        let metrics = crate::report::metrics::start(metrics_file, "relink", "all", &state);
        let relink = Relink {
            store: store.as_ref(),
            other: other.as_deref(),
            ledger: &ledger,
            db: &d.db,
            own: &d.targets,
            others: &d.other_apps,
            rule: rule.clone(),
            sort: crate::audit::Options {
                run_bytes,
                ..crate::audit::Options::default()
            },
            plan: &plan,
        };
        let result = relink.run(&*effects, &state, hooks).await;
        signals.abort();
        let result = result.map(|(report, stopped)| {
            let p = &report.pairing;
            tracing::info!(
                rule = %report.rule,
                relinkable = p.relinkable_references,
                ambiguous = p.ambiguous_references,
                unmatched = p.unmatched_references,
                refused = report.refused,
                "paired {} dangling references ({} names relinkable, {} ambiguous, {} with no \
                 match)",
                p.relinkable_references + p.ambiguous_references + p.unmatched_references,
                p.relinkable_names,
                p.ambiguous_names,
                p.unmatched_names
            );
            (state.summary(effects.dry_run(), stopped), report)
        });
        if let Some(m) = metrics {
            m.finish(
                result
                    .as_ref()
                    .map(|(s, _)| s)
                    .map_err(crate::exit::code_of),
            );
        }
        let (summary, report) = result?;
        let code = summary.exit_code();
        let mut recorded = mongodb::bson::to_document(&summary)?;
        recorded.insert("relink", mongodb::bson::to_bson(&report)?);
        Ok((summary, recorded, code))
    })
    .await?;
    print_summary(format, &summary, args.report.as_deref())?;
    Ok(code)
}
