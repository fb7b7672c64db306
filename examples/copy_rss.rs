//! Measure what one file copy costs in memory: copy NAME from the `[source.server]` store to
//! the `[destination]` store of a config file with the engine's copy-and-verify step, and print
//! the bytes, the time and the process's peak RSS.
//!
//!     cargo run --release --example copy_rss -- CONFIG NAME [TARGET]
//!
//! Used for the storage acceptance figure "a 1 GiB copy between any two backends stays under
//! 64 MiB of RSS" (see bench/copy-rss).

use std::time::Instant;

use parse_files_migrate::cli::GlobalArgs;
use parse_files_migrate::engine::transfer::copy_verified;
use parse_files_migrate::settings::Settings;
use parse_files_migrate::storage::{self, GetOptions, PutMode};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, name) = match (args.first(), args.get(1)) {
        (Some(c), Some(n)) => (c.clone(), n.clone()),
        _ => anyhow::bail!("usage: copy_rss CONFIG NAME [TARGET]"),
    };
    let target = args.get(2).cloned().unwrap_or_else(|| name.clone());
    let settings = Settings::resolve(
        &GlobalArgs {
            config: Some(config.into()),
            ..Default::default()
        },
        None,
    )?;
    let ctx = settings.store_context();
    let source_cfg = settings
        .source
        .server
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the config needs a [source.server] table"))?;
    let dest_cfg = settings
        .destination
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the config needs a [destination] table"))?;
    let source = storage::open(&source_cfg, &ctx).await?;
    let dest = storage::open(&dest_cfg, &ctx).await?;
    dest.check().await?;
    let start = Instant::now();
    let opts = GetOptions::default();
    let v = copy_verified(&source, &*dest, &name, &target, &opts, PutMode::Overwrite).await?;
    let secs = start.elapsed().as_secs_f64();
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    println!(
        "{} -> {}: {} bytes in {secs:.1} s ({:.1} MiB/s), md5 {}, destination hash checked: {}, peak RSS {:.1} MiB",
        source.describe(),
        dest.describe(),
        v.size,
        v.size as f64 / secs / 1048576.0,
        v.md5.as_deref().unwrap_or("-"),
        v.hash_checked,
        usage.ru_maxrss as f64 / 1024.0
    );
    Ok(())
}
