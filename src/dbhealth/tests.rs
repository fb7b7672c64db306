//! The pacing rules on tokio's paused clock.

use super::*;

fn guard(ms: u64) -> Guard {
    Guard::new(Limits {
        max_db_latency: Some(Duration::from_millis(ms)),
        max_repl_lag: None,
    })
}

/// One write round trip taking `ms`.
async fn write(g: &Guard, ms: u64) {
    // An async block: `sleep` would fix its deadline before the guard's wait.
    g.write(async { tokio::time::sleep(Duration::from_millis(ms)).await })
        .await;
}

#[tokio::test(start_paused = true)]
async fn no_limit_never_waits_but_still_times_writes() {
    let g = Guard::default();
    let t = Instant::now();
    for _ in 0..10 {
        write(&g, 500).await;
    }
    assert_eq!(t.elapsed(), Duration::from_millis(5000));
    assert_eq!(g.report().write_batches, 10);
    assert_eq!(g.report().latency_ms_max, 500.0);
    assert!(g.status().is_none());
    assert!(!g.report().throttled());
}

#[tokio::test(start_paused = true)]
async fn a_slow_batch_paces_round_trips_and_fast_ones_end_it() {
    let g = guard(100);
    // 10 fast round trips, 10 ms apart.
    for _ in 0..10 {
        write(&g, 10).await;
    }
    assert!(g.status().is_none());
    // One slow batch is no sign of load (the median of the last 8 decides)…
    write(&g, 300).await;
    assert!(g.status().is_none());
    // …four of the last eight are: the gap becomes twice the interval so far.
    for _ in 0..3 {
        write(&g, 300).await;
    }
    let gap = g.pace.lock().unwrap().gap;
    assert!(gap >= Duration::from_millis(20), "{gap:?}");
    let status = g.status().unwrap();
    assert!(
        status.starts_with("throttled: db latency 300ms > 100ms"),
        "{status}"
    );
    // Still slow: the gap doubles per round trip started after the change.
    write(&g, 300).await;
    assert_eq!(g.pace.lock().unwrap().gap, gap * 2);
    // Admits are now spaced by the gap.
    let t = Instant::now();
    g.admit().await;
    g.admit().await;
    g.admit().await;
    assert!(t.elapsed() >= gap * 4, "{:?}", t.elapsed());
    // Fast again: the gap shrinks by a tenth a batch until the pacing ends.
    for _ in 0..200 {
        write(&g, 10).await;
    }
    assert!(g.pace.lock().unwrap().gap.is_zero());
    assert!(g.status().is_none());
    let r = g.report();
    assert!(r.throttled_secs.db_latency > 0.0, "{r:?}");
    assert_eq!(r.throttled_secs.repl_lag, 0.0);
    assert_eq!(r.write_batches, 215);
}

#[tokio::test(start_paused = true)]
async fn batches_in_flight_before_a_change_count_once() {
    let g = guard(100);
    write(&g, 10).await;
    // Eight slow batches started together: one halving, not four (the median is over the
    // limit from the fourth on).
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..8 {
        g.observe(started);
    }
    let gap = g.pace.lock().unwrap().gap;
    assert!(gap > Duration::ZERO && gap < MAX_GAP, "{gap:?}");
    // The gap never passes MAX_GAP however slow the server gets.
    for _ in 0..20 {
        write(&g, 1_000).await;
    }
    assert_eq!(g.pace.lock().unwrap().gap, MAX_GAP);
}

#[tokio::test(start_paused = true)]
async fn lag_above_the_limit_holds_every_round_trip() {
    let g = std::sync::Arc::new(Guard::new(Limits {
        max_db_latency: None,
        max_repl_lag: Some(Duration::from_secs(2)),
    }));
    g.set_lag(Duration::from_secs(5));
    assert_eq!(
        g.status().as_deref(),
        Some("throttled: replication lag 5.0s > 2.0s")
    );
    let g2 = g.clone();
    let held = tokio::spawn(async move {
        let t = Instant::now();
        g2.admit().await;
        t.elapsed()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    g.set_lag(Duration::from_millis(500));
    let waited = held.await.unwrap();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(g.status().is_none());
    assert!(g.report().throttled_secs.repl_lag >= 3.0);
}

#[test]
fn quantiles_are_within_a_bucket() {
    let l = Latencies::default();
    for ms in 1..=100 {
        l.record(Duration::from_millis(ms));
    }
    let p50 = l.quantile(0.5).unwrap().as_millis();
    let p90 = l.quantile(0.9).unwrap().as_millis();
    assert!((50..=63).contains(&p50), "{p50}");
    assert!((90..=113).contains(&p90), "{p90}");
    assert_eq!(l.quantile(1.0).unwrap().as_millis(), 100);
}
