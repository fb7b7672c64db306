//! What every command sets up before its own work, written once: connect to the app's database
//! and read what to walk ([`mod@discover`]), open its ledger, open and check the stores, ask for
//! consent to write, assemble the dry-run gate ([`gate`]: the one place that does), and stop
//! cleanly on a signal.
//!
//! Commands read like a recipe on top of this: resolve → open → run the engine → report. This
//! module decides nothing about files or references (that is the engine's), and prints nothing
//! but the consent prompt (through [`crate::report`]).

pub(crate) mod discover;
pub(crate) mod gate;
mod stores;

use std::sync::Arc;

use anyhow::Context;

pub(crate) use discover::{discover, discover_everything, discover_with, explain_empty, next_page};
pub(crate) use stores::{
    destination_config, migrate_consent, migrate_stores, open_checked, open_lenient, open_listed,
    serve_stores, source, store_by_role,
};

use crate::dbhealth::Guard;
use crate::engine::{Effects, RunState};
use crate::exit::{INTERRUPTED, usage};
use crate::hooks::Hooks;
use crate::ledger::Ledger;
use crate::settings::Settings;

/// The ledger of the app whose database is `app` (or where `[ledger]` puts it), refused when a
/// newer version of the tool has written to it. Every command opens its ledger here.
pub(crate) async fn open_ledger(
    settings: &Settings,
    app: &mongodb::Database,
) -> anyhow::Result<Ledger> {
    let l = &settings.ledger;
    let database = l.database.clone().unwrap_or_else(|| app.name().to_string());
    let db = match &l.uri {
        Some(uri) => crate::db::connect(uri, &database).await?.1,
        None => app.client().database(&database),
    };
    if let Some(unscoped) = &l.unscoped_default {
        refuse_a_fresh_ledger_beside(&db, &l.collection, unscoped).await?;
    }
    let ledger =
        Ledger::new(db, &l.collection).with_lease(std::time::Duration::from_secs(l.lease_secs));
    ledger.check_version().await?;
    Ok(ledger)
}

/// The default ledger of an app with a collection prefix is `<prefix>_FileMigration`; earlier
/// versions used `_FileMigration` for every app. An empty scoped ledger beside runs recorded
/// there is refused: starting afresh would lose what `status`, resumption and `rollback` need.
async fn refuse_a_fresh_ledger_beside(
    db: &mongodb::Database,
    scoped: &str,
    unscoped: &str,
) -> anyhow::Result<()> {
    use mongodb::bson::{Document, doc};
    let any = |name: String| async move {
        let found = db
            .collection::<Document>(&name)
            .find_one(doc! {})
            .projection(doc! {"_id": 1})
            .await
            .with_context(|| format!("reading the ledger collection {name}"))?;
        anyhow::Ok(found.is_some())
    };
    if !any(format!("{scoped}.runs")).await? && any(format!("{unscoped}.runs")).await? {
        return Err(crate::exit::Coded::new(
            crate::exit::USAGE,
            format!(
                "the default ledger of an app with a collection prefix is now {scoped}, which is \
             empty, while {unscoped} holds runs recorded before (by this app under the earlier \
             default, or by another app of this database)"
            ),
        )
        .hint(format!(
            "set [ledger] collection = \"{unscoped}\" to go on with those records (resume, \
             status, rollback), or = \"{scoped}\" to start this app's own ledger"
        ))
        .into());
    }
    Ok(())
}

/// Connect to the app database and open its ledger (commands that do not walk the schema).
pub(crate) async fn app_and_ledger(
    settings: &Settings,
) -> anyhow::Result<(mongodb::Database, Ledger)> {
    let (uri, database) = settings.mongo_target()?;
    let (_client, db) = crate::db::connect(uri, database).await?;
    let ledger = open_ledger(settings, &db).await?;
    Ok((db, ledger))
}

/// Writing needs consent: `--yes`, or a `y` at the terminal to the question `what()` (built only
/// when it is asked). Without a terminal and without `--yes`, a usage error saying what `verb`
/// would have written.
pub(crate) fn consent(yes: bool, verb: &str, what: impl FnOnce() -> String) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !crate::report::interactive() {
        return Err(usage(format!(
            "{verb}: pass --yes to proceed (stdin is not a terminal), or --dry-run to see what \
             it would do"
        )));
    }
    if crate::report::confirm(&what()).context("reading the answer")? {
        Ok(())
    } else {
        Err(usage("not confirmed; nothing was changed"))
    }
}

/// `--break-lease`: the leases other runs hold that keep a run on `scope` from starting (its own
/// and any conflicting scope; every scope for `None`), to show in the consent question (the one
/// gate every write passes) and to break once it is answered.
/// Empty without the flag, or when none is held. A dry run only says what it would break.
pub(crate) async fn leases_to_break(
    ledger: &Ledger,
    scope: Option<&str>,
    asked: bool,
    dry_run: bool,
) -> anyhow::Result<Vec<crate::ledger::Holder>> {
    if !asked {
        return Ok(Vec::new());
    }
    let holders = match scope {
        Some(s) => ledger.in_the_way(s).await?,
        None => ledger.holders(None).await?,
    };
    if holders.is_empty() {
        tracing::info!("--break-lease: no other run holds a lease; nothing to break");
    }
    if dry_run {
        for h in &holders {
            tracing::warn!(
                "--dry-run: would break the lease on {} ({})",
                h.scope,
                h.describe()
            );
        }
        return Ok(Vec::new());
    }
    Ok(holders)
}

/// The lines the consent question adds for the leases `--break-lease` would break.
pub(crate) fn breaking_text(holders: &[crate::ledger::Holder]) -> String {
    holders
        .iter()
        .map(|h| {
            format!(
                "\n  and first BREAK the lease on {} held by another run ({}): make sure it is gone",
                h.scope,
                h.describe()
            )
        })
        .collect()
}

/// The host name recorded with leases and runs.
pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// What a writing run records about itself when it begins (no secrets: settings are redacted).
pub(crate) fn run_info(
    settings: &Settings,
    scope: &str,
    destination: &str,
) -> anyhow::Result<mongodb::bson::Document> {
    Ok(mongodb::bson::doc! {
        "host": hostname(),
        "pid": std::process::id() as i64,
        "version": env!("CARGO_PKG_VERSION"),
        "shard": (scope != "all").then_some(scope),
        "destination": destination,
        "settings": settings.to_toml()?,
    })
}

/// Run `work` between `effects.begin` and `effects.finish`: the lease is held, and the run
/// recorded, from before the first write to after the last. The `before` hook runs first, once
/// the lease is held (if it fails, nothing is written). A failed `work` is recorded with its
/// error (and the lease given back) before the error is returned; a finished one with the
/// summary and exit code `work` returns. Either is kept for the `after` hook.
pub(crate) async fn recorded<T>(
    effects: &Arc<dyn Effects>,
    hooks: &Hooks,
    info: mongodb::bson::Document,
    work: impl Future<Output = anyhow::Result<(T, mongodb::bson::Document, i32)>>,
) -> anyhow::Result<(T, i32)> {
    effects.begin(info).await?;
    let work = async {
        hooks.before().await?;
        work.await
    };
    match work.await {
        Ok((value, summary, code)) => {
            hooks.summary(mongodb::bson::Bson::Document(summary.clone()).into_relaxed_extjson());
            effects.finish(summary, code).await?;
            Ok((value, code))
        }
        Err(e) => {
            let record = mongodb::bson::doc! {"error": format!("{e:#}")};
            hooks.summary(serde_json::json!({"error": format!("{e:#}")}));
            if let Err(f) = effects.finish(record, crate::exit::code_of(&e)).await {
                tracing::warn!("recording the failed run: {f:#}");
            }
            Err(e)
        }
    }
}

/// First Ctrl-C or SIGTERM: stop taking new work, let transfers in flight finish and be recorded
/// (exit 130). A second one exits at once; the ledger is still consistent (every step is recorded
/// before the next begins), and a re-run continues. Abort the returned task when the run is over.
pub(crate) fn on_signals(state: Arc<RunState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::warn!(
                    "interrupted: finishing the transfers in flight (interrupt again to stop at once)"
                );
                state.interrupt();
            } else {
                tracing::warn!("interrupted again: stopping now; a re-run continues");
                std::process::exit(INTERRUPTED);
            }
        }
    })
}

/// Resolves at the first Ctrl-C or SIGTERM (a long-running command's stop); a second one
/// exits at once.
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("interrupted again: stopping now");
        std::process::exit(INTERRUPTED);
    });
}

/// The run's database guard (`--max-db-latency`, `--max-repl-lag`): it reads the replication lag
/// from `db`'s server when asked to, and says at start-up how (or that it cannot).
pub(crate) async fn db_guard(settings: &Settings, db: &mongodb::Database) -> Arc<Guard> {
    Guard::start(settings.run.db, db).await
}
