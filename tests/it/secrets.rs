//! Secrets never leak: a MongoDB password (a real SCRAM user on the test server), S3 keys (an
//! s3s-fs of the test's own that accepts only them) and the Parse fileKey go through every
//! command — `--show-settings`, `schema`, `list`, `migrate --dry-run`, a real `migrate` with
//! `--report`, failures at start-up — at `-vv` and with `RUST_LOG=trace`, as text and JSON logs.
//! None of them may appear in stdout, stderr, the report file or the ledger collections.
//! Connection strings whose credentials hold URI syntax (`?#@/:%&=`), session tokens in
//! `authMechanismProperties`, and endpoints with credentials are not printed either.
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

/// Review findings 11 and 12 through the real binary: the review's two repros and generated
/// URIs (a deterministic seed) whose credentials and session token hold `?#@/:%&=`, spaces and
/// unicode, written plain or percent-encoded, every one pointed at closed ports. Each goes
/// through `--show-settings` and through `schema`, which fails to parse the URI or to reach
/// MongoDB and says so, quoting it. No secret, and no five characters of one, is printed.
#[test]
fn uri_credentials_never_print_whatever_they_hold() {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    let mut cases: Vec<(String, Vec<String>)> = vec![
        (
            "mongodb://u:se?cret@127.0.0.1:1/db".into(),
            vec!["se?cret".into()],
        ),
        (
            "mongodb://AKIA:S3cr3t-pw@127.0.0.1:1/db?serverSelectionTimeoutMS=300&\
             authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:TOK-session-SECRET"
                .into(),
            vec!["S3cr3t-pw".into(), "TOK-session-SECRET".into()],
        ),
        // The driver panics on this one: refused before it sees it.
        (
            "mongodb://u:%中secret-pw@127.0.0.1:1/db".into(),
            vec!["%中secret-pw".into()],
        ),
    ];
    let secret = "[a-zA-Z0-9?#@/:%&=;, é中🔑]{8,14}";
    let generated = (
        ("[a-z?@:%]{1,5}", secret, any::<bool>()),
        prop::option::of((secret, any::<bool>())),
        any::<bool>(),
    );
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..16 {
        let ((user, password, encode), token, two_hosts) =
            generated.new_tree(&mut runner).unwrap().current();
        let written = |s: &str, encode: bool| {
            if encode {
                utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
            } else {
                s.to_string()
            }
        };
        let mut secrets = vec![password.clone(), written(&password, encode)];
        // The timeout first: an unencoded '&' in the token cannot cut it off.
        let mut query = "serverSelectionTimeoutMS=300".to_string();
        if let Some((t, enc)) = &token {
            query.push_str(&format!(
                "&authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{}",
                written(t, *enc)
            ));
            secrets.extend([t.clone(), written(t, *enc)]);
        }
        let hosts = if two_hosts {
            "127.0.0.1:1,127.0.0.1:2"
        } else {
            "127.0.0.1:1"
        };
        let uri = format!(
            "mongodb://{}:{}@{hosts}/app?{query}",
            written(&user, encode),
            written(&password, encode)
        );
        cases.push((uri, secrets));
    }

    let (mut unreachable, mut invalid, mut found) = (0, 0, Vec::new());
    for (uri, secrets) in &cases {
        // What a secret's window could match by chance: the URI without its secrets.
        let mut rest = uri.clone();
        for s in secrets {
            rest = rest.replace(s.as_str(), "");
        }
        for (what, args) in [
            (
                "--show-settings",
                vec!["--mongo-uri", uri, "--show-settings"],
            ),
            ("schema", vec!["--mongo-uri", uri, "-vv", "schema"]),
        ] {
            let out = app::run(&args);
            let expected: &[i32] = if what == "schema" { &[2, 4] } else { &[0] };
            assert!(expected.contains(&out.code), "{what} {uri}: {}", out.stderr);
            unreachable += out.stderr.contains("cannot reach MongoDB") as usize;
            invalid += out.stderr.contains("invalid MongoDB URI") as usize;
            let printed = format!("{}\n{}", out.stdout, out.stderr);
            for s in secrets {
                let chars: Vec<char> = s.chars().collect();
                let windows = chars.windows(5).map(String::from_iter).filter(|w| {
                    !w.chars().any(|c| "<>redacted".contains(c)) && !rest.contains(w.as_str())
                });
                for leaked in std::iter::once(s.clone())
                    .chain(windows)
                    .filter(|w| printed.contains(w.as_str()))
                {
                    found.push(format!("{leaked:?} of {s:?} by {what} {uri}:\n{printed}"));
                }
            }
        }
    }
    eprintln!(
        "{} URIs: {unreachable} cannot-reach and {invalid} invalid-URI errors",
        cases.len()
    );
    assert!(unreachable >= 2 && invalid >= 2, "both error paths ran");
    assert!(found.is_empty(), "secrets leaked: {found:#?}");
}

/// Review finding 15 (minor leaks): a store whose endpoint or base url carries credentials
/// does not show them in its description (status, plans, reports, errors) or its `Debug`.
#[tokio::test]
async fn store_descriptions_hide_endpoint_credentials() {
    let mut leaks = Vec::new();
    for table in [
        "type = \"s3\"\nbucket = \"b\"\nregion = \"us-east-1\"\n\
         endpoint = \"http://AKIA:pw-s3-SECRET@127.0.0.1:9100\"",
        "type = \"gcs\"\nbucket = \"b\"\nanonymous = true\n\
         endpoint = \"http://u:pw-gcs-SECRET@127.0.0.2\"",
        "type = \"http\"\ntfss_base_url = \"http://u:pw-http-SECRET@127.0.0.1:9300/{file_key}/\"",
    ] {
        let cfg: StoreConfig = toml::from_str(table).unwrap();
        let ctx = StoreContext {
            file_key: Some(FILE_KEY.into()),
            ..Default::default()
        };
        let store = storage::open(&cfg, &ctx).await.unwrap();
        let shown = format!("{}\n{store:?}", store.describe());
        if shown.contains("SECRET") || !shown.contains("<redacted>@127.0.0.") {
            leaks.push(shown);
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}
