//! File names: their kinds, JavaScript `encodeURIComponent`, legacy URLs, and deterministic
//! renames.
//!
//! Parse Server decides where a file lives purely from its name (FilesController
//! `expandFilesInObject`): with `fileKey` set, `tfss-…` names go to `files.parsetfss.com`, names
//! starting with a UUID and `-` go to `files.parse.com`, everything else to the files adapter.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where hosted Parse served `tfss-` names (`{file_key}` is the app's fileKey); long dead:
/// `[source.hosted]` points these templates at a mirror of the old files.
pub const HOSTED_TFSS_BASE_URL: &str = "http://files.parsetfss.com/{file_key}/";
/// Where hosted Parse served UUID-prefixed names.
pub const HOSTED_LEGACY_BASE_URL: &str = "http://files.parse.com/{file_key}/";

/// Characters JavaScript's `encodeURIComponent` escapes: everything but `A–Z a–z 0–9` and
/// `- _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// JavaScript `encodeURIComponent(s)`: UTF-8 bytes percent-encoded with uppercase hex.
///
/// (JavaScript throws on lone surrogates; a Rust `&str` cannot hold one, so this never fails.)
pub fn encode_uri_component(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

/// A file name as Parse Server 9's adapters put it in a URL path: `encodeURIComponent` of each
/// `/`-separated segment (the GridFS and S3 adapters' `getFileLocation`; names with directories
/// since `Parse.File.setDirectory`), so `Photo/2024/a b.jpg` reads `Photo/2024/a%20b.jpg`.
/// Without a `/`, the same as [`encode_uri_component`]. Parse Server's `/files/:appId/*filepath`
/// route serves this form and the older `%2F` one alike.
pub fn encode_name_path(name: &str) -> String {
    name.split('/')
        .map(encode_uri_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// What a file name says about where the file came from (the `kind` column of `list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameKind {
    /// `tfss-…`: hosted Parse, served from `files.parsetfss.com` while `fileKey` is set.
    ParseHosted,
    /// `<uuid>-…`: older hosted Parse, served from `files.parse.com` while `fileKey` is set.
    ParseLegacy,
    /// `<32 hex>_…` (Parse Server ≥ 2.1) or `<uuid>_…` (2.2.20–2.2.22): created by Parse Server.
    ParseServer,
    /// `mfp_…`: renamed by parse-files-utils.
    Migrated,
    /// Anything else (`preserveFileName`, custom triggers, this tool's `keep`).
    Other,
}

impl NameKind {
    /// Classify a stored name, in Parse Server's order: `tfss-` first (case-sensitive), then the
    /// UUID-dash regex, then the names Parse Server and parse-files-utils generate.
    pub fn of(name: &str) -> NameKind {
        let b = name.as_bytes();
        if name.starts_with("tfss-") {
            NameKind::ParseHosted
        } else if is_uuid_prefix(b) && b.get(36) == Some(&b'-') {
            NameKind::ParseLegacy
        } else if (b.len() > 32
            && b[..32]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            && b[32] == b'_')
            || (is_uuid_prefix(b) && b.get(36) == Some(&b'_'))
        {
            NameKind::ParseServer
        } else if name.starts_with("mfp_") {
            NameKind::Migrated
        } else {
            NameKind::Other
        }
    }

    /// Names Parse Server resolves to the dead hosted-Parse hosts while `fileKey` is set.
    pub fn is_hosted(self) -> bool {
        matches!(self, NameKind::ParseHosted | NameKind::ParseLegacy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::ParseHosted => "parse-hosted",
            NameKind::ParseLegacy => "parse-legacy",
            NameKind::ParseServer => "parse-server",
            NameKind::Migrated => "migrated",
            NameKind::Other => "other",
        }
    }
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}` (any case,
/// any version), as in FilesController's `legacyFilesRegex`.
fn is_uuid_prefix(b: &[u8]) -> bool {
    if b.len() < 36 {
        return false;
    }
    b[..36].iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

/// The URL Parse Server (with `fileKey` set) returns for a hosted-Parse name, from the base URL
/// templates of `[source.hosted]` (`{file_key}` is substituted): `base + encodeURIComponent(name)`.
/// `None` for names that are not hosted-Parse names.
pub fn legacy_url(
    name: &str,
    tfss_base: &str,
    legacy_base: &str,
    file_key: &str,
) -> Option<String> {
    let base = match NameKind::of(name) {
        NameKind::ParseHosted => tfss_base,
        NameKind::ParseLegacy => legacy_base,
        _ => return None,
    };
    let mut url = base.replace("{file_key}", file_key);
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str(&encode_uri_component(name));
    Some(url)
}

/// A Parse Server files URL: `<server_url>/files/<appId>/<encodeURIComponent(name)>`
/// (GridFSBucketAdapter / FS adapter / S3 and GCS without direct access `getFileLocation`).
pub fn parse_server_file_url(server_url: &str, app_id: &str, name: &str) -> String {
    format!(
        "{}/files/{}/{}",
        server_url.trim_end_matches('/'),
        app_id,
        encode_name_path(name)
    )
}

/// The name without its hosted-Parse prefix: `tfss-<uuid>-photo.jpg` → `photo.jpg`,
/// `<uuid>-photo.jpg` → `photo.jpg`. Other names are returned unchanged.
pub fn strip_legacy_prefix(name: &str) -> &str {
    let rest = name.strip_prefix("tfss-").unwrap_or(name);
    if is_uuid_prefix(rest.as_bytes()) && rest.as_bytes().get(36) == Some(&b'-') {
        &rest[37..]
    } else {
        rest
    }
}

/// A Parse-Server-style name derived deterministically from `name`:
/// `<first 32 hex of sha256(name)>_<name without legacy prefix>`.
///
/// Deterministic so that every run and every host picks the same target, and a retry after a
/// crash finds its own copy there (same bytes: counted as copied) instead of leaving an orphan. The hash covers the *whole* old name, so two
/// legacy files that differ only in their UUID get different targets. An empty remainder becomes
/// `file` so the name never ends in `_`.
pub fn parse_server_name(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let rest = strip_legacy_prefix(name);
    let rest = if rest.is_empty() { "file" } else { rest };
    format!("{}_{}", &hex::encode(digest)[..32], rest)
}

/// How target names are chosen (`--rename`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenamePolicy {
    /// Hosted-Parse names get a Parse-Server-style name (else Parse Server keeps pointing clients
    /// at the dead hosts while `fileKey` is set); other names keep theirs.
    Auto,
    /// Every name is kept.
    Keep,
    /// Every name that is not already Parse-Server-style gets one.
    ParseServer,
}

/// The name a file gets at the destination under `policy`.
pub fn target_name(name: &str, policy: RenamePolicy) -> std::borrow::Cow<'_, str> {
    let kind = NameKind::of(name);
    let rename = match policy {
        RenamePolicy::Auto => kind.is_hosted(),
        RenamePolicy::Keep => false,
        RenamePolicy::ParseServer => kind != NameKind::ParseServer,
    };
    if rename {
        std::borrow::Cow::Owned(parse_server_name(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Which names a run moves (`--select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// `parse-hosted` and `parse-legacy` names (the hosted-Parse rescue).
    Hosted,
    /// Every other name (an adapter move).
    Server,
    /// Everything.
    All,
}

impl Selection {
    pub fn includes(self, kind: NameKind) -> bool {
        match self {
            Selection::Hosted => kind.is_hosted(),
            Selection::Server => !kind.is_hosted(),
            Selection::All => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_directories_are_encoded_per_segment_as_parse_server_9_does() {
        assert_eq!(
            encode_name_path("Photo/2024/a b.jpg"),
            "Photo/2024/a%20b.jpg"
        );
        assert_eq!(encode_name_path("a+b.jpg"), encode_uri_component("a+b.jpg"));
        assert_eq!(
            parse_server_file_url("https://api.example.com/parse/", "app", "d/é.png"),
            "https://api.example.com/parse/files/app/d/%C3%A9.png"
        );
    }

    #[test]
    fn kinds() {
        let uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        assert_eq!(
            NameKind::of(&format!("tfss-{uuid}-photo.jpg")),
            NameKind::ParseHosted
        );
        assert_eq!(NameKind::of("tfss-anything"), NameKind::ParseHosted);
        assert_eq!(
            NameKind::of("TFSS-x"),
            NameKind::Other,
            "tfss- is case-sensitive"
        );
        assert_eq!(
            NameKind::of(&format!("{uuid}-photo.jpg")),
            NameKind::ParseLegacy
        );
        assert_eq!(
            NameKind::of(&format!("{}-", uuid.to_uppercase())),
            NameKind::ParseLegacy
        );
        assert_eq!(
            NameKind::of(&format!("{uuid}_photo.jpg")),
            NameKind::ParseServer
        );
        assert_eq!(
            NameKind::of("0123456789abcdef0123456789abcdef_a.png"),
            NameKind::ParseServer
        );
        assert_eq!(
            NameKind::of("0123456789ABCDEF0123456789abcdef_a.png"),
            NameKind::Other
        );
        assert_eq!(
            NameKind::of("0123456789abcdef0123456789abcde_a.png"),
            NameKind::Other
        );
        assert_eq!(NameKind::of("mfp_0123photo.jpg"), NameKind::Migrated);
        assert_eq!(
            NameKind::of(uuid),
            NameKind::Other,
            "a bare UUID needs the dash after it"
        );
        assert_eq!(NameKind::of(""), NameKind::Other);
        assert_eq!(NameKind::of("é"), NameKind::Other);
    }

    #[test]
    fn legacy_urls() {
        let uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        let tfss = format!("tfss-{uuid}-my photo.jpg");
        assert_eq!(
            legacy_url(&tfss, "http://files.parsetfss.com/{file_key}/", "x", "KEY").unwrap(),
            format!("http://files.parsetfss.com/KEY/tfss-{uuid}-my%20photo.jpg")
        );
        assert_eq!(
            legacy_url(
                &format!("{uuid}-a@b"),
                "x",
                "http://files.parse.com/{file_key}",
                "K"
            )
            .unwrap(),
            format!("http://files.parse.com/K/{uuid}-a%40b")
        );
        assert_eq!(
            legacy_url("0123456789abcdef0123456789abcdef_a", "x", "y", "K"),
            None
        );
        assert_eq!(
            parse_server_file_url("https://api.example.com/parse/", "app", "a b.png"),
            "https://api.example.com/parse/files/app/a%20b.png"
        );
    }

    #[test]
    fn renames_are_deterministic_and_parse_server_style() {
        let uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        let a = parse_server_name(&format!("tfss-{uuid}-photo.jpg"));
        assert_eq!(a, parse_server_name(&format!("tfss-{uuid}-photo.jpg")));
        assert!(a.ends_with("_photo.jpg"), "{a}");
        assert_eq!(NameKind::of(&a), NameKind::ParseServer);
        let b = parse_server_name(&format!("{uuid}-photo.jpg"));
        assert_ne!(a, b, "different old names, different targets");
        assert_eq!(NameKind::of(&b), NameKind::ParseServer);
        assert!(parse_server_name(&format!("tfss-{uuid}-")).ends_with("_file"));
        assert_eq!(strip_legacy_prefix("tfss-plain"), "plain");
        assert_eq!(strip_legacy_prefix("other.txt"), "other.txt");
        assert_eq!(
            NameKind::of(&parse_server_name("é名")),
            NameKind::ParseServer
        );
    }

    #[test]
    fn encode_matches_javascript() {
        // Expected values from node: encodeURIComponent(x)
        assert_eq!(encode_uri_component("a b"), "a%20b");
        assert_eq!(encode_uri_component("A-Z_a.z!~*'()"), "A-Z_a.z!~*'()");
        assert_eq!(
            encode_uri_component("a/b@c+d%e&f=g?h#i"),
            "a%2Fb%40c%2Bd%25e%26f%3Dg%3Fh%23i"
        );
        assert_eq!(encode_uri_component("é名🎉"), "%C3%A9%E5%90%8D%F0%9F%8E%89");
        assert_eq!(encode_uri_component(""), "");
    }

    #[test]
    fn policies() {
        let legacy = "tfss-x-photo.jpg";
        let server = "0123456789abcdef0123456789abcdef_a.png";
        assert_ne!(target_name(legacy, RenamePolicy::Auto), legacy);
        assert_eq!(target_name(server, RenamePolicy::Auto), server);
        assert_eq!(target_name("mfp_x", RenamePolicy::Auto), "mfp_x");
        assert_eq!(target_name(legacy, RenamePolicy::Keep), legacy);
        assert_eq!(target_name(server, RenamePolicy::ParseServer), server);
        assert!(target_name("mfp_x", RenamePolicy::ParseServer).ends_with("_mfp_x"));
        assert!(Selection::Hosted.includes(NameKind::ParseLegacy));
        assert!(!Selection::Hosted.includes(NameKind::Other));
        assert!(Selection::Server.includes(NameKind::Migrated));
    }
}
