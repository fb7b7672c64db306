//! `verify`: prove the migration is complete — every reference the run is responsible for
//! resolves at the destination with the size (and MD5) the ledger recorded (the engine's
//! [`Verify`]), optionally downloaded through a Parse Server too. Read-only.

use crate::cli::VerifyArgs;
use crate::engine::verify::Verify;
use crate::exit::{OK, VERIFY_MISMATCH, usage};
use crate::report::output;
use crate::report::verify::{print_finding, print_summary};
use crate::session::{self, discover};
use crate::settings::Settings;
use crate::storage::http::{HttpConfig, HttpStore};

pub(super) async fn run(settings: &Settings, args: &VerifyArgs) -> anyhow::Result<i32> {
    let json = output::jsonl(args.out.output, "verify")?;
    let destination = session::destination_config(settings, "verify")?;
    let d = discover(settings, &args.filters).await?;
    let ledger = session::open_ledger(settings, &d.db).await?;
    let destination = session::open_checked(settings, destination, "destination").await?;
    let via = match &args.via_server {
        Some(url) => {
            if settings.parse.app_id.is_none() {
                return Err(usage("--via-server needs parse.app_id (or --app-id)"));
            }
            // Every name, legacy or not, as Parse Server serves it: <server>/files/<app>/<name>.
            let files = format!("{}/files/{{app_id}}/", url.trim_end_matches('/'));
            let cfg = HttpConfig {
                server_url: Some(url.clone()),
                tfss_base_url: Some(files.clone()),
                legacy_base_url: Some(files),
                ..Default::default()
            };
            let store = HttpStore::new(&cfg, &settings.store_context())
                .map_err(|e| usage(format!("--via-server {url}: {e}")))?;
            Some(std::sync::Arc::new(store) as _)
        }
        None => None,
    };
    let verify = Verify {
        ledger: &ledger,
        destination: destination.clone(),
        via,
        select: args.select.map(Into::into).unwrap_or(settings.run.select),
        rename: args.rename.map(Into::into).unwrap_or(settings.run.rename),
        concurrency: settings.run.concurrency,
        page_size: settings.mongo.page_size,
    };
    let counts = verify
        .run(&d.db, &d.targets, &mut |f| print_finding(json, f))
        .await?;
    print_summary(
        json,
        &counts,
        &destination.describe(),
        args.via_server.is_some(),
        args.out.report.as_deref(),
    )?;
    Ok(if counts.problems > 0 {
        VERIFY_MISMATCH
    } else {
        OK
    })
}
