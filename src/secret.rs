//! Values that must never be printed: passwords, keys, the Parse `fileKey`.
//!
//! [`Secret`] holds such a value; its `Debug`, `Display` and `Serialize` all print
//! [`REDACTED`], so a secret that reaches a log line, an error, a report or `--show-settings`
//! by accident still shows nothing. The raw value is only reachable through
//! [`Secret::expose`], which makes every use greppable. [`redact_uri`] does the same for the
//! password inside a connection string, and [`MongoUri`] is a connection string that prints so.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What is printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A string that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value. Only pass it to the library that needs it, never to a formatter.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// A connection string with any password replaced by [`REDACTED`], and every query parameter
/// whose name suggests a secret (`password`, `secret`, `token`, `key`) likewise.
///
/// `mongodb://user:pw@host/db?authSource=admin` → `mongodb://user:<redacted>@host/db?authSource=admin`.
/// Works on strings that are not valid URLs too (it never echoes what it cannot parse).
pub fn redact_uri(uri: &str) -> String {
    let (scheme, rest) = match uri.split_once("://") {
        Some((s, r)) => (s, r),
        None => return REDACTED.to_string(),
    };
    // The authority ends at the first '/', '?' or '#' after the last '@' (passwords may hold '/'
    // only percent-encoded, per RFC 3986, but be generous and use the last '@').
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let mut out = format!("{scheme}://");
    match authority_and_path.rfind('@') {
        Some(at) => {
            let userinfo = &authority_and_path[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                out.push_str(user);
                out.push(':');
                out.push_str(REDACTED);
            } else {
                out.push_str(user);
            }
            out.push_str(&authority_and_path[at..]);
        }
        None => out.push_str(authority_and_path),
    }
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}={REDACTED}"),
                _ => kv.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "key",
        "signature",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A MongoDB connection string; prints with its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoUri(Secret);

impl MongoUri {
    pub fn new(uri: impl Into<String>) -> Self {
        MongoUri(Secret::new(uri))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn redacted(&self) -> String {
        redact_uri(self.0.expose())
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl std::fmt::Debug for MongoUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for MongoUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for MongoUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_uri_passwords() {
        assert_eq!(
            redact_uri("mongodb://admin:s3cr%2Ft@db1:27017,db2/parse?authSource=admin"),
            "mongodb://admin:<redacted>@db1:27017,db2/parse?authSource=admin"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017/parse"),
            "mongodb://127.0.0.1:27017/parse"
        );
        assert_eq!(
            redact_uri("mongodb+srv://u:p@a@cluster/x?tlsCertificateKeyFilePassword=zz&w=1"),
            "mongodb+srv://u:<redacted>@cluster/x?tlsCertificateKeyFilePassword=<redacted>&w=1"
        );
        assert_eq!(redact_uri("not a uri with pw"), "<redacted>");
        assert!(!redact_uri("mongodb://u:pw@h/?x=1").contains("pw@"));
    }
}
