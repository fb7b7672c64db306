//! Finding file URLs in text (`--strings`, `rebase`): a pure matcher, no I/O.
//!
//! A [`Matcher`] knows the URL forms a Parse app's files were served under: the hosted-Parse
//! hosts (with the fileKey segment), `<server>/files/<appId>/<name>` for the current
//! `public_server_url` and for old servers (`[rebase] from`), and direct-access templates
//! (`file_url_template`, or an old one with `{name}` in `[rebase] from`). [`Matcher::find`]
//! returns every whole URL token of those exact forms in a text, with the file name each
//! resolves to (percent-decoded). The rules, as the README states them:
//!
//! 1. A token starts at `http://` or `https://` (any case) that is at the start of the text or
//!    follows a character that cannot be part of a URL: not an ASCII letter or digit and not one
//!    of `= & ? / % + . - _ ~ : @ # $`. So `?u=http://…` (a URL in another URL's query),
//!    `/http://…` and `xhttp://…` never start a token.
//! 2. A token runs to the first ASCII whitespace or control character or one of
//!    `" ' < > \` ^ { } | [ ] \\`; then trailing `. , ; : ! ? *` and a `)` without its `(` are
//!    dropped (the end of a sentence, Markdown `[x](url)`). Non-ASCII characters stay in the
//!    token (a name cut short would name another file). Every token is skipped whole, matched
//!    or not: a URL inside another one is never looked at.
//! 3. Scheme and host compare case-insensitively, and the host must be exactly one of the known
//!    ones (with its port, if the configured base has one): `files.parsetfss.com.evil.net`,
//!    `notfiles.parsetfss.com`, another port or user info do not match. The path compares exactly.
//! 4. The file name is exactly one path segment after the base (no further `/`), up to an
//!    optional `?query`, `#fragment` or `&` (an HTML entity such as `&quot;`; encodeURIComponent
//!    never leaves a raw `&` in a name), kept as it is when the URL is replaced; it is
//!    percent-decoded and must be valid UTF-8, non-empty and free of NUL.
//!
//! Hosted forms: `http(s)://files.parsetfss.com/<key>/<name>`, `files.parse.com`,
//! `filescdn.parsetfss.com`, and `http(s)://s3.amazonaws.com/files.parsetfss.com/<key>/<name>`;
//! `<key>` is any non-empty segment (the app's fileKey, which is a secret: callers redact it).

use percent_encoding::percent_decode_str;

/// The hosts hosted Parse served files from, each followed by `/<fileKey>/<name>`.
pub const HOSTED_HOSTS: &[&str] = &[
    "files.parsetfss.com",
    "files.parse.com",
    "filescdn.parsetfss.com",
];

/// Hosted Parse's S3 bucket, addressed path-style: `s3.amazonaws.com/files.parsetfss.com/…`.
const HOSTED_S3: (&str, &str) = ("s3.amazonaws.com", "files.parsetfss.com");

/// Which form a URL matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A hosted-Parse host.
    Hosted,
    /// The current `public_server_url` or `file_url_template`.
    Current,
    /// The old base at this index of `[rebase] from`.
    Old(usize),
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Hosted => "hosted",
            Origin::Current => "current",
            Origin::Old(_) => "old-base",
        }
    }
}

/// One URL found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Byte offset of the URL's first character.
    pub start: usize,
    /// Byte offset just past the name (a `?query`/`#fragment` after it is not replaced).
    pub end: usize,
    /// The file name the URL resolves to (percent-decoded).
    pub name: String,
    pub origin: Origin,
}

impl Found {
    /// The URL itself (base and name), as it stands in `text`.
    pub fn url<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// A base that a name follows: `prefix<name>suffix`.
#[derive(Debug, Clone)]
struct Prefix {
    /// `scheme://host` (compared case-insensitively).
    origin: String,
    /// The rest of the prefix, from the `/` after the host (compared exactly).
    path: String,
    /// What follows the name (a template's text after `{name}`).
    suffix: String,
    from: Origin,
}

/// The URL forms to look for. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    hosted: bool,
    prefixes: Vec<Prefix>,
}

impl Matcher {
    /// A matcher for the hosted-Parse hosts (when `hosted`) and nothing else yet.
    pub fn new(hosted: bool) -> Matcher {
        Matcher {
            hosted,
            prefixes: Vec::new(),
        }
    }

    /// Also match `<server_url>/files/<app_id>/<name>`. `Err` for a URL without `http(s)://host`.
    pub fn server(
        mut self,
        server_url: &str,
        app_id: &str,
        from: Origin,
    ) -> Result<Matcher, String> {
        let base = format!("{}/files/{}/", server_url.trim_end_matches('/'), app_id);
        self.prefixes.push(split(&base, "", from)?);
        Ok(self)
    }

    /// Also match a direct-access template (`…{name}…`). `Err` without `{name}` or a host.
    pub fn template(mut self, template: &str, from: Origin) -> Result<Matcher, String> {
        let (before, after) = template
            .split_once("{name}")
            .ok_or_else(|| format!("{template:?} has no {{name}}"))?;
        self.prefixes.push(split(before, after, from)?);
        Ok(self)
    }

    /// Whether it looks for anything at all.
    pub fn is_empty(&self) -> bool {
        !self.hosted && self.prefixes.is_empty()
    }

    /// Every URL of a known form in `text`, in order. See the module documentation.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut out = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        while let Some(at) = next_scheme(b, i) {
            let end = token_end(b, at);
            i = end.max(at + 1);
            if at > 0 && !may_precede(b[at - 1]) {
                continue;
            }
            if let Some(f) = self.match_token(&text[at..end], at) {
                out.push(f);
            }
        }
        out
    }

    fn match_token(&self, token: &str, at: usize) -> Option<Found> {
        // The URL without its query or fragment: where the name ends.
        let url_len = token.find(['?', '#', '&']).unwrap_or(token.len());
        let url = &token[..url_len];
        let (origin_len, path) = origin_of(url)?;
        let origin = &url[..origin_len];
        if self.hosted
            && let Some(name_at) = hosted_name(origin, path)
        {
            let name = decode(&path[name_at..])?;
            return Some(Found {
                start: at,
                end: at + url_len,
                name,
                origin: Origin::Hosted,
            });
        }
        for p in &self.prefixes {
            if !origin.eq_ignore_ascii_case(&p.origin) {
                continue;
            }
            let Some(rest) = path.strip_prefix(p.path.as_str()) else {
                continue;
            };
            let Some(segment) = rest.strip_suffix(p.suffix.as_str()) else {
                continue;
            };
            if let Some(name) = decode_path(segment) {
                return Some(Found {
                    start: at,
                    end: at + url_len,
                    name,
                    origin: p.from,
                });
            }
        }
        None
    }
}

/// Split a base into its `scheme://host` and the rest.
fn split(base: &str, suffix: &str, from: Origin) -> Result<Prefix, String> {
    let (n, path) = origin_of(base)
        .filter(|(_, path)| path.starts_with('/'))
        .ok_or_else(|| format!("{base:?} is not an http(s)://host/… URL"))?;
    Ok(Prefix {
        origin: base[..n].to_string(),
        path: path.to_string(),
        suffix: suffix.to_string(),
        from,
    })
}

/// The length of `scheme://host[:port]` in `url` and the path after it (`""` or from a `/`).
/// `None` when it is not `http(s)://` with a plain host (no user info).
fn origin_of(url: &str) -> Option<(usize, &str)> {
    let lower = |n: usize| url.get(..n).map(str::to_ascii_lowercase);
    let scheme = if lower(7)? == "http://" {
        7
    } else if lower(8)? == "https://" {
        8
    } else {
        return None;
    };
    let host_end = url[scheme..].find('/').map_or(url.len(), |i| scheme + i);
    let host = &url[scheme..host_end];
    let host_char = |c: u8| c.is_ascii_alphanumeric() || b".-:".contains(&c);
    if host.is_empty() || !host.bytes().all(host_char) {
        return None;
    }
    Some((host_end, &url[host_end..]))
}

/// Where the name starts in `path` (after the host) for a hosted-Parse URL.
fn hosted_name(origin: &str, path: &str) -> Option<usize> {
    let host = origin.split_once("://")?.1;
    let mut rest = path.strip_prefix('/')?;
    let mut skipped = 1;
    if host.eq_ignore_ascii_case(HOSTED_S3.0) {
        let (bucket, after) = rest.split_once('/')?;
        if !bucket.eq_ignore_ascii_case(HOSTED_S3.1) {
            return None;
        }
        skipped += bucket.len() + 1;
        rest = after;
    } else if !HOSTED_HOSTS.iter().any(|h| host.eq_ignore_ascii_case(h)) {
        return None;
    }
    let (key, _) = rest.split_once('/')?;
    if key.is_empty() {
        return None;
    }
    Some(skipped + key.len() + 1)
}

/// A percent-decoded path segment, if it is one usable file name.
fn decode(segment: &str) -> Option<String> {
    if segment.is_empty() || segment.contains('/') {
        return None;
    }
    let name = percent_decode_str(segment).decode_utf8().ok()?;
    if name.is_empty() || name.contains('\0') {
        return None;
    }
    Some(name.into_owned())
}

/// A name after a server base: one or more `/`-separated segments, each percent-decoded (Parse
/// Server 9's per-file directories: `Photo/2024/a.jpg`), none empty.
fn decode_path(path: &str) -> Option<String> {
    let parts: Option<Vec<String>> = path.split('/').map(decode).collect();
    Some(parts?.join("/"))
}

/// The next `http://` or `https://` (any case) at or after `from`.
fn next_scheme(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len()).find(|&i| {
        let rest = &b[i..];
        let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
        starts(b"http://") || starts(b"https://")
    })
}

/// Whether a byte may come right before a token (rule 1).
fn may_precede(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || b"=&?/%+.-_~:@#$".contains(&c))
}

/// Where the token starting at `at` ends (rule 2).
fn token_end(b: &[u8], at: usize) -> usize {
    let mut end = (at..b.len())
        .find(|&i| {
            let c = b[i];
            c.is_ascii_whitespace() || c.is_ascii_control() || b"\"'<>`^{}|[]\\".contains(&c)
        })
        .unwrap_or(b.len());
    loop {
        let last = b[end - 1];
        let unbalanced = || {
            let t = &b[at..end];
            t.iter().filter(|c| **c == b')').count() > t.iter().filter(|c| **c == b'(').count()
        };
        if b".,;:!?*".contains(&last) || (last == b')' && unbalanced()) {
            end -= 1;
        } else {
            return end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Matcher {
        Matcher::new(true)
            .server("https://api.example.com/parse/", "app", Origin::Current)
            .unwrap()
            .server("http://old.example.com/parse", "app", Origin::Old(0))
            .unwrap()
            .template("https://cdn.example.com/b/{name}", Origin::Old(1))
            .unwrap()
    }

    fn names(text: &str) -> Vec<(String, String, Origin)> {
        m().find(text)
            .into_iter()
            .map(|f| (f.url(text).to_string(), f.name, f.origin))
            .collect()
    }

    fn one(text: &str) -> Option<(String, String)> {
        let mut v = names(text);
        assert!(v.len() <= 1, "{v:?}");
        v.pop().map(|(u, n, _)| (u, n))
    }

    #[test]
    fn every_hosted_form() {
        for base in [
            "http://files.parsetfss.com/key-1/",
            "https://files.parsetfss.com/key-1/",
            "http://files.parse.com/K/",
            "https://filescdn.parsetfss.com/K/",
            "http://s3.amazonaws.com/files.parsetfss.com/K/",
            "HTTPS://Files.ParseTFSS.com/K/",
        ] {
            let text = format!("a {base}tfss-1-a%20b.jpg z");
            let found = m().find(&text);
            assert_eq!(found.len(), 1, "{base}");
            assert_eq!(found[0].name, "tfss-1-a b.jpg");
            assert_eq!(found[0].origin, Origin::Hosted);
            assert_eq!(found[0].url(&text), format!("{base}tfss-1-a%20b.jpg"));
        }
    }

    #[test]
    fn server_and_template_forms() {
        let v = names(
            "https://api.example.com/parse/files/app/x_a.png http://old.example.com/parse/files/app/y.png \
             https://cdn.example.com/b/z%C3%A9.png",
        );
        assert_eq!(
            v,
            vec![
                (
                    "https://api.example.com/parse/files/app/x_a.png".into(),
                    "x_a.png".into(),
                    Origin::Current
                ),
                (
                    "http://old.example.com/parse/files/app/y.png".into(),
                    "y.png".into(),
                    Origin::Old(0)
                ),
                (
                    "https://cdn.example.com/b/z%C3%A9.png".into(),
                    "zé.png".into(),
                    Origin::Old(1)
                ),
            ]
        );
        // Another app id, another path, another scheme for the configured server: not ours.
        assert!(names("https://api.example.com/parse/files/other/x.png").is_empty());
        assert!(names("https://api.example.com/files/app/x.png").is_empty());
        assert!(names("http://api.example.com/parse/files/app/x.png").is_empty());
        assert!(names("https://API.example.COM/parse/files/app/x.png").len() == 1);
        assert!(
            names("https://api.example.com/Parse/files/app/x.png").is_empty(),
            "paths compare exactly"
        );
    }

    #[test]
    fn look_alikes_never_match() {
        for t in [
            "http://files.parsetfss.com.evil.net/K/tfss-a.jpg",
            "http://notfiles.parsetfss.com/K/tfss-a.jpg",
            "http://evil.net/files.parsetfss.com/K/tfss-a.jpg",
            "http://files.parsetfss.com@evil.net/K/tfss-a.jpg",
            "http://files.parsetfss.com:8080/K/tfss-a.jpg",
            "http://s3.amazonaws.com/files.parsetfss.com.evil/K/tfss-a.jpg",
            "http://evil.s3.amazonaws.com/files.parsetfss.com/K/tfss-a.jpg",
            "https://api.example.com.evil.net/parse/files/app/x.png",
            "https://cdn.example.com.evil/b/x.png",
            "files.parsetfss.com/K/tfss-a.jpg",
            "ftp://files.parsetfss.com/K/tfss-a.jpg",
            "see files.parsetfss.com for details",
        ] {
            assert_eq!(one(t), None, "{t}");
        }
    }

    #[test]
    fn urls_inside_other_urls_never_match() {
        for t in [
            "https://proxy.example.com/?u=http://files.parsetfss.com/K/tfss-a.jpg",
            "https://proxy.example.com/fetch/http://files.parsetfss.com/K/tfss-a.jpg",
            "https://proxy.example.com/?a=1&u=https://files.parse.com/K/x-a.jpg",
            "https://proxy.example.com/x(http://files.parsetfss.com/K/tfss-a.jpg)",
            "xhttp://files.parsetfss.com/K/tfss-a.jpg",
            "https://proxy.example.com/?u=http%3A%2F%2Ffiles.parsetfss.com%2FK%2Ftfss-a.jpg",
        ] {
            assert_eq!(one(t), None, "{t}");
        }
    }

    #[test]
    fn token_boundaries() {
        let u = "http://files.parsetfss.com/K/tfss-a.jpg";
        for (t, want) in [
            (format!("<img src=\"{u}\">"), u),
            (format!("<img src='{u}'/>"), u),
            (format!("{{\"img\":\"{u}\"}}"), u),
            (format!("See {u}. Next"), u),
            (format!("[pic]({u})"), u),
            (format!("({u}), and"), u),
            (format!("{u}\n"), u),
            (format!("&quot;{u}&quot;"), u),
        ] {
            assert_eq!(one(&t).map(|x| x.0), Some(want.to_string()), "{t}");
        }
        // A query or fragment is kept out of the URL (and of the name).
        let t = format!("{u}?v=2#x");
        assert_eq!(one(&t).unwrap(), (u.to_string(), "tfss-a.jpg".to_string()));
        // Parentheses inside a name are kept (encodeURIComponent leaves them).
        let p = "http://files.parsetfss.com/K/tfss-a(1).jpg";
        assert_eq!(one(&format!("[x]({p})")).unwrap().1, "tfss-a(1).jpg");
        // Non-ASCII text right after is part of the token: a different (missing) name, never
        // a shorter one.
        assert_eq!(one(&format!("{u}é")).unwrap().1, "tfss-a.jpgé");
    }

    #[test]
    fn names_must_be_one_decodable_segment() {
        for t in [
            "http://files.parsetfss.com/K/",
            "http://files.parsetfss.com/K",
            "http://files.parsetfss.com//tfss-a.jpg",
            "http://files.parsetfss.com/K/a/b.jpg",
            "http://files.parsetfss.com/K/%FF.jpg",
            "http://files.parsetfss.com/K/a%00b",
            "https://api.example.com/parse/files/app/",
            "https://api.example.com/parse/files/app/a//b",
            "https://api.example.com/parse/files/app/a/%FF",
        ] {
            assert_eq!(one(t), None, "{t}");
        }
        // A server URL's name may have directories (Parse Server 9.4+), in either encoding.
        for t in [
            "https://api.example.com/parse/files/app/Photo/2024/a%20b.jpg",
            "https://api.example.com/parse/files/app/Photo%2F2024%2Fa%20b.jpg",
        ] {
            assert_eq!(one(t).unwrap().1, "Photo/2024/a b.jpg", "{t}");
        }
        // `%2F` decodes to a `/` inside the one segment: a name Parse Server can hold.
        assert_eq!(
            one("http://files.parsetfss.com/K/tfss-a%2Fb").unwrap().1,
            "tfss-a/b"
        );
    }

    #[test]
    fn several_urls_and_offsets() {
        let text = "a http://files.parsetfss.com/K/tfss-1.jpg b https://example.org/x.jpg \
                    c http://files.parse.com/K/u-2.png";
        let f = m().find(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].url(text), "http://files.parsetfss.com/K/tfss-1.jpg");
        assert_eq!(f[1].url(text), "http://files.parse.com/K/u-2.png");
        assert!(f[0].end <= f[1].start);
        assert!(Matcher::new(false).find(text).is_empty());
        assert!(Matcher::new(false).is_empty());
    }

    #[test]
    fn a_configured_port_is_part_of_the_host() {
        let m = Matcher::new(false)
            .server("http://127.0.0.1:1337/parse", "app", Origin::Current)
            .unwrap();
        assert_eq!(
            m.find("http://127.0.0.1:1337/parse/files/app/a.png")[0].name,
            "a.png"
        );
        assert!(
            m.find("http://127.0.0.1:1338/parse/files/app/a.png")
                .is_empty()
        );
        assert!(m.find("http://127.0.0.1/parse/files/app/a.png").is_empty());
    }

    #[test]
    fn bad_bases_are_refused() {
        assert!(
            Matcher::new(false)
                .server("old.example.com", "a", Origin::Old(0))
                .is_err()
        );
        assert!(
            Matcher::new(false)
                .template("https://cdn/x", Origin::Current)
                .is_err()
        );
        let t = Matcher::new(false)
            .template("https://cdn.example.com/{name}?dl=1", Origin::Current)
            .unwrap();
        let f = t.find("https://cdn.example.com/a.png?dl=1");
        // The suffix sits after the `?`: the URL without its query holds no suffix.
        assert!(f.is_empty());
        let t = Matcher::new(false)
            .template("https://cdn.example.com/{name}.bin", Origin::Current)
            .unwrap();
        assert_eq!(t.find("https://cdn.example.com/a.bin")[0].name, "a");
    }
}
