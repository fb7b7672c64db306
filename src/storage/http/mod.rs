//! HTTP source, read-only: fetches files where Parse serves them (`shared/docs/parse-file-storage.md`
//! §2): `tfss-…` names from the `files.parsetfss.com` host, UUID-dash legacy names from
//! `files.parse.com` (both under the app's `fileKey`), everything else from a Parse Server's
//! `/files/<appId>/` endpoint or the URL stored beside the name.
//!
//! This module owns name → URL mapping, status classification (404/403/410 are "not found", never
//! file bytes; 429/503 are throttling, with the server's `Retry-After`; other 5xx, timeouts,
//! resets and bodies cut short are retryable; other 4xx are permanent) and checking that a body
//! is as long as announced.
//! The `fileKey` is part of legacy URLs, so it never appears in `describe`, `location` or errors:
//! those show the URL template (`{file_key}`) instead.

mod hosts;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream};
use reqwest::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::{
    ByteStream, Capabilities, GetOptions, GetResult, ObjectMeta, ObjectStore, PutOptions,
    PutResult, StorageError, StoreContext,
};
use crate::parse::names::encode_uri_component;
use crate::secret::{REDACTED, Scrubber, Secret, redact_url};
use hosts::{host_allowed, redirect_allowed};

/// The `type = "http"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Base URL for `tfss-…` names; `{file_key}` and `{app_id}` are substituted.
    /// Default `http://files.parsetfss.com/{file_key}/`.
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub tfss_base_url: Option<String>,
    /// Base URL for names starting with a UUID and `-`. Default `http://files.parse.com/{file_key}/`.
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub legacy_base_url: Option<String>,
    /// A Parse Server's public URL (with its mount path, e.g. `https://api.example.com/parse`):
    /// other names are fetched from `<server_url>/files/<app_id>/<name>`. Without it, the URL
    /// stored beside the name is used.
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub server_url: Option<String>,
    /// Give up on a response that sends no data for this long (default 120). Not a limit on the
    /// whole transfer, so large files are fine.
    pub timeout_secs: Option<u64>,
    /// Give up connecting after this long (default 30).
    pub connect_timeout_secs: Option<u64>,
    /// `User-Agent` header (default `parse-files-migrate/<version>`).
    pub user_agent: Option<String>,
    /// Hosts whose URLs, stored beside a name in the database, may be fetched (only without
    /// `server_url`). Default: none. A stored `url` is data: fetching whatever it says would let
    /// anyone who can save a File object make this tool read internal addresses (cloud metadata,
    /// admin ports) into the destination. `example.com` matches that host, `*.example.com` its
    /// subdomains, `*` any host.
    #[serde(default)]
    pub stored_url_hosts: Vec<String>,
    /// Extra trusted certificate authorities (a PEM file of one or more certificates), besides
    /// the system's: for an internal mirror behind a company CA.
    pub ca_file: Option<std::path::PathBuf>,
}

const DEFAULT_TFSS: &str = "http://files.parsetfss.com/{file_key}/";
const DEFAULT_LEGACY: &str = "http://files.parse.com/{file_key}/";

/// A base URL template and its expansion (or why it cannot be expanded: reported on first use,
/// so a source that never sees such a name does not need the key).
#[derive(Debug)]
struct Base {
    /// The template as shown: credentials in it redacted.
    template: String,
    expanded: Result<String, String>,
}

impl Base {
    fn new(template: &str, ctx: &StoreContext) -> Self {
        let shown = redact_url(template);
        let mut expanded = Ok(template.to_string());
        for (var, value) in [
            ("{file_key}", ctx.file_key.as_ref().map(Secret::expose)),
            ("{app_id}", ctx.app_id.as_deref()),
        ] {
            if let Ok(url) = &expanded
                && url.contains(var)
            {
                expanded = match value {
                    Some(v) => Ok(url.replace(var, v)),
                    None => Err(format!("{shown} needs {var}, which is not set")),
                };
            }
        }
        Base {
            template: shown,
            expanded,
        }
    }
}

pub struct HttpStore {
    client: super::client::LazyClient,
    /// The client for URLs stored in the database: it follows a redirect only to a host that
    /// `stored_url_hosts` allows too (a stored url to an allowed host must not lead anywhere).
    stored_client: super::client::LazyClient,
    tfss: Base,
    legacy: Base,
    server: Option<Base>,
    /// Finds the fileKey, to scrub it from anything shown (URLs from `url_hint` may hold it,
    /// percent-encoded or not).
    file_key: Option<Scrubber>,
    stored_url_hosts: Vec<String>,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HttpStore").field(&self.describe()).finish()
    }
}

/// `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}-`: Parse Server's
/// `legacyFilesRegex` (FilesController).
pub fn is_legacy_uuid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 37
        && b[..37].iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 | 36 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl HttpStore {
    pub fn new(cfg: &HttpConfig, ctx: &StoreContext) -> Result<Self, StorageError> {
        let ua = cfg
            .user_agent
            .clone()
            .unwrap_or_else(|| concat!("parse-files-migrate/", env!("CARGO_PKG_VERSION")).into());
        let ca = cfg
            .ca_file
            .as_deref()
            .map(|path| super::client::read_ca_file("http source", path))
            .transpose()?;
        let builder = || {
            super::client::trusting(
                reqwest::Client::builder()
                    .user_agent(ua.clone())
                    .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.unwrap_or(30)))
                    .read_timeout(Duration::from_secs(cfg.timeout_secs.unwrap_or(120))),
                ca.as_deref(),
            )
        };
        let client = super::client::LazyClient::build(builder().redirect(
            reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 10 {
                    return attempt.error("too many redirects");
                }
                let from = attempt.previous().first().and_then(|u| u.host_str());
                match redirect_allowed(from, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(format!("redirected: {why}")),
                }
            }),
        ));
        let hosts = cfg.stored_url_hosts.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("too many redirects");
            }
            match host_allowed(&hosts, attempt.url().as_str()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(format!("redirected: {why}")),
            }
        });
        let stored_client = super::client::LazyClient::build(builder().redirect(policy));
        let server = cfg.server_url.as_ref().map(|s| {
            let template = format!("{}/files/{{app_id}}/", s.trim_end_matches('/'));
            Base::new(&template, ctx)
        });
        Ok(HttpStore {
            client,
            stored_client,
            tfss: Base::new(cfg.tfss_base_url.as_deref().unwrap_or(DEFAULT_TFSS), ctx),
            legacy: Base::new(
                cfg.legacy_base_url.as_deref().unwrap_or(DEFAULT_LEGACY),
                ctx,
            ),
            server,
            file_key: ctx
                .file_key
                .as_ref()
                .and_then(|k| Scrubber::new(k.expose())),
            stored_url_hosts: cfg.stored_url_hosts.clone(),
        })
    }

    /// The URL to fetch and the same URL for display (template form, key scrubbed).
    fn url(&self, name: &str, hint: Option<&str>) -> Result<(String, String), StorageError> {
        let fail = |msg: String| StorageError::message(name, false, self.scrub(&msg));
        let base = if name.starts_with("tfss-") {
            &self.tfss
        } else if is_legacy_uuid_name(name) {
            &self.legacy
        } else if let Some(server) = &self.server {
            server
        } else if let Some(hint) = hint {
            self.allowed(hint).map_err(&fail)?;
            return Ok((hint.to_string(), self.scrub(&redact_url(hint))));
        } else {
            return Err(fail(
                "no URL: set server_url, or store a url beside the name".into(),
            ));
        };
        let encoded = encode_uri_component(name);
        let expanded = base.expanded.as_ref().map_err(|m| fail(m.clone()))?;
        Ok((
            format!("{expanded}{encoded}"),
            format!("{}{encoded}", base.template),
        ))
    }

    /// Whether a URL stored in the database may be fetched (see `stored_url_hosts`).
    fn allowed(&self, stored: &str) -> Result<(), String> {
        host_allowed(&self.stored_url_hosts, stored)
    }

    /// Anything shown to people: the fileKey, in whatever form, replaced by `<redacted>`.
    fn scrub(&self, s: &str) -> String {
        match &self.file_key {
            Some(k) => k.scrub(s, REDACTED).into_owned(),
            None => s.to_string(),
        }
    }

    fn transport_error(&self, name: &str, shown: &str, e: reqwest::Error) -> StorageError {
        // Builder errors are ours, a refused certificate stays refused, and so does a redirect
        // to a host not allowed; everything else on the wire (connect, timeout, reset) may pass.
        let retryable = super::client::transport_retryable(&e) && !e.is_redirect();
        let ours = e.is_builder() || e.is_redirect();
        let mut msg = self.scrub(&super::error_chain(&e.without_url()));
        if !retryable && !ours {
            msg.push_str(
                " (the server's certificate is not trusted: set `ca_file` to its CA, PEM, or add \
                 the CA to the system's store)",
            );
        }
        StorageError::message(name, retryable, format!("GET {shown}: {msg}"))
    }

    /// Send a request; non-success statuses become the matching error.
    async fn send(
        &self,
        name: &str,
        method: Method,
        opts: &GetOptions,
    ) -> Result<(reqwest::Response, String), StorageError> {
        let (url, shown) = self.url(name, opts.url_hint.as_deref())?;
        // A stored url (not one of the configured bases): its redirects are checked too.
        let client = if opts.url_hint.as_deref() == Some(url.as_str()) {
            &self.stored_client
        } else {
            &self.client
        };
        let client = client.get(name, || format!("{method} {shown}")).await?;
        let mut req = client.request(method.clone(), &url);
        if opts.offset > 0 {
            req = req.header(header::RANGE, format!("bytes={}-", opts.offset));
            // The rest only if it is still the object the read began with; otherwise the whole
            // new object (200), which `get` refuses.
            if let Some(v) = &opts.version {
                req = req.header(header::IF_RANGE, v);
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(name, &shown, e))?;
        let status = resp.status();
        // A range starting exactly at the end is "nothing left", which servers answer with 416.
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE && opts.offset > 0 {
            return Ok((resp, shown));
        }
        let message = format!("{method} {shown}: HTTP {status}");
        Err(match status {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::GONE => {
                StorageError::NotFound {
                    name: name.to_string(),
                    location: shown,
                }
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                StorageError::Throttled {
                    name: name.to_string(),
                    message,
                    retry_after: header_str(&resp, header::RETRY_AFTER)
                        .as_deref()
                        .and_then(parse_retry_after),
                }
            }
            // Other 4xx (400, 401, 405, 416 …) are about the request: the same request fails again.
            s => StorageError::message(
                name,
                s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT,
                message,
            ),
        })
    }
}

fn header_str(resp: &reqwest::Response, h: header::HeaderName) -> Option<String> {
    resp.headers()
        .get(h)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What identifies the version of the object an answer carries, usable in `If-Range`: a strong
/// `ETag`, else `Last-Modified` (a weak ETag cannot be used there).
fn validator(resp: &reqwest::Response) -> Option<String> {
    header_str(resp, header::ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header_str(resp, header::LAST_MODIFIED))
}

/// `Content-Length`, read from the header (reqwest's body hint is 0 for HEAD).
fn content_length(resp: &reqwest::Response) -> Option<u64> {
    header_str(resp, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// `bytes <start>-<end>/<total>` → start.
fn content_range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A 416 answer to `Range: bytes=<offset>-`: an empty read if the object is exactly `offset`
/// bytes long (`Content-Range: bytes */<offset>`), else an error.
fn at_end(
    name: &str,
    shown: &str,
    resp: &reqwest::Response,
    offset: u64,
) -> Result<GetResult, StorageError> {
    let total = header_str(resp, header::CONTENT_RANGE).and_then(|v| {
        v.strip_prefix("bytes */")
            .and_then(|n| n.trim().parse::<u64>().ok())
    });
    if total != Some(offset) {
        let msg = format!("{shown}: offset {offset} is beyond the end (size {total:?})");
        return Err(StorageError::message(name, false, msg));
    }
    Ok(GetResult {
        size: Some(0),
        content_type: header_str(resp, header::CONTENT_TYPE),
        version: None,
        stream: stream::empty().boxed(),
    })
}

/// The body as a stream that fails, rather than ends, when it is shorter or longer than
/// announced (a cut connection must never look like a short file).
fn checked_body(
    name: &str,
    shown: String,
    resp: reqwest::Response,
    expected: Option<u64>,
) -> ByteStream {
    let name = name.to_string();
    let body = resp.bytes_stream();
    stream::unfold(
        (body.boxed(), 0u64, false),
        move |(mut body, seen, done)| {
            let (name, shown) = (name.clone(), shown.clone());
            async move {
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let seen = seen + chunk.len() as u64;
                        if expected.is_some_and(|n| seen > n) {
                            let long = StorageError::Integrity {
                                name: name.clone(),
                                reason: format!(
                                    "{shown}: body has {seen}+ bytes, Content-Length said {expected:?}"
                                ),
                            };
                            return Some((Err(long), (body, seen, true)));
                        }
                        Some((Ok::<Bytes, _>(chunk), (body, seen, false)))
                    }
                    Some(Err(e)) => {
                        let msg =
                            format!("{shown}: body: {}", super::error_chain(&e.without_url()));
                        Some((
                            Err(StorageError::message(&name, true, msg)),
                            (body, seen, true),
                        ))
                    }
                    // The connection closed early: a transfer problem, worth another try.
                    None if expected.is_some_and(|n| seen != n) => {
                        let msg = format!(
                            "{shown}: body cut short: {seen} of {} bytes",
                            expected.unwrap_or_default()
                        );
                        Some((
                            Err(StorageError::message(&name, true, msg)),
                            (body, seen, true),
                        ))
                    }
                    None => {
                        // Let hyper's connection task put the connection back into the pool
                        // before the copy that read it ends and the next one asks for one:
                        // otherwise that request finds no idle connection, starts a new one, and
                        // hyper keeps it when the old one comes back (hyper-util's pool races a
                        // connect against the checkout). Measured for 2,000 files (strace): 40–48
                        // connections at concurrency 32 without the yield, 32–33 with it.
                        tokio::task::yield_now().await;
                        None
                    }
                }
            }
        },
    )
    .boxed()
}

#[async_trait]
impl ObjectStore for HttpStore {
    fn put_buffer(&self) -> u64 {
        0
    }

    fn describe(&self) -> String {
        let server = self
            .server
            .as_ref()
            .map(|s| s.template.as_str())
            .unwrap_or("(stored URLs)");
        self.scrub(&format!(
            "http tfss={} legacy={} other={server}",
            self.tfss.template, self.legacy.template
        ))
    }

    /// Read-only, never a destination: its description (the URL templates) is where it reads.
    fn identity(&self) -> String {
        self.describe()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: false,
            stat: true,
            list: false,
            range_reads: true,
            reports_md5: false,
            atomic_create: false,
        }
    }

    fn location(&self, name: &str) -> Result<String, StorageError> {
        Ok(self.url(name, None)?.1)
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta, StorageError> {
        let (resp, shown) = self
            .send(name, Method::HEAD, &GetOptions::default())
            .await?;
        let size = content_length(&resp).ok_or_else(|| {
            StorageError::message(name, false, format!("HEAD {shown}: no Content-Length"))
        })?;
        Ok(ObjectMeta {
            size,
            content_type: header_str(&resp, header::CONTENT_TYPE),
            etag: header_str(&resp, header::ETAG),
            ..Default::default()
        })
    }

    async fn get(&self, name: &str, opts: &GetOptions) -> Result<GetResult, StorageError> {
        let (resp, shown) = self.send(name, Method::GET, opts).await?;
        let content_type = header_str(&resp, header::CONTENT_TYPE);
        let length = content_length(&resp);
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return at_end(name, &shown, &resp, opts.offset);
        }
        let version = validator(&resp);
        opts.check_version(name, version.as_deref())?;
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        if opts.offset > 0 && partial {
            let start = header_str(&resp, header::CONTENT_RANGE)
                .as_deref()
                .and_then(content_range_start);
            if start != Some(opts.offset) {
                let msg = format!(
                    "{shown}: asked for bytes {}-, got Content-Range {start:?}",
                    opts.offset
                );
                return Err(StorageError::message(name, false, msg));
            }
        }
        let mut stream = checked_body(name, shown, resp, length);
        let mut size = length;
        if opts.offset > 0 && !partial {
            // The server ignored the Range header and sent everything: skip to the offset here.
            stream = super::crypto::skip_prefix(stream, opts.offset);
            size = length.map(|n| n.saturating_sub(opts.offset));
        }
        Ok(GetResult {
            size,
            content_type,
            version,
            stream,
        })
    }

    async fn put(
        &self,
        _name: &str,
        _body: ByteStream,
        _opts: &PutOptions,
    ) -> Result<PutResult, StorageError> {
        Err(StorageError::Unsupported {
            operation: "put",
            store: self.describe(),
        })
    }

    async fn delete(&self, _name: &str) -> Result<(), StorageError> {
        Err(StorageError::Unsupported {
            operation: "delete",
            store: self.describe(),
        })
    }

    /// Nothing to probe without a file name: hosts differ per name kind and a base URL need not
    /// answer. Configuration errors surface on first use.
    async fn check(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A `Retry-After` header value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the
/// past means "now"; anything unparseable is ignored (the backoff applies).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
