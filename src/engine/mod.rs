//! The migration pipeline: plan → copy → verify → rewrite. (Being built; see the engine issue.)
//!
//! [`transfer`] is the copy-and-verify step for one file, the only place bytes flow from a
//! source store to a destination store.

pub mod transfer;
