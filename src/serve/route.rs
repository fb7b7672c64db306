//! Which requests are file requests: `GET`/`HEAD <mount>/files/<appId>/<name>`, the route stock
//! Parse Server serves files on (`FilesRouter`: `/files/:appId/*filepath`; the name may hold `/`
//! since 9.4, and a first segment `metadata` is its metadata route, never a file), and `DELETE
//! <mount>/files/<name>` (its delete route has no app id: `/files/*filepath`, master key).
//! Everything else is only passed through.

use percent_encoding::percent_decode_str;

/// A file named by a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath {
    pub app_id: String,
    /// The Parse name, percent-decoded (Parse encodes each segment with `encodeURIComponent`).
    pub name: String,
}

/// What follows `<mount>/files/` in `path`: under the mount when the path starts with it (the
/// path of `publicServerURL`); else after the first `/files/` (a reverse proxy may have moved
/// the mount; a mount may not contain `/files/`, a name may) that is no class's (`/classes/files/…`
/// is an object of a class named `files`).
fn after_files<'a>(path: &'a str, mount: Option<&str>) -> Option<&'a str> {
    let under = mount
        .and_then(|m| path.strip_prefix(m.trim_end_matches('/')))
        .and_then(|p| p.strip_prefix("/files/"));
    if under.is_some() {
        return under;
    }
    let (before, rest) = path.split_once("/files/")?;
    (!before.ends_with("/classes")).then_some(rest)
}

/// The file `path` names, if it is a file route (GET/HEAD) of `app_id` (any app when `None`)
/// under `mount` (see [`after_files`]).
pub fn file_of(path: &str, mount: Option<&str>, app_id: Option<&str>) -> Option<FilePath> {
    let rest = after_files(path, mount)?;
    let (app, encoded) = rest.split_once('/')?;
    let app = percent_decode_str(app).decode_utf8().ok()?;
    if app.is_empty() || app_id.is_some_and(|id| id != app) {
        return None;
    }
    if encoded == "metadata" || encoded.starts_with("metadata/") {
        return None;
    }
    Some(FilePath {
        app_id: app.into_owned(),
        name: name_of(encoded)?,
    })
}

/// The name a `DELETE <mount>/files/<name>` deletes.
pub fn deleted_of(path: &str, mount: Option<&str>) -> Option<String> {
    name_of(after_files(path, mount)?)
}

/// The Parse name of a path's encoded remainder; `None` for what no store holds (an empty
/// segment, `.`, `..`: a path that would climb out).
fn name_of(encoded: &str) -> Option<String> {
    let name = percent_decode_str(encoded).decode_utf8().ok()?;
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    Some(name.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(path: &str, app: Option<&str>) -> Option<String> {
        file_of(path, None, app).map(|f| f.name)
    }

    #[test]
    fn file_routes_under_any_mount() {
        assert_eq!(
            name("/parse/files/app/a_b.png", None),
            Some("a_b.png".into())
        );
        assert_eq!(
            name("/files/app/dir/sub/x.png", None),
            Some("dir/sub/x.png".into())
        );
        assert_eq!(
            name("/p/files/app/caf%C3%A9%20x.png", None),
            Some("café x.png".into())
        );
        // A name may contain `files/`: the first one is the route's.
        assert_eq!(
            name("/parse/files/app/files/x", None),
            Some("files/x".into())
        );
        assert_eq!(name("/parse/files/app/x", Some("app")), Some("x".into()));
    }

    #[test]
    fn everything_else_is_not_a_file() {
        assert_eq!(name("/parse/files/other/x", Some("app")), None);
        assert_eq!(name("/parse/classes/Photo", None), None);
        assert_eq!(name("/parse/files/app/", None), None);
        assert_eq!(name("/parse/files/app", None), None);
        assert_eq!(name("/parse/files/app/metadata/x", None), None);
        assert_eq!(name("/parse/files/app/../x", None), None);
        assert_eq!(name("/parse/files/app/a//b", None), None);
    }

    #[test]
    fn deletes_name_the_file_without_an_app_id() {
        assert_eq!(
            deleted_of("/parse/files/a_b.png", None),
            Some("a_b.png".into())
        );
        assert_eq!(
            deleted_of("/parse/files/dir/x%20y.png", None),
            Some("dir/x y.png".into())
        );
        assert_eq!(deleted_of("/parse/files/", None), None);
        assert_eq!(deleted_of("/parse/classes/X", None), None);
        // With the mount known, a class named `files` is no file route.
        assert_eq!(deleted_of("/parse/classes/files/x", Some("/parse")), None);
        assert_eq!(
            deleted_of("/parse/files/x", Some("/parse/")),
            Some("x".into())
        );
        assert_eq!(
            file_of("/parse/files/a/x", Some("/parse"), None).map(|f| f.name),
            Some("x".into())
        );
        // A mount a reverse proxy moved: the first `/files/`.
        assert_eq!(
            file_of("/other/files/a/x", Some("/parse"), None).map(|f| f.name),
            Some("x".into())
        );
        assert_eq!(deleted_of("/p/classes/files/x", None), None);
    }
}
