//! `serve`'s settings: the `[serve]` table, and `serve`'s flags over it.

use serde::Serialize;

use super::file::ServeFile;
use super::{Settings, parse_size};
use crate::exit::usage;

/// `[serve]` (see [`ServeFile`]), with `serve`'s flags merged in by
/// [`Settings::serve_options`].
#[derive(Debug, Serialize)]
pub struct ServeSettings {
    pub listen: String,
    // Shown like the store urls: a url may carry credentials.
    #[serde(serialize_with = "crate::secret::serialize_redacted_url")]
    pub upstream: Option<String>,
    pub metrics_listen: Option<String>,
    pub max_copies: usize,
    pub wait_secs: u64,
    pub stream_above: Option<u64>,
}

/// Where `serve` listens unless told: loopback only (a gateway is put on the network on purpose).
pub const DEFAULT_SERVE_LISTEN: &str = "127.0.0.1:8080";
/// Copies `serve` runs at once unless told.
pub const DEFAULT_SERVE_COPIES: usize = 8;
/// How long a `serve` request waits for its file's copy unless told.
pub const DEFAULT_SERVE_WAIT_SECS: u64 = 60;

impl ServeSettings {
    /// `[serve]` with its defaults.
    pub(super) fn from_file(file: ServeFile) -> anyhow::Result<ServeSettings> {
        Ok(ServeSettings {
            listen: file.listen.unwrap_or_else(|| DEFAULT_SERVE_LISTEN.into()),
            upstream: file.upstream,
            metrics_listen: file.metrics_listen,
            max_copies: file.max_copies.unwrap_or(DEFAULT_SERVE_COPIES),
            wait_secs: file.wait_secs.unwrap_or(DEFAULT_SERVE_WAIT_SECS),
            stream_above: file
                .stream_above
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(|e| usage(format!("[serve] stream_above: {e}")))?,
        })
    }
}

impl Settings {
    /// `serve`'s options: its flags over `[serve]`.
    pub fn serve_options(&self, args: &crate::cli::ServeArgs) -> anyhow::Result<ServeSettings> {
        let s = &self.serve;
        let stream_above = match &args.stream_above {
            Some(v) => Some(parse_size(v).map_err(|e| usage(format!("--stream-above: {e}")))?),
            None => s.stream_above,
        };
        let max_copies = args.max_copies.unwrap_or(s.max_copies);
        if max_copies == 0 {
            return Err(usage(
                "--max-copies (or [serve] max_copies) must be at least 1",
            ));
        }
        Ok(ServeSettings {
            listen: args.listen.clone().unwrap_or_else(|| s.listen.clone()),
            upstream: args.upstream.clone().or_else(|| s.upstream.clone()),
            metrics_listen: args
                .metrics_listen
                .clone()
                .or_else(|| s.metrics_listen.clone()),
            max_copies,
            wait_secs: args.wait_secs.unwrap_or(s.wait_secs),
            stream_above,
        })
    }
}
