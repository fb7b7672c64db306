//! `migrate --estimate`: the migration's own plan (walk, ledger, selection, cutoffs), run with
//! the estimating effects instead of the live ones — nothing is written — then the sizing
//! report, then the dry-run summary.

use std::sync::Arc;

use crate::cli::MigrateArgs;
use crate::engine::pipeline::estimate::{EstimateOptions, Estimator, Rate};
use crate::engine::{self, Effects, RunState};
use crate::exit::{Coded, USAGE};
use crate::report::estimate;
use crate::report::migrate::{MigrateFormat, print_summary};
use crate::session::{self, discover};
use crate::settings::{Settings, parse_size};
use crate::storage::StoreName;

pub(super) async fn run(settings: &Settings, args: &MigrateArgs) -> anyhow::Result<i32> {
    settings.check_migrate(args)?;
    let assume = args
        .sizing
        .assume_rate
        .as_deref()
        .map(parse_rate)
        .transpose()
        .map_err(|e| Coded::new(USAGE, format!("--assume-rate: {e}")))?;
    let destination = session::destination_config(settings, "migrate")?;
    let format = MigrateFormat::choose(args.output, "migrate --estimate")?;
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let stores = session::migrate_stores(settings, destination).await?;
    let plan = settings.run_config(args, StoreName::of(stores.destination.as_ref()));
    let opts = EstimateOptions {
        sample: args
            .sizing
            .sample
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        assume,
        concurrency: plan.concurrency,
    };
    let estimator = Arc::new(Estimator::new(stores.clone(), opts));
    let effects: Arc<dyn Effects> = estimator.clone();

    let state = RunState::new();
    let signals = session::on_signals(state.clone());
    let result = engine::pipeline::files(plan, effects, &ledger, &d.db, &d.targets, state).await;
    signals.abort();
    let summary = result?;
    let found = estimator
        .finish_estimate(summary.files.planned, stores.destination.put_buffer())
        .await;
    estimate::write(format, &found, &mut crate::report::stdout::stdout())?;
    print_summary(format, &summary, args.report.as_deref())?;
    Ok(summary.exit_code())
}

/// `150` (files/s), `40MiB` (bytes/s), `150,40MiB` (both); each may end in `/s`.
fn parse_rate(s: &str) -> Result<Rate, String> {
    let mut rate = Rate::default();
    for part in s.split(',') {
        let part = part.trim();
        let part = part.strip_suffix("/s").unwrap_or(part).trim();
        let positive = |v: f64| (v > 0.0 && v.is_finite()).then_some(v);
        if let Ok(files) = part.parse::<f64>() {
            rate.files_per_sec = Some(positive(files).ok_or("a rate must be a positive number")?);
        } else {
            let bytes = parse_size(part)? as f64;
            rate.bytes_per_sec = Some(positive(bytes).ok_or("a rate must be positive")?);
        }
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_are_files_bytes_or_both() {
        let r = parse_rate("150").unwrap();
        assert_eq!((r.files_per_sec, r.bytes_per_sec), (Some(150.0), None));
        let r = parse_rate("40MiB/s").unwrap();
        assert_eq!(
            (r.files_per_sec, r.bytes_per_sec),
            (None, Some(40.0 * 1048576.0))
        );
        let r = parse_rate("150/s, 1KiB").unwrap();
        assert_eq!(
            (r.files_per_sec, r.bytes_per_sec),
            (Some(150.0), Some(1024.0))
        );
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-3").is_err());
    }
}
