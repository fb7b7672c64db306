//! `rekey`: resolve the mode and keys (the new key only from the environment or the config
//! file), open the GridFS/FS store, pass the write gate and take the lease, run the engine's
//! [`Rekey`] pass, report, and pick the exit code.

use crate::cli::RekeyArgs;
use crate::engine::rekey::{Rekey, RekeyMode, RekeyPlan};
use crate::engine::{Limits, RunState, Stores};
use crate::exit::usage;
use crate::hooks::Hooks;
use crate::ledger::QuarantineState;
use crate::report::rekey::{end_progress, print_rekey, spawn_progress};
use crate::session::{self, gate::GateArgs};
use crate::settings::{NEW_KEY_ENV, Settings};
use crate::storage::crypto::FileKey;

/// Files rewritten at once unless `--concurrency` says otherwise: each holds about a chunk
/// (255 KiB) being written and 1 MiB being read.
const DEFAULT_CONCURRENCY: usize = 4;

pub(super) async fn run(
    settings: &Settings,
    args: &RekeyArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    let json = args.json || crate::report::output::jsonl(args.output, "rekey")?;
    let (cfg, role) = session::store_by_role(settings, args.store, "rekey")?;
    let mode = match (args.encrypt, args.decrypt) {
        (true, _) => RekeyMode::Encrypt,
        (_, true) => RekeyMode::Decrypt,
        _ => RekeyMode::Rotate,
    };
    let store = crate::storage::open(cfg, &settings.store_context())
        .await
        .map_err(|e| usage(format!("[{role}]: {e}")))?
        .versioned()
        .ok_or_else(|| {
            usage(format!(
                "[{role}]: rekey (re-encrypting files in place) is not supported by a store of \
                 type {:?} (only gridfs and fs stores hold Parse-encrypted files)",
                cfg.type_name()
            ))
        })?;
    let current = store.key().cloned().ok_or_else(|| {
        usage(format!(
            "rekey {}: the {role} store has no key (set its encryption_key, or parse.file_key, \
             and not encryption = \"none\")",
            mode.as_str()
        ))
    })?;
    let new = settings
        .rekey
        .new_key
        .as_ref()
        .map(|k| FileKey::derive(k.expose()));
    if mode == RekeyMode::Rotate {
        let Some(n) = &new else {
            return Err(usage(format!(
                "rotating needs the new key in the environment ({NEW_KEY_ENV}) or the config file \
                 ([rekey] new_key), never on the command line; or pass --encrypt / --decrypt"
            )));
        };
        if n.same_as(&current) {
            return Err(usage(
                "the new key is the store's current key: nothing to rotate",
            ));
        }
    }
    let run = &settings.run;
    let (max_files, max_bytes, max_duration) = crate::settings::cutoffs(&args.cutoff, run)?;
    let plan = RekeyPlan {
        mode,
        current,
        new,
        concurrency: args.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
        limits: Limits {
            max_files,
            max_bytes,
            max_duration,
            max_errors: args.max_errors.or(run.max_errors).filter(|n| *n > 0),
        },
        dry_run: args.dry_run,
        retry: run.retry,
    };
    let (db, ledger) = session::app_and_ledger(settings).await?;
    // Quarantined files are not re-encrypted: restored after a rotation (and the old key's
    // retirement) they would be unreadable.
    let quarantined = [
        QuarantineState::Moving,
        QuarantineState::Quarantined,
        QuarantineState::Restoring,
        QuarantineState::Purging,
    ];
    let name = crate::storage::StoreName::new(store.identity(), &store.describe());
    let found = ledger
        .quarantine_records(&name.all(), &quarantined, None, 1)
        .await?;
    let in_quarantine = !found.is_empty();
    if in_quarantine {
        return Err(usage(format!(
            "refusing to rekey {}: it has files in quarantine, which rekey does not re-encrypt \
             (restored after the old key is retired, they could not be read); run `audit \
             --restore` or `audit --purge` first",
            store.describe()
        )));
    }
    let state = RunState::new();
    let rekey = Rekey::new(plan, store.clone(), ledger.clone(), state.clone());
    let work = async {
        let signals = session::on_signals(state.clone());
        let progress = if crate::report::logging::progress_enabled(&settings.output) {
            Some(spawn_progress(state.clone(), store.estimate().await))
        } else {
            None
        };
        let result = rekey.run(hooks).await;
        signals.abort();
        if let Some(p) = progress {
            end_progress(p).await;
        }
        let summary = result?;
        let code = summary.exit_code();
        let recorded = mongodb::bson::to_document(&summary)?;
        Ok((summary, mongodb::bson::doc! {"rekey": recorded}, code))
    };
    let (summary, code) = if args.dry_run {
        // No gate (nothing is written): the hooks learn the run here, and `before` runs first.
        hooks.arm(ledger.run_id().to_hex(), "all");
        hooks.before().await?;
        let (s, recorded, code) = work.await?;
        hooks.summary(mongodb::bson::Bson::Document(recorded).into_relaxed_extjson());
        (s, code)
    } else {
        let checked = session::open_checked(settings, cfg, role).await?;
        let stores = Stores {
            hosted: None,
            server: None,
            destination: checked,
        };
        // Every file of the store: no other run may write it meanwhile.
        let gate = GateArgs {
            dry_run: false,
            yes: args.yes,
            break_lease: args.break_lease,
            scope: "all",
            exclusive: true,
            overwrite: false,
            verb: "rekey rewrites every file of the store",
            format: crate::report::migrate::MigrateFormat::Text,
            file_key: None,
            guard: None,
            hooks,
        };
        let effects = session::gate::open(settings, &ledger, &db, stores, gate, || {
            format!(
                "About to {} every file of {} (each rewritten as a new version, read back, then \
                 the old one removed)",
                mode.describe(),
                store.describe(),
            )
        })
        .await?;
        let info = session::run_info(settings, "all", &store.describe())?;
        session::recorded(&effects, hooks, info, work).await?
    };
    print_rekey(&summary, json, args.report.as_deref())?;
    Ok(code)
}
