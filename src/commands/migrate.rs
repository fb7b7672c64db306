//! `migrate`: resolve the run (stores, URL base, rename safety, the write gate), run the engine,
//! report, and pick the exit code.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use mongodb::bson::{self, doc};

use super::discover::{discover, explain_empty};
use crate::cli::{MigrateArgs, MigrateOutput};
use crate::engine::{self, Effects, Limits, Mode, Plan, RunState, Stores, UrlBase};
use crate::exit::{CUTOFF, Coded, INCOMPLETE, INTERRUPTED, OK, USAGE, unreachable, usage};
use crate::parse::names::{RenamePolicy, Selection};
use crate::report::migrate::{MigrateFormat, PlanWriter, summary_json, summary_text};
use crate::report::{self, stdout_is_terminal};
use crate::settings::Settings;
use crate::storage::{self, ObjectStore, StoreConfig};

pub async fn run(settings: &Settings, args: &MigrateArgs) -> anyhow::Result<i32> {
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
    let destination_cfg = settings.destination.as_ref().ok_or_else(|| {
        usage("no [destination] in the configuration: where should the files go? (see config.example.toml)")
    })?;
    let format = match args.output {
        Some(MigrateOutput::Text) => MigrateFormat::Text,
        Some(MigrateOutput::Jsonl) => MigrateFormat::Jsonl,
        None if stdout_is_terminal() => MigrateFormat::Text,
        None => MigrateFormat::Jsonl,
    };

    let d = discover(settings, &args.filters).await?;
    let ctx = settings.store_context();
    let destination = open_store(destination_cfg, &ctx, "destination").await?;
    if !destination.capabilities().write {
        return Err(usage(format!(
            "the destination {} is read-only (type {})",
            destination.describe(),
            destination_cfg.type_name()
        )));
    }
    let hosted = if matches!(run.select, Selection::Hosted | Selection::All) {
        Some(open_store(&settings.source.hosted, &ctx, "source.hosted").await?)
    } else {
        None
    };
    let server =
        if matches!(run.select, Selection::Server | Selection::All) {
            let cfg = settings.source.server.as_ref().ok_or_else(|| {
            usage(format!(
                "--select {} moves names created by Parse Server, but there is no [source.server] \
                 saying where their bytes are (e.g. type = \"gridfs\")",
                if run.select == Selection::All { "all" } else { "server" }
            ))
        })?;
            Some(open_store(cfg, &ctx, "source.server").await?)
        } else {
            None
        };
    // Every source read goes through one shared throttle (--tps-limit, --bwlimit, and the
    // slow-down all transfers share when a source answers 429/503).
    let throttle = crate::throttle::Throttle::new(run.throttle);
    let throttled =
        |store: Arc<dyn crate::storage::ObjectStore>| -> Arc<dyn crate::storage::ObjectStore> {
            Arc::new(crate::throttle::Throttled {
                inner: store,
                throttle: throttle.clone(),
            })
        };
    let stores = Stores {
        hosted: hosted.map(throttled),
        server: server.map(throttled),
        destination: destination.clone(),
    };

    let ledger = super::open_ledger(settings, &d.db).await?;
    let plan = Plan {
        select: run.select,
        rename: run.rename,
        concurrency: run.concurrency,
        shard: run.shard,
        mode: if args.copy_only {
            Mode::CopyOnly
        } else if args.rewrite_only {
            Mode::RewriteOnly
        } else {
            Mode::Full
        },
        retry_missing: args.retry_failed,
        limits: Limits {
            max_files: run.max_files,
            max_bytes: run.max_bytes,
            max_duration: run.max_duration,
            max_errors: run.max_errors,
        },
        urls: url_base(settings),
        collection_prefix: settings.mongo.collection_prefix.clone(),
        page_size: settings.mongo.page_size,
        file_key: settings.parse.file_key.clone(),
        destination: destination.describe(),
        scope: engine::scope_of(run.shard),
        rescan: args.rescan || args.retry_failed,
    };
    if let UrlBase::None { why } = &plan.urls {
        tracing::warn!("{why}; nested File references to renamed files will not be rewritten");
    }

    let effects: Arc<dyn Effects> = if args.dry_run {
        let out = Box::new(std::io::stdout());
        Arc::new(engine::dry::DryRun {
            stores: stores.clone(),
            out: Mutex::new(PlanWriter::new(
                format,
                out,
                settings.parse.file_key.clone(),
            )),
        })
    } else {
        gate(args, settings, &stores, &d.database)?;
        Arc::new(engine::live::Live::new(
            stores,
            ledger.clone(),
            d.db.clone(),
            plan.scope.clone(),
            hostname(),
            settings.mongo.collection_prefix.clone(),
            run.retry,
        ))
    };

    effects
        .begin(doc! {
            "host": hostname(),
            "pid": std::process::id() as i64,
            "version": env!("CARGO_PKG_VERSION"),
            "shard": run.shard.map(|_| plan.scope.clone()),
            "destination": destination.describe(),
            "settings": settings.to_toml()?,
        })
        .await?;
    let state = RunState::new();
    let signals = tokio::spawn(on_signals(state.clone()));
    let progress = if crate::report::logging::progress_enabled(&settings.output) {
        let mut total = 0;
        for t in &d.targets {
            total +=
                d.db.collection::<mongodb::bson::Document>(&t.collection)
                    .estimated_document_count()
                    .await
                    .unwrap_or(0);
        }
        Some(crate::report::progress::spawn(state.clone(), total))
    } else {
        None
    };
    let result = engine::run(plan, effects.clone(), &ledger, &d.db, &d.targets, state).await;
    signals.abort();
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            // Record the failure and give the lease back; the error itself is what matters.
            if let Err(f) = effects
                .finish(doc! {"error": format!("{e:#}")}, crate::exit::code_of(&e))
                .await
            {
                tracing::warn!("recording the failed run: {f:#}");
            }
            return Err(e);
        }
    };

    if summary.references_found == 0 && summary.malformed_values == 0 {
        tracing::warn!(
            "no file references found: {}",
            explain_empty(&d, &settings.mongo.collection_prefix)
        );
    }
    let code = if summary.stopped_by.as_deref() == Some(engine::INTERRUPTED) {
        INTERRUPTED
    } else if summary.stopped_by_errors() {
        // Not a cutoff to continue from next time (exit 8): something is failing.
        INCOMPLETE
    } else if summary.stopped_by.is_some() {
        CUTOFF
    } else if summary.incomplete() && !summary.dry_run {
        INCOMPLETE
    } else {
        OK
    };
    effects.finish(bson::to_document(&summary)?, code).await?;

    match format {
        MigrateFormat::Jsonl => println!("{}", summary_json(&summary)?),
        MigrateFormat::Text => eprint!("{}", summary_text(&summary)),
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(path, json)
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    Ok(code)
}

/// First Ctrl-C or SIGTERM: stop taking new work, let transfers in flight finish and be recorded
/// (exit 130). A second one exits at once; the ledger is still consistent (every step is recorded
/// before the next begins), and a re-run continues.
async fn on_signals(state: Arc<RunState>) {
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
}

/// Writing needs consent: `--yes`, or an answer on a terminal.
fn gate(
    args: &MigrateArgs,
    settings: &Settings,
    stores: &Stores,
    database: &str,
) -> anyhow::Result<()> {
    if args.yes {
        return Ok(());
    }
    if !report::interactive() {
        return Err(usage(
            "migrate writes to the destination and rewrites documents: pass --yes to proceed \
             (stdin is not a terminal), or --dry-run to see the plan",
        ));
    }
    let run = &settings.run;
    let mut what = format!(
        "About to migrate files of database {database:?}:\n  select: {:?}   rename: {:?}   concurrency: {}\n",
        run.select, run.rename, run.concurrency
    );
    if let Some(h) = &stores.hosted {
        what.push_str(&format!("  hosted-Parse names from: {}\n", h.describe()));
    }
    if let Some(s) = &stores.server {
        what.push_str(&format!("  other names from:        {}\n", s.describe()));
    }
    what.push_str(&format!(
        "  copy to:                 {}\n  then rewrite every reference in the database (compare-and-swap; see --dry-run for the full plan)",
        stores.destination.describe()
    ));
    if report::confirm(&what).context("reading the answer")? {
        Ok(())
    } else {
        Err(usage("not confirmed; nothing was changed"))
    }
}

async fn open_store(
    cfg: &StoreConfig,
    ctx: &storage::StoreContext,
    role: &str,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let store = storage::open(cfg, ctx)
        .await
        .map_err(|e| usage(format!("[{role}]: {e}")))?;
    store.check().await.map_err(|e| {
        unreachable(
            format!("cannot use the {role} {}: {e}", store.describe()),
            "check the endpoint, bucket or path and the credentials in the configuration",
        )
    })?;
    Ok(store)
}

fn url_base(settings: &Settings) -> UrlBase {
    let p = &settings.parse;
    if let Some(t) = &p.file_url_template {
        return UrlBase::Template(t.clone());
    }
    match (&p.public_server_url, &p.app_id) {
        (Some(url), Some(app)) => UrlBase::Server {
            public_server_url: url.clone(),
            app_id: app.clone(),
        },
        (Some(_), None) => UrlBase::None {
            why: "parse.app_id is not set (needed for <public_server_url>/files/<app_id>/<name>)"
                .into(),
        },
        _ => UrlBase::None {
            why: "neither parse.public_server_url nor parse.file_url_template is set, so nested \
                  File urls cannot be rebuilt"
                .into(),
        },
    }
}

pub(super) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
