//! Discovery shared by every command that walks the app: connect, read `_SCHEMA`, decide what to
//! walk.

use anyhow::Context;
use mongodb::Database;

use crate::cli::Filters;
use crate::parse::schema::{self, AppSchema, GLOBAL_CONFIG, collection_name};
use crate::scan::{self, ClassWalker, Filter, Target};
use crate::settings::Settings;

pub(crate) struct Discovery {
    pub db: Database,
    pub database: String,
    pub schema: AppSchema,
    pub targets: Vec<Target>,
    /// Every collection name in the database (for explanations).
    pub collections: Vec<String>,
    /// The targets of the other Parse apps in this database (other `collectionPrefix`es), found
    /// only for destructive steps ([`discover_everything`]): their references protect files of a
    /// store the apps may share.
    pub other_apps: Vec<Target>,
}

pub(crate) async fn discover(settings: &Settings, filters: &Filters) -> anyhow::Result<Discovery> {
    discover_with(settings, filters, settings.run.nested).await
}

/// What a destructive step must know about: every class, nested Files, Parse Config and the
/// URLs inside String fields, whatever the filters and `[scan] strings` say (a reference left
/// out would make its file look unreferenced). Warns when URLs of the app's own server cannot
/// be recognised in strings (no `public_server_url` and `app_id`, and no `file_url_template`).
pub(crate) async fn discover_everything(settings: &Settings) -> anyhow::Result<Discovery> {
    let p = &settings.parse;
    if (p.public_server_url.is_none() || p.app_id.is_none()) && p.file_url_template.is_none() {
        tracing::warn!(
            "parse.public_server_url and parse.app_id are not set (nor parse.file_url_template): \
             file URLs of your server inside String fields cannot be recognised, so a file named \
             only that way counts as unreferenced"
        );
    }
    let everything = Filters {
        strings: true,
        ..Filters::default()
    };
    let mut d = discover_with(settings, &everything, true).await?;
    // Other Parse apps in this database (`collectionPrefix`) may share the store (GridFS's `fs`
    // bucket is never prefixed): their references count too.
    let own = collection_name(&settings.mongo.collection_prefix, "_SCHEMA");
    let others: Vec<String> = d
        .collections
        .iter()
        .filter(|c| c.ends_with("_SCHEMA") && **c != own)
        .map(|c| c.trim_end_matches("_SCHEMA").to_string())
        .collect();
    for prefix in &others {
        let schema = schema::load(&d.db, prefix)
            .await
            .with_context(|| format!("reading {}", collection_name(prefix, "_SCHEMA")))?;
        let config = d
            .collections
            .iter()
            .any(|c| c == &collection_name(prefix, GLOBAL_CONFIG));
        let filter = Filter {
            classes: Vec::new(),
            fields: Vec::new(),
            nested: true,
        };
        let mut targets = scan::targets(&schema, prefix, &filter, config);
        let fields = scan::strings::string_fields(&d.db, prefix).await?;
        let matcher = std::sync::Arc::new(settings.url_matcher(true, true)?);
        scan::add_strings(&mut targets, &fields, prefix, &filter, matcher);
        tracing::warn!(
            "the database also holds the Parse app with collection prefix {prefix:?}: its \
             references count too ({} classes)",
            targets.len()
        );
        d.other_apps.extend(targets);
    }
    Ok(d)
}

/// [`discover`], searching nested Files when `nested` (whatever `[run] nested` says) unless
/// `--no-nested`.
pub(crate) async fn discover_with(
    settings: &Settings,
    filters: &Filters,
    nested: bool,
) -> anyhow::Result<Discovery> {
    let (uri, database) = settings.mongo_target()?;
    let (_client, db) = crate::db::connect(uri, database).await?;
    let prefix = &settings.mongo.collection_prefix;
    let schema = schema::load(&db, prefix)
        .await
        .with_context(|| format!("reading {}", collection_name(prefix, "_SCHEMA")))?;
    for w in &schema.warnings {
        tracing::warn!(
            class = w.class.as_deref().unwrap_or(""),
            "_SCHEMA: {}",
            w.message
        );
    }
    let collections = db
        .list_collection_names()
        .await
        .context("listing collections")?;
    let config_exists = collections
        .iter()
        .any(|c| c == &collection_name(prefix, GLOBAL_CONFIG));
    let filter = Filter {
        classes: filters.classes.clone(),
        fields: filters.fields.clone(),
        nested: nested && !filters.no_nested,
    };
    for c in &filter.classes {
        if c != GLOBAL_CONFIG && !schema.classes.iter().any(|s| &s.name == c) {
            tracing::warn!("--class {c}: no such class in {}", schema.schema_collection);
        }
    }
    let mut targets = scan::targets(&schema, prefix, &filter, config_exists);
    if filters.strings || settings.scan.strings {
        let fields = scan::strings::string_fields(&db, prefix)
            .await
            .with_context(|| format!("reading {}", collection_name(prefix, "_SCHEMA")))?;
        let matcher = std::sync::Arc::new(settings.url_matcher(true, true)?);
        scan::add_strings(&mut targets, &fields, prefix, &filter, matcher);
    }
    Ok(Discovery {
        db,
        database: database.to_string(),
        schema,
        targets,
        collections,
        other_apps: Vec::new(),
    })
}

impl Discovery {
    /// About how many objects the walk will read (the servers' estimates; for the progress
    /// display only).
    pub(crate) async fn estimated_objects(&self) -> u64 {
        let mut total = 0;
        for t in &self.targets {
            let coll = self.db.collection::<mongodb::bson::Document>(&t.collection);
            total += coll.estimated_document_count().await.unwrap_or(0);
        }
        total
    }

    /// A walker over one target, with the configured page size.
    pub(crate) fn walker(&self, target: &Target, settings: &Settings) -> ClassWalker {
        scan::refs::walker(&self.db, target, settings.mongo.page_size)
    }
}

impl Discovery {
    /// Walk every target in turn and hand each reference to `each` ([`scan::refs::for_each_ref`]).
    /// Returns how many malformed values there were. (`list`, `audit`.)
    pub(crate) async fn for_each_ref(
        &self,
        settings: &Settings,
        each: impl FnMut(&crate::scan::FileRef) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        scan::refs::for_each_ref(&self.db, &self.targets, settings.mongo.page_size, each).await
    }
}

pub(crate) use scan::refs::next_page;

/// Why nothing was found, with what to try.
pub(crate) fn explain_empty(d: &Discovery, prefix: &str) -> String {
    if !d.schema.schema_exists {
        let candidates: Vec<&String> = d
            .collections
            .iter()
            .filter(|c| c.ends_with("_SCHEMA"))
            .collect();
        let mut msg = format!(
            "no collection {:?} in database {:?}, so no File fields are known.",
            d.schema.schema_collection, d.database
        );
        if candidates.is_empty() {
            msg.push_str(&format!(
                " The database has {} collections and none ends in _SCHEMA: is this the Parse app's database?",
                d.collections.len()
            ));
        } else {
            let hints: Vec<String> = candidates
                .iter()
                .map(|c| format!("--collection-prefix {:?}", c.trim_end_matches("_SCHEMA")))
                .collect();
            msg.push_str(&format!(
                " Found {}: try {}.",
                candidates
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                hints.join(" or ")
            ));
        }
        return msg;
    }
    if d.targets.is_empty() {
        return format!(
            "{} has {} classes but none has a File field (or an Object/Array field to search) \
             matching the filters{}.",
            d.schema.schema_collection,
            d.schema.classes.len(),
            if prefix.is_empty() {
                ""
            } else {
                " (with the prefix)"
            }
        );
    }
    "the File fields exist, but no object holds a file in them.".to_string()
}
