//! Reading the ledger in tests, through the crate's own typed reader (the records are entries of
//! batch documents: a test that counted raw documents would count batches).

use mongodb::Database;
use parse_files_migrate::ledger::{FileRecord, Ledger, RefRecord, RefState};

/// The app's ledger under the default collection name.
pub fn of(db: &Database) -> Ledger {
    Ledger::new(db.clone(), "_FileMigration")
}

/// The current record of file `name`.
pub async fn file(db: &Database, name: &str) -> Option<FileRecord> {
    of(db).lookup(&[name]).await.unwrap().remove(name)
}

/// How many files the ledger holds in `state` (`verified`, `missing`, …).
pub async fn files_in(db: &Database, state: &str) -> u64 {
    let st = of(db).status(0).await.unwrap();
    st.files
        .iter()
        .filter(|c| c.state == state)
        .map(|c| c.files)
        .sum()
}

/// How many references the ledger holds in `state`, over every class (all states: `None`).
pub async fn refs_in(db: &Database, state: Option<&str>) -> u64 {
    let st = of(db).status(0).await.unwrap();
    st.references
        .iter()
        .filter(|c| state.is_none_or(|s| c.state == s))
        .map(|c| c.references)
        .sum()
}

/// The current record of the reference at `class`/`id`/`path` (an `_id` string).
pub async fn reference(db: &Database, class: &str, id: &str, path: &str) -> Option<RefRecord> {
    let ledger = of(db);
    let mut after = None;
    loop {
        let page = ledger
            .refs_page(&RefState::ALL, after.as_ref(), false)
            .await
            .unwrap();
        let found = page.records.into_iter().map(Result::unwrap).find(|r| {
            r.change.class == class && r.change.id.as_str() == Some(id) && r.change.path == path
        });
        if found.is_some() {
            return found;
        }
        after = Some(page.next?);
    }
}
