//! The cutoffs a cron job sets on a run (`migrate`, `rekey`): stop after so many files, bytes or
//! minutes with exit 8, and let the next run continue. One set of flags for both commands; they
//! override the `[run]` keys of the same names (see `settings::cutoffs`).

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct CutoffArgs {
    /// Stop after this many files (exit 8; a re-run continues)
    #[arg(long, value_name = "N")]
    pub max_files: Option<u64>,

    /// Stop after this many bytes, e.g. 10GiB (exit 8; a re-run continues)
    #[arg(long, value_name = "SIZE")]
    pub max_bytes: Option<String>,

    /// Stop after this long, e.g. 45m (exit 8; a re-run continues)
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,
}
