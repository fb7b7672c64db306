//! `[hooks]` and the `--hook-*` flags, resolved into the [`HookConfig`] the command layer hands
//! to [`crate::hooks::Hooks`] (flag > config file > default).

use std::time::Duration;

use super::file::HooksFile;
use crate::cli::HookArgs;
use crate::exit::usage;
use crate::hooks::{DEFAULT_TIMEOUT, HookConfig};

pub(super) fn from_file(file: HooksFile) -> anyhow::Result<HookConfig> {
    Ok(HookConfig {
        before: file.before,
        before_phase: file.before_phase,
        after_phase: file.after_phase,
        on_error: file.on_error,
        after: file.after,
        timeout: match file.timeout {
            Some(t) => timeout("[hooks] timeout", &t)?,
            None => DEFAULT_TIMEOUT,
        },
        in_dry_run: file.in_dry_run.unwrap_or(false),
    })
}

/// A flag given replaces the file's value (an empty command turns a configured hook off).
pub(super) fn overlay(config: &mut HookConfig, flags: &HookArgs) -> anyhow::Result<()> {
    for (to, from) in [
        (&mut config.before, &flags.hook_before),
        (&mut config.before_phase, &flags.hook_before_phase),
        (&mut config.after_phase, &flags.hook_after_phase),
        (&mut config.on_error, &flags.hook_on_error),
        (&mut config.after, &flags.hook_after),
    ] {
        if let Some(command) = from {
            *to = Some(command.clone());
        }
    }
    if let Some(t) = &flags.hook_timeout {
        config.timeout = timeout("--hook-timeout", t)?;
    }
    config.in_dry_run |= flags.hook_in_dry_run;
    Ok(())
}

fn timeout(what: &str, s: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(s)
        .map_err(|e| usage(format!("{what} {s:?}: {e} (examples: 30s, 5m)")))?;
    if d.is_zero() {
        return Err(usage(format!("{what} must be more than 0")));
    }
    Ok(d)
}
