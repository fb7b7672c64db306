//! `rebase`: move file URLs from old bases to the current one, copying no bytes — after a
//! `publicServerURL`/domain change, a move to a CDN or a bucket rename.
//!
//! Two passes over the targets, both through the run's [`Effects`] (so the same dry-run gate,
//! ledger records and `rollback` as `migrate`):
//! 1. nested File objects (Object/Array fields, Parse Config) whose `url` is a URL of an old base
//!    (`[rebase] from`, matched by [`crate::parse::urls`]) get the current URL for the same
//!    name ([`UrlBase`](super::UrlBase)); the compare-and-swap holds the File's name and old url;
//! 2. strings ([`super::strings`] with [`Resolve::Rebase`]): each old-base URL in a string is
//!    replaced, one compare-and-swap on the whole string.
//!
//! [`check`] then HEAD-requests each current URL found and reports those that do not answer 200.

use std::collections::HashSet;
use std::sync::Arc;

use mongodb::Database;

use super::Plan;
use super::strings::{Pass, Resolve};
use crate::engine::summary::RefItem;
use crate::engine::{Counters, Effects, RunState, Summary};
use crate::hooks::{Hooks, Phase};
use crate::ledger::{Ledger, RefChange, RefValue};
use crate::parse::urls::{Matcher, Origin};
use crate::scan::{ClassWalker, FileRef, Shape, Target};

/// A walker over one target (the command's, with its page size).
pub type Walkers<'a> = &'a (dyn Fn(&Target) -> ClassWalker + Sync);

/// Rebase every target (the phase [`Phase::Files`]), then the strings ([`Phase::Strings`]);
/// returns the summary (the caller records it).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: &Plan,
    effects: Arc<dyn Effects>,
    ledger: &Ledger,
    db: &Database,
    targets: &[Target],
    walker: Walkers<'_>,
    state: Arc<RunState>,
    hooks: &Hooks,
) -> anyhow::Result<Summary> {
    let old = old_bases(targets);
    let urls = async {
        for t in targets {
            let mut w = walker(t);
            while let Some(page) = {
                state.db.admit().await;
                w.next_page().await?
            } {
                let c = &state.counters;
                Counters::add(&c.objects, page.objects);
                let mut changes = Vec::new();
                for r in page.refs.iter().filter(|r| is_file_object(r)) {
                    Counters::add(&c.references, 1);
                    match rebased(r, &old, plan) {
                        Some(Ok(change)) => changes.push(change),
                        Some(Err(why)) => {
                            Counters::add(&c.refs_failed, 1);
                            c.failed_reference(RefItem::of_ref(r, why));
                        }
                        None => Counters::add(&c.refs_unchanged, 1),
                    }
                }
                if !changes.is_empty() {
                    let states = effects.rewrite(&t.collection, &changes).await?;
                    tally(&state, &changes, states);
                }
                if let Some(stop) = state.stop(&plan.limits) {
                    return Ok(Some(stop));
                }
            }
        }
        anyhow::Ok(None)
    };
    let mut stopped = hooks.phase(Phase::Files, urls).await?;
    if stopped.is_none() && targets.iter().any(|t| t.strings.is_some()) {
        let pass = Pass {
            plan,
            ledger,
            db,
            state: &state,
            resolve: Resolve::Rebase,
        };
        hooks
            .phase(Phase::Strings, pass.run(&*effects, targets))
            .await?;
        stopped = state.stop(&plan.limits);
    }
    Ok(state.summary(effects.dry_run(), stopped))
}

/// The matcher of the old bases (no hosted hosts, no current base), from the targets' own.
fn old_bases(targets: &[Target]) -> Option<Arc<Matcher>> {
    targets
        .iter()
        .find_map(|t| t.strings.as_ref().map(|s| s.matcher.clone()))
}

fn is_file_object(r: &FileRef) -> bool {
    matches!(r.shape, Shape::Nested | Shape::TopLevelObject)
}

/// The change that rebases a File object's url, if its url is an old base's.
fn rebased(
    r: &FileRef,
    old: &Option<Arc<Matcher>>,
    plan: &Plan,
) -> Option<Result<RefChange, String>> {
    let url = r.url.as_deref()?;
    let found = old.as_ref()?.find(url);
    let f = found.first().filter(|f| f.start == 0)?;
    if !matches!(f.origin, Origin::Old(_)) {
        return None;
    }
    let new = match plan.urls.url(&f.name) {
        Ok(u) => format!("{u}{}", &url[f.end..]),
        Err(why) => return Some(Err(why)),
    };
    let secret = plan.file_key.as_ref().map(|k| k.expose());
    Some(Ok(RefChange {
        class: r.class.clone(),
        id: r.id.clone(),
        path: r.path.clone(),
        file: r.name.clone(),
        old: RefValue::file(&r.name, Some(url), secret),
        new: RefValue::file(&r.name, Some(&new), None),
        origin: None,
        dangling: false,
        loc: None,
    }))
}

fn tally(state: &RunState, changes: &[RefChange], states: crate::engine::cas::Settled) {
    for (change, (s, error)) in changes.iter().zip(states) {
        let conflict = "changed since it was read (by the app); left alone";
        state.counters.settled(change, s, error, conflict);
    }
}

/// Distinct URLs `check` remembers so as not to ask twice (then it forgets them all: memory stays
/// bounded, at worst a URL is asked again).
const CHECK_MEMORY: usize = 10_000;

/// `rebase --check`: HEAD-request each current URL found in nested File urls and strings
/// (`current` looks for the current base only), up to `concurrency` at once, a page at a time;
/// logs each that does not answer 200 and returns how many did not.
pub async fn check(
    targets: &[Target],
    walker: Walkers<'_>,
    current: &Matcher,
    concurrency: usize,
) -> anyhow::Result<u64> {
    use futures::StreamExt;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut seen = HashSet::new();
    let mut bad = 0u64;
    for t in targets {
        let mut w = walker(t);
        while let Some(page) = w.next_page().await? {
            let mut urls = Vec::new();
            for r in &page.refs {
                let Some(url) = r.url.as_deref() else {
                    continue;
                };
                for f in current.find(url) {
                    if seen.len() >= CHECK_MEMORY {
                        seen.clear();
                    }
                    if f.origin == Origin::Current && seen.insert(f.url(url).to_string()) {
                        urls.push(f.url(url).to_string());
                    }
                }
            }
            let mut answers = futures::stream::iter(urls)
                .map(|u| {
                    let client = client.clone();
                    async move {
                        let r = client.head(&u).send().await;
                        (u, r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()))
                    }
                })
                .buffer_unordered(concurrency.max(1));
            while let Some((u, r)) = answers.next().await {
                let why = match r {
                    Ok(200) => continue,
                    Ok(code) => format!("HTTP {code}"),
                    Err(e) => e,
                };
                bad += 1;
                tracing::warn!(url = ?u, "does not answer 200: {why}");
            }
        }
    }
    Ok(bad)
}
