//! Replication lag, as the replica set reports it: `replSetGetStatus` on the `admin` database
//! lists every member with its state and the time of the last operation it applied
//! (`optimeDate`). The lag is the primary's `optimeDate` minus the oldest `optimeDate` of a
//! healthy secondary (gh-ost reads the same quantity from a heartbeat on the replicas). Members
//! that are down (`health: 0`), arbiters and members in recovery are left out: they apply
//! nothing, and would read as an ever-growing lag.
//!
//! Servers that do not answer it — a standalone server (`NoReplicationEnabled`), a user without
//! the `clusterMonitor` role (`Unauthorized`), Amazon DocumentDB or Azure Cosmos DB
//! (`CommandNotFound`) — do not report lag: [`read`] says why, the guard says it once at
//! start-up and throttles by latency only. A one-node replica set (SecantusDB, the test server,
//! is one: set `secantus`) reports a lag of 0: it has no secondary to lag.

use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

/// One reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub set: String,
    pub members: usize,
    /// Healthy secondaries the lag was read from.
    pub secondaries: usize,
    pub lag: Duration,
}

impl Reading {
    /// `replica set rs0: 3 members, 2 secondaries`.
    pub fn describe(&self) -> String {
        let secondaries = match self.secondaries {
            0 => "no secondary to lag".to_string(),
            1 => "1 secondary".to_string(),
            n => format!("{n} secondaries"),
        };
        format!(
            "replica set {}: {} member{}, {secondaries}",
            self.set,
            self.members,
            if self.members == 1 { "" } else { "s" }
        )
    }
}

/// Read the lag through `admin` (the `admin` database of the app's client).
pub async fn read(admin: &Database) -> Result<Reading, String> {
    match admin.run_command(doc! {"replSetGetStatus": 1}).await {
        Ok(status) => of_status(&status),
        Err(e) => Err(why_not(&e)),
    }
}

/// Why a server did not answer `replSetGetStatus`, in an operator's words.
fn why_not(e: &mongodb::error::Error) -> String {
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => match c.code {
            76 => "not a replica set (replSetGetStatus: NoReplicationEnabled)".into(),
            13 => {
                "not authorized to run replSetGetStatus (it needs the clusterMonitor role)".into()
            }
            59 => "the server has no replSetGetStatus command".into(),
            _ => format!("replSetGetStatus failed: {} ({})", c.message, c.code_name),
        },
        _ => format!("replSetGetStatus failed: {e}"),
    }
}

fn date(m: &Document) -> Option<i64> {
    match m.get("optimeDate") {
        Some(Bson::DateTime(d)) => Some(d.timestamp_millis()),
        _ => None,
    }
}

/// The lag in a `replSetGetStatus` answer.
pub fn of_status(status: &Document) -> Result<Reading, String> {
    let members: Vec<&Document> = status
        .get_array("members")
        .map_err(|_| "replSetGetStatus lists no members".to_string())?
        .iter()
        .filter_map(Bson::as_document)
        .collect();
    let state = |m: &Document| m.get_str("stateStr").unwrap_or_default().to_string();
    let healthy = |m: &Document| match m.get("health") {
        Some(Bson::Double(h)) => *h > 0.0,
        Some(Bson::Int32(h)) => *h > 0,
        Some(Bson::Int64(h)) => *h > 0,
        _ => true,
    };
    let primary = members
        .iter()
        .find(|m| state(m) == "PRIMARY")
        .and_then(|m| date(m))
        .ok_or("replSetGetStatus names no primary with an optimeDate")?;
    let secondaries: Vec<i64> = members
        .iter()
        .filter(|m| state(m) == "SECONDARY" && healthy(m))
        .filter_map(|m| date(m))
        .collect();
    let oldest = secondaries.iter().copied().min().unwrap_or(primary);
    Ok(Reading {
        set: status.get_str("set").unwrap_or("?").to_string(),
        members: members.len(),
        secondaries: secondaries.len(),
        lag: Duration::from_millis(primary.saturating_sub(oldest).max(0) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::DateTime;

    fn member(state: &str, health: f64, at_ms: i64) -> Bson {
        Bson::Document(doc! {
            "stateStr": state, "health": health, "optimeDate": DateTime::from_millis(at_ms),
        })
    }

    #[test]
    fn lag_is_the_primary_ahead_of_the_oldest_healthy_secondary() {
        let status = doc! {"set": "rs0", "members": [
            member("PRIMARY", 1.0, 10_000),
            member("SECONDARY", 1.0, 9_800),
            member("SECONDARY", 1.0, 7_500),
            // Down for an hour: left out, not a lag of an hour.
            member("SECONDARY", 0.0, 1_000),
            member("ARBITER", 1.0, 0),
        ]};
        let r = of_status(&status).unwrap();
        assert_eq!(r.lag, Duration::from_millis(2_500));
        assert_eq!((r.members, r.secondaries), (5, 2));
        assert_eq!(r.describe(), "replica set rs0: 5 members, 2 secondaries");
    }

    #[test]
    fn a_one_node_set_has_no_lag_and_no_primary_is_an_error() {
        let one = doc! {"set": "secantus", "members": [member("PRIMARY", 1.0, 5)]};
        let r = of_status(&one).unwrap();
        assert_eq!(r.lag, Duration::ZERO);
        assert!(
            r.describe().contains("no secondary to lag"),
            "{}",
            r.describe()
        );
        let none = doc! {"set": "rs0", "members": [member("SECONDARY", 1.0, 5)]};
        assert!(of_status(&none).is_err());
        assert!(of_status(&doc! {"ok": 1}).is_err());
    }
}
