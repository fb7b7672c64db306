//! `rollback`: put back the values the migration replaced, as recorded in the ledger, and
//! optionally delete the copies it made (the engine's [`Rollback`]), under the run's lease and
//! through the same dry-run gate as `migrate`.

use std::sync::Arc;

use crate::cli::RollbackArgs;
use crate::engine::rollback::Rollback;
use crate::engine::{Effects, Stores, dry::DryRun, live::Live};
use crate::exit::{INCOMPLETE, OK};
use crate::report::migrate::{MigrateFormat, PlanWriter, print_rollback};
use crate::session;
use crate::settings::Settings;

pub(super) async fn run(settings: &Settings, args: &RollbackArgs) -> anyhow::Result<i32> {
    let format = MigrateFormat::choose(args.out.output, "rollback")?;
    let destination = session::destination_config(settings, "rollback")?;
    let (db, ledger) = session::app_and_ledger(settings).await?;
    let destination = session::open_checked(settings, destination, "destination").await?;
    let server = session::source(settings).await?;
    let stores = Stores {
        hosted: None,
        server: server.clone(),
        destination: destination.clone(),
    };
    let breaking = session::leases_to_break(&ledger, None, args.break_lease, args.dry_run).await?;
    let effects: Arc<dyn Effects> = if args.dry_run {
        let out = PlanWriter::new(
            format,
            Box::new(crate::report::stdout::stdout()),
            settings.parse.file_key.clone(),
        );
        Arc::new(DryRun::new(stores, Box::new(out)))
    } else {
        session::consent(args.yes, "rollback rewrites documents", || {
            let deletes = if args.delete_copies {
                format!(
                    ", then delete the copies made at {}",
                    destination.describe()
                )
            } else {
                String::new()
            };
            format!(
                "About to restore every reference recorded as rewritten in the ledger of database {:?}{deletes}{}",
                db.name(),
                session::breaking_text(&breaking)
            )
        })?;
        // Every shard's references are restored: no other run may be rewriting them meanwhile.
        let live = Live::new(
            stores,
            ledger.clone(),
            db.clone(),
            "all".into(),
            session::hostname(),
            settings.mongo.collection_prefix.clone(),
            settings.run.retry,
        );
        let guard = session::db_guard(settings, &db).await;
        Arc::new(live.exclusive().breaking(breaking).guard(guard))
    };
    let is_original = |name: &str, target: &str| {
        name == target
            && server
                .as_ref()
                .is_some_and(|s| s.describe() == destination.describe())
    };
    let rollback = Rollback {
        ledger: &ledger,
        prefix: &settings.mongo.collection_prefix,
        file_key: settings.parse.file_key.as_ref(),
        delete_copies: args.delete_copies,
        is_original: &is_original,
    };
    let info = session::run_info(settings, "all", &destination.describe())?;
    let (counts, code) = session::recorded(&effects, info, async {
        let counts = rollback.run(&*effects).await?;
        let code = if counts.incomplete() { INCOMPLETE } else { OK };
        let recorded = mongodb::bson::to_document(&counts)?;
        Ok((counts, mongodb::bson::doc! {"rollback": recorded}, code))
    })
    .await?;
    print_rollback(format, args.dry_run, &counts, args.out.report.as_deref())?;
    Ok(code)
}
