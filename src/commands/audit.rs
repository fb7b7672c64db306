//! `audit`: list a store, walk every reference (top level, nested, `_GlobalConfig`), join the
//! two by name in bounded memory and report orphans, dangling references, superseded GridFS
//! versions and a summary. Read-only.

use crate::audit::{Audit, Options};
use crate::cli::{AuditArgs, Filters};
use crate::exit::{AUDIT_FINDINGS, OK};
use crate::report::audit::{AuditWriter, summary_json};
use crate::report::list::ListFormat;
use crate::session::{discover_with, open_listed};
use crate::settings::{Settings, sort_run_bytes};

pub(super) async fn run(settings: &Settings, args: &AuditArgs) -> anyhow::Result<i32> {
    let format = ListFormat::choose(args.out.output, "audit")?;
    let run_bytes = sort_run_bytes(args.sort_run_bytes.as_deref())?;
    let store = open_listed(settings, args.store, "audit").await?;
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
    let rule = crate::audit::relink::Rule::Suffix;
    let summary = audit.finish_paired(rule, &mut |f| writer.write(f))?;
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
