//! Settings, resolved once: command-line flag > `PFM_*` environment variable > configuration
//! file > default.
//!
//! clap already merges flags and environment variables (every option is an `Option`, so "not
//! given" is visible); this module overlays them on the TOML file and the defaults, validates the
//! result, and produces one [`Settings`] value that the rest of the program reads. Nothing else
//! looks at the environment or the file. `--show-settings` prints [`Settings`] as TOML; every
//! secret in it is a [`Secret`] or a [`MongoUri`], which print redacted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cli::{GlobalArgs, LogFormat, MigrateArgs, ProgressMode};
use crate::exit::usage;
use crate::parse::names::{RenamePolicy, Selection};
use crate::retry::RetryPolicy;
use crate::secret::{Secret, redact_uri};
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    pub log_format: Option<LogFormat>,
    pub progress: Option<ProgressMode>,
}

/// A MongoDB connection string; prints with its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoUri(Secret);

impl MongoUri {
    pub fn new(uri: impl Into<String>) -> Self {
        MongoUri(Secret::new(uri))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn redacted(&self) -> String {
        redact_uri(self.0.expose())
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl std::fmt::Debug for MongoUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for MongoUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for MongoUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// Everything the program needs, resolved.
#[derive(Debug, Serialize)]
pub struct Settings {
    pub config_file: Option<PathBuf>,
    pub mongo: MongoSettings,
    pub parse: ParseSettings,
    pub source: SourceSettings,
    pub destination: Option<StoreConfig>,
    pub ledger: LedgerSettings,
    pub run: RunSettings,
    pub output: OutputSettings,
}

#[derive(Debug, Serialize)]
pub struct MongoSettings {
    /// `None` until a command needs MongoDB and none was given (an error then).
    pub uri: Option<MongoUri>,
    pub database: Option<String>,
    pub collection_prefix: String,
    pub page_size: u32,
}

#[derive(Debug, Serialize)]
pub struct ParseSettings {
    pub app_id: Option<String>,
    pub file_key: Option<Secret>,
    pub public_server_url: Option<String>,
    pub file_url_template: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SourceSettings {
    pub hosted: StoreConfig,
    pub server: Option<StoreConfig>,
}

#[derive(Debug, Serialize)]
pub struct LedgerSettings {
    pub uri: Option<MongoUri>,
    pub database: Option<String>,
    pub collection: String,
    /// How long a run's lease on its shard lasts without renewal.
    pub lease_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct RunSettings {
    pub concurrency: usize,
    pub select: Selection,
    pub rename: RenamePolicy,
    pub nested: bool,
    pub max_files: Option<u64>,
    pub max_bytes: Option<u64>,
    #[serde(serialize_with = "ser_duration")]
    pub max_duration: Option<Duration>,
    /// Failures (files, reference updates) after which no new copy starts.
    pub max_errors: Option<u64>,
    pub shard: Option<Shard>,
    /// How failed transfers are retried (`retries`, `retry_base_ms`, `retry_max_ms`,
    /// `file_timeout_secs`).
    #[serde(flatten)]
    pub retry: RetryPolicy,
    /// Source request and byte rates (`tps_limit`, `bwlimit`).
    #[serde(flatten)]
    pub throttle: crate::throttle::Limits,
}

#[derive(Debug, Serialize)]
pub struct OutputSettings {
    pub log_format: LogFormat,
    pub progress: ProgressMode,
    /// -2 (errors only) … 0 (info) … 2 (trace).
    pub verbosity: i8,
}

/// `--shard K/N`: this process takes the files whose name hashes to K modulo N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

fn ser_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

/// Defaults, with the reasoning next to them.
///
/// Figures quoted here come from `bench/run` (README "Benchmarks"), release build, on the 2-core
/// test machine against the local test servers (SecantusDB, s3s-fs, fake-gcs-server, nginx),
/// medians of 3, 2026-11-22; the machine was shared with other builds (load 4–9), so read the
/// ratios, not the absolute rates. The other measured defaults live next to the code they size:
///
/// * S3 part size, [`DEFAULT_PART_SIZE`](crate::storage::s3::DEFAULT_PART_SIZE) 8 MiB (GCS
///   resumable chunk likewise, `storage::gcs::DEFAULT_CHUNK_SIZE`): a `put` holds at most
///   2 parts + one chunk, so one 1 GiB copy peaked at 43.5 MiB RSS to S3 and 37.7 MiB to GCS
///   (target ≤ 64 MiB), and 20 concurrent 20 MiB uploads to S3 at 160–219 MiB. 5 MiB (S3's
///   minimum) would save ~6 MiB per transfer for 60 % more part requests; 16 MiB would put one
///   file at 2 × 16 MiB on top of the process's ~25 MiB, at the edge of that bound.
/// * Rewrite batch, [`BATCH`](crate::engine::rewrite::BATCH) 256 references per flush, each
///   `update` command up to [`UPDATE_BATCH`](crate::db::UPDATE_BATCH) 500 statements: on the
///   test server one-by-one `update_one` CAS updates ran at 24/s (42 ms each: it has no `_id`
///   index), 500 per command at 500–920/s; past a few hundred per round trip the server's
///   per-document cost (1.4–2 ms of its CPU per write) dominates, so larger batches gain
///   nothing and only delay the first rewrite.
pub mod defaults {
    /// Files in flight. Typical Parse files are small (photos, thumbnails), where per-request
    /// latency dominates: peers with high concurrency win by 10–20× (s5cmd 256, aws-cli 10,
    /// parse-files-utils 5). 32 keeps memory at 32 × part size in the worst case.
    ///
    /// Measured: 2,000 × 20 KiB HTTP → fs at 32 peaked at 27–28 MiB RSS, and curl at the same 32
    /// fetched them in 0.5–1.8 s; the tool's own limit there is the ledger's per-file writes on
    /// the test server (its CPU was busy 85–92 % of the run), not the number of transfers, so
    /// more in flight buys nothing on it, while fewer would leave a real database's
    /// round-trip latency (ms) uncovered. 20 × 20 MiB → fs at 20 in flight: 33–37 MiB.
    pub const CONCURRENCY: usize = 32;
    /// Documents per scan page: one round trip each; large enough to amortise latency, small
    /// enough to keep memory flat.
    ///
    /// Measured: `list` of 20,000 objects peaks at ~19–25 MiB RSS at 1,000 per page; a 1,000,000
    /// object walk cannot be timed on the test server (it has no `_id` index: one keyset page
    /// took 73 s at 1,000,000 objects), while MongoDB answers a keyset page from the `_id`
    /// index in O(page).
    pub const PAGE_SIZE: u32 = 1000;
    pub const LEDGER_COLLECTION: &str = "_FileMigration";
    /// A run renews its lease every third of this; after a crash (`kill -9`, a lost host) the
    /// shard is free again after at most this long. A minute keeps the wait after a crash short
    /// while tolerating a stalled process or database for ~40 s before another run may start.
    pub const LEASE_SECS: u64 = 60;
    /// Retries per file after the first attempt, for failures a retry can fix (timeouts, resets,
    /// 5xx, 429/503, a body cut short). With the backoff below, 4 retries wait about 7.5 s in all
    /// (0.5 + 1 + 2 + 4 s, jittered): enough to ride out a load balancer restart or a burst of
    /// 5xx, while a host that is really down costs seconds per file, not minutes. Failed files
    /// are retried by the next run anyway (the ledger keeps them). rclone's per-operation
    /// low-level retries (10) and the AWS SDKs' 3 attempts bracket this.
    pub const RETRIES: u32 = 4;
    /// First backoff before jitter; doubles per retry (AWS's "exponential backoff and jitter").
    pub const RETRY_BASE_MS: u64 = 500;
    /// Longest single wait, also for a server's `Retry-After`: a throttling host that asks for
    /// minutes must not park every transfer slot that long. When the retries run out the file is
    /// recorded as failed, and the next run retries it.
    pub const RETRY_MAX_MS: u64 = 30_000;
    pub const TFSS_BASE_URL: &str = "http://files.parsetfss.com/{file_key}/";
    pub const LEGACY_BASE_URL: &str = "http://files.parse.com/{file_key}/";
}

impl Settings {
    /// Resolve from the command line (flags and env, merged by clap), the configuration file it
    /// names, and defaults. `migrate` contributes its run options.
    pub fn resolve(global: &GlobalArgs, migrate: Option<&MigrateArgs>) -> anyhow::Result<Settings> {
        let file = match &global.config {
            Some(path) => load_file(path)?,
            None => ConfigFile::default(),
        };
        Self::from_parts(global, migrate, file)
    }

    fn from_parts(
        global: &GlobalArgs,
        migrate: Option<&MigrateArgs>,
        file: ConfigFile,
    ) -> anyhow::Result<Settings> {
        let uri = global
            .mongo_uri
            .clone()
            .map(MongoUri::new)
            .or(file.mongo.uri.map(|s| MongoUri::new(s.expose())));
        let database = global
            .database
            .clone()
            .or(file.mongo.database)
            .or_else(|| uri.as_ref().and_then(|u| database_from_uri(u.expose())));
        if let Some(u) = uri.as_ref().filter(|u| {
            !(u.expose().starts_with("mongodb://") || u.expose().starts_with("mongodb+srv://"))
        }) {
            return Err(usage(format!(
                "the MongoDB URI must start with mongodb:// or mongodb+srv://, got {}",
                u.redacted()
            )));
        }
        let page_size = file.mongo.page_size.unwrap_or(defaults::PAGE_SIZE);
        if page_size == 0 {
            return Err(usage("[mongo] page_size must be at least 1"));
        }

        let hosted = file.source.hosted.unwrap_or_else(default_hosted_source);
        let run = file.run;
        let m = migrate;
        let concurrency = m
            .and_then(|m| m.concurrency)
            .or(run.concurrency)
            .unwrap_or(defaults::CONCURRENCY);
        if concurrency == 0 {
            return Err(usage("concurrency must be at least 1"));
        }
        let max_bytes = match m.and_then(|m| m.max_bytes.clone()).or(run.max_bytes) {
            Some(s) => Some(parse_size(&s).map_err(|e| usage(format!("--max-bytes {s:?}: {e}")))?),
            None => None,
        };
        let max_duration = match m.and_then(|m| m.max_duration.clone()).or(run.max_duration) {
            Some(s) => Some(humantime::parse_duration(&s).map_err(|e| {
                usage(format!(
                    "--max-duration {s:?}: {e} (examples: 90s, 45m, 2h)"
                ))
            })?),
            None => None,
        };
        let max_errors = m.and_then(|m| m.max_errors).or(run.max_errors);
        if max_errors == Some(0) {
            return Err(usage(
                "max_errors must be at least 1 (leave it unset for no limit)",
            ));
        }
        let shard = match m.and_then(|m| m.shard.clone()).or(run.shard) {
            Some(s) => Some(parse_shard(&s).map_err(|e| usage(format!("--shard {s:?}: {e}")))?),
            None => None,
        };
        let verbosity = (global.verbose.min(2) as i8) - (global.quiet.min(2) as i8);
        let retry = RetryPolicy {
            retries: run.retries.unwrap_or(defaults::RETRIES),
            base: Duration::from_millis(run.retry_base_ms.unwrap_or(defaults::RETRY_BASE_MS)),
            max: Duration::from_millis(run.retry_max_ms.unwrap_or(defaults::RETRY_MAX_MS)),
            attempt_timeout: run
                .file_timeout_secs
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
        };
        let tps = m.and_then(|m| m.tps_limit).or(run.tps_limit);
        if tps.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            return Err(usage(
                "--tps-limit must be a positive number of requests per second",
            ));
        }
        let bytes_per_sec = match m.and_then(|m| m.bwlimit.clone()).or(run.bwlimit) {
            Some(s) => {
                let b = parse_size(s.trim_end_matches("/s")).map_err(|e| {
                    usage(format!("--bwlimit {s:?}: {e} (examples: 500KiB, 10MiB)"))
                })?;
                if b == 0 {
                    return Err(usage("--bwlimit must be more than 0 bytes per second"));
                }
                Some(b)
            }
            None => None,
        };
        let throttle = crate::throttle::Limits { tps, bytes_per_sec };
        if retry.base > retry.max {
            return Err(usage(format!(
                "[run] retry_base_ms ({}) must not exceed retry_max_ms ({})",
                retry.base.as_millis(),
                retry.max.as_millis()
            )));
        }

        Ok(Settings {
            config_file: global.config.clone(),
            mongo: MongoSettings {
                uri,
                database,
                collection_prefix: global
                    .collection_prefix
                    .clone()
                    .or(file.mongo.collection_prefix)
                    .unwrap_or_default(),
                page_size,
            },
            parse: ParseSettings {
                app_id: global.app_id.clone().or(file.parse.app_id),
                file_key: global
                    .file_key
                    .clone()
                    .map(Secret::new)
                    .or(file.parse.file_key),
                public_server_url: global
                    .public_server_url
                    .clone()
                    .or(file.parse.public_server_url),
                file_url_template: file.parse.file_url_template,
            },
            source: SourceSettings {
                hosted,
                server: file.source.server,
            },
            destination: file.destination,
            ledger: LedgerSettings {
                uri: file.ledger.uri.map(|s| MongoUri::new(s.expose())),
                database: file.ledger.database,
                collection: file
                    .ledger
                    .collection
                    .unwrap_or_else(|| defaults::LEDGER_COLLECTION.to_string()),
                lease_secs: file
                    .ledger
                    .lease_secs
                    .unwrap_or(defaults::LEASE_SECS)
                    .max(1),
            },
            run: RunSettings {
                concurrency,
                select: m
                    .and_then(|m| m.select.map(Into::into))
                    .or(run.select)
                    .unwrap_or(Selection::Hosted),
                rename: m
                    .and_then(|m| m.rename.map(Into::into))
                    .or(run.rename)
                    .unwrap_or(RenamePolicy::Auto),
                nested: !m.is_some_and(|m| m.filters.no_nested) && run.nested.unwrap_or(true),
                max_files: m.and_then(|m| m.max_files).or(run.max_files),
                max_bytes,
                max_duration,
                max_errors,
                shard,
                retry,
                throttle,
            },
            output: OutputSettings {
                log_format: global
                    .log_format
                    .or(file.output.log_format)
                    .unwrap_or(LogFormat::Text),
                progress: global
                    .progress
                    .or(file.output.progress)
                    .unwrap_or(ProgressMode::Auto),
                verbosity,
            },
        })
    }

    /// The MongoDB URI and database, or a usage error saying how to give them.
    pub fn mongo_target(&self) -> anyhow::Result<(&MongoUri, &str)> {
        let uri = self.mongo.uri.as_ref().ok_or_else(|| {
            usage("no MongoDB URI: pass --mongo-uri, set PFM_MONGO_URI, or set [mongo] uri in the config file")
        })?;
        let db = self.mongo.database.as_deref().ok_or_else(|| {
            usage(format!(
                "no database: the URI {} names none; add it to the URI path or pass --database",
                uri.redacted()
            ))
        })?;
        Ok((uri, db))
    }

    /// What storage backends need from the global settings.
    pub fn store_context(&self) -> crate::storage::StoreContext {
        crate::storage::StoreContext {
            mongo_uri: self.mongo.uri.as_ref().map(|u| u.secret().clone()),
            database: self.mongo.database.clone(),
            file_key: self.parse.file_key.clone(),
            app_id: self.parse.app_id.clone(),
        }
    }

    /// The resolved settings as TOML, secrets redacted (for `--show-settings`).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("rendering settings")
    }
}

/// The built-in `[source.hosted]`: the hosted-Parse hosts (long dead; point the templates at a
/// mirror of the old files).
fn default_hosted_source() -> StoreConfig {
    StoreConfig::Http(crate::storage::http::HttpConfig {
        tfss_base_url: Some(defaults::TFSS_BASE_URL.to_string()),
        legacy_base_url: Some(defaults::LEGACY_BASE_URL.to_string()),
        ..Default::default()
    })
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

/// The database named in a MongoDB URI's path, if any.
pub fn database_from_uri(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let after_hosts = &rest[rest.rfind('@').map_or(0, |i| i + 1)..];
    let path = after_hosts.split_once('/')?.1;
    let db = path.split('?').next().unwrap_or("");
    (!db.is_empty()).then(|| {
        percent_encoding::percent_decode_str(db)
            .decode_utf8_lossy()
            .into_owned()
    })
}

/// `10GiB`, `500MB`, `1.5G`, `1024`: bytes. Binary (`KiB`, `K`) and decimal (`KB`) units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a number with an optional unit, e.g. 10GiB".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        u => {
            return Err(format!(
                "unknown unit {u:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err("out of range".into());
    }
    Ok(v as u64)
}

/// `K/N` with `0 <= K < N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 0/4")?;
    let index: u32 = k.trim().parse().map_err(|_| "K must be a whole number")?;
    let count: u32 = n.trim().parse().map_err(|_| "N must be a whole number")?;
    if count == 0 || index >= count {
        return Err(format!("need 0 <= K < N, got {index}/{count}"));
    }
    Ok(Shard { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml_text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let f = file("[mongo]\nuri = \"mongodb://u:pw@h/fromfile\"\ncollection_prefix = \"f_\"\n[run]\nconcurrency = 7").unwrap();
        let g = GlobalArgs {
            collection_prefix: Some("flag_".into()),
            ..Default::default()
        };
        let s = Settings::from_parts(&g, None, f).unwrap();
        assert_eq!(s.mongo.collection_prefix, "flag_");
        assert_eq!(s.mongo.database.as_deref(), Some("fromfile"));
        assert_eq!(s.run.concurrency, 7);
        assert_eq!(s.run.select, Selection::Hosted);
        let s = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
        assert_eq!(s.run.concurrency, defaults::CONCURRENCY);
        assert_eq!(s.mongo.collection_prefix, "");
    }

    #[test]
    fn retry_policy_from_run_table() {
        let s = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
        assert_eq!(s.run.retry, RetryPolicy::default());
        assert_eq!(s.run.retry.retries, defaults::RETRIES);
        let f = file("[run]\nretries = 0\nretry_base_ms = 10\nretry_max_ms = 40").unwrap();
        let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
        assert_eq!(
            s.run.retry,
            RetryPolicy {
                retries: 0,
                base: Duration::from_millis(10),
                max: Duration::from_millis(40),
                attempt_timeout: None,
            }
        );
        let out = s.to_toml().unwrap();
        assert!(
            out.contains("retries = 0") && out.contains("retry_base_ms = 10"),
            "{out}"
        );
        let f = file("[run]\nretry_base_ms = 5000\nretry_max_ms = 40").unwrap();
        let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
        assert!(e.to_string().contains("retry_max_ms"), "{e}");
    }

    #[test]
    fn the_error_budget_is_unset_or_at_least_one() {
        let s = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
        assert_eq!(s.run.max_errors, None);
        let s = Settings::from_parts(
            &GlobalArgs::default(),
            None,
            file("[run]\nmax_errors = 25").unwrap(),
        )
        .unwrap();
        assert_eq!(s.run.max_errors, Some(25));
        assert!(s.to_toml().unwrap().contains("max_errors = 25"));
        let f = file("[run]\nmax_errors = 0").unwrap();
        let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
        assert!(
            e.to_string().contains("max_errors must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn throttle_and_file_timeout_resolve_and_round_trip() {
        let f =
            file("[run]\ntps_limit = 12.5\nbwlimit = \"2MiB\"\nfile_timeout_secs = 600").unwrap();
        let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
        assert_eq!(s.run.throttle.tps, Some(12.5));
        assert_eq!(s.run.throttle.bytes_per_sec, Some(2 << 20));
        assert_eq!(s.run.retry.attempt_timeout, Some(Duration::from_secs(600)));
        // The [run] table --show-settings prints resolves to the same.
        let shown = s.to_toml().unwrap();
        let run = shown
            .split("[run]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap();
        let again = Settings::from_parts(
            &GlobalArgs::default(),
            None,
            file(&format!("[run]{run}")).unwrap(),
        )
        .unwrap();
        assert_eq!(again.run.throttle, s.run.throttle, "{shown}");
        assert_eq!(again.run.retry, s.run.retry, "{shown}");
        for bad in [
            "bwlimit = \"0\"",
            "bwlimit = \"fast\"",
            "tps_limit = 0.0",
            "tps_limit = -3.0",
        ] {
            let f = file(&format!("[run]\n{bad}")).unwrap();
            let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
            assert_eq!(crate::exit::code_of(&e), crate::exit::USAGE, "{bad}: {e:#}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = file("[mongo]\nurl = \"x\"").unwrap_err().to_string();
        assert!(e.contains("url"), "{e}");
        let e = file("[destination]\ntype = \"s3\"\nbukket = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bukket"), "{e}");
        let e = file("[destination]\ntype = \"ftp\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp"), "{e}");
        assert!(file("[destination]\ntype = \"s3\"\nbucket = \"b\"").is_ok());
    }

    #[test]
    fn show_settings_redacts_secrets() {
        let f = file("[mongo]\nuri = \"mongodb://admin:hunter2@h:27017/app\"\n[parse]\nfile_key = \"fk-secret\"").unwrap();
        let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
        let out = s.to_toml().unwrap();
        assert!(
            !out.contains("hunter2") && !out.contains("fk-secret"),
            "{out}"
        );
        assert!(out.contains("admin:<redacted>@h:27017/app"), "{out}");
    }

    #[test]
    fn tls_uris_are_accepted_and_shown_redacted() {
        let uri = "mongodb://app:pw-tls-SECRET@db1.example:27017,db2.example:27017/parse?\
                   replicaSet=rs0&tls=true&tlsCAFile=/etc/ssl/mongo-ca.pem&\
                   tlsCertificateKeyFile=/etc/ssl/client.pem&authSource=admin";
        let g = GlobalArgs {
            mongo_uri: Some(uri.into()),
            ..Default::default()
        };
        let s = Settings::from_parts(&g, None, ConfigFile::default()).unwrap();
        let (u, db) = s.mongo_target().unwrap();
        assert_eq!(u.expose(), uri);
        assert_eq!(db, "parse");
        let shown = s.to_toml().unwrap();
        assert!(!shown.contains("pw-tls-SECRET"), "{shown}");
        assert!(
            shown.contains("tls=true&tlsCAFile=/etc/ssl/mongo-ca.pem"),
            "{shown}"
        );
    }

    #[test]
    fn sizes_durations_shards() {
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_shard("1/4").unwrap(), Shard { index: 1, count: 4 });
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("0/0").is_err());
        assert_eq!(
            database_from_uri("mongodb://u:p@h1,h2/parse?x=1").as_deref(),
            Some("parse")
        );
        assert_eq!(
            database_from_uri("mongodb://h/?directConnection=true"),
            None
        );
        assert_eq!(database_from_uri("mongodb://h"), None);
    }
}
