//! Unit tests of name → URL mapping and of keeping the fileKey out of everything shown.

use super::*;

const KEY: &str = "sekr1t-file-key";

fn ctx() -> StoreContext {
    StoreContext {
        file_key: Some(KEY.into()),
        app_id: Some("myApp".into()),
        ..Default::default()
    }
}

fn urls(store: &HttpStore, name: &str, hint: Option<&str>) -> (String, String) {
    store.url(name, hint).unwrap()
}

/// A store that may fetch stored urls from any host.
fn any_host() -> HttpConfig {
    HttpConfig {
        stored_url_hosts: vec!["*".into()],
        ..Default::default()
    }
}

#[test]
fn legacy_names_use_parse_hosts() {
    let s = HttpStore::new(&any_host(), &ctx()).unwrap();
    let tfss = "tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-a b.png";
    assert_eq!(
        urls(&s, tfss, None),
        (
            format!("http://files.parsetfss.com/{KEY}/tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-a%20b.png"),
            "http://files.parsetfss.com/{file_key}/tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-a%20b.png"
                .to_string()
        )
    );
    let legacy = "3F2504E0-4f89-11d3-9a0c-0305e82c3301-x@y";
    assert_eq!(
        urls(&s, legacy, None).0,
        format!(
            "http://files.parse.com/{KEY}/{}",
            "3F2504E0-4f89-11d3-9a0c-0305e82c3301-x%40y"
        )
    );
    // Not a legacy name: no server_url, so the stored URL is used, and without one it is an error.
    let name = "0123456789abcdef0123456789abcdef_photo.jpg";
    assert_eq!(
        urls(&s, name, Some("https://h/files/a/x")).0,
        "https://h/files/a/x"
    );
    let err = s.url(name, None).unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("server_url"),
        "{err}"
    );
}

#[test]
fn server_url_for_other_names() {
    let cfg = HttpConfig {
        server_url: Some("https://api.example.com/parse/".into()),
        ..Default::default()
    };
    let s = HttpStore::new(&cfg, &ctx()).unwrap();
    assert_eq!(
        urls(&s, "dir/a+b.txt", Some("ignored")).0,
        "https://api.example.com/parse/files/myApp/dir%2Fa%2Bb.txt"
    );
    assert_eq!(
        s.location("dir/a+b.txt").unwrap(),
        "https://api.example.com/parse/files/{app_id}/dir%2Fa%2Bb.txt"
    );
}

#[test]
fn uuid_rule_matches_parse_regex() {
    assert!(is_legacy_uuid_name("3f2504e0-4f89-11d3-9a0c-0305e82c3301-"));
    assert!(is_legacy_uuid_name(
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301-pic.png"
    ));
    assert!(!is_legacy_uuid_name(
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301pic.png"
    ));
    assert!(!is_legacy_uuid_name(
        "3f2504e0-4f89-11d3-9a0c-0305e82c330-pic.png"
    ));
    assert!(!is_legacy_uuid_name(
        "g3f2504e0-4f89-11d3-9a0c-0305e82c3301-x"
    ));
    assert!(!is_legacy_uuid_name(
        "tfss-3f2504e0-4f89-11d3-9a0c-0305e82c3301-x"
    ));
    assert!(!is_legacy_uuid_name("é"));
}

#[test]
fn file_key_never_shown() {
    let s = HttpStore::new(&any_host(), &ctx()).unwrap();
    let hint = format!("http://files.parsetfss.com/{KEY}/other.png");
    let shown = [
        s.describe(),
        format!("{s:?}"),
        s.location("tfss-x.png").unwrap(),
        s.location("3f2504e0-4f89-11d3-9a0c-0305e82c3301-x")
            .unwrap(),
        urls(&s, "other.png", Some(&hint)).1,
    ];
    for text in shown {
        assert!(!text.contains(KEY), "{text}");
    }
}

#[test]
fn missing_file_key_fails_on_first_use_only() {
    let s = HttpStore::new(&HttpConfig::default(), &StoreContext::default()).unwrap();
    let err = s.location("tfss-x.png").unwrap_err();
    assert!(err.to_string().contains("{file_key}"), "{err}");
    assert!(s.location("plain.png").is_err(), "no server_url, no hint");
    let cfg = HttpConfig {
        server_url: Some("http://h/parse".into()),
        ..Default::default()
    };
    let s = HttpStore::new(&cfg, &StoreContext::default()).unwrap();
    assert!(
        s.location("plain.png")
            .unwrap_err()
            .to_string()
            .contains("{app_id}")
    );
}

#[test]
fn content_range_parsing() {
    assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
    assert_eq!(content_range_start("bytes */200"), None);
    assert_eq!(content_range_start("items 1-2/3"), None);
}

#[test]
fn retry_after_values() {
    assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
    assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let d = parse_retry_after(&later).unwrap();
    assert!(
        d > Duration::from_secs(25) && d <= Duration::from_secs(30),
        "{d:?}"
    );
    assert_eq!(parse_retry_after("soon"), None);
    assert_eq!(parse_retry_after("-1"), None);
}

/// A key holding characters a URL encodes is found encoded in a stored url too, and the
/// credentials of a configured base url are not shown (they are still used).
#[test]
fn an_encoded_key_and_base_credentials_are_never_shown() {
    let key = "k/y?#é \"q";
    let ctx = StoreContext {
        file_key: Some(key.into()),
        app_id: Some("a".into()),
        ..Default::default()
    };
    let cfg = HttpConfig {
        tfss_base_url: Some("https://mirror:pw-SECRET@files.example/{file_key}/".into()),
        stored_url_hosts: vec!["*".into()],
        ..Default::default()
    };
    let s = HttpStore::new(&cfg, &ctx).unwrap();
    let encoded = encode_uri_component(key);
    let hint = format!("http://files.parsetfss.com/{encoded}/other.png");
    let shown = [
        s.describe(),
        format!("{s:?}"),
        s.location("tfss-x.png").unwrap(),
        urls(&s, "other.png", Some(&hint)).1,
        urls(&s, "other.png", Some(&hint.to_lowercase())).1,
    ];
    for text in shown {
        assert!(
            !text.contains("pw-SECRET") && !text.contains(&encoded) && !text.contains(key),
            "{text}"
        );
        assert!(
            !text.to_lowercase().contains(&encoded.to_lowercase()),
            "{text}"
        );
    }
    assert!(urls(&s, "tfss-x.png", None).0.contains("pw-SECRET"));
}

/// A configured base (legacy hosts over plain http) follows a redirect on its own host, or to a
/// public one, never to an internal address on another host (review §15).
#[test]
fn configured_bases_are_not_redirected_to_internal_addresses() {
    let to = |u: &str| url::Url::parse(u).unwrap();
    let from = Some("files.parsetfss.com");
    assert!(redirect_allowed(from, &to("https://s3.amazonaws.com/bucket/x")).is_ok());
    assert!(redirect_allowed(Some("127.0.0.1"), &to("http://127.0.0.1:9300/other")).is_ok());
    for internal in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/admin",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9000/",
        "http://metadata.localhost/",
    ] {
        assert!(redirect_allowed(from, &to(internal)).is_err(), "{internal}");
    }
    assert!(redirect_allowed(from, &to("file:///etc/passwd")).is_err());
}
