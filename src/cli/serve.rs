//! `serve`'s command line (kept out of `cli.rs` for its size budget).

use clap::Args;

pub(super) const SERVE_EXAMPLES: &str = "\
Examples:
  # Parse Server now runs with the new adapter ([destination]); the old store is [source.server]
  parse-files-migrate -c migrate.toml serve --listen 0.0.0.0:8080 --upstream http://127.0.0.1:1337 --yes
  # A safe first step: serve misses from the old store, copy and record nothing
  parse-files-migrate -c migrate.toml serve --upstream http://127.0.0.1:1337 --dry-run
  # Prometheus metrics and /healthz on a second address
  parse-files-migrate -c migrate.toml serve --upstream http://parse:1337 --metrics-listen 127.0.0.1:9464 --yes
  # Meanwhile, drain the files nobody asks for
  parse-files-migrate -c migrate.toml migrate --select server --copy-only --yes

Every request is passed to the upstream unchanged (bodies streamed, X-Forwarded-* added). A GET
of <mount>/files/<appId>/<name> the upstream answers 404 is copied from [source.server] into
[destination] under the same name (create-only, verified, recorded in the ledger: a later
migrate skips it), then asked of the upstream again, so Parse Server's file triggers, headers
and Range handling answer it. A file absent everywhere keeps the upstream's 404; an old store
that fails or times out gives 502 / 504, never 404. HEAD of a file not copied yet answers from
the old store's metadata; a DELETE that succeeds is recorded, so a later miss never copies the
file back. SIGTERM or Ctrl-C stops accepting and lets copies in flight finish.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (`[serve] listen`; default 127.0.0.1:8080)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Parse Server's base URL, where every request is passed (`[serve] upstream`)
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Prometheus metrics (/metrics) and a health check (/healthz) on this separate address;
    /// off unless given (`[serve] metrics_listen`)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Copies at once; a miss beyond gets 503 with Retry-After (`[serve] max_copies`; default 8)
    #[arg(long, value_name = "N")]
    pub max_copies: Option<usize>,

    /// How long a request waits for its file's copy before 504 (the copy goes on)
    /// (`[serve] wait_secs`; default 60)
    #[arg(long, value_name = "SECS")]
    pub wait_secs: Option<u64>,

    /// Above this size, the first GET of a missing file is answered from the old store while
    /// the copy runs beside it, instead of after it. That answer BYPASSES Parse Server: no
    /// beforeFind/afterFind file trigger runs for it, and Range is not honoured. Off unless
    /// given (`[serve] stream_above`, e.g. 64MiB)
    #[arg(long, value_name = "SIZE")]
    pub stream_above: Option<String>,

    /// Copy and record nothing: a miss is answered from the old store (bypassing Parse Server's
    /// file triggers), a DELETE is passed on unrecorded
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required to write when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Hooks: `before` runs once the gateway holds its lease, before it accepts a request (a
    /// failure stops it, exit 9); `after` once it has stopped
    #[command(flatten)]
    pub hooks: super::HookArgs,
}
