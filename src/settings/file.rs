//! The configuration file as written: every table and key, all optional, unknown keys refused.

use std::path::Path;

use serde::Deserialize;

use crate::cli::{LogFormat, ProgressMode};
use crate::exit::usage;
use crate::parse::names::{RenamePolicy, Selection};
use crate::secret::Secret;
use crate::storage::StoreConfig;

/// The configuration file, as written. Unknown keys are errors (a typo must not be ignored on a
/// production migration).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub mongo: MongoFile,
    #[serde(default)]
    pub parse: ParseFile,
    #[serde(default)]
    pub source: SourceFile,
    pub destination: Option<StoreConfig>,
    #[serde(default)]
    pub ledger: LedgerFile,
    #[serde(default)]
    pub run: RunFile,
    #[serde(default)]
    pub output: OutputFile,
    #[serde(default)]
    pub scan: ScanFile,
    #[serde(default)]
    pub rebase: RebaseFile,
    #[serde(default)]
    pub rekey: RekeyFile,
    #[serde(default)]
    pub hooks: HooksFile,
    #[serde(default)]
    pub serve: ServeFile,
}

/// `[hooks]`: shell commands run at a writing run's events (`crate::hooks`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksFile {
    pub before: Option<String>,
    pub before_phase: Option<String>,
    pub after_phase: Option<String>,
    pub on_error: Option<String>,
    pub after: Option<String>,
    /// How long a hook may run, e.g. `5m`.
    pub timeout: Option<String>,
    pub in_dry_run: Option<bool>,
}

/// `[serve]`: the read-through gateway (`serve`'s flags win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub metrics_listen: Option<String>,
    pub max_copies: Option<usize>,
    pub wait_secs: Option<u64>,
    pub stream_above: Option<String>,
}

/// `[scan]`: what discovery searches besides File fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanFile {
    /// Search String fields (and strings in Object/Array fields) for file URLs.
    pub strings: Option<bool>,
}

/// `[rebase]`: old URL bases of the app's files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebaseFile {
    /// Old server URLs (`<from>/files/<app_id>/<name>`) or old templates with `{name}`.
    #[serde(default)]
    pub from: Vec<String>,
}

/// `[rekey]`: the key `rekey` rotates to (the environment's `PFM_NEW_FILE_KEY` wins).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyFile {
    pub new_key: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoFile {
    pub uri: Option<Secret>,
    pub database: Option<String>,
    pub collection_prefix: Option<String>,
    pub page_size: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseFile {
    pub app_id: Option<String>,
    pub file_key: Option<Secret>,
    pub public_server_url: Option<String>,
    pub file_url_template: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub hosted: Option<StoreConfig>,
    pub server: Option<StoreConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    pub uri: Option<Secret>,
    pub database: Option<String>,
    pub collection: Option<String>,
    pub lease_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    pub concurrency: Option<usize>,
    pub select: Option<Selection>,
    pub rename: Option<RenamePolicy>,
    pub max_files: Option<u64>,
    pub max_bytes: Option<String>,
    pub max_duration: Option<String>,
    pub max_errors: Option<u64>,
    pub shard: Option<String>,
    pub nested: Option<bool>,
    pub retries: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
    pub file_timeout_secs: Option<u64>,
    pub tps_limit: Option<f64>,
    pub bwlimit: Option<String>,
    pub max_db_latency: Option<String>,
    pub max_repl_lag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    pub log_format: Option<LogFormat>,
    pub progress: Option<ProgressMode>,
}

/// Read and parse the configuration file; errors name the file and the offending key.
pub fn load_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        usage(format!(
            "config file {}: {}",
            path.display(),
            e.to_string().trim_end()
        ))
    })
}
