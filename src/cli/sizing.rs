//! `migrate --estimate` and its options (kept out of `cli.rs` for its size budget).

use clap::Args;

#[derive(Debug, Args)]
pub struct SizingArgs {
    /// Size the work (implies --dry-run): probe every planned file at its source, measure the
    /// source's rate; print files and bytes per class field and kind, the largest files, files
    /// missing already, the projected duration and memory at --concurrency
    #[arg(long)]
    pub estimate: bool,

    /// With --estimate: probe only a uniform random sample of N files and project the totals
    #[arg(long, value_name = "N", requires = "estimate", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,

    /// With --estimate: project the duration at this rate instead of measuring one: files per
    /// second (`150`), bytes per second (`40MiB`), or both (`150,40MiB`; the slower one decides)
    #[arg(long, value_name = "RATE", requires = "estimate")]
    pub assume_rate: Option<String>,
}
