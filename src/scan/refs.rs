//! Every reference of every target, one page at a time: the walk `list`, `audit` and the
//! quarantine's orphan checks share (the migration pipeline walks with its own checkpointed
//! planner instead).

use anyhow::Context;
use mongodb::Database;

use super::{ClassWalker, FileRef, Page, Target, WalkOptions};

/// A walker over one target, `page_size` documents per page, with the target's string search.
pub fn walker(db: &Database, target: &Target, page_size: u32) -> ClassWalker {
    let w = ClassWalker::new(
        db.collection(&target.collection),
        target.class.clone(),
        WalkOptions {
            page_size,
            nested: true,
        },
    );
    match &target.strings {
        Some(s) => w.with_strings(&s.fields, s.matcher.clone()),
        None => w,
    }
}

/// The next page of a walk, with the collection named in any error.
pub async fn next_page(walker: &mut ClassWalker, target: &Target) -> anyhow::Result<Option<Page>> {
    walker
        .next_page()
        .await
        .with_context(|| format!("walking {}", target.collection))
}

/// Walk every target in turn and hand each reference to `each`; malformed values are logged.
/// Returns how many malformed values there were.
pub async fn for_each_ref(
    db: &Database,
    targets: &[Target],
    page_size: u32,
    mut each: impl FnMut(&FileRef) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut issues = 0;
    for target in targets {
        let mut w = walker(db, target, page_size);
        while let Some(page) = next_page(&mut w, target).await? {
            super::log_issues(&page.issues);
            issues += page.issues.len() as u64;
            for r in &page.refs {
                each(r)?;
            }
        }
    }
    Ok(issues)
}
