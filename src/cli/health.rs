//! `migrate`'s limits on the database's health (kept out of `cli.rs` for its size budget): see
//! `crate::dbhealth`.

use clap::Args;

#[derive(Debug, Args)]
pub struct DbHealthArgs {
    /// Slow the database work (write batches and scans) down while write batches take longer
    /// than this, e.g. 200ms
    #[arg(long, value_name = "DURATION")]
    pub max_db_latency: Option<String>,

    /// Pause the database work while the replica set's secondaries lag the primary by more than
    /// this, e.g. 2s (read from replSetGetStatus)
    #[arg(long, value_name = "DURATION")]
    pub max_repl_lag: Option<String>,
}
