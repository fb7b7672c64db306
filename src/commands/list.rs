//! `list`: every file reference, one row each, streamed page by page as the walk finds them, with
//! where each stands in the ledger. Read-only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::cli::ListArgs;
use crate::exit::{INCOMPLETE, OK};
use crate::parse::names::{NameKind, Selection, target_name};
use crate::report::list::{ListFormat, ListRow, ListWriter};
use crate::scan::{FileRef, log_issues};
use crate::session::{self, discover, explain_empty, next_page};
use crate::settings::Settings;
use crate::storage::ObjectStore;

pub(super) async fn run(settings: &Settings, args: &ListArgs) -> anyhow::Result<i32> {
    let format = ListFormat::choose(args.out.output, "list")?;
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let kinds: HashSet<NameKind> = args.kinds.iter().map(|k| (*k).into()).collect();
    let fail_on: HashSet<NameKind> = args.fail_on.iter().map(|k| (*k).into()).collect();
    let rename = args.rename.map(Into::into).unwrap_or(settings.run.rename);
    let sources = Sources::open(settings).await;
    let key = settings.parse.file_key.as_ref().map(|k| k.expose());

    let mut writer = ListWriter::new(format, crate::report::stdout::stdout())?;
    let mut matched_fail_on = 0u64;
    let mut by_kind = BTreeMap::<&str, u64>::new();
    let mut issues = 0u64;
    for target in &d.targets {
        let mut walker = d.walker(target, settings);
        while let Some(page) = next_page(&mut walker, target).await? {
            log_issues(&page.issues);
            issues += page.issues.len() as u64;
            let refs: Vec<&FileRef> = page
                .refs
                .iter()
                .filter(|r| kinds.is_empty() || kinds.contains(&r.kind()))
                .collect();
            let standing = ledger.standing(&refs).await?;
            for r in refs {
                let kind = r.kind();
                if fail_on.contains(&kind) {
                    matched_fail_on += 1;
                }
                *by_kind.entry(kind.as_str()).or_default() += 1;
                writer.write(&ListRow {
                    class: r.class.clone(),
                    object_id: r.object_id(),
                    path: r.path.clone(),
                    name: r.name.clone(),
                    kind: kind.as_str(),
                    nested: r.nested(),
                    source: sources.location(r),
                    target_name: target_name(&r.name, rename).into_owned(),
                    status: standing.status(r),
                    in_string: r.in_string(),
                    url: r
                        .in_string()
                        .then(|| redact(r.url.as_deref(), key))
                        .flatten(),
                })?;
            }
        }
    }
    let rows = writer.finish()?;
    if rows == 0 && issues == 0 && kinds.is_empty() {
        tracing::warn!(
            "no file references found: {}",
            explain_empty(&d, &settings.mongo.collection_prefix)
        );
    }
    tracing::info!(
        references = rows,
        malformed = issues,
        "listed {}",
        crate::report::count(rows, "reference", "references")
    );
    let summary = serde_json::json!({"action": "summary", "references": rows,
        "malformed": issues, "kinds": by_kind, "fail_on_matched": matched_fail_on});
    crate::report::output::write_report(args.out.report.as_deref(), &summary)?;
    if matched_fail_on > 0 {
        tracing::warn!(
            "{} --fail-on",
            crate::report::count(matched_fail_on, "reference matches", "references match")
        );
        return Ok(INCOMPLETE);
    }
    Ok(OK)
}

/// A URL with the fileKey (a secret) shown as `{file_key}`.
fn redact(url: Option<&str>, key: Option<&str>) -> Option<String> {
    let url = url?;
    Some(match key.filter(|k| !k.is_empty()) {
        Some(k) => url.replace(k, crate::ledger::KEY_PLACEHOLDER),
        None => url.to_string(),
    })
}

/// The configured sources, to show where each reference's bytes would be read from.
struct Sources {
    hosted: Option<Arc<dyn ObjectStore>>,
    server: Option<Arc<dyn ObjectStore>>,
}

impl Sources {
    async fn open(settings: &Settings) -> Sources {
        Sources {
            hosted: session::open_lenient(settings, Some(&settings.source.hosted)).await,
            server: session::open_lenient(settings, settings.source.server.as_ref()).await,
        }
    }

    fn location(&self, r: &FileRef) -> Option<String> {
        let store = if Selection::Hosted.includes(r.kind()) {
            self.hosted.as_ref()
        } else {
            self.server.as_ref()
        }?;
        store.location(&r.name).ok()
    }
}
