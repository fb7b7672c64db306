//! Log setup: tracing to stderr, as text or JSON lines; `-v/-q` pick the level, `RUST_LOG`
//! overrides; no colour unless stderr is a terminal and `NO_COLOR` is unset. With progress on
//! (a terminal, or `--progress always`), log lines go through the progress display's writer so
//! they never break the bars.

use std::io::IsTerminal;

use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::filter::IndicatifFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::{LogFormat, ProgressMode};
use crate::settings::OutputSettings;

/// Whether progress bars are shown: `always`, or `auto` on a terminal (never in JSON log mode,
/// which is for machines).
pub fn progress_enabled(output: &OutputSettings) -> bool {
    match output.progress {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => {
            std::io::stderr().is_terminal() && output.log_format == LogFormat::Text
        }
    }
}

/// Text log fields as tracing-subscriber writes them (`message`, then `name=value`), with control
/// characters escaped in every value. tracing-subscriber 0.3.23 escapes ANSI sequences in the
/// message only; file names (`file = %name`) come from the database and may carry escape
/// sequences that would otherwise reach the operator's terminal (retitle it, clear it…).
fn printable_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let v = format!("{value:?}");
        let v = super::printable(&v);
        match field.name() {
            "message" => write!(w, "{v}"),
            name => write!(w, "{name}={v}"),
        }
    })
    .delimited(" ")
}

/// Install the global subscriber. Safe to call once per process.
pub fn init(output: &OutputSettings) {
    let level = match output.verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Our own crate at the chosen level; the SDKs' chatter only from warn up unless RUST_LOG says.
    let default = format!("warn,parse_files_migrate={level}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if progress_enabled(output) {
        // Only spans that ask for a bar (`indicatif.pb_show`) get one: see report::progress.
        let bars = IndicatifLayer::new();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(bars.get_stderr_writer())
            .with_target(false);
        let fmt = match output.log_format {
            LogFormat::Json => fmt
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .boxed(),
            LogFormat::Text => fmt
                .with_ansi(ansi)
                .without_time()
                .fmt_fields(printable_fields())
                .boxed(),
        };
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(bars.with_filter(IndicatifFilter::new(false)))
            .try_init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match output.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(ansi)
            .without_time()
            .fmt_fields(printable_fields())
            .try_init(),
    };
}
