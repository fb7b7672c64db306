//! A throwaway HTTPS server for the certificate tests: a CA made for the test signs a leaf
//! certificate for 127.0.0.1, and `openssl s_server -WWW` serves the files of a directory with
//! it (Debian's ca-certificates package depends on openssl, so every machine with a CA store has
//! the tool). The server is killed when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct HttpsServer {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA that signed the server's certificate (PEM): trusted only where a test says so.
    pub ca_file: PathBuf,
    /// The directory served: `<url>/<name>` is the file `<root>/<name>`.
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `openssl ARGS` in `dir` (throwaway certificates), or fail saying why.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl (needed for test certificates): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate for `/CN=<cn>` (RSA, two days) and its key, as PEM files in `dir`.
pub fn self_signed(dir: &Path, cn: &str, key: &str, cert: &str) {
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", key, "-out", cert,
        ],
    );
}

/// Start a server; it answers once this returns.
pub async fn start() -> HttpsServer {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    self_signed(d, "pfm test CA", "ca.key", "ca.pem");
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.pem",
        ],
    );
    let root = d.join("www");
    std::fs::create_dir(&root).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-WWW",
            "-cert",
            "../leaf.pem",
            "-key",
            "../leaf.key",
        ])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let up = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), up)
        .await
        .expect("openssl s_server listening");
    HttpsServer {
        url: format!("https://127.0.0.1:{port}"),
        ca_file: d.join("ca.pem"),
        root,
        child,
        _dir: dir,
    }
}
