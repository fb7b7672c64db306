//! The clock leases are judged by: the database server's, never this host's.
//!
//! Runs on several hosts compare one lease's `until` against "now". If each used its own clock,
//! a host running a minute ahead would see every live lease as expired and take it over
//! silently (and sweep the live run's uploads in flight as debris). So "now" is the server's
//! `localTime`, read from `hello` (`isMaster` before 4.4.2) right before each lease operation:
//! one small round trip per take, renewal or lease query, which happen every `lease_secs`/3 at
//! most. This keeps to the protocol subset the README lists: no `$expr`/`$$NOW` pipeline updates,
//! which some look-alike servers lack. The price is that "now" is one round trip old when the
//! write it decides lands; [`super::lease`] says why that errs on the safe side.
//!
//! This module owns the host clock too, for the one case it is still used: a server that does
//! not report `localTime` (then leases are as good as the hosts' clocks, and a warning says so).
//! `PFM_TEST_CLOCK_SKEW_MS` (tests only) shifts that host clock, read here and nowhere else, so a
//! test can show that a host clock running ahead does not make a live lease look expired.

use anyhow::Context;
use mongodb::bson::{DateTime, doc};

use super::Ledger;

/// Test-only: milliseconds added to this host's clock (may be negative).
const SKEW_VAR: &str = "PFM_TEST_CLOCK_SKEW_MS";

impl Ledger {
    /// The database server's current time (`hello`'s `localTime`); this host's clock when the
    /// server does not report one.
    pub(super) async fn server_now(&self) -> anyhow::Result<DateTime> {
        let reply = match self.db.run_command(doc! {"hello": 1}).await {
            Ok(r) => r,
            Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Command(_)) => self
                .db
                .run_command(doc! {"isMaster": 1})
                .await
                .context("reading the database server's clock (isMaster)")?,
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context("reading the database server's clock (hello)")
                );
            }
        };
        match reply.get_datetime("localTime") {
            Ok(t) => Ok(*t),
            Err(_) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "the database server does not report its clock (`localTime` in \
                         `hello`): leases are judged by each host's own clock, so keep the \
                         clocks of every host that runs this tool in sync"
                    )
                });
                Ok(host_now())
            }
        }
    }
}

/// This host's clock (shifted by `PFM_TEST_CLOCK_SKEW_MS` in tests).
pub(super) fn host_now() -> DateTime {
    let skew = std::env::var(SKEW_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    DateTime::from_millis(DateTime::now().timestamp_millis().saturating_add(skew))
}

/// `t` moved by `d` (saturating: a lease of absurd length ends at the end of time).
pub(super) fn plus(t: DateTime, d: std::time::Duration) -> DateTime {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(t.timestamp_millis().saturating_add(ms))
}
