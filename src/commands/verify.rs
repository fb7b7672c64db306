//! `verify`: prove the migration is complete — every reference the run is responsible for
//! resolves at the destination with the size (and MD5) the ledger recorded. Read-only.
//!
//! A reference is checked when its name is of a kind `--select` covers, or when it is the target
//! of a copy the ledger recorded. A selected name that the rename policy would still change is
//! *not migrated*. Optionally each file is also downloaded through a Parse Server
//! (`--via-server`), the way clients will get it.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::Serialize;

use super::discover::{discover, log_issues, next_page};
use crate::cli::VerifyArgs;
use crate::exit::{OK, VERIFY_MISMATCH, unreachable, usage};
use crate::ledger::FileRecord;
use crate::parse::names::{parse_server_file_url, target_name};
use crate::report::stdout_is_terminal;
use crate::settings::Settings;
use crate::storage::{self, ObjectStore};

/// Results of distinct names kept to avoid checking a shared file again (a cache).
const CACHE: usize = 10_000;

/// The outcome of checking one name: `Err((problem, detail))`.
type Checked = Result<(), (&'static str, String)>;

#[derive(Debug, Serialize)]
struct Problem {
    problem: &'static str,
    class: String,
    object_id: String,
    path: String,
    name: String,
    detail: String,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    references: u64,
    checked: u64,
    ok: u64,
    not_covered: u64,
    problems: u64,
    served_checked: u64,
}

pub async fn run(settings: &Settings, args: &VerifyArgs) -> anyhow::Result<i32> {
    let destination_cfg = settings.destination.as_ref().ok_or_else(|| {
        usage("verify needs the migration's configuration, including its [destination]")
    })?;
    let d = discover(settings, &args.filters).await?;
    let ledger = super::open_ledger(settings, &d.db).await?;
    let destination = storage::open(destination_cfg, &settings.store_context())
        .await
        .map_err(|e| usage(format!("[destination]: {e}")))?;
    destination.check().await.map_err(|e| {
        unreachable(
            format!("cannot use the destination {}: {e}", destination.describe()),
            "check the configuration",
        )
    })?;
    let here = destination.describe();
    let via = match &args.via_server {
        Some(url) => Some((
            url.clone(),
            settings
                .parse
                .app_id
                .clone()
                .ok_or_else(|| usage("--via-server needs parse.app_id (or --app-id)"))?,
        )),
        None => None,
    };
    let http = reqwest::Client::new();
    let json = !stdout_is_terminal();
    let run = &settings.run;
    let mut counts = Counts::default();
    let mut cache: HashMap<String, Checked> = HashMap::new();

    for target in &d.targets {
        let mut walker = d.walker(target, settings);
        while let Some(page) = next_page(&mut walker, target).await? {
            log_issues(&page.issues);
            counts.references += page.refs.len() as u64;
            let mut names: Vec<&str> = page.refs.iter().map(|r| r.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            let records = ledger.by_target(&names).await?;
            // Check each distinct name of the page once, up to `concurrency` at a time.
            let todo: Vec<(String, Option<FileRecord>)> = names
                .iter()
                .filter(|n| !cache.contains_key(**n))
                .filter_map(|n| {
                    let rec = records
                        .get(*n)
                        .filter(|r| r.destination.as_deref().is_none_or(|d| d == here))
                        .cloned();
                    let kind = crate::parse::names::NameKind::of(n);
                    let selected = run.select.includes(kind);
                    if rec.is_none() && (!selected || target_name(n, run.rename) != *n) {
                        return None; // not covered, or not migrated: decided per reference
                    }
                    Some((n.to_string(), rec))
                })
                .collect();
            let results: Vec<(String, Checked)> = futures::stream::iter(todo)
                .map(|(name, rec)| {
                    let (dest, http, via) = (destination.clone(), http.clone(), via.clone());
                    async move {
                        let r = check(&*dest, &http, via.as_ref(), &name, rec.as_ref()).await;
                        (name, r)
                    }
                })
                .buffer_unordered(run.concurrency)
                .collect()
                .await;
            if cache.len() > CACHE {
                cache.clear();
            }
            if via.is_some() {
                counts.served_checked += results.len() as u64;
            }
            cache.extend(results);

            for r in &page.refs {
                let kind = r.kind();
                let problem = match cache.get(&r.name) {
                    Some(Ok(())) => None,
                    Some(Err((p, detail))) => Some((*p, detail.clone())),
                    None if run.select.includes(kind)
                        && target_name(&r.name, run.rename) != r.name =>
                    {
                        Some(("not-migrated", format!("still a {} name", kind.as_str())))
                    }
                    None => {
                        counts.not_covered += 1;
                        continue;
                    }
                };
                counts.checked += 1;
                match problem {
                    None => counts.ok += 1,
                    Some((problem, detail)) => {
                        counts.problems += 1;
                        let p = Problem {
                            problem,
                            class: r.class.clone(),
                            object_id: r.object_id(),
                            path: r.path.clone(),
                            name: r.name.clone(),
                            detail,
                        };
                        if json {
                            println!("{}", serde_json::to_string(&p)?);
                        } else {
                            println!(
                                "{:<14} {} {} {}: {} ({})",
                                p.problem, p.class, p.object_id, p.path, p.name, p.detail
                            );
                        }
                    }
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"action": "summary", "verify": &counts})
        );
    } else {
        eprintln!(
            "verify: {} references, {} checked at {}: {} ok, {} problems; {} not covered by --select{}",
            counts.references,
            counts.checked,
            here,
            counts.ok,
            counts.problems,
            counts.not_covered,
            if via.is_some() {
                format!(
                    "; {} files downloaded through the Parse Server",
                    counts.served_checked
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if counts.problems > 0 {
        VERIFY_MISMATCH
    } else {
        OK
    })
}

/// Check one name at the destination (and through the server): `Err((problem, detail))`.
async fn check(
    dest: &dyn ObjectStore,
    http: &reqwest::Client,
    via: Option<&(String, String)>,
    name: &str,
    rec: Option<&FileRecord>,
) -> Checked {
    let meta = match dest.stat(name).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Err(("dangling", e.to_string())),
        Err(e) => return Err(("error", e.to_string())),
    };
    if let Some(size) = rec.and_then(|r| r.size).filter(|s| *s != meta.size) {
        return Err((
            "size-mismatch",
            format!(
                "the ledger recorded {size} bytes, the destination has {}",
                meta.size
            ),
        ));
    }
    if let (Some(want), Some(have)) = (rec.and_then(|r| r.md5.as_deref()), meta.md5.as_deref())
        && want != have
    {
        return Err((
            "md5-mismatch",
            format!("recorded {want}, destination {have}"),
        ));
    }
    if let Some((server, app)) = via {
        let url = parse_server_file_url(server, app, name);
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| ("served-error", format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(("served-error", format!("GET {url}: HTTP {}", resp.status())));
        }
        let mut hasher = Md5::new();
        let mut len = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| ("served-error", format!("GET {url}: {e}")))?
        {
            len += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if len != meta.size {
            return Err((
                "served-mismatch",
                format!(
                    "the server sent {len} bytes, the destination has {}",
                    meta.size
                ),
            ));
        }
        let md5 = hex::encode(hasher.finalize());
        if let Some(want) = rec.and_then(|r| r.md5.as_deref())
            && want != md5
        {
            return Err((
                "served-mismatch",
                format!("served md5 {md5}, recorded {want}"),
            ));
        }
    }
    Ok(())
}
