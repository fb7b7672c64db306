//! MongoDB over TLS: the driver takes `tls=true&tlsCAFile=…&tlsCertificateKeyFile=…` in the URI.
//! A TLS connection to a server that does not speak TLS fails at start-up with exit 4 and a hint
//! about TLS; unreadable TLS files are a configuration error (exit 2); the password never shows.
//! Needs the MongoDB test server (plain TCP) and the `openssl` command for throwaway certificates.

use std::path::Path;

use parse_files_migrate::exit;

use crate::support::{self, app};

const PASSWORD: &str = "pw-TLS-SECRET";

/// A CA certificate and a client certificate+key PEM, self-signed, valid for a day.
fn certificates(dir: &Path) -> (String, String) {
    for (name, cn) in [("ca", "pfm-test-ca"), ("client", "pfm-test-client")] {
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        support::tls::self_signed(dir, cn, &key, &cert);
    }
    let client = [
        std::fs::read_to_string(dir.join("client.crt")).unwrap(),
        std::fs::read_to_string(dir.join("client.key")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("client.pem"), client).unwrap();
    (
        dir.join("ca.crt").display().to_string(),
        dir.join("client.pem").display().to_string(),
    )
}

/// The test server's address with credentials, a database and `query`.
fn uri(query: &str) -> String {
    let hosts = support::mongo_hosts();
    format!("mongodb://app:{PASSWORD}@{hosts}/tlsapp?directConnection=true&{query}")
}

fn run(uri: &str, args: &[&str]) -> app::Out {
    let mut all = vec!["--mongo-uri", uri];
    all.extend_from_slice(args);
    let out = app::run(all);
    out.assert_hides("password", PASSWORD);
    out
}

#[test]
fn tls_uri_is_accepted_and_a_plain_server_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, client) = certificates(dir.path());
    let tls = format!("tls=true&tlsCAFile={ca}&tlsCertificateKeyFile={client}");

    // Settings take the URI as it is, and show it without the password.
    let out = run(&uri(&tls), &["--show-settings"]);
    assert_eq!(out.code, exit::OK, "{}", out.stderr);
    assert!(out.stdout.contains("tls=true&tlsCAFile="), "{}", out.stdout);
    assert!(out.stdout.contains("app:<redacted>@"), "{}", out.stdout);

    // The certificates load; the plain-TCP server cannot complete a TLS handshake: exit 4.
    let started = std::time::Instant::now();
    let timeouts = "connectTimeoutMS=1000&serverSelectionTimeoutMS=3000";
    for cmd in [["schema"].as_slice(), &["list", "--output", "jsonl"]] {
        let out = run(&uri(&format!("{tls}&{timeouts}")), cmd);
        assert_eq!(out.code, exit::UNREACHABLE, "{cmd:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("cannot reach MongoDB over TLS"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("hint: the URI asks for TLS"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    eprintln!("two TLS failures reported in {:.1?}", started.elapsed());

    // A TLS file that cannot be read is a configuration error naming the file.
    let missing = dir.path().join("missing-ca.pem").display().to_string();
    let out = run(&uri(&format!("tls=true&tlsCAFile={missing}")), &["schema"]);
    assert_eq!(out.code, exit::USAGE, "{}", out.stderr);
    assert!(out.stderr.contains(&missing), "{}", out.stderr);

    // Encrypted client keys are not supported by this build of the driver: said plainly, and
    // the key's password is redacted too.
    let out = run(
        &uri(&format!(
            "tls=true&tlsCertificateKeyFile={client}&tlsCertificateKeyFilePassword=kp-SECRET"
        )),
        &["schema"],
    );
    assert_eq!(out.code, exit::USAGE, "{}", out.stderr);
    assert!(
        out.stderr.contains("tlsCertificateKeyFilePassword"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("kp-SECRET"), "{}", out.stderr);
}
