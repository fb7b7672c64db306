use super::*;

fn config(f: impl FnOnce(&mut HookConfig)) -> HookConfig {
    let mut c = HookConfig {
        timeout: Duration::from_secs(10),
        ..HookConfig::default()
    };
    f(&mut c);
    c
}

/// Every event's hook appends one line to `log`: event, phase, outcome, exit code, shard, run.
fn every_event(log: &std::path::Path) -> HookConfig {
    let line = format!(
        "echo $PFM_HOOK_EVENT $PFM_HOOK_PHASE $PFM_HOOK_OUTCOME $PFM_EXIT_CODE $PFM_SHARD \
         $PFM_RUN_ID >> {}",
        log.display()
    );
    config(|c| {
        for h in [
            &mut c.before,
            &mut c.before_phase,
            &mut c.after_phase,
            &mut c.on_error,
            &mut c.after,
        ] {
            *h = Some(line.clone());
        }
    })
}

#[tokio::test]
async fn events_run_in_order_with_their_variables() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let hooks = Hooks::new(every_event(&log), "migrate", false, "all");
    hooks.arm("abc".into(), "1/2");
    hooks.before().await.unwrap();
    hooks.phase(Phase::Files, async { Ok(()) }).await.unwrap();
    let failed: anyhow::Result<()> = hooks
        .phase(Phase::Strings, async { Err(anyhow::anyhow!("boom")) })
        .await;
    assert!(failed.is_err());
    assert_eq!(hooks.end(Ok(3)).await.unwrap(), 3);
    let got = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines,
        [
            "before 1/2 abc",
            "before_phase files 1/2 abc",
            "after_phase files ok 1/2 abc",
            "before_phase strings 1/2 abc",
            "after_phase strings failed 1/2 abc",
            "on_error 3 1/2 abc",
            "after 3 1/2 abc",
        ]
    );
    let counts = hooks.counts();
    assert!(counts.contains(&("before_phase", "ok", 2)), "{counts:?}");
    assert!(counts.contains(&("after", "ok", 1)), "{counts:?}");
}

#[tokio::test]
async fn a_failing_before_hook_stops_with_its_stderr_and_after_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let mut c = every_event(&log);
    c.before = Some("echo first >&2; echo 'cannot pause the indexer' >&2; exit 4".into());
    let hooks = Hooks::new(c, "rollback", false, "all");
    let e = hooks.before().await.unwrap_err();
    assert_eq!(crate::exit::code_of(&e), HOOK_FAILED);
    let msg = e.to_string();
    assert!(msg.contains("exit status 4"), "{msg}");
    assert!(msg.contains("cannot pause the indexer"), "{msg}");
    let e = hooks.end(Err(e)).await.unwrap_err();
    assert_eq!(crate::exit::code_of(&e), HOOK_FAILED);
    let got = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        ["on_error 9 all", "after 9 all"]
    );
}

#[tokio::test]
async fn a_failing_after_hook_turns_success_into_its_code_and_keeps_a_failure() {
    let c = config(|c| c.after = Some("exit 1".into()));
    let ok = Hooks::new(c.clone(), "migrate", false, "all");
    ok.before().await.unwrap();
    let e = ok.end(Ok(OK)).await.unwrap_err();
    assert_eq!(crate::exit::code_of(&e), HOOK_FAILED);
    let failed = Hooks::new(c.clone(), "migrate", false, "all");
    failed.before().await.unwrap();
    assert_eq!(failed.end(Ok(3)).await.unwrap(), 3);
    // `after` pairs with `before`: a command that failed before its run began runs none.
    let early = Hooks::new(c, "migrate", false, "all");
    assert_eq!(early.end(Ok(OK)).await.unwrap(), OK);
    assert!(early.counts().is_empty());
}

#[tokio::test]
async fn a_hook_that_hangs_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let c = config(|c| {
        c.timeout = Duration::from_millis(300);
        c.before = Some(format!("sleep 30 & echo $! > {}; wait", pid_file.display()));
    });
    let hooks = Hooks::new(c, "migrate", false, "all");
    let started = std::time::Instant::now();
    let e = hooks.before().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.to_string().contains("did not finish within 300ms"), "{e}");
    assert_eq!(hooks.counts(), [("before", "timeout", 1)]);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
    assert!(!alive || zombie, "the hook's child {pid} survived");
}

#[tokio::test]
async fn dry_runs_run_no_hook_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let dry = Hooks::new(every_event(&log), "migrate", true, "all");
    dry.before().await.unwrap();
    dry.end(Ok(OK)).await.unwrap();
    assert!(!log.exists());
    let mut c = every_event(&log);
    c.in_dry_run = true;
    let dry = Hooks::new(c, "migrate", true, "all");
    dry.before().await.unwrap();
    dry.end(Ok(OK)).await.unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn the_environment_holds_no_secret_of_the_tool() {
    // The test process's own environment is not touched (tests run in parallel): the filter is
    // checked on a hook's variables as computed.
    let hooks = Hooks::new(HookConfig::default(), "migrate", false, "all");
    let env = hooks.environment(Event::Before, &[]);
    assert!(env.iter().all(|(k, _)| !WITHHELD.contains(&k.as_str())));
    let own: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("PFM_"))
        .collect();
    assert_eq!(
        own,
        [
            "PFM_HOOK_EVENT",
            "PFM_HOOK_COMMAND",
            "PFM_RUN_ID",
            "PFM_SHARD",
            "PFM_DRY_RUN"
        ]
    );
}
