//! Which hosts the HTTP source fetches from: a URL stored in the database only from
//! `stored_url_hosts` (and so are its redirects), and a configured base's redirect to another host
//! never to an internal address.

/// Whether a configured base's request (first sent to host `from`) may follow a redirect to `to`:
/// http(s), and on another host never an internal address (loopback, private, link-local such
/// as a cloud's metadata service, `localhost`): a legacy host that changed hands, or a
/// man in the middle of its plain `http://`, must not have the tool copy an internal answer into
/// the destination. (A name that resolves to such an address is not caught here.)
pub(super) fn redirect_allowed(from: Option<&str>, to: &url::Url) -> Result<(), String> {
    if !matches!(to.scheme(), "http" | "https") {
        return Err(format!("to scheme {:?}", to.scheme()));
    }
    let host = to.host_str().unwrap_or("").to_ascii_lowercase();
    if from.is_some_and(|f| f.eq_ignore_ascii_case(&host)) {
        return Ok(());
    }
    let internal = match to.host() {
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unique_local()
                || ip.is_unicast_link_local()
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
        }
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        None => true,
    };
    if internal {
        return Err(format!(
            "to an internal address on another host ({host}); not followed"
        ));
    }
    Ok(())
}

/// Whether `stored` (a URL from the database, or where one redirected) may be fetched: http(s)
/// to a host `patterns` (`stored_url_hosts`) allows.
pub(super) fn host_allowed(patterns: &[String], stored: &str) -> Result<(), String> {
    let url = url::Url::parse(stored).map_err(|e| format!("stored url is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "stored url has scheme {:?}; only http and https are fetched",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let ok = patterns.iter().any(|pattern| {
        let p = pattern.to_ascii_lowercase();
        p == "*"
            || p == host
            || p.strip_prefix("*.")
                .is_some_and(|domain| host.ends_with(&format!(".{domain}")))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "stored url host {host:?} is not in stored_url_hosts of this source (set server_url, or allow the host)"
        ))
    }
}
