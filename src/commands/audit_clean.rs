//! `audit --quarantine / --restore / --purge`: reversible clean-up of one store's orphans,
//! under the run's lease (exclusive: no migration or rollback runs meanwhile), through the same
//! dry-run gate and consent rule as `migrate`, every step recorded in the ledger before it
//! happens ([`crate::engine::quarantine`]). Which orphans may move: [`crate::engine::quarantine::orphans`].

use std::time::Duration;

use crate::cli::AuditArgs;
use crate::engine::Stores;
use crate::engine::quarantine::{self as q, Counts, Outcome, Step};
use crate::exit::{Coded, INCOMPLETE, OK, USAGE, usage};
use crate::hooks::{Hooks, Phase};
use crate::report::migrate::MigrateFormat;
use crate::report::quarantine::CleanWriter;
use crate::session::{self, gate::GateArgs};
use crate::settings::Settings;

/// What was done, and the writer of its lines.
struct Tally {
    counts: Counts,
    writer: CleanWriter,
}

impl Tally {
    fn report(&mut self, step: &Step, outcome: &Outcome) -> anyhow::Result<()> {
        self.counts.add(step, outcome);
        Ok(self.writer.step(step, outcome)?)
    }

    fn kept(&mut self, n: u64) {
        self.counts.kept += n;
    }
}

fn duration(given: Option<&str>, default: &str, flag: &str) -> anyhow::Result<Duration> {
    let s = given.unwrap_or(default);
    humantime::parse_duration(s).map_err(|e| usage(format!("{flag} {s:?}: {e} (e.g. 7d, 12h)")))
}

pub(super) async fn run(
    settings: &Settings,
    args: &AuditArgs,
    hooks: &Hooks,
) -> anyhow::Result<i32> {
    let format = MigrateFormat::choose(args.out.output, "audit --quarantine/--restore/--purge")?;
    let (action, verb) = match (args.clean.quarantine, args.clean.restore) {
        (true, _) => ("quarantine", "audit --quarantine moves orphaned files"),
        (_, true) => ("restore", "audit --restore moves quarantined files back"),
        _ => ("purge", "audit --purge deletes quarantined files for good"),
    };
    let min_age = duration(args.clean.min_age.as_deref(), "7d", "--min-age")?;
    let older_than = duration(args.clean.older_than.as_deref(), "30d", "--older-than")?;
    let run_bytes = crate::settings::sort_run_bytes(args.sort_run_bytes.as_deref())?;
    let store = session::open_listed(settings, args.store, "audit").await?;
    if action == "quarantine" && !args.clean.store_is_this_apps_only {
        let (cfg, role) = session::store_by_role(settings, args.store, "audit")?;
        if let Some(why) = cfg.shared_prefix() {
            return Err(Coded::new(
                USAGE,
                format!(
                    "refusing to quarantine orphans of the {role} {}: {why}, so its listing may \
                     hold another app's files",
                    store.describe()
                ),
            )
            .hint(
                "set the prefix to this app's own folder (ending in /), or pass \
                 --store-is-this-apps-only if nothing else writes there",
            )
            .into());
        }
    }
    if store.quarantine().is_none() {
        return Err(usage(format!("{} has no quarantine", store.describe())));
    }
    let d = session::discover_everything(settings).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let stores = Stores {
        hosted: None,
        server: None,
        destination: store.clone(),
    };
    let gate = GateArgs {
        dry_run: args.clean.dry_run,
        yes: args.clean.yes,
        break_lease: false,
        scope: "all",
        exclusive: true,
        overwrite: false,
        verb,
        format,
        file_key: None,
        guard: None,
        hooks,
    };
    let effects = session::gate::open(settings, &ledger, &d.db, stores, gate, || {
        let what = match action {
            "quarantine" => format!(
                "move every orphan older than {} into the quarantine of",
                humantime::format_duration(min_age)
            ),
            "restore" => "move every quarantined file back into".to_string(),
            _ => format!(
                "delete for good every file quarantined more than {} ago{} in",
                humantime::format_duration(older_than),
                if args.clean.superseded {
                    ", and every superseded revision,"
                } else {
                    ""
                }
            ),
        };
        format!("About to {what} {}", store.describe())
    })
    .await?;
    let mut tally = Tally {
        counts: Counts::default(),
        writer: CleanWriter::new(format, Box::new(crate::report::stdout::stdout())),
    };
    let mut info = session::run_info(settings, "all", &store.identity())?;
    info.insert("audit", action);
    let (_, code) = session::recorded(&effects, hooks, info, async {
        let (e, s) = (&*effects, &*store);
        let mut report = |step: &Step, o: &Outcome| tally.report(step, o);
        let orphans = q::orphans::Orphans {
            db: &d.db,
            targets: &d.targets,
            other_apps: &d.other_apps,
            page_size: settings.mongo.page_size,
            effects: e,
            ledger: &ledger,
            store: s,
            min_age,
            run_bytes,
        };
        match action {
            "quarantine" => {
                let kept = hooks
                    .phase(Phase::Quarantine, orphans.run(&mut report))
                    .await?;
                tally.kept(kept);
            }
            "restore" => {
                let restore = q::restore_all(e, &ledger, s, &mut report);
                hooks.phase(Phase::Restore, restore).await?
            }
            _ => {
                let purge = orphans.purge_unreferenced(older_than, &mut report);
                hooks.phase(Phase::Purge, purge).await?;
                if args.clean.superseded {
                    let superseded = q::purge_superseded(e, s, &mut report);
                    hooks.phase(Phase::PurgeSuperseded, superseded).await?;
                }
            }
        }
        let code = if tally.counts.incomplete() {
            INCOMPLETE
        } else {
            OK
        };
        let recorded = mongodb::bson::to_document(&tally.counts)?;
        Ok(((), mongodb::bson::doc! {action: recorded}, code))
    })
    .await?;
    let (dry, report) = (args.clean.dry_run, args.out.report.as_deref());
    tally.writer.summary(action, dry, &tally.counts, report)?;
    Ok(code)
}
