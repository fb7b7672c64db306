//! The integration tests, in one test binary (`it`): the built `parse-files-migrate` and the
//! library against real local servers (the MongoDB-wire SecantusDB, s3s-fs, fake-gcs-server,
//! nginx, a stock Parse Server; `scripts/test-services`). One module per area; shared helpers
//! (where the servers are, unique names, running the binary, seeding apps, the storage
//! conformance suite, a fault-injecting HTTP server) live in `support`.
//!
//! A test whose server is not configured or not reachable fails and says how to start it; none
//! skips. Tests share this process and run concurrently, so each uses databases, buckets,
//! directories and ports of its own (`support::unique`, `support::free_port`).
//!
//! Run all of them with `scripts/test` (starts the servers it needs), or a subset by module or
//! test-name filter once the servers run (`eval "$(scripts/test-services start)"`):
//!
//! ```sh
//! cargo test --test it cli::                     # one module
//! cargo test --test it storage_                  # every storage backend
//! cargo test --test it migrate::rollback -- --nocapture
//! scripts/test --test it discovery::             # the same through scripts/test
//! cargo test --test it -- --list                 # every test's name
//! ```

mod support;

mod audit;
mod audit_parse_server;
mod bad_input;
mod cli;
mod crash;
mod db_faults;
mod db_throttle;
mod debris;
mod discovery;
mod disk_full;
mod estimate;
mod faults;
mod help;
mod hooks;
mod image;
mod lease;
mod limits;
mod live_app;
mod migrate;
mod mongo_tls;
mod no_harm;
mod output;
mod parse_server;
mod providers;
mod quarantine;
mod quarantine_parse_server;
mod readme;
mod rekey;
mod rekey_parse_server;
mod relayout;
mod relayout_parse_server;
mod relink;
mod relink_parse_server;
mod resume;
mod safety;
mod scan_memory;
mod secrets;
mod serve;
mod serve_parse_server;
mod stateful;
mod storage_fs;
mod storage_gcs;
mod storage_gridfs;
mod storage_http;
mod storage_s3;
mod strings;
mod strings_parse_server;
mod terminal;
mod transfer;
mod unreferenced;
mod vanish;
mod verify_parse_server;
