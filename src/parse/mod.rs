//! Parse knowledge: how Parse Server and hosted Parse name, store and address files.
//!
//! Nothing here does I/O except [`schema`], which reads `_SCHEMA`. The rules are quoted from Parse
//! Server's source in `shared/docs/parse-file-storage.md`; each function says which rule it encodes.

pub mod layout;
pub mod names;
pub mod schema;
pub mod urls;
