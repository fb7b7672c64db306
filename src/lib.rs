//! parse-files-migrate: move the files of Parse apps between storage backends and rewrite the
//! references in MongoDB.
//!
//! Data flows `settings → parse (schema, names) → scan → engine → storage / ledger → report`.
//! The binary (`main.rs`) is a thin shell around [`run`]; everything else is a library so the
//! integration tests can drive the same code against real servers.

// No unwrap()/expect() on data or I/O outside tests (style.md habit 4): the library's code only
// (integration tests, examples and benches may); `clippy.toml` allows them in unit tests.
#![warn(clippy::unwrap_used, clippy::expect_used)]
// Items `pub` inside a private module say more than they mean: `pub(crate)` there.
#![warn(unreachable_pub)]

pub mod audit;
pub mod cli;
mod commands;
pub mod db;
pub mod dbhealth;
pub mod engine;
pub mod exit;
pub mod hooks;
pub mod ledger;
pub mod parse;
pub mod report;
pub mod retry;
pub mod scan;
pub mod secret;
pub mod serve;
mod session;
pub mod settings;
pub mod storage;
pub mod throttle;

pub use commands::run;
