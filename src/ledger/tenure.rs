//! Holding a lease for the whole of a run: the renewals, and the check every write makes first.
//!
//! A writing run takes its lease once ([`Ledger::hold`]), then a task renews it every third of
//! the lease. A run whose lease is lost must not write anything more: another run may be working
//! on the same files (it saw this lease expire while this run stalled, or the operator broke it),
//! and may already have swept this run's uploads in flight as debris. So a renewal that finds the
//! lease taken, expired or beside a conflicting one, or two renewals in a row that fail (the
//! database unreachable), mark the lease **lost**; and before every write, the run asks
//! [`Ledger::holding`], which refuses from then on (exit 2, as a lease held at start-up).
//!
//! [`Ledger::holding`] also refuses on its own clock: when the last renewal the server confirmed
//! was *sent* more than two thirds of a lease ago (the renewer stalled with the process: a VM
//! pause, `SIGSTOP`), it renews first, and refuses if that fails. The lease lasted at least a
//! whole lease after that send by the server's clock, so the third left covers a write checked
//! just before the limit. The state is shared by every clone of the [`Ledger`], so code that
//! writes through the ledger directly is held back too (`rekey` asks before recording each
//! intent), not only the engine's gate.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Ledger;
use super::lease::{LeaseLost, Taken};
use crate::exit::{Coded, USAGE};

/// How `stopped_by` starts when the run stopped because its lease was lost.
pub const LOST: &str = "lease lost";

/// The lease this run holds, shared by every clone of its [`Ledger`].
#[derive(Debug)]
pub(super) struct Tenure {
    scope: String,
    exclusive: bool,
    state: Mutex<State>,
    /// One renewal at a time (the renewer's and the writers' own after a stall).
    renewing: tokio::sync::Mutex<()>,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct State {
    /// When the last renewal the server confirmed was sent.
    confirmed: Instant,
    lost: Option<LeaseLost>,
}

impl Ledger {
    /// Take the lease on `scope` ([`Ledger::lease`]; `exclusive`: [`Ledger::lease_exclusive`])
    /// and keep it renewed until [`let_go`](Self::let_go); from now on [`holding`](Self::holding)
    /// says whether this run may still write.
    pub async fn hold(&self, scope: &str, host: &str, exclusive: bool) -> anyhow::Result<Taken> {
        let sent = Instant::now();
        let taken = self.take(scope, host, exclusive).await?;
        let tenure = Arc::new(Tenure {
            scope: scope.to_string(),
            exclusive,
            state: Mutex::new(State {
                confirmed: sent,
                lost: None,
            }),
            renewing: Default::default(),
            renewer: Default::default(),
        });
        let (ledger, held) = (self.clone(), tenure.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ledger.lease / 3).await;
                if ledger.renew_held(&held, true).await.is_err() {
                    return;
                }
            }
        });
        *tenure.renewer.lock().unwrap_or_else(|e| e.into_inner()) = Some(renewer);
        let old = self
            .tenure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(tenure);
        if let Some(old) = old {
            old.stop();
        }
        Ok(taken)
    }

    /// Whether this run may still write: an error (exit 2) once its lease is lost. `Ok` when it
    /// holds none (a dry run, a read-only command).
    pub async fn holding(&self) -> anyhow::Result<()> {
        let held = self
            .tenure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(held) = held else {
            return Ok(());
        };
        {
            let st = held.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(lost) = &st.lost {
                return Err(refusal(lost.clone(), self.lease));
            }
            if st.confirmed.elapsed() < self.lease * 2 / 3 {
                return Ok(());
            }
        }
        self.renew_held(&held, false)
            .await
            .map_err(|lost| refusal(lost, self.lease))
    }

    /// Stop renewing and give the lease back (the run is over). A lease lost meanwhile is not
    /// touched (`release` removes only this run's).
    pub async fn let_go(&self) -> anyhow::Result<()> {
        let held = self.tenure.lock().unwrap_or_else(|e| e.into_inner()).take();
        match held {
            Some(held) => {
                held.stop();
                self.release(&held.scope).await
            }
            None => Ok(()),
        }
    }

    /// Renew now (`scheduled`: the renewer's turn; else a writer's after a stall, skipped when
    /// another renewal was confirmed meanwhile). `Err` once the lease is lost.
    async fn renew_held(&self, held: &Tenure, scheduled: bool) -> Result<(), LeaseLost> {
        let _one = held.renewing.lock().await;
        let safe = self.lease * 2 / 3;
        {
            let st = held.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(lost) = &st.lost {
                return Err(lost.clone());
            }
            if !scheduled && st.confirmed.elapsed() < safe {
                return Ok(());
            }
        }
        let sent = Instant::now();
        // Bounded: every writer past the safe age waits for this renewal, so a database that
        // never answers must end in a lost lease (the run stops), not in a run that hangs.
        let renewed = tokio::time::timeout(self.lease, self.renew(&held.scope, held.exclusive))
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "the database did not answer within {} s",
                    self.lease.as_secs_f32()
                ))
            });
        let mut st = held.state.lock().unwrap_or_else(|e| e.into_inner());
        let lost = match renewed {
            Ok(()) => {
                st.confirmed = sent;
                return Ok(());
            }
            Err(e) => match e.downcast::<LeaseLost>() {
                Ok(lost) => lost,
                // The database did not answer: the lease may still be ours, and the next
                // renewal may succeed, as long as the last one is recent enough.
                Err(e) if st.confirmed.elapsed() < safe => {
                    tracing::warn!("renewing the lease on {}: {e:#}", held.scope);
                    return Ok(());
                }
                Err(e) => LeaseLost::Unrenewed {
                    scope: held.scope.clone(),
                    secs: st.confirmed.elapsed().as_secs(),
                    reason: format!("{e:#}"),
                },
            },
        };
        tracing::error!("{lost}: this run stops before its next write");
        st.lost = Some(lost.clone());
        Err(lost)
    }
}

impl Tenure {
    fn stop(&self) {
        if let Some(r) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
    }
}

/// The error that stops a run whose lease is lost.
fn refusal(lost: LeaseLost, lease: std::time::Duration) -> anyhow::Error {
    Coded::new(USAGE, format!("{LOST}: {lost}"))
        .hint(format!(
            "once the loss was found nothing more was recorded and no copy started (one in flight \
             may be left at the destination unrecorded: the next run finds it and counts it as \
             copied); what is recorded stays valid. Find out which run holds the lease now \
             (status), let it end, then run again; a lease expires {} s after its last renewal",
            lease.as_secs()
        ))
        .into()
}
