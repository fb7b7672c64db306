//! Opening MongoDB: one place that builds the client, bounds how long start-up may wait, and
//! turns failures into exit code 4 with a hint. The URI is only ever printed redacted.

use std::time::Duration;

use anyhow::Context;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database, bson::doc};

use crate::exit::{unreachable, usage};
use crate::settings::MongoUri;

/// How long start-up waits for a server when the URI does not say (`serverSelectionTimeoutMS`).
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect and ping; `database` is the app database.
pub async fn connect(uri: &MongoUri, database: &str) -> anyhow::Result<(Client, Database)> {
    let mut opts = ClientOptions::parse(uri.expose()).await.map_err(|e| {
        // The driver's parse errors can quote the URI; say what is wrong without echoing it.
        usage(format!(
            "invalid MongoDB URI {}: {}",
            uri.redacted(),
            e.kind
        ))
    })?;
    if opts.server_selection_timeout.is_none() {
        opts.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
    }
    if opts.app_name.is_none() {
        opts.app_name = Some("parse-files-migrate".into());
    }
    let client = Client::with_options(opts).context("building the MongoDB client")?;
    let db = client.database(database);
    db.run_command(doc! {"ping": 1}).await.map_err(|e| {
        unreachable(
            format!("cannot reach MongoDB at {}: {}", uri.redacted(), e.kind),
            "is the URI right and the server up? A quick read-only check: `parse-files-migrate schema`",
        )
    })?;
    Ok((client, db))
}
