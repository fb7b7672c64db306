//! The engine: everything a command does to stores, the ledger and the app's documents, behind
//! one gate, with no UI. A small kernel shared by every command, and one room per capability.
//!
//! **Kernel.** [`effects`] is the gate's contract ([`Effects`]: every destructive step goes
//! through the one value a run chooses, [`live::Live`] or [`dry::DryRun`]); [`state`] the run's
//! shared state and stop rules; [`summary`] its counters and summary; [`cas`] the
//! compare-and-swap updates of references; [`transfer`] one verified copy; [`debris`] the sweep
//! of what killed runs left; [`removal`] the one door through which stored bytes are removed.
//!
//! **Rooms.** [`pipeline`]: `migrate`, `migrate --estimate` and `rebase` (plan → copy → verify →
//! rewrite, then strings). [`rollback`]: the same gate backwards. [`verify`]: read-only checks.
//! [`rekey`]: re-encrypting a store in place. [`quarantine`]: `audit --quarantine / --restore /
//! --purge`. [`relink`]: dangling references pointed at the key their bytes sit under.
//!
//! This module only declares the rooms and names what the rest of the crate uses most.

pub mod cas;
pub mod debris;
pub mod dry;
pub mod effects;
pub mod live;
pub mod pipeline;
pub mod quarantine;
pub mod rekey;
pub mod relink;
pub mod removal;
pub mod rollback;
pub mod state;
pub mod summary;
pub mod transfer;
pub mod verify;

pub use effects::{Effects, FileJob, Outcome, Stores};
pub use pipeline::{DEFAULT_CONCURRENCY, Mode, Plan, Shard, UrlBase, scope_of};
pub use state::{INTERRUPTED, Limits, RunState};
pub use summary::{Counters, MAX_ERRORS, NO_SPACE, REFUSED, Summary, stopped_by_errors};
