//! Reading the app's schema from `<collectionPrefix>_SCHEMA`, the way Parse Server's
//! `MongoSchemaCollection` does.
//!
//! A `_SCHEMA` document is `{ _id: <className>, <field>: <type string>, _metadata: {...} }`. We keep,
//! per class, the fields of type `file` (top-level Files, stored as bare names) and the fields of
//! type `object`/`map`/`array` (where nested `{__type:"File"}` values can hide). Anything we
//! cannot read — a non-string `_id`, a non-string type — becomes a [`SchemaWarning`], never an
//! error: one bad schema document must not stop a migration of the others.

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document};
use serde::Serialize;

/// Keys of a `_SCHEMA` document that are not fields (`MongoSchemaCollection.nonFieldSchemaKeys`).
const NON_FIELD_KEYS: &[&str] = &["_id", "_metadata", "_client_permissions"];

/// Classes whose schema Parse Server hard-codes and ignores in `_SCHEMA`
/// (`SchemaController.volatileClasses`). `_GlobalConfig` is scanned separately.
pub const VOLATILE_CLASSES: &[&str] = &[
    "_JobStatus",
    "_PushStatus",
    "_Hooks",
    "_GlobalConfig",
    "_GraphQLConfig",
    "_JobSchedule",
    "_Audience",
    "_Idempotency",
];

/// Parse Config's class: one document, integer `_id` 1, Files anywhere inside `params`.
pub const GLOBAL_CONFIG: &str = "_GlobalConfig";

/// One class and where its Files can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassSchema {
    pub name: String,
    /// Top-level fields of type `file`.
    pub file_fields: Vec<String>,
    /// Fields of type `object`, `map` or `array`: searched for nested Files.
    pub container_fields: Vec<String>,
}

impl ClassSchema {
    /// Whether any field of this class can hold a File.
    pub fn has_candidates(&self) -> bool {
        !self.file_fields.is_empty() || !self.container_fields.is_empty()
    }
}

/// Something odd in `_SCHEMA` that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaWarning {
    pub class: Option<String>,
    pub message: String,
}

/// The app's schema as far as files are concerned.
#[derive(Debug, Clone, Serialize)]
pub struct AppSchema {
    /// The collection that was read, e.g. `test__SCHEMA`.
    pub schema_collection: String,
    /// Whether that collection exists at all.
    pub schema_exists: bool,
    /// Every class found, sorted by name (including classes without File candidates).
    pub classes: Vec<ClassSchema>,
    pub warnings: Vec<SchemaWarning>,
}

/// The raw collection name for a class: `prefix + className` (also for `_SCHEMA`).
pub fn collection_name(prefix: &str, class: &str) -> String {
    format!("{prefix}{class}")
}

/// Read and interpret `<prefix>_SCHEMA`.
pub async fn load(db: &Database, prefix: &str) -> mongodb::error::Result<AppSchema> {
    let schema_collection = collection_name(prefix, "_SCHEMA");
    let names = db.list_collection_names().await?;
    let schema_exists = names.iter().any(|n| n == &schema_collection);
    let mut classes = Vec::new();
    let mut warnings = Vec::new();
    if schema_exists {
        let mut cursor = db
            .collection::<Document>(&schema_collection)
            .find(mongodb::bson::doc! {})
            .await?;
        while let Some(doc) = cursor.try_next().await? {
            match interpret(&doc) {
                Ok(i) => {
                    classes.extend(i.class);
                    warnings.extend(i.warning);
                }
                Err(w) => warnings.push(w),
            }
        }
    }
    // Parse Server injects `_Product.download` and `_Product.icon` as File columns at read time
    // (`SchemaController.injectDefaultSchema`); `_SCHEMA` itself may not list them.
    let product = collection_name(prefix, "_Product");
    if let Some(p) = classes.iter_mut().find(|c| c.name == "_Product") {
        for f in ["download", "icon"] {
            if !p.file_fields.iter().any(|x| x == f) {
                p.file_fields.push(f.to_string());
            }
        }
    } else if names.iter().any(|n| n == &product) {
        classes.push(ClassSchema {
            name: "_Product".into(),
            file_fields: vec!["download".into(), "icon".into()],
            container_fields: vec![],
        });
    }
    classes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(AppSchema {
        schema_collection,
        schema_exists,
        classes,
        warnings,
    })
}

/// What one `_SCHEMA` document says: its class (none for classes Parse Server ignores there), and
/// a warning about fields that could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Interpreted {
    pub class: Option<ClassSchema>,
    pub warning: Option<SchemaWarning>,
}

/// Interpret one `_SCHEMA` document; `Err` when it is not a class document at all.
pub fn interpret(doc: &Document) -> Result<Interpreted, SchemaWarning> {
    let name = match doc.get("_id") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        other => {
            return Err(SchemaWarning {
                class: None,
                message: format!(
                    "skipped a _SCHEMA document whose _id is not a class name: {}",
                    describe_bson(other)
                ),
            });
        }
    };
    if VOLATILE_CLASSES.contains(&name.as_str()) {
        return Ok(Interpreted {
            class: None,
            warning: None,
        });
    }
    let mut class = ClassSchema {
        name: name.clone(),
        file_fields: vec![],
        container_fields: vec![],
    };
    let mut bad = Vec::new();
    for (key, value) in doc {
        if NON_FIELD_KEYS.contains(&key.as_str()) {
            continue;
        }
        match value {
            Bson::String(t) => match t.as_str() {
                "file" => class.file_fields.push(key.clone()),
                "object" | "map" | "array" => class.container_fields.push(key.clone()),
                _ => {}
            },
            // Parse Server's own format is a type string; hosted-era or hand-edited documents may
            // hold `{type: "File"}` objects. Accept those too rather than miss Files.
            Bson::Document(d) => match d.get_str("type") {
                Ok("File") | Ok("file") => class.file_fields.push(key.clone()),
                Ok("Object") | Ok("Array") | Ok("object") | Ok("array") => {
                    class.container_fields.push(key.clone())
                }
                Ok(_) => {}
                Err(_) => bad.push(key.clone()),
            },
            _ => bad.push(key.clone()),
        }
    }
    let warning = (!bad.is_empty()).then(|| SchemaWarning {
        class: Some(name),
        message: format!("fields with unreadable types skipped: {}", bad.join(", ")),
    });
    Ok(Interpreted {
        class: Some(class),
        warning,
    })
}

fn describe_bson(v: Option<&Bson>) -> String {
    match v {
        None => "missing".into(),
        Some(b) => format!("{:?}", b.element_type()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn reads_parse_server_schema_documents() {
        let d = doc! {
            "_id": "GameScore", "objectId": "string", "createdAt": "date", "photo": "file",
            "owner": "*_User", "likes": "relation<_User>", "meta": "object", "gallery": "array",
            "legacyMap": "map", "_metadata": {"class_permissions": {}}
        };
        let c = interpret(&d).unwrap().class.unwrap();
        assert_eq!(c.file_fields, vec!["photo"]);
        assert_eq!(c.container_fields, vec!["meta", "gallery", "legacyMap"]);
    }

    #[test]
    fn volatile_and_junk() {
        let g = interpret(&doc! {"_id": "_GlobalConfig", "params": "object"}).unwrap();
        assert_eq!(g.class, None);
        assert!(interpret(&doc! {"_id": 5, "a": "file"}).is_err());
        assert!(interpret(&doc! {"a": "file"}).is_err());
        let i = interpret(&doc! {"_id": "X", "a": 3, "b": "file", "c": {"type": "File"}}).unwrap();
        assert_eq!(i.class.unwrap().file_fields, vec!["b", "c"]);
        assert!(i.warning.unwrap().message.contains("a"));
        let i = interpret(&doc! {"_id": "Y", "a": 3, "b": Bson::Null}).unwrap();
        assert!(!i.class.unwrap().has_candidates());
        assert!(i.warning.unwrap().message.contains("a, b"));
    }
}
