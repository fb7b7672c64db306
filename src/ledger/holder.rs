//! Who holds a lease, and whether that holder can still be running: the facts a run records in
//! its lease (host, pid, the process's start time, a machine key) and the check a later run on
//! the same machine makes before it takes a crashed run's lease over at once.
//!
//! A pid alone proves nothing: after a crash the kernel hands the number to another program. The
//! start time (`/proc/<pid>/stat`, field 22, clock ticks since boot) names one process for the
//! life of one boot, so "pid alive with the same start time" is the run itself. Both only mean
//! something inside the same kernel boot and pid namespace, which is what the machine key is:
//! the boot id plus the pid namespace (`/proc/self/ns/pid`). Two containers on one host (other
//! namespaces), a host rebooted since, or another host (a pod rescheduled elsewhere) have other
//! keys: their leases are left to expire. Where `/proc` is missing there is no key and no
//! takeover, only expiry.

use mongodb::bson::{DateTime, Document, oid::ObjectId};

/// The holder of one lease, as recorded in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The lease's scope (`all` or `K/N`).
    pub scope: String,
    pub run: ObjectId,
    pub host: String,
    pub pid: i64,
    /// Start time of the process, in clock ticks since boot (`None`: not recorded).
    pub started: Option<i64>,
    /// See the module documentation (`None`: not recorded).
    pub machine: Option<String>,
    pub until: DateTime,
    /// It holds its scope exclusively: no run of any other scope may run beside it (see
    /// [`super::lease`]).
    pub exclusive: bool,
    /// Its run is still taking the lease (checking for conflicting leases), not yet working.
    pub taking: bool,
}

impl Holder {
    /// Read from a lease document (fields a tool of an older version did not write are `None`).
    pub fn from_doc(d: &Document) -> Holder {
        Holder {
            scope: d.get_str("_id").unwrap_or("?").to_string(),
            run: d
                .get_object_id("run")
                .unwrap_or_else(|_| ObjectId::from_bytes([0; 12])),
            host: d.get_str("host").unwrap_or("?").to_string(),
            pid: d.get_i64("pid").unwrap_or(0),
            started: d.get_i64("started").ok(),
            machine: d.get_str("machine").ok().map(str::to_string),
            until: d.get_datetime("until").copied().unwrap_or(DateTime::MIN),
            exclusive: d.get_bool("exclusive").unwrap_or(false),
            taking: d.get_bool("taking").unwrap_or(false),
        }
    }

    /// `host H, pid P, run R, until T`, for messages and the confirmation question.
    pub fn describe(&self) -> String {
        format!(
            "host {:?}, pid {}, run {}, until {}",
            self.host,
            self.pid,
            self.run.to_hex(),
            self.until.try_to_rfc3339_string().unwrap_or_default()
        )
    }

    /// Why this holder is certainly not running any more, when it ran on this machine (same
    /// boot, same pid namespace): its pid is gone (or a zombie), or belongs to a process started
    /// at another time. `None` when it may still run, or when that cannot be known here.
    pub fn gone_here(&self) -> Option<&'static str> {
        let here = machine_key()?;
        if self.machine.as_deref() != Some(here.as_str()) {
            return None;
        }
        let started = self.started?;
        let pid = u32::try_from(self.pid).ok().filter(|p| *p > 0)?;
        match process(pid) {
            Process::Gone => Some("its process is no longer running"),
            Process::Alive { started: now } if now != started => {
                Some("its pid now belongs to another process")
            }
            Process::Alive { .. } => None,
        }
    }
}

/// The fields this process records in a lease it takes: pid, start time and machine key.
pub(super) fn this_process() -> Document {
    let pid = std::process::id();
    let mut d = mongodb::bson::doc! {"pid": pid as i64};
    if let Process::Alive { started } = process(pid) {
        d.insert("started", started);
    }
    if let Some(m) = machine_key() {
        d.insert("machine", m);
    }
    d
}

/// This machine's key: `<boot id>/<pid namespace>`, or `None` without `/proc`.
pub(super) fn machine_key() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

#[derive(Debug, PartialEq, Eq)]
enum Process {
    Gone,
    Alive { started: i64 },
}

/// Whether `pid` runs, and since when. A zombie (killed, not yet reaped) is gone; a pid whose
/// `stat` cannot be read or parsed counts as alive since an unknown time (no takeover).
fn process(pid: u32) -> Process {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Process::Gone,
        Err(_) => return Process::Alive { started: -1 },
    };
    parse_stat(&stat).unwrap_or(Process::Alive { started: -1 })
}

/// `pid (comm) state … starttime …`: the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`; state is field 3, the start time field 22.
fn parse_stat(stat: &str) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    if state == "Z" || state == "X" {
        return Some(Process::Gone);
    }
    let started = fields.get(22 - 3)?.parse().ok()?;
    Some(Process::Alive { started })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(line), Some(Process::Alive { started: 777 }));
        let zombie = "4242 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19";
        assert_eq!(parse_stat(zombie), Some(Process::Gone));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_recorded_holder_of_it_is_not_gone() {
        let me = this_process();
        let mut d = me.clone();
        d.insert("_id", "all");
        d.insert("run", ObjectId::new());
        let holder = Holder::from_doc(&d);
        assert!(holder.started.is_some() && holder.machine.is_some(), "{me}");
        assert_eq!(holder.gone_here(), None, "this very process runs");
        let other_start = Holder {
            started: holder.started.map(|s| s + 1),
            ..holder.clone()
        };
        assert!(other_start.gone_here().is_some(), "same pid, other start");
        let elsewhere = Holder {
            machine: Some("another-boot/pid:[1]".into()),
            started: Some(0),
            ..holder
        };
        assert_eq!(elsewhere.gone_here(), None, "another machine: expiry only");
    }
}
