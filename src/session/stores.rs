//! Opening the stores a command names, with the role (`[destination]`, `[source.server]`…) in
//! every error, and checking them before any work starts.

use std::sync::Arc;

use crate::cli::StoreRole;
use crate::engine::Stores;
use crate::exit::{unreachable, usage};
use crate::parse::names::Selection;
use crate::settings::Settings;
use crate::storage::{self, ObjectStore, StoreConfig};
use crate::throttle::{Throttle, Throttled};

/// Open the store of `cfg` and check it can be used ([`ObjectStore::check`]): a configuration
/// error is a usage error, an unreachable store exit 4 with a hint.
pub(crate) async fn open_checked(
    settings: &Settings,
    cfg: &StoreConfig,
    role: &str,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let store = storage::open(cfg, &settings.store_context())
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

/// The store `--store` names for `command` (`destination` or `server`: the one Parse Server
/// uses), its configuration and its role name, or a usage error when it is not configured.
pub(crate) fn store_by_role<'a>(
    settings: &'a Settings,
    role: StoreRole,
    command: &str,
) -> anyhow::Result<(&'a StoreConfig, &'static str)> {
    Ok(match role {
        StoreRole::Destination => (destination_config(settings, command)?, "destination"),
        StoreRole::Server => (
            settings.source.server.as_ref().ok_or_else(|| {
                usage(format!(
                    "{command} --store server needs a [source.server] table (the store Parse \
                     Server uses)"
                ))
            })?,
            "source.server",
        ),
    })
}

/// The store `--store` names, opened, checked, and refused when it cannot be listed (`audit`).
pub(crate) async fn open_listed(
    settings: &Settings,
    role: StoreRole,
    command: &str,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let (cfg, role) = store_by_role(settings, role, command)?;
    let store = open_checked(settings, cfg, role).await?;
    if !store.capabilities().list {
        return Err(usage(format!(
            "the {role} {} cannot be listed (type {}), so it cannot be audited",
            store.describe(),
            cfg.type_name()
        )));
    }
    Ok(store)
}

/// The `[destination]` table, or a usage error saying `command` needs it (checked before any
/// connection is made).
pub(crate) fn destination_config<'a>(
    settings: &'a Settings,
    command: &str,
) -> anyhow::Result<&'a StoreConfig> {
    settings.destination.as_ref().ok_or_else(|| {
        usage(format!(
            "{command} needs a [destination] in the configuration: where the files go (see \
             config.example.toml)"
        ))
    })
}

/// The stores `migrate` reads and writes, opened and checked: the destination (writable), and
/// the sources `--select` needs. Every source read goes through one shared throttle
/// (`--tps-limit`, `--bwlimit`, and the slow-down all transfers share when a source answers
/// 429/503).
pub(crate) async fn migrate_stores(
    settings: &Settings,
    destination: &StoreConfig,
) -> anyhow::Result<Stores> {
    selected_stores(settings, destination, settings.run.select).await
}

/// The stores `serve` reads and writes: [`migrate_stores`] for `--select server` (the gateway
/// sees only names Parse Server serves itself; hosted-Parse names go to parsetfss.com).
pub(crate) async fn serve_stores(
    settings: &Settings,
    destination: &StoreConfig,
) -> anyhow::Result<Stores> {
    selected_stores(settings, destination, Selection::Server).await
}

async fn selected_stores(
    settings: &Settings,
    destination: &StoreConfig,
    select: Selection,
) -> anyhow::Result<Stores> {
    let destination_store = open_checked(settings, destination, "destination").await?;
    if !destination_store.capabilities().write {
        return Err(usage(format!(
            "the destination {} is read-only (type {})",
            destination_store.describe(),
            destination.type_name()
        )));
    }
    let hosted = if matches!(select, Selection::Hosted | Selection::All) {
        Some(open_checked(settings, &settings.source.hosted, "source.hosted").await?)
    } else {
        None
    };
    let server =
        if matches!(select, Selection::Server | Selection::All) {
            let cfg = settings.source.server.as_ref().ok_or_else(|| {
            usage(format!(
                "--select {} moves names created by Parse Server, but there is no [source.server] \
                 saying where their bytes are (e.g. type = \"gridfs\")",
                if select == Selection::All { "all" } else { "server" }
            ))
        })?;
            Some(open_checked(settings, cfg, "source.server").await?)
        } else {
            None
        };
    let throttle = Throttle::new(settings.run.throttle);
    let throttled = |inner: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
        Arc::new(Throttled {
            inner,
            throttle: throttle.clone(),
        })
    };
    Ok(Stores {
        hosted: hosted.map(throttled),
        server: server.map(throttled),
        destination: destination_store,
    })
}

/// `[source.server]`, opened and checked, if configured.
pub(crate) async fn source(settings: &Settings) -> anyhow::Result<Option<Arc<dyn ObjectStore>>> {
    match &settings.source.server {
        Some(cfg) => Ok(Some(open_checked(settings, cfg, "source.server").await?)),
        None => Ok(None),
    }
}

/// Open `cfg` without checking it, for read-only displays (`list`'s source locations): a store
/// that cannot be opened is logged and left out.
pub(crate) async fn open_lenient(
    settings: &Settings,
    cfg: Option<&StoreConfig>,
) -> Option<Arc<dyn ObjectStore>> {
    let cfg = cfg?;
    match storage::open(cfg, &settings.store_context()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("source {} unavailable for listing: {e}", cfg.type_name());
            None
        }
    }
}

/// The question `migrate` asks on a terminal before it writes.
pub(crate) fn migrate_consent(settings: &Settings, stores: &Stores, database: &str) -> String {
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
    what
}
