//! `audit`: list a store, walk every reference (top level, nested, `_GlobalConfig`), join the
//! two by name in bounded memory and report orphans, dangling references, superseded GridFS
//! versions and a summary. Read-only.

use crate::audit::{Audit, DEFAULT_RUN_BYTES, Options};
use crate::cli::{AuditArgs, AuditStore, Filters};
use crate::exit::{AUDIT_FINDINGS, OK, usage};
use crate::report::audit::{AuditWriter, summary_json};
use crate::report::list::ListFormat;
use crate::session::{destination_config, discover_with, open_checked};
use crate::settings::{Settings, parse_size};

/// The audited store (`--store`), opened, checked, and refused when it cannot be listed.
pub(super) async fn open_store(
    settings: &Settings,
    args: &AuditArgs,
) -> anyhow::Result<std::sync::Arc<dyn crate::storage::ObjectStore>> {
    let (cfg, role) = match args.store {
        AuditStore::Destination => (destination_config(settings, "audit")?, "destination"),
        AuditStore::Server => (
            settings.source.server.as_ref().ok_or_else(|| {
                usage("audit --store server needs a [source.server] table (the store Parse Server uses)")
            })?,
            "source.server",
        ),
    };
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

/// `--sort-run-bytes`, or the default.
pub(super) fn run_bytes(args: &AuditArgs) -> anyhow::Result<usize> {
    Ok(match &args.sort_run_bytes {
        Some(s) => parse_size(s)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| usage(format!("--sort-run-bytes {s:?}: not a size such as 64MiB")))?,
        None => DEFAULT_RUN_BYTES,
    })
}

pub(super) async fn run(settings: &Settings, args: &AuditArgs) -> anyhow::Result<i32> {
    if args.clean.quarantine || args.clean.restore || args.clean.purge {
        return super::audit_clean::run(settings, args).await;
    }
    let format = ListFormat::choose(args.out.output, "audit")?;
    let run_bytes = run_bytes(args)?;
    let store = open_store(settings, args).await?;
    // Every reference counts, whatever `[run] nested` says: a reference left out would make its
    // file look orphaned.
    let d = discover_with(settings, &Filters::default(), true).await?;

    let mut writer = AuditWriter::new(format, crate::report::stdout::stdout())?;
    let mut audit = Audit::new(&Options {
        run_bytes,
        ..Options::default()
    });
    tracing::info!("listing {}", store.describe());
    audit.list(&*store, &mut |f| writer.write(f)).await?;
    let issues = d.for_each_ref(settings, |r| Ok(audit.add_ref(r)?)).await?;
    let (objects, references, runs) = audit.counts();
    tracing::info!(
        objects,
        references,
        sorted_runs = runs,
        malformed = issues,
        "joining {objects} stored objects with {references} references"
    );
    let summary = audit.finish(&mut |f| writer.write(f))?;
    writer.summary(&store.describe(), &summary)?;
    writer.finish()?;
    let report = args.out.report.as_deref();
    crate::report::output::write_report(report, &summary_json(&store.describe(), &summary))?;
    Ok(if summary.is_clean() {
        OK
    } else {
        AUDIT_FINDINGS
    })
}
