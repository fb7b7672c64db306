//! `--hook-*`: the hooks of a writing command (`[hooks]` in the config file; `crate::hooks`),
//! flattened into each writing command's arguments.

use clap::Args;

#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Hooks")]
pub struct HookArgs {
    /// Shell command run once the run holds its lease, before its first copy, move or rewrite;
    /// if it fails the run stops (exit 9). Also `[hooks]` in the config file
    #[arg(long, value_name = "CMD")]
    pub hook_before: Option<String>,

    /// Shell command run before each phase (PFM_HOOK_PHASE); if it fails the run stops (exit 9)
    #[arg(long, value_name = "CMD")]
    pub hook_before_phase: Option<String>,

    /// Shell command run after each phase (PFM_HOOK_OUTCOME: ok or failed)
    #[arg(long, value_name = "CMD")]
    pub hook_after_phase: Option<String>,

    /// Shell command run when the command fails (an exit code other than 0 and 8)
    #[arg(long, value_name = "CMD")]
    pub hook_on_error: Option<String>,

    /// Shell command run last whenever the before hook ran (PFM_EXIT_CODE, PFM_SUMMARY)
    #[arg(long, value_name = "CMD")]
    pub hook_after: Option<String>,

    /// Kill a hook (its process group) that runs longer than this (default 5m)
    #[arg(long, value_name = "DURATION")]
    pub hook_timeout: Option<String>,

    /// Also run the hooks in a dry run (`[hooks] in_dry_run`)
    #[arg(long)]
    pub hook_in_dry_run: bool,
}
