//! Which collections and fields a command walks: the schema, narrowed by `--class`/`--field`,
//! plus Parse Config.

use crate::parse::schema::{AppSchema, ClassSchema, GLOBAL_CONFIG, collection_name};

/// One class to walk.
#[derive(Debug, Clone)]
pub struct Target {
    pub class: ClassSchema,
    /// `prefix + className`.
    pub collection: String,
    /// `--strings`: the String fields to search for file URLs, and the matcher (`None`
    /// otherwise).
    pub strings: Option<Strings>,
}

/// What `--strings` searches in one class.
#[derive(Debug, Clone)]
pub struct Strings {
    /// Top-level String fields (the strings of the container fields are searched too).
    pub fields: Vec<String>,
    pub matcher: std::sync::Arc<crate::parse::urls::Matcher>,
}

/// Narrowing from the command line.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these classes (empty: all).
    pub classes: Vec<String>,
    /// Only these fields: `field` or `Class.field` (empty: all).
    pub fields: Vec<String>,
    /// Search Object/Array fields and Parse Config.
    pub nested: bool,
}

impl Filter {
    fn class_ok(&self, class: &str) -> bool {
        self.classes.is_empty() || self.classes.iter().any(|c| c == class)
    }

    fn field_ok(&self, class: &str, field: &str) -> bool {
        self.fields.is_empty()
            || self.fields.iter().any(|f| match f.split_once('.') {
                Some((c, f)) => c == class && f == field,
                None => f == field,
            })
    }
}

/// The classes to walk, in schema order, then `_GlobalConfig` when it exists and nested search
/// is on. Classes without any candidate field after filtering are left out.
pub fn targets(
    schema: &AppSchema,
    prefix: &str,
    filter: &Filter,
    config_exists: bool,
) -> Vec<Target> {
    let mut out: Vec<Target> = schema
        .classes
        .iter()
        .filter(|c| filter.class_ok(&c.name))
        .map(|c| ClassSchema {
            name: c.name.clone(),
            file_fields: c
                .file_fields
                .iter()
                .filter(|f| filter.field_ok(&c.name, f))
                .cloned()
                .collect(),
            container_fields: if filter.nested {
                c.container_fields
                    .iter()
                    .filter(|f| filter.field_ok(&c.name, f))
                    .cloned()
                    .collect()
            } else {
                vec![]
            },
        })
        .filter(ClassSchema::has_candidates)
        .map(|class| Target {
            collection: collection_name(prefix, &class.name),
            class,
            strings: None,
        })
        .collect();
    if config_exists
        && filter.nested
        && filter.class_ok(GLOBAL_CONFIG)
        && filter.field_ok(GLOBAL_CONFIG, "params")
    {
        out.push(Target {
            class: ClassSchema {
                name: GLOBAL_CONFIG.to_string(),
                file_fields: vec![],
                container_fields: vec!["params".to_string()],
            },
            collection: collection_name(prefix, GLOBAL_CONFIG),
            strings: None,
        });
    }
    out
}

/// `--strings`: search every target's strings with `matcher`, and add the String fields (by
/// class, from [`super::strings::string_fields`]) that pass the filter to their class's target,
/// or as a target of their own.
pub fn add_strings(
    targets: &mut Vec<Target>,
    fields: &std::collections::BTreeMap<String, Vec<String>>,
    prefix: &str,
    filter: &Filter,
    matcher: std::sync::Arc<crate::parse::urls::Matcher>,
) {
    let none = |matcher: &std::sync::Arc<_>| Strings {
        fields: vec![],
        matcher: std::sync::Arc::clone(matcher),
    };
    for t in targets.iter_mut() {
        t.strings = Some(none(&matcher));
    }
    for (class, fields) in fields {
        if !filter.class_ok(class) {
            continue;
        }
        let fields: Vec<String> = fields
            .iter()
            .filter(|f| filter.field_ok(class, f))
            .cloned()
            .collect();
        if fields.is_empty() {
            continue;
        }
        let strings = Some(Strings {
            fields,
            matcher: matcher.clone(),
        });
        match targets.iter_mut().find(|t| &t.class.name == class) {
            Some(t) => t.strings = strings,
            None => targets.push(Target {
                class: ClassSchema {
                    name: class.clone(),
                    file_fields: vec![],
                    container_fields: vec![],
                },
                collection: collection_name(prefix, class),
                strings,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> AppSchema {
        AppSchema {
            schema_collection: "_SCHEMA".into(),
            schema_exists: true,
            classes: vec![
                ClassSchema {
                    name: "A".into(),
                    file_fields: vec!["f".into(), "g".into()],
                    container_fields: vec!["o".into()],
                },
                ClassSchema {
                    name: "B".into(),
                    file_fields: vec![],
                    container_fields: vec![],
                },
            ],
            warnings: vec![],
        }
    }

    #[test]
    fn filters_and_config() {
        let all = targets(
            &schema(),
            "p_",
            &Filter {
                nested: true,
                ..Default::default()
            },
            true,
        );
        let names: Vec<_> = all.iter().map(|t| t.collection.as_str()).collect();
        assert_eq!(names, vec!["p_A", "p__GlobalConfig"]);
        let f = Filter {
            fields: vec!["A.g".into()],
            nested: true,
            ..Default::default()
        };
        let t = targets(&schema(), "", &f, true);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].class.file_fields, vec!["g"]);
        assert!(t[0].class.container_fields.is_empty());
        let t = targets(&schema(), "", &Filter::default(), true);
        assert_eq!(t.len(), 1, "no nested: no config, no containers");
        assert!(t[0].class.container_fields.is_empty());
    }
}
