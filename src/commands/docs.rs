//! `completions` and `man`: the command line's own documentation, generated from the clap
//! definition in [`crate::cli`] (so it cannot drift from the real options).

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::exit::OK;

const BIN: &str = "parse-files-migrate";

pub(super) fn completions(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    // Generated into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, BIN, &mut script);
    let mut out = crate::report::stdout::stdout();
    out.write_all(&script)?;
    out.flush()?;
    Ok(OK)
}

pub(super) fn man(args: &ManArgs) -> anyhow::Result<i32> {
    let cmd = Cli::command();
    match &args.out_dir {
        None => {
            let mut out = crate::report::stdout::stdout();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
    }
    Ok(OK)
}
