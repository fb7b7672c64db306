//! The `parse-files-migrate` binary: parse arguments, run on a Tokio runtime, map the outcome to
//! an exit code (see `exit.rs` and the README).

use clap::Parser;

use parse_files_migrate::cli::Cli;
use parse_files_migrate::{exit, report};

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::INTERNAL);
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = parse_files_migrate::run(cli).await;
        // Close MongoDB clients while the runtime still runs (see `db::track`).
        parse_files_migrate::db::shutdown(std::time::Duration::from_secs(2)).await;
        outcome
    });
    let code = match outcome {
        Ok(code) => code,
        // The reader of stdout stopped reading: not a failure to report (see report::stdout).
        Err(err) if report::stdout::closed(&err) => exit::CLOSED_PIPE,
        Err(err) => {
            report::print_error(&err);
            exit::code_of(&err)
        }
    };
    // Do not wait for lingering background tasks (driver monitors, idle connections).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
