//! Resolution, precedence, validation and redaction of the settings.

use super::*;

fn file(toml_text: &str) -> Result<ConfigFile, toml::de::Error> {
    toml::from_str(toml_text)
}

#[test]
fn precedence_flag_over_file_over_default() {
    let f = file("[mongo]\nuri = \"mongodb://u:pw@h/fromfile\"\ncollection_prefix = \"f_\"\n[run]\nconcurrency = 7").unwrap();
    let g = GlobalArgs {
        collection_prefix: Some("flag_".into()),
        ..Default::default()
    };
    let s = Settings::from_parts(&g, None, f).unwrap();
    assert_eq!(s.mongo.collection_prefix, "flag_");
    assert_eq!(s.mongo.database.as_deref(), Some("fromfile"));
    assert_eq!(s.run.concurrency, 7);
    assert_eq!(s.run.select, Selection::Hosted);
    let s = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
    assert_eq!(s.run.concurrency, crate::engine::DEFAULT_CONCURRENCY);
    assert_eq!(s.mongo.collection_prefix, "");
}

#[test]
fn retry_policy_from_run_table() {
    let s = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
    assert_eq!(s.run.retry, RetryPolicy::default());
    assert_eq!(s.run.retry.retries, crate::retry::DEFAULT_RETRIES);
    let f = file("[run]\nretries = 0\nretry_base_ms = 10\nretry_max_ms = 40").unwrap();
    let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
    assert_eq!(
        s.run.retry,
        RetryPolicy {
            retries: 0,
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
            attempt_timeout: None,
        }
    );
    let out = s.to_toml().unwrap();
    assert!(
        out.contains("retries = 0") && out.contains("retry_base_ms = 10"),
        "{out}"
    );
    let f = file("[run]\nretry_base_ms = 5000\nretry_max_ms = 40").unwrap();
    let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
    assert!(e.to_string().contains("retry_max_ms"), "{e}");
}

#[test]
fn the_error_budget_is_unset_or_at_least_one() {
    let s = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
    assert_eq!(s.run.max_errors, None);
    let s = Settings::from_parts(
        &GlobalArgs::default(),
        None,
        file("[run]\nmax_errors = 25").unwrap(),
    )
    .unwrap();
    assert_eq!(s.run.max_errors, Some(25));
    assert!(s.to_toml().unwrap().contains("max_errors = 25"));
    let f = file("[run]\nmax_errors = 0").unwrap();
    let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
    assert!(
        e.to_string().contains("max_errors must be at least 1"),
        "{e}"
    );
}

#[test]
fn throttle_and_file_timeout_resolve_and_round_trip() {
    let f = file("[run]\ntps_limit = 12.5\nbwlimit = \"2MiB\"\nfile_timeout_secs = 600").unwrap();
    let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
    assert_eq!(s.run.throttle.tps, Some(12.5));
    assert_eq!(s.run.throttle.bytes_per_sec, Some(2 << 20));
    assert_eq!(s.run.retry.attempt_timeout, Some(Duration::from_secs(600)));
    // The [run] table --show-settings prints resolves to the same.
    let shown = s.to_toml().unwrap();
    let run = shown
        .split("[run]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let again = Settings::from_parts(
        &GlobalArgs::default(),
        None,
        file(&format!("[run]{run}")).unwrap(),
    )
    .unwrap();
    assert_eq!(again.run.throttle, s.run.throttle, "{shown}");
    assert_eq!(again.run.retry, s.run.retry, "{shown}");
    for bad in [
        "bwlimit = \"0\"",
        "bwlimit = \"fast\"",
        "tps_limit = 0.0",
        "tps_limit = -3.0",
    ] {
        let f = file(&format!("[run]\n{bad}")).unwrap();
        let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), crate::exit::USAGE, "{bad}: {e:#}");
    }
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let e = file("[mongo]\nurl = \"x\"").unwrap_err().to_string();
    assert!(e.contains("url"), "{e}");
    let e = file("[destination]\ntype = \"s3\"\nbukket = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bukket"), "{e}");
    let e = file("[destination]\ntype = \"ftp\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ftp"), "{e}");
    assert!(file("[destination]\ntype = \"s3\"\nbucket = \"b\"").is_ok());
}

#[test]
fn show_settings_redacts_secrets() {
    let f = file(
        "[mongo]\nuri = \"mongodb://admin:hunter2@h:27017/app\"\n[parse]\nfile_key = \"fk-secret\"",
    )
    .unwrap();
    let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
    let out = s.to_toml().unwrap();
    assert!(
        !out.contains("hunter2") && !out.contains("fk-secret"),
        "{out}"
    );
    assert!(out.contains("admin:<redacted>@h:27017/app"), "{out}");
}

/// Review finding 15 (minor leaks): a store's endpoint or base url may carry credentials too.
#[test]
fn show_settings_redacts_store_urls() {
    let f = file(
        "[destination]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"https://AKIA:pw-s3-SECRET@minio:9000\"\n\
         [source.hosted]\ntype = \"http\"\ntfss_base_url = \"https://m:pw-http-SECRET@mirror/{file_key}/\"\n\
         server_url = \"https://api.example/parse?token=tk-SECRET\"\n\
         [parse]\npublic_server_url = \"https://u:pw-public-SECRET@api.example/parse\"",
    )
    .unwrap();
    let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
    let out = s.to_toml().unwrap();
    for secret in [
        "pw-s3-SECRET",
        "pw-http-SECRET",
        "tk-SECRET",
        "pw-public-SECRET",
    ] {
        assert!(!out.contains(secret), "{out}");
    }
    assert!(out.contains("https://AKIA:<redacted>@minio:9000"), "{out}");
    assert!(
        out.contains("https://u:<redacted>@api.example/parse"),
        "{out}"
    );
}

/// Review findings 11 and 12, in what a writing run records in the ledger (`_FileMigration.runs`):
/// its settings go through the same redaction.
#[test]
fn the_run_record_hides_the_review_repros() {
    for (uri, secrets) in [
        ("mongodb://u:se?cret@127.0.0.1:1/db", &["se?cret"][..]),
        (
            "mongodb://AKIA:S3cr#t@h/db?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:TOK-SECRET",
            &["S3cr#t", "TOK-SECRET"][..],
        ),
    ] {
        let g = GlobalArgs {
            mongo_uri: Some(uri.into()),
            ..Default::default()
        };
        let s = Settings::from_parts(&g, None, ConfigFile::default()).unwrap();
        let record = crate::session::run_info(&s, "all", "dest").unwrap();
        let settings = record.get_str("settings").unwrap();
        for secret in secrets {
            assert!(!settings.contains(secret), "{settings}");
        }
        assert!(settings.contains("<redacted>"), "{settings}");
    }
}

#[test]
fn tls_uris_are_accepted_and_shown_redacted() {
    let uri = "mongodb://app:pw-tls-SECRET@db1.example:27017,db2.example:27017/parse?\
               replicaSet=rs0&tls=true&tlsCAFile=/etc/ssl/mongo-ca.pem&\
               tlsCertificateKeyFile=/etc/ssl/client.pem&authSource=admin";
    let g = GlobalArgs {
        mongo_uri: Some(uri.into()),
        ..Default::default()
    };
    let s = Settings::from_parts(&g, None, ConfigFile::default()).unwrap();
    let (u, db) = s.mongo_target().unwrap();
    assert_eq!(u.expose(), uri);
    assert_eq!(db, "parse");
    let shown = s.to_toml().unwrap();
    assert!(!shown.contains("pw-tls-SECRET"), "{shown}");
    assert!(
        shown.contains("tls=true&tlsCAFile=/etc/ssl/mongo-ca.pem"),
        "{shown}"
    );
}

#[test]
fn sizes_durations_shards() {
    assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
    assert_eq!(parse_size("1.5k").unwrap(), 1536);
    assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
    assert!(parse_size("ten").is_err());
    assert!(parse_size("5 parsecs").is_err());
    assert_eq!(
        crate::engine::Shard::parse("1/4").unwrap(),
        crate::engine::Shard { index: 1, count: 4 }
    );
    assert!(crate::engine::Shard::parse("4/4").is_err());
    assert!(crate::engine::Shard::parse("0/0").is_err());
    assert_eq!(
        database_from_uri("mongodb://u:p@h1,h2/parse?x=1").as_deref(),
        Some("parse")
    );
    assert_eq!(
        database_from_uri("mongodb://h/?directConnection=true"),
        None
    );
    assert_eq!(database_from_uri("mongodb://h"), None);
    assert_eq!(
        database_from_uri("mongodb://u:se?cret@h/app").as_deref(),
        Some("app")
    );
    // A token's fragment is not a database (it would be shown as one).
    assert_eq!(
        database_from_uri("mongodb://h/app?authMechanismProperties=AWS_SESSION_TOKEN:ab@cd/ef"),
        None
    );
}

#[test]
fn database_health_limits_are_durations_above_zero() {
    let none = Settings::from_parts(&GlobalArgs::default(), None, ConfigFile::default()).unwrap();
    assert_eq!(none.run.db, crate::dbhealth::Limits::default());
    let f = file("[run]\nmax_db_latency = \"200ms\"\nmax_repl_lag = \"2s\"").unwrap();
    let s = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap();
    assert_eq!(s.run.db.max_db_latency, Some(Duration::from_millis(200)));
    assert_eq!(s.run.db.max_repl_lag, Some(Duration::from_secs(2)));
    let out = s.to_toml().unwrap();
    assert!(out.contains("max_db_latency = \"200ms\""), "{out}");
    for bad in ["0s", "fast"] {
        let f = file(&format!("[run]\nmax_db_latency = \"{bad}\"")).unwrap();
        let e = Settings::from_parts(&GlobalArgs::default(), None, f).unwrap_err();
        assert!(e.to_string().contains("--max-db-latency"), "{e}");
    }
}
