//! File names: their kinds, JavaScript `encodeURIComponent`, legacy URLs, and deterministic
//! renames.
//!
//! Parse Server decides where a file lives purely from its name (FilesController
//! `expandFilesInObject`): with `fileKey` set, `tfss-…` names go to `files.parsetfss.com`, names
//! starting with a UUID and `-` go to `files.parse.com`, everything else to the files adapter.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
