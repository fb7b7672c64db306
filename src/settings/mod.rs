//! Settings, resolved once: command-line flag > `PFM_*` environment variable > configuration
//! file > default.
//!
//! clap already merges flags and environment variables (every option is an `Option`, so "not
//! given" is visible); this module overlays them on the TOML file and the defaults, validates the
//! result, and produces one [`Settings`] value that the rest of the program reads. Nothing else
//! looks at the environment or the file. `--show-settings` prints [`Settings`] as TOML; every
//! secret in it is a [`Secret`] or a [`MongoUri`], which print redacted.
//!
//! Defaults live next to the code they size, each with its measured reasoning:
//! [`crate::engine::DEFAULT_CONCURRENCY`], [`crate::scan::DEFAULT_PAGE_SIZE`],
//! [`crate::retry::DEFAULT_RETRIES`] (and the backoff beside it),
//! [`crate::ledger::DEFAULT_LEASE_SECS`], the S3 part size
//! ([`crate::storage::s3::DEFAULT_PART_SIZE`]) and the rewrite batch
//! ([`crate::engine::pipeline::rewrite::BATCH`]). This module is the only one that reads the environment
//! or the file, and no module below it imports it: each part gets its own small config from
//! here (the engine a `Plan`, resolved in `run.rs`, the ledger its collection and lease, the stores a `StoreConfig`).

mod file;
mod hooks;
mod run;
mod serve;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

pub use file::{ConfigFile, load_file};
pub use run::sort_run_bytes;
pub use serve::{
    DEFAULT_SERVE_COPIES, DEFAULT_SERVE_LISTEN, DEFAULT_SERVE_WAIT_SECS, ServeSettings,
};

use crate::cli::{GlobalArgs, LogFormat, MigrateArgs, ProgressMode};
use crate::exit::usage;
use crate::parse::names::{RenamePolicy, Selection};
use crate::retry::RetryPolicy;
use crate::secret::{MongoUri, Secret};
use crate::storage::StoreConfig;

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
    pub scan: ScanSettings,
    pub rebase: RebaseSettings,
    pub rekey: RekeySettings,
    pub hooks: crate::hooks::HookConfig,
    pub serve: ServeSettings,
}

/// `[scan]` (see [`file::ScanFile`]).
#[derive(Debug, Serialize)]
pub struct ScanSettings {
    /// Search strings for file URLs (`--strings`, `[scan] strings`).
    pub strings: bool,
}

/// `[rebase]` (see [`file::RebaseFile`]).
#[derive(Debug, Serialize)]
pub struct RebaseSettings {
    pub from: Vec<String>,
}

/// `rekey`'s new key: from `PFM_NEW_FILE_KEY`, else `[rekey] new_key`; never a flag (it would
/// show in `ps` and the shell history).
#[derive(Debug, Serialize)]
pub struct RekeySettings {
    pub new_key: Option<Secret>,
}

/// The environment variable `rekey` reads its new key from.
pub const NEW_KEY_ENV: &str = "PFM_NEW_FILE_KEY";

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
    // Shown like the store urls: a url may carry credentials.
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub public_server_url: Option<String>,
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
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
    /// The earlier default (`_FileMigration`) when the default was scoped by a collection prefix
    /// (`<prefix>_FileMigration`): opening the ledger refuses to start an empty scoped ledger
    /// beside records there, which a rollback may need.
    #[serde(skip)]
    pub unscoped_default: Option<String>,
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
    pub shard: Option<crate::engine::Shard>,
    /// How failed transfers are retried (`retries`, `retry_base_ms`, `retry_max_ms`,
    /// `file_timeout_secs`).
    #[serde(flatten)]
    pub retry: RetryPolicy,
    /// Source request and byte rates (`tps_limit`, `bwlimit`).
    #[serde(flatten)]
    pub throttle: crate::throttle::Limits,
    /// The database's health limits (`max_db_latency`, `max_repl_lag`).
    #[serde(flatten)]
    pub db: crate::dbhealth::Limits,
}

#[derive(Debug, Serialize)]
pub struct OutputSettings {
    pub log_format: LogFormat,
    pub progress: ProgressMode,
    /// -2 (errors only) … 0 (info) … 2 (trace).
    pub verbosity: i8,
}

fn ser_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
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
        let page_size = file
            .mongo
            .page_size
            .unwrap_or(crate::scan::DEFAULT_PAGE_SIZE);
        if page_size == 0 {
            return Err(usage("[mongo] page_size must be at least 1"));
        }

        let hosted = store_table("[source.hosted]", file.source.hosted)?
            .unwrap_or_else(default_hosted_source);
        let run = file.run;
        let m = migrate;
        let concurrency = m
            .and_then(|m| m.concurrency)
            .or(run.concurrency)
            .unwrap_or(crate::engine::DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(usage("concurrency must be at least 1"));
        }
        let flags = m.map(|m| &m.cutoff);
        let max_bytes = flags
            .and_then(|c| c.max_bytes.clone())
            .or(run.max_bytes)
            .map(|s| parse_max_bytes(&s))
            .transpose()?;
        let max_duration = flags
            .and_then(|c| c.max_duration.clone())
            .or(run.max_duration)
            .map(|s| parse_max_duration(&s))
            .transpose()?;
        let max_errors = m.and_then(|m| m.max_errors).or(run.max_errors);
        if max_errors == Some(0) {
            return Err(usage(
                "max_errors must be at least 1 (leave it unset for no limit)",
            ));
        }
        let shard = match m.and_then(|m| m.shard.clone()).or(run.shard) {
            Some(s) => Some(
                crate::engine::Shard::parse(&s)
                    .map_err(|e| usage(format!("--shard {s:?}: {e}")))?,
            ),
            None => None,
        };
        let verbosity = (global.verbose.min(2) as i8) - (global.quiet.min(2) as i8);
        let retry = RetryPolicy {
            retries: run.retries.unwrap_or(crate::retry::DEFAULT_RETRIES),
            base: Duration::from_millis(
                run.retry_base_ms
                    .unwrap_or(crate::retry::DEFAULT_RETRY_BASE_MS),
            ),
            max: Duration::from_millis(
                run.retry_max_ms
                    .unwrap_or(crate::retry::DEFAULT_RETRY_MAX_MS),
            ),
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
        let db = crate::dbhealth::Limits {
            max_db_latency: duration_limit(
                "--max-db-latency",
                m.and_then(|m| m.health.max_db_latency.clone())
                    .or(run.max_db_latency),
            )?,
            max_repl_lag: duration_limit(
                "--max-repl-lag",
                m.and_then(|m| m.health.max_repl_lag.clone())
                    .or(run.max_repl_lag),
            )?,
        };
        if retry.base > retry.max {
            return Err(usage(format!(
                "[run] retry_base_ms ({}) must not exceed retry_max_ms ({})",
                retry.base.as_millis(),
                retry.max.as_millis()
            )));
        }

        let collection_prefix = global
            .collection_prefix
            .clone()
            .or(file.mongo.collection_prefix)
            .unwrap_or_default();
        // Like Parse's own collections, the default ledger is scoped by the prefix: two apps of
        // one database never share (or roll back) each other's records.
        let scoped = !collection_prefix.is_empty() && file.ledger.collection.is_none();
        Ok(Settings {
            config_file: global.config.clone(),
            mongo: MongoSettings {
                uri,
                database,
                collection_prefix: collection_prefix.clone(),
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
                server: store_table("[source.server]", file.source.server)?,
            },
            destination: store_table("[destination]", file.destination)?,
            ledger: LedgerSettings {
                uri: file.ledger.uri.map(|s| MongoUri::new(s.expose())),
                database: file.ledger.database,
                collection: file.ledger.collection.unwrap_or_else(|| {
                    format!("{collection_prefix}{}", crate::ledger::DEFAULT_COLLECTION)
                }),
                unscoped_default: scoped.then(|| crate::ledger::DEFAULT_COLLECTION.to_string()),
                lease_secs: file
                    .ledger
                    .lease_secs
                    .unwrap_or(crate::ledger::DEFAULT_LEASE_SECS)
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
                max_files: flags.and_then(|c| c.max_files).or(run.max_files),
                max_bytes,
                max_duration,
                max_errors,
                shard,
                retry,
                throttle,
                db,
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
            scan: ScanSettings {
                strings: file.scan.strings.unwrap_or(false),
            },
            rebase: RebaseSettings {
                from: file.rebase.from,
            },
            rekey: RekeySettings {
                new_key: std::env::var(NEW_KEY_ENV)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .map(Secret::new)
                    .or(file.rekey.new_key),
            },
            hooks: hooks::from_file(file.hooks)?,
            serve: ServeSettings::from_file(file.serve)?,
        })
    }

    /// The `--hook-*` flags of a writing command over `[hooks]`.
    pub fn with_hook_flags(mut self, flags: Option<&crate::cli::HookArgs>) -> anyhow::Result<Self> {
        if let Some(flags) = flags {
            hooks::overlay(&mut self.hooks, flags)?;
        }
        Ok(self)
    }

    /// The file URLs to look for in strings: the hosted-Parse hosts (when `hosted`), the current
    /// base (`public_server_url` with `app_id`, and `file_url_template`) and, when `old`, every
    /// `[rebase] from` base (a server URL, or a template with `{name}`). A base that is not a URL
    /// is an error.
    pub fn url_matcher(
        &self,
        hosted: bool,
        old: bool,
    ) -> anyhow::Result<crate::parse::urls::Matcher> {
        use crate::parse::urls::{Matcher, Origin};
        let p = &self.parse;
        let mut m = Matcher::new(hosted);
        let app = p.app_id.as_deref();
        if let (Some(url), Some(app)) = (&p.public_server_url, app) {
            m = m.server(url, app, Origin::Current).map_err(usage)?;
        }
        if let Some(t) = &p.file_url_template {
            m = m.template(t, Origin::Current).map_err(usage)?;
        }
        for (i, from) in self.rebase.from.iter().enumerate().filter(|_| old) {
            m = if from.contains("{name}") {
                m.template(from, Origin::Old(i))
            } else {
                let app = app.ok_or_else(|| {
                    usage("[rebase] from lists a server URL: parse.app_id is needed to match it")
                })?;
                m.server(from, app, Origin::Old(i))
            }
            .map_err(|e| usage(format!("[rebase] from: {e}")))?;
        }
        Ok(m)
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

    /// How nested File `url`s are rebuilt for a new name: `file_url_template`, else
    /// `<public_server_url>/files/<app_id>/<name>`, else not at all (with the reason).
    pub fn url_base(&self) -> crate::engine::UrlBase {
        use crate::engine::UrlBase;
        let p = &self.parse;
        if let Some(t) = &p.file_url_template {
            return UrlBase::Template(t.clone());
        }
        match (&p.public_server_url, &p.app_id) {
            (Some(url), Some(app)) => UrlBase::Server {
                public_server_url: url.clone(),
                app_id: app.clone(),
            },
            (Some(_), None) => UrlBase::None {
                why:
                    "parse.app_id is not set (needed for <public_server_url>/files/<app_id>/<name>)"
                        .into(),
            },
            _ => UrlBase::None {
                why: "neither parse.public_server_url nor parse.file_url_template is set, so \
                      nested File urls cannot be rebuilt"
                    .into(),
            },
        }
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

/// A store table with what its keys imply filled in ([`StoreConfig::resolved`]).
fn store_table(role: &str, cfg: Option<StoreConfig>) -> anyhow::Result<Option<StoreConfig>> {
    cfg.map(|c| c.resolved().map_err(|e| usage(format!("{role}: {e}"))))
        .transpose()
}

/// The built-in `[source.hosted]`: the hosted-Parse hosts (long dead; point the templates at a
/// mirror of the old files).
fn default_hosted_source() -> StoreConfig {
    StoreConfig::Http(crate::storage::http::HttpConfig {
        tfss_base_url: Some(crate::parse::names::HOSTED_TFSS_BASE_URL.to_string()),
        legacy_base_url: Some(crate::parse::names::HOSTED_LEGACY_BASE_URL.to_string()),
        ..Default::default()
    })
}

/// The database named in a MongoDB URI's path, if any.
///
/// Read from the redacted URI: its path is found where [`crate::secret::redact_uri`] finds the
/// credentials end, so a fragment of a password or token (`…TOKEN:ab@cd/ef`) is never taken
/// for a database name and shown; a URI that can be read two ways names none.
pub fn database_from_uri(uri: &str) -> Option<String> {
    let shown = crate::secret::redact_uri(uri);
    let rest = shown.split_once("://")?.1;
    let after_hosts = &rest[rest.rfind('@').map_or(0, |i| i + 1)..];
    let before_query = after_hosts.split('?').next().unwrap_or("");
    let db = before_query.split_once('/')?.1;
    (!db.is_empty()).then(|| {
        percent_encoding::percent_decode_str(db)
            .decode_utf8_lossy()
            .into_owned()
    })
}

/// `10GiB`, `500MB`, `1.5G`, `1024`: bytes. Binary (`KiB`, `K`) and decimal (`KB`) units.
/// The cutoffs of a run: a command's own `--max-files/--max-bytes/--max-duration` over the
/// `[run]` keys already resolved in `run`.
pub fn cutoffs(
    flags: &crate::cli::CutoffArgs,
    run: &RunSettings,
) -> anyhow::Result<(Option<u64>, Option<u64>, Option<Duration>)> {
    Ok((
        flags.max_files.or(run.max_files),
        match &flags.max_bytes {
            Some(s) => Some(parse_max_bytes(s)?),
            None => run.max_bytes,
        },
        match &flags.max_duration {
            Some(s) => Some(parse_max_duration(s)?),
            None => run.max_duration,
        },
    ))
}

/// `--max-bytes` / `[run] max_bytes`, e.g. `10GiB`.
pub fn parse_max_bytes(s: &str) -> anyhow::Result<u64> {
    parse_size(s).map_err(|e| usage(format!("--max-bytes {s:?}: {e}")))
}

/// `--max-duration` / `[run] max_duration`, e.g. `45m`.
pub fn parse_max_duration(s: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(s).map_err(|e| {
        usage(format!(
            "--max-duration {s:?}: {e} (examples: 90s, 45m, 2h)"
        ))
    })
}

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

#[cfg(test)]
mod tests;

/// A positive duration limit (`200ms`, `2s`), or none.
fn duration_limit(flag: &str, s: Option<String>) -> anyhow::Result<Option<Duration>> {
    let Some(s) = s else { return Ok(None) };
    let d = humantime::parse_duration(&s)
        .map_err(|e| usage(format!("{flag} {s:?}: {e} (examples: 200ms, 2s)")))?;
    if d.is_zero() {
        return Err(usage(format!("{flag} must be more than 0")));
    }
    Ok(Some(d))
}
