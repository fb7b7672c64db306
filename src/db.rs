//! Opening MongoDB: one place that builds the client, bounds how long start-up may wait, and
//! turns failures into exit code 4 with a hint. The URI is only ever printed redacted.

use std::time::Duration;

use anyhow::Context;
use mongodb::options::ClientOptions;
use mongodb::{
    Client, Database,
    bson::{Bson, Document, doc},
};

use crate::exit::{unreachable, usage};
use crate::secret::{MongoUri, redact_echo};

/// How long start-up waits for a server when the URI does not say (`serverSelectionTimeoutMS`).
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Every client this process opened (see [`track`] and [`shutdown`]). A static is never dropped,
/// so a tracked client's last handle never drops either.
static CLIENTS: std::sync::Mutex<Vec<Client>> = std::sync::Mutex::new(Vec::new());

/// Remember `client`, to be shut down by [`shutdown`] before the runtime stops.
///
/// Why: when the last handle of a client drops, the driver spawns a task that ends its sessions.
/// If the runtime is shutting down while that task runs, the connection pool's worker is already
/// gone and the driver panics on an `unwrap` it considers impossible (mongodb 3.9
/// `cmap/connection_requester.rs`: "called `Result::unwrap()` on an `Err` value: SendError") —
/// a panic message on stderr at the end of a clean run.
pub fn track(client: &Client) {
    CLIENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(client.clone());
}

/// Shut every tracked client down (end sessions, stop monitors, close pools), waiting at most
/// `limit`: called once the command is done, before the runtime stops.
pub async fn shutdown(limit: Duration) {
    let clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let all = futures::future::join_all(
        clients
            .into_iter()
            .map(|c| std::future::IntoFuture::into_future(c.shutdown().immediate(true))),
    );
    // A server gone by now cannot end sessions; the process is exiting anyway.
    let _ = tokio::time::timeout(limit, all).await;
}

/// Connect and ping; `database` is the app database.
pub async fn connect(uri: &MongoUri, database: &str) -> anyhow::Result<(Client, Database)> {
    check_escapes(uri.expose())
        .map_err(|why| usage(format!("invalid MongoDB URI {}: {why}", uri.redacted())))?;
    let mut opts = ClientOptions::parse(uri.expose()).await.map_err(|e| {
        // The driver's parse errors can quote parts of the URI, a password's among them.
        usage(format!(
            "invalid MongoDB URI {}: {}",
            uri.redacted(),
            redact_echo(&e.kind.to_string(), uri.expose())
        ))
    })?;
    if opts.server_selection_timeout.is_none() {
        opts.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
    }
    if opts.app_name.is_none() {
        opts.app_name = Some("parse-files-migrate".into());
    }
    let tls = matches!(opts.tls, Some(mongodb::options::Tls::Enabled(_)));
    // Building the client reads the TLS files named in the URI (tlsCAFile,
    // tlsCertificateKeyFile): a missing or unreadable file is a configuration error.
    let client = Client::with_options(opts).map_err(|e| {
        usage(format!(
            "cannot use the MongoDB URI {}: {}",
            uri.redacted(),
            e.kind
        ))
    })?;
    track(&client);
    let db = client.database(database);
    hello(&db).await.map_err(|e| {
        let (over, hint) = if tls {
            (
                " over TLS",
                "the URI asks for TLS (tls=true): does the server accept TLS on that port? \
                 tlsCAFile must hold the CA that signed the server's certificate, and \
                 tlsCertificateKeyFile (if the server wants a client certificate) the certificate \
                 and its unencrypted key in one PEM file",
            )
        } else {
            (
                "",
                "is the URI right and the server up? A quick read-only check: \
                 `parse-files-migrate schema`",
            )
        };
        unreachable(
            format!(
                "cannot reach MongoDB{over} at {}: {}",
                uri.redacted(),
                redact_echo(&e.kind.to_string(), uri.expose())
            ),
            hint,
        )
    })?;
    Ok((client, db))
}

/// The servers a MongoDB URI names, without credentials or options: `host:port` lowercased
/// (27017 when none is given) and sorted, comma-separated; a `mongodb+srv:` URI its SRV name as
/// `srv:<name>`. Where a store's bytes live, whoever connects and however.
pub fn hosts_of(uri: &str) -> String {
    let (srv, rest) = match uri.split_once("://") {
        Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("mongodb+srv"), rest),
        None => (false, uri),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if srv {
        return format!("srv:{}", hosts.to_ascii_lowercase());
    }
    let mut list: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let h = h.to_ascii_lowercase();
            let has_port = match h.rfind(']') {
                Some(end) => h[end..].contains(':'),
                None => h.contains(':'),
            };
            if has_port { h } else { format!("{h}:27017") }
        })
        .collect();
    list.sort();
    list.dedup();
    list.join(",")
}

/// Refuse a connection string where a `%` is followed, within two bytes, by a non-ASCII
/// character: the driver (3.9, `validate_and_parse_userinfo`) slices the two bytes after a `%`
/// of the credentials without looking for a character boundary, and panics.
pub fn check_escapes(uri: &str) -> Result<(), String> {
    let b = uri.as_bytes();
    let bad =
        (0..b.len()).any(|i| b[i] == b'%' && b[i + 1..].iter().take(2).any(|c| !c.is_ascii()));
    if bad {
        Err(
            "a '%' must be followed by two hexadecimal digits (percent-encode the character \
             after it as well)"
                .into(),
        )
    } else {
        Ok(())
    }
}

/// Statements per `update` command: a rewrite batch's worth (1,024) per round trip, far below
/// the server's 100,000 statement and 16 MiB command limits for Parse-sized documents (a command
/// is also cut by size: [`ServerLimits`]). A command costs a server far more than a statement
/// in it (the rewrite stage's batch size says how much).
pub const UPDATE_BATCH: usize = 1024;

/// What the servers announce in `hello`: the largest BSON document (a command included) and the
/// most statements per write command. The smallest over every server this process talks to (the
/// app database, a separate ledger); MongoDB's own values until one has answered. Amazon
/// DocumentDB and Azure Cosmos DB announce theirs the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_bson: usize,
    pub max_batch: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_bson: 16 * 1024 * 1024,
            max_batch: 100_000,
        }
    }
}

static LIMITS: std::sync::Mutex<Option<ServerLimits>> = std::sync::Mutex::new(None);

/// The limits every write command is cut by.
pub fn limits() -> ServerLimits {
    LIMITS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_default()
}

/// Take the limits of a `hello` (or `isMaster`) reply into account.
fn note_limits(reply: &Document) {
    let read = |key: &str, default: usize| {
        int(reply.get(key))
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    let d = ServerLimits::default();
    let these = ServerLimits {
        max_bson: read("maxBsonObjectSize", d.max_bson),
        max_batch: read("maxWriteBatchSize", d.max_batch),
    };
    let mut held = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
    *held = Some(match *held {
        None => these,
        Some(l) => ServerLimits {
            max_bson: l.max_bson.min(these.max_bson),
            max_batch: l.max_batch.min(these.max_batch),
        },
    });
}

/// `hello` (servers before 4.4.2 and some look-alikes only know `isMaster`): reachability and
/// the server's limits in one round trip.
async fn hello(db: &Database) -> mongodb::error::Result<()> {
    let reply = match db.run_command(doc! {"hello": 1}).await {
        Ok(r) => r,
        Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Command(_)) => {
            db.run_command(doc! {"isMaster": 1}).await?
        }
        Err(e) => return Err(e),
    };
    note_limits(&reply);
    Ok(())
}

/// Room kept in a command for its envelope (command name, collection, options).
const COMMAND_ENVELOPE: usize = 16 * 1024;

/// Split `items` into groups of at most `max_count` items and `max_bytes` by `size` each (an item
/// larger than that goes alone), in order: write commands, ledger batch documents.
pub fn by_size<T>(
    items: impl IntoIterator<Item = T>,
    max_count: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(last) if last.len() < max_count && bytes + n <= max_bytes => {
                bytes += n;
                last.push(item);
            }
            _ => {
                bytes = n;
                out.push(vec![item]);
            }
        }
    }
    out
}

/// The size of a document as BSON.
pub fn bson_len(d: &Document) -> usize {
    mongodb::bson::to_vec(d).map_or(0, |v| v.len())
}

/// What one batched `update` command did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Statements whose filter matched a document (or that upserted one).
    pub matched: u64,
    pub modified: u64,
    pub upserted: u64,
    /// Statements the server refused, by index in the batch, with the server's message.
    pub errors: Vec<(usize, String)>,
}

/// One `update` statement: `{q, u, upsert}`.
pub fn update_stmt(q: Document, u: Document, upsert: bool) -> Document {
    doc! {"q": q, "u": u, "upsert": upsert}
}

/// Run `statements` against `collection` with the plain `update` command, unordered, in batches
/// of [`UPDATE_BATCH`]: one round trip per batch, each statement keeping its own filter (the
/// compare-and-swap). Works on every MongoDB version (the 8.0 `bulkWrite` command would report
/// per-statement matches, but Parse apps commonly run older servers).
pub async fn update_batch(
    db: &Database,
    collection: &str,
    statements: Vec<Document>,
) -> anyhow::Result<UpdateOutcome> {
    let mut total = UpdateOutcome::default();
    let refused = batched(db, collection, "update", "updates", statements, |reply| {
        total.matched += count(reply, "n");
        total.upserted += reply.get_array("upserted").map_or(0, |a| a.len() as u64);
        total.modified += count(reply, "nModified");
    })
    .await?;
    total.errors = refused.into_iter().map(|(i, _, msg)| (i, msg)).collect();
    Ok(total)
}

/// One write command (`update`/`insert`) per [`UPDATE_BATCH`] items (fewer when they are large:
/// [`ServerLimits`]), unordered; `on_reply` sees each reply. Returns the items the server refused
/// (index in `items`, code, message) — also an item too large for any command, refused alone
/// without failing the others; a write concern error fails the call.
async fn batched(
    db: &Database,
    collection: &str,
    command: &str,
    field: &str,
    items: Vec<Document>,
    mut on_reply: impl FnMut(&Document),
) -> anyhow::Result<Vec<(usize, i32, String)>> {
    let mut refused = Vec::new();
    let mut base = 0usize;
    let l = limits();
    let max_bytes = l.max_bson.saturating_sub(COMMAND_ENVELOPE).max(1);
    let max_count = UPDATE_BATCH.min(l.max_batch).max(1);
    for chunk in by_size(items, max_count, max_bytes, bson_len) {
        let len = chunk.len();
        let reply = match db
            .run_command(doc! {command: collection, field: chunk, "ordered": false})
            .await
        {
            Ok(reply) => reply,
            // One item the server cannot take at all (a command over its size limit): refused
            // alone, reported with the others it refuses.
            Err(e) if len == 1 && matches!(*e.kind, mongodb::error::ErrorKind::Command(_)) => {
                refused.push((base, 0, format!("{command} on {collection}: {e}")));
                base += 1;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("{command} on {collection}")),
        };
        on_reply(&reply);
        if let Ok(errors) = reply.get_array("writeErrors") {
            for e in errors.iter().filter_map(|e| e.as_document()) {
                let index = count(e, "index") as usize;
                let code = count(e, "code") as i32;
                let msg = e.get_str("errmsg").unwrap_or("write error").to_string();
                refused.push((base + index, code, msg));
            }
        }
        if let Ok(wce) = reply.get_document("writeConcernError") {
            anyhow::bail!(
                "{command} on {collection}: write concern error: {}",
                wce.get_str("errmsg").unwrap_or("unknown")
            );
        }
        base += len;
    }
    Ok(refused)
}

/// The server's code for a duplicate key.
pub const DUPLICATE_KEY: i32 = 11000;

/// A BSON number as an integer: servers answer counts as int32, int64 or double, and records
/// written by other drivers may hold any of them.
pub fn int(v: Option<&Bson>) -> Option<i64> {
    match v? {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

/// `key` of `d` as a count: 0 when absent, negative or not a number.
pub fn count(d: &Document, key: &str) -> u64 {
    int(d.get(key))
        .and_then(|i| u64::try_from(i).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_of_names_the_servers_only() {
        use super::hosts_of;
        assert_eq!(
            hosts_of("mongodb://u:p%40ss@DB2.example:27018,db1.example/parse?replicaSet=rs0"),
            "db1.example:27017,db2.example:27018"
        );
        assert_eq!(
            hosts_of("mongodb://db1.example:27017/other"),
            "db1.example:27017"
        );
        assert_eq!(
            hosts_of("mongodb+srv://u:p@Cluster0.example.net/db"),
            "srv:cluster0.example.net"
        );
        assert_eq!(hosts_of("mongodb://[::1]:27017,[::1]/x"), "[::1]:27017");
    }

    use super::*;

    #[test]
    fn commands_are_cut_by_count_and_by_size_in_order() {
        let small: Vec<Document> = (0..1200).map(|i| doc! {"q": {"_id": i}}).collect();
        let cut = by_size(small, 500, 1 << 20, bson_len);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let big = "x".repeat(300_000);
        let items: Vec<Document> = (0..10).map(|i| doc! {"i": i, "v": &big}).collect();
        let cut = by_size(items, 500, 1 << 20, bson_len);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        let order: Vec<i32> = cut
            .iter()
            .flatten()
            .map(|d| d.get_i32("i").unwrap())
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        let huge = vec![doc! {"v": "y".repeat(2 << 20)}, doc! {"i": 1}];
        assert_eq!(
            by_size(huge, 500, 1 << 20, bson_len).len(),
            2,
            "a huge item goes alone"
        );
    }

    #[test]
    fn the_smallest_announced_limits_win() {
        note_limits(&doc! {"maxBsonObjectSize": 16_777_216, "maxWriteBatchSize": 100_000});
        note_limits(&doc! {"maxBsonObjectSize": 8_388_608_i64, "maxWriteBatchSize": 1000.0});
        note_limits(&doc! {"ok": 1});
        let l = limits();
        assert_eq!((l.max_bson, l.max_batch), (8_388_608, 1000));
    }
}
