//! `schema`: classes, File fields, nested File paths and counts. Read-only.

use std::io::Write;

use mongodb::bson::RawDocumentBuf;

use crate::cli::SchemaArgs;
use crate::exit::OK;
use crate::parse::schema::collection_name;
use crate::report::output;
use crate::report::schema::{ClassReport, SchemaReport};
use crate::scan::log_issues;
use crate::session::{discover, explain_empty, next_page};
use crate::settings::Settings;

pub(super) async fn run(settings: &Settings, args: &SchemaArgs) -> anyhow::Result<i32> {
    let json = output::jsonl(args.out.output, "schema")?;
    let d = discover(settings, &args.filters).await?;
    let prefix = &settings.mongo.collection_prefix;
    let mut report = SchemaReport {
        database: d.database.clone(),
        collection_prefix: prefix.clone(),
        schema_collection: d.schema.schema_collection.clone(),
        schema_exists: d.schema.schema_exists,
        warnings: d
            .schema
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .collect(),
        ..Default::default()
    };
    // Classes with nothing to walk still show, with their size.
    for class in &d.schema.classes {
        if d.targets.iter().any(|t| t.class.name == class.name) {
            continue;
        }
        let collection = collection_name(prefix, &class.name);
        let objects =
            d.db.collection::<RawDocumentBuf>(&collection)
                .estimated_document_count()
                .await
                .unwrap_or(0);
        report.classes.push(ClassReport {
            class: class.name.clone(),
            collection,
            objects,
            ..Default::default()
        });
    }
    for target in &d.targets {
        let mut c = ClassReport {
            class: target.class.name.clone(),
            collection: target.collection.clone(),
            searched_fields: target.class.container_fields.clone(),
            ..Default::default()
        };
        for f in &target.class.file_fields {
            c.file_fields.insert(f.clone(), 0);
        }
        let mut walker = d.walker(target, settings);
        while let Some(page) = next_page(&mut walker, target).await? {
            c.objects += page.objects;
            for r in &page.refs {
                c.count(&r.path, r.nested(), r.kind().as_str());
            }
            c.issues += page.issues.len() as u64;
            log_issues(&page.issues);
        }
        report.total_references += c.references();
        report.classes.push(c);
    }
    report.classes.sort_by(|a, b| a.class.cmp(&b.class));
    if report.total_references == 0 {
        report.explanation = Some(explain_empty(&d, prefix));
    }
    output::write_report(args.out.report.as_deref(), &report)?;
    let mut out = crate::report::stdout::stdout();
    if json {
        report.write_json(&mut out)?;
    } else {
        report.write_table(&mut out)?;
    }
    out.flush()?;
    Ok(OK)
}
