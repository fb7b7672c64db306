//! Passing a request to the upstream (Parse Server) and its answer back, as a reverse proxy
//! does: method, path, query, headers and body unchanged and streamed both ways; hop-by-hop
//! headers (RFC 9110 §7.6.1) dropped; `Host` set to the upstream's, with the client's in
//! `X-Forwarded-Host`, its address appended to `X-Forwarded-For`, and `X-Forwarded-Proto`
//! (nginx's `proxy_set_header` set). Redirects are passed back, never followed; nothing is
//! decompressed. Memory: one chunk in flight per direction.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every answer's body: the upstream's stream, a store's stream, or a short text.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long connecting to the upstream may take before the request fails (502).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go.
pub struct Upstream {
    client: reqwest::Client,
    /// The base URL without its trailing `/`; the request's path and query are appended.
    base: String,
}

/// A request's head, as it is sent upstream (forwarding headers added), kept so that a miss can
/// ask again after its copy.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Upstream {
    pub fn new(base: &str) -> anyhow::Result<Upstream> {
        let parsed = url::Url::parse(base)
            .map_err(|e| crate::exit::usage(format!("--upstream {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(crate::exit::usage(format!(
                "--upstream must be an http(s) URL without a query, got {}",
                crate::secret::redact_url(base)
            )));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Upstream {
            client,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Send `head` with `body` upstream.
    pub async fn send(
        &self,
        head: &Head,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self
            .client
            .request(head.method.clone(), format!("{}{path}", self.base))
            .body(body)
            .build()?;
        *request.headers_mut() = head.headers.clone();
        self.client.execute(request).await
    }
}

impl Head {
    /// The head to send upstream for a client's request from `peer`.
    pub fn of(parts: &http::request::Parts, peer: SocketAddr) -> Head {
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        let host = headers.remove(header::HOST);
        let xff = HeaderName::from_static("x-forwarded-for");
        let forwarded_for = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
            Some(before) => format!("{before}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            headers.insert(xff, v);
        }
        let xfh = HeaderName::from_static("x-forwarded-host");
        if let Some(host) = host.filter(|_| !headers.contains_key(&xfh)) {
            headers.insert(xfh, host);
        }
        headers
            .entry(HeaderName::from_static("x-forwarded-proto"))
            .or_insert(HeaderValue::from_static("http"));
        Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers,
        }
    }
}

/// The upstream's answer, streamed back.
pub fn answer(response: reqwest::Response) -> Response<Body> {
    let mut r: Response<reqwest::Body> = response.into();
    strip_hop_by_hop(r.headers_mut());
    r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
}

/// A short text answer of the gateway itself (`reason` must hold no secret).
pub fn text(status: StatusCode, reason: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(format!("{reason}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A body of bytes already in memory.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e| match e {}).boxed_unsync()
}

/// Remove the headers that belong to one connection, not to the message: the fixed list and
/// those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(n);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_are_added_and_hop_by_hop_ones_dropped() {
        let req = http::Request::builder()
            .uri("/parse/files/app/x?a=1")
            .header("host", "files.example.com")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-parse-application-id", "app")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let head = Head::of(&parts, "192.0.2.7:5000".parse().unwrap());
        let h = &head.headers;
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-host"], "files.example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-parse-application-id"], "app");
        assert!(h.get("host").is_none() && h.get("x-private").is_none());
        assert!(h.get("connection").is_none());
    }
}
