//! Values that must never be printed: passwords, keys, tokens, the Parse `fileKey`.
//!
//! [`Secret`] holds such a value; its `Debug`, `Display` and `Serialize` all print
//! [`REDACTED`], so a secret that reaches a log line, an error, a report or `--show-settings`
//! by accident still shows nothing. The raw value is only reachable through
//! [`Secret::expose`], which makes every use greppable.
//!
//! Secrets inside strings that are otherwise shown: [`redact_uri`] hides the credentials of a
//! MongoDB connection string ([`MongoUri`] is one that prints so), [`redact_url`] those of an
//! HTTP(S) URL from a configuration, [`redact_echo`] what a driver's error message quotes of a
//! connection string's hidden parts, and [`Scrubber`] a known secret (the fileKey) in any form
//! text may hold it: raw, percent-encoded or escaped.
//!
//! When a string cannot be split with certainty, everything after its scheme is hidden: showing
//! less is a nuisance, showing a password is an incident.

use std::borrow::Cow;
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

/// A MongoDB connection string with its password, and the value of every query parameter that
/// holds a secret (`authMechanismProperties`, or a name with `password`, `token`, `key`…),
/// replaced by [`REDACTED`].
///
/// `mongodb://user:pw@host/db?authSource=admin` → `mongodb://user:<redacted>@host/db?authSource=admin`.
///
/// The credentials are found as the connection-string spec finds them: they end at the last `@`
/// before the first `/` after the scheme, so a `?`, `#` or `:` in an unencoded password stays
/// inside them. (The Rust driver cuts at the first `?` instead, and then fails to parse: see
/// [`redact_echo`] for what its message may quote.) A string where an `@` follows that `/`, or
/// where the hosts hold a `?` or `#`, can be read more than one way (a password with a `/`, say):
/// everything after `://` is hidden. So is the whole string when it has no `scheme://`.
pub fn redact_uri(uri: &str) -> String {
    redact(uri, Flavour::Mongo).shown
}

/// [`redact_uri`] for an HTTP(S) URL (an S3 or GCS endpoint, an HTTP source's base URL, a URL
/// stored in the database): the credentials end at the last `@` before the first `/`, `?`, `#`
/// or `\` (as browsers and the `url` crate read them), and a secret-looking query or fragment
/// parameter is hidden. Without credentials there, an `@` further on may still end a password
/// holding one of those characters: everything after `://` is hidden then, even when it is
/// only a file name (`icon@2x.png`; errors name the file besides the URL).
pub fn redact_url(url: &str) -> String {
    redact(url, Flavour::Http).shown
}

/// `serialize_with` for an optional configured URL: shown through [`redact_url`].
pub fn serialize_redacted_url<S: Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&redact_url(u)),
        None => s.serialize_none(),
    }
}

/// `message` (a driver's error about `uri`) without what it quotes of the parts of `uri` that
/// [`redact_uri`] hides. The driver splits a connection string its own way, so it may quote a
/// fragment of a password (`got se` for `u:se?cret@…`) rather than the whole: every run of the
/// message of three or more characters found inside a hidden part, and every word found
/// there whole, is replaced.
pub fn redact_echo(message: &str, uri: &str) -> String {
    // The driver quotes option values decoded, fragments of the rest as written.
    let hidden: Vec<Cow<'_, str>> = redact(uri, Flavour::Mongo)
        .hidden
        .into_iter()
        .flat_map(|h| {
            [
                Cow::Borrowed(h),
                percent_encoding::percent_decode_str(h).decode_utf8_lossy(),
            ]
        })
        .filter(|h| !h.is_empty())
        .collect();
    if hidden.is_empty() {
        return message.to_string();
    }
    let mut out = String::new();
    let mut i = 0;
    while let Some(c) = message[i..].chars().next() {
        let common = hidden
            .iter()
            .map(|h| longest_common_prefix(&message[i..], h))
            .max()
            .unwrap_or(0);
        let word_start = c.is_alphanumeric()
            && !message[..i]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
        let word = message[i..]
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(message.len() - i);
        if common >= 3 || (word_start && common >= word) {
            if !out.ends_with(REDACTED) {
                out.push_str(REDACTED);
            }
            i += common.max(1);
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of the longest prefix of `text` found anywhere in `hidden` (on a char boundary).
fn longest_common_prefix(text: &str, hidden: &str) -> usize {
    let (t, h) = (text.as_bytes(), hidden.as_bytes());
    let mut best = (0..h.len())
        .map(|j| t.iter().zip(&h[j..]).take_while(|(a, b)| a == b).count())
        .max()
        .unwrap_or(0);
    while !text.is_char_boundary(best) {
        best -= 1;
    }
    best
}

/// Which grammar a string to redact follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// A MongoDB connection string (several hosts, options after `?` split on `&`).
    Mongo,
    /// An HTTP(S) URL (WHATWG authority, query and fragment).
    Http,
}

/// A string to show, and the spans of the original it hides (for [`redact_echo`]).
struct Redaction<'a> {
    shown: String,
    hidden: Vec<&'a str>,
}

fn redact(uri: &str, flavour: Flavour) -> Redaction<'_> {
    let Some((scheme, rest)) = uri.split_once("://").filter(|(s, _)| is_scheme(s)) else {
        return Redaction {
            shown: REDACTED.to_string(),
            hidden: vec![uri],
        };
    };
    let everything = || Redaction {
        shown: format!("{scheme}://{REDACTED}"),
        hidden: vec![rest],
    };
    let mut r = Redaction {
        shown: format!("{scheme}://"),
        hidden: Vec::new(),
    };
    // The authority (credentials and hosts) and what follows it (path, query, fragment).
    let end = match flavour {
        // Without an '@' there are no credentials, and the query may follow the hosts directly.
        Flavour::Mongo if !rest.contains('@') => rest.find(['/', '?']),
        Flavour::Mongo => rest.find('/'),
        Flavour::Http => rest.find(['/', '?', '#', '\\']),
    }
    .unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            // A later '@' may be where the credentials really end (a password with a '/', or
            // for HTTP a '?' or '#'); hosts holding a '?' or '#' may be a query cut short.
            if tail.contains('@') || hosts.contains(['?', '#']) {
                return everything();
            }
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            // A user name holding query syntax may be a query cut in the wrong place.
            if user.contains(['?', '#', '&', ';', '/']) {
                r.shown.push_str(REDACTED);
                r.hidden.push(userinfo);
            } else {
                r.shown.push_str(user);
                if let Some(p) = password {
                    r.shown.push(':');
                    r.shown.push_str(REDACTED);
                    r.hidden.push(p);
                }
            }
            r.shown.push('@');
            r.shown.push_str(hosts);
        }
        // An '@' after the authority may end a password holding a '/', '?' or '#'
        // (`https://u:12/ab@h` is host `u`, port 12 to a parser, a password to a person).
        None if tail.contains('@') => return everything(),
        None => r.shown.push_str(authority),
    }
    let params_at = match flavour {
        Flavour::Mongo => tail.find('?'),
        Flavour::Http => tail.find(['?', '#']),
    };
    match params_at {
        Some(at) => {
            r.shown.push_str(&tail[..=at]);
            redact_params(&tail[at + 1..], flavour, &mut r);
        }
        None => r.shown.push_str(tail),
    }
    r
}

fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Hide the values of secret parameters in `params` (what follows `?`). An unencoded `&` in a
/// secret value cuts it, so what follows a secret parameter is hidden too: for MongoDB until a
/// known option, for HTTP (where any `name=value` could be the rest of a signature) to the end.
fn redact_params<'a>(params: &'a str, flavour: Flavour, r: &mut Redaction<'a>) {
    let separators: &[char] = match flavour {
        Flavour::Mongo => &['&', ';'],
        Flavour::Http => &['&', ';', '#'],
    };
    let mut in_secret = false;
    // Where the value of the last secret parameter starts.
    let mut secret_from = 0;
    let mut at = 0;
    for piece in params.split(separators) {
        let here = at;
        at += piece.len() + 1;
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (piece, None),
        };
        let name_lower = percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .to_ascii_lowercase();
        let plainly_a_parameter = value.is_some()
            && flavour == Flavour::Mongo
            && MONGO_OPTIONS.contains(&name_lower.as_str());
        if in_secret && !plainly_a_parameter {
            // One hidden span from the secret value on, separators included (the driver splits
            // on '&' only, and may quote the value across a ';').
            if let Some(last) = r.hidden.last_mut() {
                *last = &params[secret_from..here + piece.len()];
            }
            continue;
        }
        in_secret = false;
        if here > 0 {
            // The separator before this piece, as written (one ASCII character).
            r.shown.push_str(&params[here - 1..here]);
        }
        match value {
            Some(v) if is_secret_param(&name_lower) => {
                r.shown.push_str(name);
                r.shown.push('=');
                r.shown.push_str(REDACTED);
                r.hidden.push(v);
                secret_from = here + name.len() + 1;
                in_secret = true;
            }
            _ => r.shown.push_str(piece),
        }
    }
}

/// The connection-string options the Rust driver knows (lower case), and a few it refuses: an
/// option that follows a secret one is shown only if it is one of them.
const MONGO_OPTIONS: &[&str] = &[
    "appname",
    "authmechanism",
    "authmechanismproperties",
    "authsource",
    "compressors",
    "connecttimeoutms",
    "directconnection",
    "heartbeatfrequencyms",
    "journal",
    "loadbalanced",
    "localthresholdms",
    "maxconnecting",
    "maxidletimems",
    "maxpoolsize",
    "maxstalenessseconds",
    "minpoolsize",
    "proxyhost",
    "proxypassword",
    "proxyport",
    "proxyusername",
    "readconcernlevel",
    "readpreference",
    "readpreferencetags",
    "replicaset",
    "retryreads",
    "retrywrites",
    "servermonitoringmode",
    "serverselectiontimeoutms",
    "serverselectiontryonce",
    "sockettimeoutms",
    "srvmaxhosts",
    "srvservicename",
    "ssl",
    "timeoutms",
    "tls",
    "tlsallowinvalidcertificates",
    "tlsallowinvalidhostnames",
    "tlscafile",
    "tlscertificatekeyfile",
    "tlscertificatekeyfilepassword",
    "tlsdisablecertificaterevocationcheck",
    "tlsdisableocspendpointcheck",
    "tlsinsecure",
    "uuidrepresentation",
    "w",
    "waitqueuetimeoutms",
    "wtimeoutms",
    "zlibcompressionlevel",
];

/// Whether a parameter (name in lower case) holds a secret. `authMechanismProperties` carries
/// the AWS session token of MONGODB-AWS (`AWS_SESSION_TOKEN:…`), so its whole value is hidden.
fn is_secret_param(name_lower: &str) -> bool {
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "sig",
        "credential",
        "session",
        "authmechanismproperties",
    ]
    .iter()
    .any(|w| name_lower.contains(w))
}

/// A known secret (the fileKey), found in text in whatever form it was written there: raw,
/// percent-encoded (any mix of encoded and plain characters, either hex case, `+` for a space,
/// encoded twice), or escaped by JSON, by `{:?}` or for the terminal — and those escapes escaped
/// once more by JSON (a `{:?}` message in a JSON log line). A plain substring replace finds only
/// the raw form, while a key with a `"`, a `\` or a `/` is written differently in a JSON line or
/// a stored URL.
pub struct Scrubber {
    /// For each character of the secret, the byte strings it may appear as.
    forms: Vec<Vec<Form>>,
}

struct Form {
    bytes: Vec<u8>,
    /// Escapes and percent-encodings match in either ASCII case (`%2f`, `%2F`).
    any_case: bool,
}

impl Form {
    fn is_at(&self, text: &[u8], at: usize) -> bool {
        text.get(at..at + self.bytes.len()).is_some_and(|got| {
            if self.any_case {
                got.eq_ignore_ascii_case(&self.bytes)
            } else {
                got == self.bytes
            }
        })
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrubber(")?;
        f.write_str(REDACTED)?;
        f.write_str(")")
    }
}

impl Scrubber {
    /// `None` for an empty secret (nothing to find).
    pub fn new(secret: &str) -> Option<Scrubber> {
        (!secret.is_empty()).then(|| Scrubber {
            forms: secret.chars().map(forms_of).collect(),
        })
    }

    /// `text` with every occurrence of the secret, in any of its forms, replaced by
    /// `placeholder`.
    pub fn scrub<'a>(&self, text: &'a str, placeholder: &str) -> Cow<'a, str> {
        let bytes = text.as_bytes();
        let mut out = String::new();
        let (mut copied, mut i, mut found) = (0, 0, false);
        while i < bytes.len() {
            match text
                .is_char_boundary(i)
                .then(|| self.match_at(bytes, i))
                .flatten()
            {
                Some(end) => {
                    out.push_str(&text[copied..i]);
                    out.push_str(placeholder);
                    (copied, i, found) = (end, end, true);
                }
                None => i += 1,
            }
        }
        if !found {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// [`Scrubber::scrub`] for one line of JSON: each string in it is decoded, scrubbed and
    /// encoded again, so the line stays valid JSON whatever the secret holds (scrubbing the
    /// encoded text could take a `"` of the secret for the one closing a string).
    pub fn scrub_json(&self, json: &str, placeholder: &str) -> String {
        let mut out = String::with_capacity(json.len());
        let mut rest = json;
        while let Some(open) = rest.find('"') {
            out.push_str(&rest[..open]);
            let b = rest.as_bytes();
            let mut close = open + 1;
            while close < b.len() && b[close] != b'"' {
                close += if b[close] == b'\\' { 2 } else { 1 };
            }
            let end = (close + 1).min(rest.len());
            let literal = &rest[open..end];
            match serde_json::from_str::<String>(literal) {
                Ok(s) => match self.scrub(&s, placeholder) {
                    Cow::Borrowed(_) => out.push_str(literal),
                    Cow::Owned(scrubbed) => out.push_str(
                        &serde_json::to_string(&scrubbed).unwrap_or_else(|_| placeholder.into()),
                    ),
                },
                // Not JSON after all: scrub it as text.
                Err(_) => out.push_str(&self.scrub(literal, placeholder)),
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    /// Where a match of the whole secret starting at `start` ends (the longest), if any.
    fn match_at(&self, text: &[u8], start: usize) -> Option<usize> {
        // Most positions fail on the first character: decide those without allocating (a dry
        // run scrubs every byte of every plan line).
        if !self.forms.first()?.iter().any(|f| f.is_at(text, start)) {
            return None;
        }
        let mut ends = vec![start];
        for forms in &self.forms {
            let mut next = Vec::new();
            for &at in &ends {
                for f in forms.iter().filter(|f| f.is_at(text, at)) {
                    next.push(at + f.bytes.len());
                }
            }
            if next.is_empty() {
                return None;
            }
            next.sort_unstable();
            next.dedup();
            ends = next;
        }
        ends.last().copied()
    }
}

/// Every way `c` may be written in text we print.
fn forms_of(c: char) -> Vec<Form> {
    let raw = c.to_string();
    let mut utf8 = [0u8; 4];
    let percent: String = c
        .encode_utf8(&mut utf8)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let mut escaped = vec![
        percent.replace('%', "%25"),
        percent,
        c.escape_debug().to_string(),
        c.escape_default().to_string(),
        json_escape(&raw),
    ];
    if c == ' ' {
        escaped.push("+".into());
    }
    let twice: Vec<String> = escaped.iter().map(|e| json_escape(e)).collect();
    escaped.extend(twice);
    escaped.retain(|e| *e != raw);
    escaped.sort();
    escaped.dedup();
    std::iter::once(Form {
        bytes: raw.into_bytes(),
        any_case: false,
    })
    .chain(escaped.into_iter().map(|e| Form {
        bytes: e.into_bytes(),
        any_case: true,
    }))
    .collect()
}

/// `s` as it appears between the quotes of a JSON string.
fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or("")
        .to_string()
}

/// A MongoDB connection string; prints with its credentials redacted ([`redact_uri`]).
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
mod tests;
