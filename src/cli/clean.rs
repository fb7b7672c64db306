//! The flags of `audit`'s reversible clean-up (`--quarantine`, `--restore`, `--purge` and their
//! options), flattened into [`super::AuditArgs`].

use clap::Args;

#[derive(Debug, Args, Default)]
pub struct CleanArgs {
    /// Move orphans older than --min-age into the store's quarantine (Parse Server no longer
    /// serves them; --restore puts them back), each only if a walk started after the listing
    /// still finds no reference to it
    #[arg(long, group = "clean")]
    pub quarantine: bool,

    /// With --quarantine: only orphans last modified at least this long ago (default 7d)
    #[arg(long, value_name = "DURATION", requires = "quarantine")]
    pub min_age: Option<String>,

    /// Put every quarantined file of the store back under its name (never over another file)
    #[arg(long, group = "clean")]
    pub restore: bool,

    /// Delete for good the files quarantined at least --older-than ago
    #[arg(long, group = "clean")]
    pub purge: bool,

    /// With --purge: only files quarantined at least this long ago (default 30d)
    #[arg(long, value_name = "DURATION", requires = "purge")]
    pub older_than: Option<String>,

    /// With --purge: also delete superseded GridFS revisions (never the newest of a name)
    #[arg(long, requires = "purge")]
    pub superseded: bool,

    /// With --quarantine: the store holds this app's files only, although its S3/GCS prefix is
    /// empty or does not end in `/` (so it also lists other keys: `app` lists `appstaging/…`)
    #[arg(long, requires = "quarantine")]
    pub store_is_this_apps_only: bool,

    /// With --quarantine, --restore or --purge: print every move and delete, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required to write when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl CleanArgs {
    /// Whether any clean-up is asked for (`--quarantine`, `--restore` or `--purge`), which turns
    /// `audit` from a report into a writing command.
    pub fn any(&self) -> bool {
        self.quarantine || self.restore || self.purge
    }
}
