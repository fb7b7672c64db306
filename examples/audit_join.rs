//! The `audit` join alone at scale: N stored names × M references through the external sort and
//! the merge-join (`src/audit`), with no store and no database, printing the time and the peak
//! RSS. The figures in the README's `audit` section come from here.
//!
//! ```sh
//! cargo run --release --example audit_join -- 1000000 1000000            # default 8MiB runs
//! cargo run --release --example audit_join -- 1000000 1000000 1GiB       # everything in memory
//! ```
//!
//! About 5 % of the stored names are referenced by nothing (orphans) and about 5 % of the
//! references name nothing stored (dangling); names look like Parse Server's
//! (`<32 hex>_photo-<n>.jpg`), fed in a scrambled order.

use std::time::Instant;

use parse_files_migrate::audit::{Audit, DEFAULT_RUN_BYTES, Options};
use parse_files_migrate::settings::parse_size;

fn name(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{h:016x}{:016x}_photo-{i}.jpg", h.rotate_left(29))
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stored: u64 = args.first().map_or(Ok(1_000_000), |a| a.parse())?;
    let refs: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let run_bytes = match args.get(2) {
        Some(s) => usize::try_from(parse_size(s).map_err(anyhow::Error::msg)?)?,
        None => DEFAULT_RUN_BYTES,
    };
    let start = Instant::now();
    let mut audit = Audit::new(&Options {
        run_bytes,
        ..Options::default()
    });
    // A scrambled order (104729 is prime, so i ↦ i·104729 mod n is a permutation unless n is a
    // multiple of it).
    for i in 0..stored {
        let k = (i * 104_729) % stored;
        audit.add_stored(&name(k), 1000 + k % 100_000, None)?;
    }
    // References name 0 .. 1.05 × stored, skipping every 20th stored name: ~5 % dangling.
    let span = stored + stored / 20;
    for j in 0..refs {
        let mut k = (j * 7919) % span.max(1);
        if k.is_multiple_of(20) && k < stored {
            k = span + j; // a name nothing stores
        }
        let class = if j % 3 == 0 { "_User" } else { "Photo" };
        let path = if j % 4 == 0 { "gallery.0" } else { "image" };
        audit.add_reference(class, &format!("{:010}", j / 2), path, &name(k))?;
    }
    let fed = start.elapsed();
    let (_, _, runs) = audit.counts();
    let (mut orphans, mut dangling) = (0u64, 0u64);
    let summary = audit.finish(&mut |f| {
        match f {
            parse_files_migrate::audit::Finding::Orphan { .. } => orphans += 1,
            parse_files_migrate::audit::Finding::Dangling { .. } => dangling += 1,
            parse_files_migrate::audit::Finding::Superseded { .. } => {}
        }
        Ok(())
    })?;
    let total = start.elapsed();
    println!(
        "{stored} stored × {refs} references, runs of {run_bytes} bytes: {runs} run files; \
         fed in {:.2} s, joined in {:.2} s, total {:.2} s; peak RSS {:.1} MiB; \
         {orphans} orphans, {dangling} dangling, {} referenced, {} shared",
        fed.as_secs_f64(),
        (total - fed).as_secs_f64(),
        total.as_secs_f64(),
        peak_rss_mib(),
        summary.referenced_files,
        summary.shared_files,
    );
    assert_eq!(orphans, summary.orphans);
    Ok(())
}
