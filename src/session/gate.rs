//! The gate, assembled in one place: every writing command (`migrate`, `rebase`, `rollback`,
//! `audit`'s clean-up, `rekey`) gets its [`Effects`] from [`open`]. A dry run gets a
//! [`DryRun`] that prints its plan; a live run first needs consent (`--yes`, or a `y` at the
//! terminal to a question that names the leases `--break-lease` would break), then gets a
//! [`Live`] built from the settings: the lease scope, the host, the collection prefix, the
//! retry policy and the database guard. rclone's `SkipDestructive`: one gate, chosen once.

use std::sync::Arc;

use mongodb::Database;

use super::{breaking_text, consent, hostname, leases_to_break};
use crate::dbhealth::Guard;
use crate::engine::{Effects, Stores, dry::DryRun, live::Live};
use crate::hooks::Hooks;
use crate::ledger::Ledger;
use crate::report::migrate::{MigrateFormat, PlanWriter};
use crate::secret::Secret;
use crate::settings::Settings;

/// What a command asks of its gate.
pub(crate) struct GateArgs<'a> {
    pub dry_run: bool,
    pub yes: bool,
    /// `--break-lease`: the leases to break (once consent is given) are looked up here.
    pub break_lease: bool,
    /// The lease scope: `all`, or a shard's `K/N`.
    pub scope: &'a str,
    /// No other scope's run may hold a lease meanwhile (every command but `migrate`).
    pub exclusive: bool,
    /// Replace what the destination holds under a target name (`migrate --overwrite`).
    pub overwrite: bool,
    /// What the refusal without `--yes` says the command would do.
    pub verb: &'a str,
    /// How the dry run's plan is printed, and the secret it must never show.
    pub format: MigrateFormat,
    pub file_key: Option<Secret>,
    /// The database guard of the run (`--max-db-latency`, `--max-repl-lag`), if it has one.
    pub guard: Option<Arc<Guard>>,
    /// The run's hooks: they learn its id and scope here.
    pub hooks: &'a Hooks,
}

/// The run's effects: dry or live, consent asked (`question` is built only when asked), leases
/// to break looked up. The one place a command's writes are enabled.
pub(crate) async fn open(
    settings: &Settings,
    ledger: &Ledger,
    db: &Database,
    stores: Stores,
    args: GateArgs<'_>,
    question: impl FnOnce() -> String,
) -> anyhow::Result<Arc<dyn Effects>> {
    args.hooks.arm(ledger.run_id().to_hex(), args.scope);
    // An exclusive run breaks any scope's lease; a shard only its own.
    let scope = (!args.exclusive).then_some(args.scope);
    let breaking = leases_to_break(ledger, scope, args.break_lease, args.dry_run).await?;
    if args.dry_run {
        let out = PlanWriter::new(
            args.format,
            Box::new(crate::report::stdout::stdout()),
            args.file_key,
        );
        return Ok(Arc::new(
            DryRun::new(stores, Box::new(out)).surveying(ledger.clone()),
        ));
    }
    consent(args.yes, args.verb, || {
        question() + &breaking_text(&breaking)
    })?;
    let mut live = Live::new(
        stores,
        ledger.clone(),
        db.clone(),
        args.scope.to_string(),
        hostname(),
        settings.mongo.collection_prefix.clone(),
        settings.run.retry,
    )
    .breaking(breaking)
    .overwrite(args.overwrite);
    if args.exclusive {
        live = live.exclusive();
    }
    if let Some(guard) = args.guard {
        live = live.guard(guard);
    }
    Ok(Arc::new(live))
}
