//! `rollback`: put back the values the migration replaced, as recorded in the ledger — each a
//! compare-and-swap on the value the migration wrote, so a reference the app changed since is
//! reported and left alone — and optionally delete the copies the migration made.

use std::sync::{Arc, Mutex};

use mongodb::bson::{Bson, Document};

use crate::cli::RollbackArgs;
use crate::engine::dry::DryRun;
use crate::engine::live::Live;
use crate::engine::{Change, Effects, Stores};
use crate::exit::{INCOMPLETE, OK, usage};
use crate::ledger::{FileState, KEY_PLACEHOLDER, RefChange, RefState, ref_change};
use crate::parse::schema::collection_name;
use crate::report::migrate::{MigrateFormat, PlanWriter};
use crate::report::stdout_is_terminal;
use crate::scan::Shape;
use crate::settings::Settings;
use crate::storage;

/// Reference records restored per round trip.
const PAGE: i64 = 500;

#[derive(Debug, Default, serde::Serialize)]
struct Counts {
    restored: u64,
    conflicts: u64,
    failed: u64,
    copies_deleted: u64,
    copies_kept: u64,
}

pub async fn run(settings: &Settings, args: &RollbackArgs) -> anyhow::Result<i32> {
    let destination_cfg = settings.destination.as_ref().ok_or_else(|| {
        usage("rollback needs the migration's configuration, including its [destination]")
    })?;
    let (db, ledger) = super::app_and_ledger(settings).await?;
    let ctx = settings.store_context();
    let destination = storage::open(destination_cfg, &ctx)
        .await
        .map_err(|e| usage(format!("[destination]: {e}")))?;
    let server = match &settings.source.server {
        Some(cfg) => Some(
            storage::open(cfg, &ctx)
                .await
                .map_err(|e| usage(format!("[source.server]: {e}")))?,
        ),
        None => None,
    };
    let stores = Stores {
        hosted: None,
        server: server.clone(),
        destination: destination.clone(),
    };
    let format = if stdout_is_terminal() {
        MigrateFormat::Text
    } else {
        MigrateFormat::Jsonl
    };
    let prefix = &settings.mongo.collection_prefix;
    let effects: Arc<dyn Effects> = if args.dry_run {
        Arc::new(DryRun {
            stores,
            out: Mutex::new(PlanWriter::new(
                format,
                Box::new(std::io::stdout()),
                settings.parse.file_key.clone(),
            )),
        })
    } else {
        if !args.yes {
            let what = format!(
                "About to restore every reference recorded as rewritten in the ledger of database {:?}{}",
                db.name(),
                if args.delete_copies {
                    format!(
                        ", then delete the copies made at {}",
                        destination.describe()
                    )
                } else {
                    String::new()
                }
            );
            if !crate::report::interactive() {
                return Err(usage(
                    "rollback rewrites documents: pass --yes to proceed (stdin is not a terminal), \
                     or --dry-run to see what it would do",
                ));
            }
            if !crate::report::confirm(&what)? {
                return Err(usage("not confirmed; nothing was changed"));
            }
        }
        Arc::new(Live::new(
            stores,
            ledger.clone(),
            db.clone(),
            "all".into(),
            super::migrate::hostname(),
            prefix.clone(),
            settings.run.retry,
        ))
    };

    let key = settings.parse.file_key.as_ref().map(|k| k.expose());
    let mut counts = Counts::default();
    let mut after: Option<Bson> = None;
    loop {
        let page = ledger
            // Pending: a crash may have come between the update and its record.
            .refs_page(
                &[RefState::Rewritten, RefState::Pending],
                after.as_ref(),
                PAGE,
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = last.get("_id").cloned();
        let mut by_collection: std::collections::BTreeMap<String, Vec<Change>> = Default::default();
        for d in &page {
            match restore_change(d, key) {
                Ok(change) => by_collection
                    .entry(collection_name(prefix, &change.r.class))
                    .or_default()
                    .push(change),
                Err(why) => {
                    counts.failed += 1;
                    tracing::error!("cannot restore {:?}: {why}", d.get("_id"));
                }
            }
        }
        for (collection, changes) in by_collection {
            for (change, (state, err)) in changes
                .iter()
                .zip(effects.restore(&collection, &changes).await?)
            {
                match state {
                    RefState::RolledBack | RefState::Pending => counts.restored += 1,
                    RefState::Conflict => {
                        counts.conflicts += 1;
                        tracing::warn!(
                            class = %change.r.class, object_id = %crate::scan::id_string(&change.r.id),
                            path = %change.r.path,
                            "changed since the migration; left alone"
                        );
                    }
                    _ => {
                        counts.failed += 1;
                        tracing::error!(
                            class = %change.r.class, path = %change.r.path,
                            "restore refused: {}", err.unwrap_or_default()
                        );
                    }
                }
            }
        }
    }

    if args.delete_copies {
        let same_store = |name: &str, target: &str| {
            name == target
                && server
                    .as_ref()
                    .is_some_and(|s| s.describe() == destination.describe())
        };
        let mut after: Option<String> = None;
        loop {
            let files = ledger
                .files_page(FileState::Verified, after.as_deref(), PAGE)
                .await?;
            let Some(last) = files.last() else { break };
            after = Some(last.name.clone());
            let mut deleted = Vec::new();
            for f in &files {
                // Never delete the original, nor a copy something still points at.
                if same_store(&f.name, &f.target)
                    || (!args.dry_run && ledger.still_referenced(&f.name).await?)
                {
                    counts.copies_kept += 1;
                    continue;
                }
                effects.delete(&f.target).await?;
                counts.copies_deleted += 1;
                deleted.push(f.name.as_str());
            }
            if !args.dry_run {
                ledger.mark_files(&deleted, FileState::Deleted).await?;
            }
        }
    }

    let json =
        serde_json::json!({"action": "summary", "dry_run": args.dry_run, "rollback": &counts});
    match format {
        MigrateFormat::Jsonl => println!("{json}"),
        MigrateFormat::Text => eprintln!(
            "rollback{}: {} references restored, {} conflicts (changed since; left alone), {} failed; {} copies deleted, {} kept",
            if args.dry_run { " (dry run)" } else { "" },
            counts.restored,
            counts.conflicts,
            counts.failed,
            counts.copies_deleted,
            counts.copies_kept
        ),
    }
    Ok(if counts.conflicts + counts.failed > 0 {
        INCOMPLETE
    } else {
        OK
    })
}

/// The change that puts a recorded reference back: from the value written to the old one.
fn restore_change(d: &Document, key: Option<&str>) -> Result<Change, String> {
    let recorded = ref_change(d)?;
    let (old, mut new) = (recorded.new, recorded.old);
    if new.key_redacted {
        let k = key.ok_or(
            "the old url embedded the fileKey; set parse.file_key (or --file-key) to restore it",
        )?;
        new.url = new.url.map(|u| u.replace(KEY_PLACEHOLDER, k));
        new.key_redacted = false;
    }
    let shape = if old.url.is_none() && new.url.is_none() {
        Shape::BareName
    } else {
        Shape::Nested
    };
    Ok(Change {
        r: RefChange {
            old,
            new,
            ..recorded
        },
        shape,
    })
}
