//! What a `[source.*]` / `[destination]` table of the configuration says, and opening the store
//! it describes. The one place that knows every backend by name; the contract ([`super`]) does
//! not.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ObjectStore, StorageError, fs, gcs, gridfs, http, s3};

/// Whether a GridFS or FS store encrypts what it writes, the way Parse Server's adapters do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// Encrypt with `encryption_key` if set, else with `parse.file_key` (Parse Server's default
    /// GridFS adapter encrypts with `fileKey` since 4.3.0).
    FileKey,
    /// Store plaintext.
    None,
}

/// The `[source.*]` / `[destination]` table of the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    Http(http::HttpConfig),
    Gridfs(gridfs::GridFsConfig),
    Fs(fs::FsConfig),
    S3(s3::S3Config),
    Gcs(gcs::GcsConfig),
}

impl StoreConfig {
    /// The table with what its own keys imply filled in (an S3 `provider`'s preset), as the store
    /// will use it; settings resolution applies it so `--show-settings` prints effective values.
    pub fn resolved(self) -> Result<StoreConfig, String> {
        Ok(match self {
            StoreConfig::S3(c) => StoreConfig::S3(c.resolved()?),
            other => other,
        })
    }

    /// Why the listing of this store may hold objects that are not this app's, for the object
    /// stores whose `prefix` is empty or does not end in `/` (`bucketPrefix` is plain
    /// concatenation: `app` also lists `appstaging/…`); `None` otherwise.
    pub fn shared_prefix(&self) -> Option<String> {
        let prefix = match self {
            StoreConfig::S3(c) => c.prefix.as_deref(),
            StoreConfig::Gcs(c) => c.prefix.as_deref(),
            _ => return None,
        }
        .unwrap_or("");
        if prefix.is_empty() {
            Some("its prefix is empty (the whole bucket)".to_string())
        } else if !prefix.ends_with('/') {
            Some(format!(
                "its prefix {prefix:?} does not end in `/` (it also lists `{prefix}…` keys of \
                 other folders)"
            ))
        } else {
            None
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            StoreConfig::Http(_) => "http",
            StoreConfig::Gridfs(_) => "gridfs",
            StoreConfig::Fs(_) => "fs",
            StoreConfig::S3(_) => "s3",
            StoreConfig::Gcs(_) => "gcs",
        }
    }
}

/// Settings from outside a store's own table that a store may need.
#[derive(Debug, Clone, Default)]
pub struct StoreContext {
    /// The app's MongoDB URI (GridFS default).
    pub mongo_uri: Option<crate::secret::Secret>,
    /// The app's database name (GridFS default when the URI names none).
    pub database: Option<String>,
    /// Parse `fileKey`: the legacy URL segment, and the default encryption key.
    pub file_key: Option<crate::secret::Secret>,
    /// Parse application id (for `/files/<appId>/<name>` URLs).
    pub app_id: Option<String>,
}

/// Build the store a configuration table describes. Does no I/O beyond building clients; call
/// [`ObjectStore::check`] to test reachability.
pub async fn open(
    cfg: &StoreConfig,
    ctx: &StoreContext,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Ok(match cfg {
        StoreConfig::Http(c) => Arc::new(http::HttpStore::new(c, ctx)?),
        StoreConfig::Gridfs(c) => Arc::new(gridfs::GridFsStore::new(c, ctx).await?),
        StoreConfig::Fs(c) => Arc::new(fs::FsStore::new(c, ctx)?),
        StoreConfig::S3(c) => Arc::new(s3::S3Store::new(c, ctx).await?),
        StoreConfig::Gcs(c) => Arc::new(gcs::GcsStore::new(c, ctx).await?),
    })
}

#[cfg(test)]
mod shared_prefix_tests {
    use super::StoreConfig;

    fn s3(prefix: Option<&str>) -> StoreConfig {
        let mut t = String::from("type = \"s3\"\nbucket = \"b\"\n");
        if let Some(p) = prefix {
            t.push_str(&format!("prefix = \"{p}\"\n"));
        }
        toml::from_str(&t).unwrap()
    }

    #[test]
    fn object_store_prefixes_that_may_list_other_apps_files_are_named() {
        assert!(s3(None).shared_prefix().unwrap().contains("empty"));
        assert!(s3(Some("")).shared_prefix().unwrap().contains("empty"));
        assert!(s3(Some("app")).shared_prefix().unwrap().contains("`app…`"));
        assert_eq!(s3(Some("app/")).shared_prefix(), None);
        let fs: StoreConfig = toml::from_str("type = \"fs\"\npath = \"/x\"\n").unwrap();
        assert_eq!(fs.shared_prefix(), None);
    }
}
