//! Secrets never leak: a MongoDB password (a real SCRAM user on the test server), S3 keys (an
//! s3s-fs of the test's own that accepts only them) and the Parse fileKey go through every
//! command — `--show-settings`, `schema`, `list`, `migrate --dry-run`, a real `migrate` with
//! `--report`, failures at start-up — at `-vv` and with `RUST_LOG=trace`, as text and JSON logs.
//! None of them may appear in stdout, stderr, the report file or the ledger collections.
//!
//! One exception, asserted as such: with `RUST_LOG=trace` (an explicit override that turns on
//! the SDKs' own tracing; `-v`/`-vv` never do) the AWS SDK logs its credentials provider with
//! `Debug`, which shows the access key *id* (an identifier, which AWS puts in every request's
//! `Authorization` header) and redacts the secret key.

use mongodb::bson::{Document, doc};
use parse_files_migrate::parse::names::parse_server_name;
use parse_files_migrate::storage::{self, StoreConfig, StoreContext};

use crate::support;
use crate::support::app::{self, Hosted, Out};
use crate::support::faulty::{Fault, FaultyServer, Options};

const MONGO_PASSWORD: &str = "pw-SECRET-mongo-7f3a";
const AWS_KEY_ID: &str = "AKIASECRETID123";
const AWS_SECRET: &str = "aws-SECRET-key-456";
const FILE_KEY: &str = "fk-SECRET-file-key-789";
const SECRETS: &[&str] = &[MONGO_PASSWORD, AWS_KEY_ID, AWS_SECRET, FILE_KEY];

fn leaks(what: &str, text: &str) -> Vec<String> {
    SECRETS
        .iter()
        .filter_map(|s| {
            let at = text.find(*s)?;
            let (from, to) = (at.saturating_sub(120), (at + s.len() + 60).min(text.len()));
            let excerpt: String = text
                .char_indices()
                .filter(|(i, _)| (from..to).contains(i))
                .map(|(_, c)| c)
                .collect();
            Some(format!("{s} in {what}: …{excerpt}…"))
        })
        .collect()
}

#[tokio::test]
async fn no_secret_appears_anywhere() {
    let db_name = support::unique("secrets");
    let user = "pfm_secret_user";
    let db = support::mongo_client().await.database(&db_name);
    db.run_command(doc! {"createUser": user, "pwd": MONGO_PASSWORD,
    "roles": [{"role": "readWrite", "db": &db_name}]})
        .await
        .expect("createUser (the test server supports SCRAM users)");
    let h = Hosted::seed(&db, 12, 1, FILE_KEY).await;
    // Every third file fails once, so retries log the (redacted) source URLs too.
    let server = FaultyServer::start(
        h.files.clone(),
        Box::new(|r| (r.attempt == 0 && r.name.len() % 3 == 0).then_some(Fault::Status(503))),
        Options::default(),
    );

    let s3_dir = support::temp_path("secrets-s3");
    let bucket = "secrets-bucket";
    std::fs::create_dir_all(s3_dir.join(bucket)).unwrap();
    let s3 = support::s3::OwnS3::start_with_keys(
        &s3_dir,
        (AWS_KEY_ID.to_string(), AWS_SECRET.to_string()),
    )
    .await;

    let hosts = support::mongo_hosts();
    let uri = format!("mongodb://{user}:{MONGO_PASSWORD}@{hosts}/{db_name}?directConnection=true");
    let s3_table = |secret: &str| {
        format!(
            "\n[destination]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"{AWS_KEY_ID}\"\nsecret_access_key = \"{secret}\"\n",
            s3.endpoint()
        )
    };
    let config_text = |secret: &str| {
        format!(
            "[mongo]\nuri = \"{uri}\"\n\n[parse]\napp_id = \"{}\"\nfile_key = \"{FILE_KEY}\"\n\
             public_server_url = \"{}\"\n{}{}\n[run]\nretry_base_ms = 20\n",
            app::APP_ID,
            app::SERVER_URL,
            app::hosted_table(&server.url(), 5),
            s3_table(secret)
        )
    };
    let dir = support::temp_path("secrets-cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, config_text(AWS_SECRET)).unwrap();
    let bad_s3 = dir.join("bad-s3.toml");
    std::fs::write(&bad_s3, config_text("wrong-secret")).unwrap();
    let report = dir.join("report.json");
    let (cfg, bad) = (config.to_str().unwrap(), bad_s3.to_str().unwrap());
    let bad_uri = uri.replace(MONGO_PASSWORD, &format!("{MONGO_PASSWORD}-wrong"));

    // (description, arguments, RUST_LOG, expected exit code); CFG, BAD, URI, BAD_URI, KEY and
    // REPORT stand for the values above.
    let runs: &[(&str, &str, Option<&str>, i32)] = &[
        ("show-settings", "-c CFG --show-settings migrate", None, 0),
        (
            "show-settings, flags",
            "--mongo-uri URI --file-key KEY --show-settings",
            None,
            0,
        ),
        ("schema -vv", "-c CFG -vv schema", None, 0),
        (
            "schema, json",
            "-c CFG -vv --log-format json schema --output json",
            None,
            0,
        ),
        ("list -vv", "-c CFG -vv list --output jsonl", None, 0),
        (
            "list, RUST_LOG=trace",
            "-c CFG list --output table",
            Some("trace"),
            0,
        ),
        (
            "migrate --dry-run -vv",
            "-c CFG -vv migrate --dry-run --output jsonl",
            None,
            0,
        ),
        (
            "migrate --dry-run, json",
            "-c CFG -vv --log-format json migrate --dry-run --output text",
            None,
            0,
        ),
        (
            "migrate, S3 refuses the key",
            "-c BAD -vv migrate --yes",
            Some("trace"),
            4,
        ),
        (
            "migrate -vv, RUST_LOG=trace",
            "-c CFG -vv migrate --yes --output jsonl --report REPORT",
            Some("trace"),
            3,
        ),
        (
            "migrate again, json",
            "-c CFG -vv --log-format json migrate --yes --output text",
            None,
            3,
        ),
        (
            "schema, wrong password",
            "--mongo-uri BAD_URI -vv schema",
            Some("trace"),
            4,
        ),
        (
            "list, wrong password, json",
            "--mongo-uri BAD_URI --log-format json list",
            None,
            4,
        ),
    ];
    let arg = |a: &str| -> String {
        match a {
            "CFG" => cfg.to_string(),
            "BAD" => bad.to_string(),
            "URI" => uri.clone(),
            "BAD_URI" => bad_uri.clone(),
            "KEY" => FILE_KEY.to_string(),
            "REPORT" => report.to_str().unwrap().to_string(),
            other => other.to_string(),
        }
    };
    let mut found = Vec::new();
    for (what, args, rust_log, code) in runs {
        let mut cmd = app::bin();
        cmd.args(args.split_whitespace().map(arg));
        if let Some(l) = rust_log {
            cmd.env("RUST_LOG", l);
        }
        let out = Out::from(cmd.output().unwrap());
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert_eq!(out.code, *code, "{what}: {}", out.stderr);
        found.extend(leaks(&format!("{what}: stdout"), &out.stdout));
        let mut stderr = out.stderr.clone();
        if rust_log.is_some() {
            let n = stderr.matches(AWS_KEY_ID).count();
            if n > 0 {
                eprintln!("  (RUST_LOG=trace: the AWS SDK showed the access key id {n} times)");
            }
            stderr = stderr.replace(AWS_KEY_ID, "<key id>");
        }
        found.extend(leaks(&format!("{what}: stderr"), &stderr));
        eprintln!(
            "{what:<32} exit {}: {} bytes stdout, {} bytes stderr",
            out.code,
            out.stdout.len(),
            out.stderr.len()
        );
    }

    // The real run did its work (so the secrets were really used), and the report has content.
    let s3_cfg: StoreConfig =
        toml::from_str(&s3_table(AWS_SECRET).replace("[destination]", "")).unwrap();
    let dest = storage::open(&s3_cfg, &StoreContext::default())
        .await
        .unwrap();
    for (name, data) in &h.files {
        let got = support::conformance::read_all(&*dest, &parse_server_name(name))
            .await
            .unwrap();
        assert!(got == *data, "{name}");
    }
    let report_text = std::fs::read_to_string(&report).unwrap();
    assert!(report_text.contains("\"missing\""), "{report_text}");
    found.extend(leaks("the report", &report_text));

    // The ledger, every collection of it, as stored.
    let mut ledger_docs = 0;
    for coll in db.list_collection_names().await.unwrap() {
        if coll.starts_with("_FileMigration") {
            let docs: Vec<Document> = futures::TryStreamExt::try_collect(
                db.collection::<Document>(&coll)
                    .find(doc! {})
                    .await
                    .unwrap(),
            )
            .await
            .unwrap();
            ledger_docs += docs.len();
            let text = mongodb::bson::Bson::Array(docs.into_iter().map(Into::into).collect())
                .into_relaxed_extjson()
                .to_string();
            found.extend(leaks(&coll, &text));
        }
    }
    assert!(ledger_docs > 0);
    eprintln!(
        "{} runs, report {} bytes, {ledger_docs} ledger documents: {} leaks",
        runs.len(),
        report_text.len(),
        found.len()
    );
    let _ = db.run_command(doc! {"dropUser": user}).await;
    assert!(found.is_empty(), "secrets leaked: {found:#?}");
}
