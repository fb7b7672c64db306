//! `rollback`: put back the values the migration replaced, as recorded in the ledger, and
//! optionally delete the copies it made (the engine's [`Rollback`]), under the run's lease and
//! through the same dry-run gate as `migrate`.

use crate::cli::RollbackArgs;
use crate::engine::Stores;
use crate::engine::rollback::Rollback;
use crate::exit::{INCOMPLETE, OK};
use crate::hooks::Hooks;
use crate::report::migrate::{MigrateFormat, print_rollback};
use crate::session::{self, gate::GateArgs};
use crate::settings::Settings;

pub(super) async fn run(
    settings: &Settings,
    args: &RollbackArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    let format = MigrateFormat::choose(args.out.output, "rollback")?;
    let destination = session::destination_config(settings, "rollback")?;
    // Copies are deleted only when nothing references them: every reference is walked.
    let d = if args.delete_copies {
        let mut d = session::discover_everything(settings).await?;
        let others = std::mem::take(&mut d.other_apps);
        d.targets.extend(others);
        Some(d)
    } else {
        None
    };
    let (db, ledger) = match &d {
        Some(d) => (d.db.clone(), session::open_ledger(settings, &d.db).await?),
        None => session::app_and_ledger(settings).await?,
    };
    let destination = session::open_checked(settings, destination, "destination").await?;
    let server = session::source(settings).await?;
    // The hosted-Parse hosts may be gone for good: opened without a reachability check.
    let hosted = session::open_lenient(settings, Some(&settings.source.hosted)).await;
    let stores = Stores {
        hosted: None,
        server: server.clone(),
        destination: destination.clone(),
    };
    // Every shard's references are restored: no other run may be rewriting them meanwhile.
    let guard = session::db_guard(settings, &db).await;
    let gate = GateArgs {
        dry_run: args.dry_run,
        yes: args.yes,
        break_lease: args.break_lease,
        scope: "all",
        exclusive: true,
        overwrite: false,
        verb: "rollback rewrites documents",
        format,
        file_key: settings.parse.file_key.clone(),
        guard: Some(guard),
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &db, stores, gate, || {
        let deletes = if args.delete_copies {
            format!(
                ", then delete the copies made at {}",
                destination.describe()
            )
        } else {
            String::new()
        };
        format!(
            "About to restore every reference recorded as rewritten in the ledger of database {:?}{deletes}",
            db.name(),
        )
    })
    .await?;
    let is_original = |name: &str, target: &str| {
        name == target
            && server
                .as_ref()
                .is_some_and(|s| s.identity() == destination.identity())
    };
    let rollback = Rollback {
        ledger: &ledger,
        prefix: &settings.mongo.collection_prefix,
        file_key: settings.parse.file_key.as_ref(),
        delete_copies: args.delete_copies,
        is_original: &is_original,
        hosted: hosted.as_deref(),
        // Without [source.server], the other names' originals can only be in the destination
        // (`relayout`'s old names stay there): a restore is checked against it.
        server: server.as_deref().or(Some(&*destination)),
        destination: &crate::storage::StoreName::of(destination.as_ref()),
        db: &db,
        targets: d.as_ref().map_or(&[], |d| &d.targets),
        page_size: settings.mongo.page_size,
    };
    let info = session::run_info(settings, "all", &destination.describe())?;
    let (counts, code) = session::recorded(&effects, hooks, info, async {
        let counts = rollback.run(&*effects, hooks).await?;
        let code = if counts.incomplete() { INCOMPLETE } else { OK };
        let recorded = mongodb::bson::to_document(&counts)?;
        Ok((counts, mongodb::bson::doc! {"rollback": recorded}, code))
    })
    .await?;
    print_rollback(format, args.dry_run, &counts, args.out.report.as_deref())?;
    Ok(code)
}
