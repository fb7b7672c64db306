//! Rewriting file URLs inside strings (`migrate --strings`, `rebase`), a whole string at a time.
//!
//! Runs after the copies: the pipeline copies the files named in strings like any other
//! reference (deduplicated with them) but leaves the strings alone; this pass then walks the
//! strings again and, per string, replaces every URL whose file has a new home by the file's
//! new URL ([`UrlBase`](super::UrlBase): `<public_server_url>/files/<app_id>/<encoded name>` or
//! `file_url_template`), leaving every other byte as it was. The string is written with one
//! compare-and-swap on its whole old value ([`crate::engine::cas`]): an app that changed the text
//! meanwhile gets a conflict, never a lost edit. The ledger keeps the old string (the fileKey
//! taken out, put back by `rollback`), so `rollback` restores it byte for byte.
//!
//! Which URLs change ([`Resolve`]): for `migrate`, those whose file the ledger records as
//! verified at this destination (or, in a dry run, that the run would copy); a URL to a file
//! missing at the source is left untouched and reported. For `rebase`, the URLs of an old base
//! (`[rebase] from`), whatever their file. Memory: one batch of strings.

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, RawDocumentBuf, doc};

use super::Plan;
use crate::engine::summary::RefItem;
use crate::engine::{Counters, Effects, RunState};
use crate::ledger::{FileRecord, FileState, Ledger, RefChange, RefValue};
use crate::parse::names::{NameKind, target_name};
use crate::parse::urls::{Found, Origin};
use crate::scan::Target;
use crate::scan::strings::{Text, texts};

/// Strings rewritten per round trip.
const BATCH: usize = 256;

/// Which URLs a pass moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// To the copies the migration made (`dry`: those it would make).
    Migrate { dry: bool },
    /// From an old base to the current one.
    Rebase,
}

/// What happens to one URL.
#[derive(Debug, PartialEq)]
enum Step {
    /// Replace it with this URL.
    To(String),
    /// It already points where it should, or is not this pass's business.
    Keep,
    /// Left as it is, and said why (a file missing at the source, not copied…).
    Left(String),
}

/// One pass over the strings of `targets`.
pub struct Pass<'a> {
    pub plan: &'a Plan,
    pub ledger: &'a Ledger,
    pub db: &'a Database,
    pub state: &'a RunState,
    pub resolve: Resolve,
}

impl Pass<'_> {
    pub async fn run(&self, effects: &dyn Effects, targets: &[Target]) -> anyhow::Result<()> {
        for t in targets {
            let Some(s) = &t.strings else { continue };
            let containers = &t.class.container_fields;
            if s.fields.is_empty() && containers.is_empty() {
                continue;
            }
            let mut projection = doc! {"_id": 1};
            for f in s.fields.iter().chain(containers) {
                projection.insert(f.clone(), 1);
            }
            let mut cursor = self
                .db
                .collection::<RawDocumentBuf>(&t.collection)
                .find(doc! {})
                .projection(projection)
                // One cursor in `_id` order (as the walk): a string rewritten meanwhile, and so
                // grown, is never met twice or skipped.
                .sort(doc! {"_id": 1})
                .batch_size(self.plan.page_size)
                .await?;
            let mut batch: Vec<(Bson, Text)> = Vec::new();
            while let Some(raw) = cursor.try_next().await? {
                if self.state.is_interrupted() {
                    return Ok(());
                }
                let id: Bson = match raw.get("_id") {
                    Ok(Some(v)) => v.to_raw_bson().try_into().unwrap_or(Bson::Null),
                    _ => Bson::Null,
                };
                let found = texts(
                    &raw,
                    &s.fields,
                    containers,
                    &s.matcher,
                    |path, problem| tracing::warn!(class = %t.class.name, path, "{problem}"),
                );
                batch.extend(found.into_iter().map(|x| (id.clone(), x)));
                if batch.len() >= BATCH {
                    self.flush(effects, t, std::mem::take(&mut batch)).await?;
                }
            }
            self.flush(effects, t, batch).await?;
        }
        Ok(())
    }

    async fn flush(
        &self,
        effects: &dyn Effects,
        target: &Target,
        batch: Vec<(Bson, Text)>,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let c = &self.state.counters;
        let names: BTreeSet<&str> = batch
            .iter()
            .flat_map(|(_, t)| t.found.iter().map(|f| f.name.as_str()))
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        let (known, written) = match self.resolve {
            Resolve::Migrate { .. } => (
                self.ledger.lookup(&names).await?,
                self.ledger.by_target(&names).await?,
            ),
            Resolve::Rebase => Default::default(),
        };
        let secret = self.plan.file_key.as_ref().map(|k| k.expose());
        let mut changes = Vec::new();
        for (id, t) in &batch {
            let item = |reason: String| RefItem {
                class: target.class.name.clone(),
                object_id: crate::scan::id_string(id),
                path: t.path.clone(),
                name: String::new(),
                reason,
            };
            let (new, files) = rewrite(
                t,
                |f| self.step(f, &known, &written),
                |f, why| {
                    Counters::add(&c.refs_left, 1);
                    tracing::warn!(class = %target.class.name, object_id = %crate::scan::id_string(id),
                    path = %t.path, file = %f.name, "URL in a string left as it is: {why}");
                },
            );
            if files.is_empty() {
                Counters::add(&c.refs_unchanged, 1);
                continue;
            }
            let names = files.join(", ");
            match (
                RefValue::text(names.clone(), &t.text, secret),
                RefValue::text(names, &new, secret),
            ) {
                (Ok(old), Ok(new)) => changes.push(RefChange {
                    class: target.class.name.clone(),
                    id: id.clone(),
                    path: t.path.clone(),
                    file: files[0].clone(),
                    old,
                    new,
                    origin: None,
                    dangling: false,
                    loc: None,
                }),
                (Err(why), _) | (_, Err(why)) => {
                    Counters::add(&c.refs_failed, 1);
                    c.failed_reference(item(why));
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let states = effects.rewrite(&target.collection, &changes).await?;
        let conflict = "the string changed since it was read (edited by the app); left alone";
        for (change, (state, error)) in changes.iter().zip(states) {
            c.settled(change, state, error, conflict);
        }
        Ok(())
    }

    /// What happens to one URL.
    fn step(
        &self,
        f: &Found,
        known: &HashMap<String, FileRecord>,
        written: &HashMap<String, FileRecord>,
    ) -> Step {
        let plan = self.plan;
        let url = |name: &str| match plan.urls.url(name) {
            Ok(u) => Step::To(u),
            Err(why) => Step::Left(why),
        };
        let here = |r: &FileRecord| {
            r.destination
                .as_deref()
                .is_none_or(|d| plan.destination.names(d))
        };
        match self.resolve {
            Resolve::Rebase => match f.origin {
                Origin::Old(_) => url(&f.name),
                _ => Step::Keep,
            },
            Resolve::Migrate { dry } => {
                if let Some(r) = known.get(&f.name) {
                    match r.state {
                        FileState::Verified if here(r) => return url(&r.target),
                        FileState::Missing => {
                            return Step::Left(format!(
                                "the file is missing at the source ({})",
                                r.error.as_deref().unwrap_or("not found")
                            ));
                        }
                        FileState::Failed => {
                            return Step::Left(format!(
                                "the file's copy failed ({})",
                                r.error.as_deref().unwrap_or("")
                            ));
                        }
                        _ => {}
                    }
                }
                if written.get(&f.name).is_some_and(here) {
                    return url(&f.name);
                }
                let kind = NameKind::of(&f.name);
                let selected = plan.select.includes(kind)
                    && plan
                        .shard
                        .is_none_or(|s| super::plan::shard_of(&f.name, s.count) == s.index);
                // A relayout's new names are decided by the run itself: a dry run cannot say them
                // here (its plan lists each copy with its new name).
                if dry && selected && plan.layout.is_none() {
                    return url(&target_name(&f.name, plan.rename));
                }
                match f.origin {
                    Origin::Hosted => Step::Left("the file was not copied".into()),
                    _ => Step::Keep,
                }
            }
        }
    }
}

/// The string with every URL that `step` moves replaced (every other byte kept), and the names
/// of the files whose URLs changed (empty: nothing to write). `left` hears of URLs left alone.
fn rewrite(
    t: &Text,
    mut step: impl FnMut(&Found) -> Step,
    mut left: impl FnMut(&Found, &str),
) -> (String, Vec<String>) {
    let mut out = String::with_capacity(t.text.len());
    let mut files = Vec::new();
    let mut at = 0;
    for f in &t.found {
        match step(f) {
            Step::To(url) if url != f.url(&t.text) => {
                out.push_str(&t.text[at..f.start]);
                out.push_str(&url);
                at = f.end;
                if !files.contains(&f.name) {
                    files.push(f.name.clone());
                }
            }
            Step::To(_) | Step::Keep => {}
            Step::Left(why) => left(f, &why),
        }
    }
    out.push_str(&t.text[at..]);
    (out, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::urls::Matcher;

    #[test]
    fn only_moved_urls_change_and_every_other_byte_stays() {
        let text = "<p>a <img src=\"http://files.parsetfss.com/K/tfss-1-a%20b.jpg?x=1\"> \
                    https://example.org/x.jpg \u{e9} http://files.parse.com/K/missing.png \
                    http://files.parsetfss.com/K/tfss-1-a%20b.jpg.</p>";
        let t = Text {
            path: "body".into(),
            text: text.into(),
            found: Matcher::new(true).find(text),
        };
        assert_eq!(t.found.len(), 3);
        let mut left = vec![];
        let (new, files) = rewrite(
            &t,
            |f| match f.name.as_str() {
                "tfss-1-a b.jpg" => Step::To("https://new/files/app/h_a%20b.jpg".into()),
                _ => Step::Left("missing".into()),
            },
            |f, why| left.push((f.name.clone(), why.to_string())),
        );
        assert_eq!(
            new,
            "<p>a <img src=\"https://new/files/app/h_a%20b.jpg?x=1\"> \
             https://example.org/x.jpg \u{e9} http://files.parse.com/K/missing.png \
             https://new/files/app/h_a%20b.jpg.</p>"
        );
        assert_eq!(files, vec!["tfss-1-a b.jpg"]);
        assert_eq!(left, vec![("missing.png".into(), "missing".into())]);
        let (same, files) = rewrite(&t, |_| Step::Keep, |_, _| {});
        assert_eq!(same, text);
        assert!(files.is_empty());
    }
}
