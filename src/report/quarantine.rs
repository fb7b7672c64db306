//! What `audit --quarantine / --restore / --purge` prints on stdout: one line per step carried
//! out or left undone; then a summary (with the orphans found referenced again, `kept`). A dry
//! run's planned steps are printed by the dry-run gate itself
//! ([`crate::report::migrate::PlanWriter`]), in the same shapes. JSONL lines carry `"action"`.

use std::io::Write;

use serde_json::json;

use super::migrate::MigrateFormat;
use super::printable;
use crate::engine::quarantine::{Counts, Outcome, Step};

pub struct CleanWriter {
    format: MigrateFormat,
    out: Box<dyn Write + Send>,
}

impl CleanWriter {
    pub fn new(format: MigrateFormat, out: Box<dyn Write + Send>) -> CleanWriter {
        CleanWriter { format, out }
    }

    /// One step's outcome (nothing for a planned one: the gate printed it).
    pub fn step(&mut self, step: &Step, outcome: &Outcome) -> std::io::Result<()> {
        if *outcome == Outcome::Planned {
            return Ok(());
        }
        match self.format {
            MigrateFormat::Jsonl => {
                let mut line = json!({"action": step.action.as_str(), "name": step.name,
                    "size": step.size});
                if let (Some(o), Ok(serde_json::Value::Object(m))) =
                    (line.as_object_mut(), serde_json::to_value(outcome))
                {
                    o.extend(m);
                }
                if let Some(v) = &step.version {
                    line["version"] = json!(v);
                }
                writeln!(self.out, "{line}")
            }
            MigrateFormat::Text => {
                let (what, why) = match outcome {
                    Outcome::Done | Outcome::Planned => ("done", None),
                    Outcome::Refused(r) => ("REFUSED", Some(r)),
                    Outcome::Gone(r) => ("gone", Some(r)),
                    Outcome::Failed(r) => ("FAILED", Some(r)),
                };
                let mut line = format!(
                    "{:<16} {what:<8} {}",
                    step.action.as_str(),
                    printable(&step.name)
                );
                if let Some(why) = why {
                    line.push_str(&format!(": {}", printable(why)));
                }
                writeln!(self.out, "{line}")
            }
        }
    }

    /// The counts, last (JSONL on stdout; text on stderr, like `migrate`'s summary); and
    /// `--report FILE`.
    pub fn summary(
        &mut self,
        action: &str,
        dry_run: bool,
        counts: &Counts,
        report: Option<&std::path::Path>,
    ) -> anyhow::Result<()> {
        let line =
            json!({"action": "summary", "clean": action, "dry_run": dry_run, "counts": counts});
        super::output::write_report(report, &line)?;
        match self.format {
            MigrateFormat::Jsonl => Ok(writeln!(self.out, "{line}")?),
            MigrateFormat::Text => {
                self.out.flush()?;
                let c = counts;
                eprintln!(
                    "{action}{}: {} done ({} bytes), {} planned, {} kept (referenced again), {} \
                     refused, {} gone, {} failed",
                    if dry_run { " (dry run)" } else { "" },
                    c.done,
                    c.bytes,
                    c.planned,
                    c.kept,
                    c.refused,
                    c.gone,
                    c.failed
                );
                Ok(())
            }
        }
    }
}
