//! `serve`: resolve the gateway's options, open the stores and the ledger, pass the write gate
//! (its lease is a `serve@<host>:<port>` scope, which runs beside `migrate`), bind, and run the
//! gateway until Ctrl-C or SIGTERM; the run is recorded with its counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::engine::Counters;
use crate::exit::{OK, usage};
use crate::ledger::SERVE_SCOPE;
use crate::report::migrate::MigrateFormat;
use crate::serve::metrics::Metrics;
use crate::serve::proxy::Upstream;
use crate::serve::readthrough::ReadThrough;
use crate::serve::{self, Config, Gateway};
use crate::session::{self, gate::GateArgs};
use crate::settings::Settings;

/// How long requests and copies in flight get to finish once a stop is asked for.
const DRAIN: Duration = Duration::from_secs(30);

pub(super) async fn run(
    settings: &Settings,
    args: &ServeArgs,
    hooks: &crate::hooks::Hooks,
) -> anyhow::Result<i32> {
    let opts = settings.serve_options(args)?;
    let upstream_url = opts.upstream.as_deref().ok_or_else(|| {
        usage("serve needs --upstream URL (or [serve] upstream): the Parse Server to pass requests to")
    })?;
    let upstream = Upstream::new(upstream_url)?;
    let destination = session::destination_config(settings, "serve")?;
    let (db, ledger) = session::app_and_ledger(settings).await?;
    let stores = session::serve_stores(settings, destination).await?;
    let listener = bind(&opts.listen, "--listen").await?;
    let metrics_listener = match &opts.metrics_listen {
        Some(a) => Some(bind(a, "--metrics-listen").await?),
        None => None,
    };
    let local = listener.local_addr()?;
    let scope = format!("{SERVE_SCOPE}{}:{}", session::hostname(), local.port());
    let gate = GateArgs {
        dry_run: args.dry_run,
        yes: args.yes,
        break_lease: false,
        scope: &scope,
        exclusive: false,
        overwrite: false,
        verb: "serve copies files into the destination as they are asked for",
        format: MigrateFormat::Text,
        file_key: settings.parse.file_key.clone(),
        guard: None,
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &db, stores.clone(), gate, || {
        format!(
            "About to serve on {local}, passing every request to {}:\n  a file it misses is \
             copied from {} into {} and recorded in the ledger",
            crate::secret::redact_url(upstream_url),
            stores.server.as_ref().map_or("?".into(), |s| s.describe()),
            stores.destination.describe()
        )
    })
    .await?;

    let metrics = Arc::new(Metrics::default());
    let destination = crate::storage::StoreName::of(stores.destination.as_ref());
    let reads = Arc::new(ReadThrough {
        effects: effects.clone(),
        stores,
        ledger,
        destination: destination.clone(),
        counters: Counters::default(),
        flights: Default::default(),
        copies: Arc::new(tokio::sync::Semaphore::new(opts.max_copies)),
        wait: Duration::from_secs(opts.wait_secs.max(1)),
        dry_run: args.dry_run,
        metrics: metrics.clone(),
    });
    let gateway = Arc::new(Gateway {
        config: Config {
            mount: settings
                .parse
                .public_server_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .map(|u| u.path().to_string()),
            app_id: settings.parse.app_id.clone(),
            stream_above: opts.stream_above,
            drain: DRAIN,
        },
        upstream,
        reads,
        metrics: metrics.clone(),
    });
    let mut info = session::run_info(settings, &scope, &destination.identity)?;
    info.insert("command", "serve");
    let ((), code) = session::recorded(&effects, hooks, info, async {
        tracing::info!(
            "serving on {local}{}, passing requests to {}{}",
            metrics_listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map_or(String::new(), |a| format!(" (metrics on {a})")),
            crate::secret::redact_url(upstream_url),
            if args.dry_run {
                "; --dry-run: misses are answered from the old store, nothing is copied"
            } else {
                ""
            }
        );
        serve::run(
            gateway,
            listener,
            metrics_listener,
            session::stop_signal(),
            opts.max_copies,
        )
        .await;
        Ok(((), metrics.summary(), OK))
    })
    .await?;
    tracing::info!("stopped");
    Ok(code)
}

async fn bind(addr: &str, flag: &str) -> anyhow::Result<TcpListener> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| usage(format!("{flag} {addr:?}: expected HOST:PORT ({e})")))?;
    TcpListener::bind(parsed)
        .await
        .map_err(|e| usage(format!("{flag} {addr}: cannot listen there: {e}")))
}
