//! Single flight: concurrent misses of one name share one copy. The first miss starts the work
//! as a task of its own (it runs to its end even when every request that waited for it gave up
//! or disconnected, so a copy is never cut halfway by a client); later misses of the same name
//! join it and wait, each for at most its own bound. Once the work has ended its result stays
//! readable to those already waiting, and the name is free for the next miss.
//!
//! Across processes (several gateways behind a load balancer, or a `migrate` beside them) there
//! is no shared flight: the destination's create-only writes settle a race (one copy lands, the
//! other finds the same bytes there).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The flights in progress, by name.
pub struct Flights<T> {
    map: Map<T>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            map: Default::default(),
        }
    }
}

type Map<T> = Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>;

struct Forget<T> {
    map: Map<T>,
    key: String,
}

impl<T> Drop for Forget<T> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// How waiting for a flight ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed<T> {
    Done(T),
    /// The bound passed first; the work goes on.
    TimedOut,
    /// The work ended without a result (it panicked).
    Lost,
}

/// A place in a flight: whether this request started it, and how to wait for its end.
pub struct Ticket<T> {
    pub leader: bool,
    rx: watch::Receiver<Option<T>>,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Join the flight of `key`, or start one running `work()` (spawned; see the module
    /// documentation).
    pub fn join<F, W>(&self, key: &str, work: W) -> Ticket<T>
    where
        W: FnOnce() -> F,
        F: Future<Output = T> + Send + 'static,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(key) {
            return Ticket {
                leader: false,
                rx: rx.clone(),
            };
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_string(), rx.clone());
        let (map, key, fut) = (self.map.clone(), key.to_string(), work());
        tokio::spawn(async move {
            // Frees the name however the work ends, a panic included (waiters then see the
            // sender gone).
            let _forget = Forget { map, key };
            let done = fut.await;
            // Sent before the name is freed: a miss arriving in between reads this result
            // instead of starting a second copy.
            let _ = tx.send(Some(done));
        });
        Ticket { leader: true, rx }
    }

    /// Flights in progress.
    pub fn in_progress(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<T: Clone> Ticket<T> {
    /// Wait for the flight's end, at most `bound`.
    pub async fn wait(mut self, bound: Duration) -> Landed<T> {
        match tokio::time::timeout(bound, self.rx.wait_for(Option::is_some)).await {
            Err(_) => Landed::TimedOut,
            Ok(Err(_)) => Landed::Lost,
            Ok(Ok(v)) => match &*v {
                Some(t) => Landed::Done(t.clone()),
                None => Landed::Lost,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_joins_share_one_run() {
        let flights = Flights::<u32>::default();
        let runs = Arc::new(AtomicU32::new(0));
        let mut tickets = Vec::new();
        for _ in 0..16 {
            let runs = runs.clone();
            tickets.push(flights.join("a", move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                runs.fetch_add(1, Ordering::SeqCst) + 7
            }));
        }
        assert_eq!(tickets.iter().filter(|t| t.leader).count(), 1);
        for t in tickets {
            assert_eq!(t.wait(Duration::from_secs(5)).await, Landed::Done(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Ended: the next miss starts a new flight.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(flights.in_progress(), 0);
        let t = flights.join("a", || async { 9 });
        assert!(t.leader);
        assert_eq!(t.wait(Duration::from_secs(5)).await, Landed::Done(9));
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_bound_and_the_work_goes_on() {
        let flights = Flights::<u32>::default();
        let slow = flights.join("b", || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            1
        });
        let other = flights.join("b", || async { 2 });
        assert_eq!(
            other.wait(Duration::from_millis(10)).await,
            Landed::TimedOut
        );
        assert_eq!(slow.wait(Duration::from_secs(5)).await, Landed::Done(1));
    }
}
