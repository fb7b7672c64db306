//! HTTP clients built off the async path.
//!
//! Building a `reqwest::Client` builds its TLS certificate verifier, which reads and parses every
//! certificate of the system's store (`/etc/ssl/certs`: ~300 files on Debian). That is blocking
//! file I/O and tens of milliseconds of work at every start — a large share of a short run
//! (README "Benchmarks"). [`LazyClient`] starts it on a blocking thread when the store is made,
//! so it overlaps the database work that comes first, and the first request waits for it. A run
//! that never fetches (`--rewrite-only`, dry runs of a finished migration) never waits at all.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::StorageError;

/// A `reqwest::Client` being built in the background; [`LazyClient::get`] waits for it.
#[derive(Clone)]
pub struct LazyClient(Shared<BoxFuture<'static, Result<reqwest::Client, Arc<str>>>>);

impl LazyClient {
    /// Start building. Inside a Tokio runtime the build runs on its blocking pool; outside one
    /// (plain unit tests) it runs here, at once.
    pub fn build(builder: reqwest::ClientBuilder) -> Self {
        let build = move || {
            builder
                .build()
                .map_err(|e| Arc::from(super::error_chain(&e.without_url())))
        };
        let fut = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let task = rt.spawn_blocking(build);
                async move {
                    task.await.unwrap_or_else(|e| {
                        Err(Arc::from(format!("building the HTTP client: {e}")))
                    })
                }
                .boxed()
            }
            Err(_) => futures::future::ready(build()).boxed(),
        };
        LazyClient(fut.shared())
    }

    /// The client (a cheap clone), or why it could not be built (bad TLS settings, an unreadable
    /// certificate store) as a permanent error of `name`'s request `what()` (only built then).
    pub async fn get(
        &self,
        name: &str,
        what: impl FnOnce() -> String,
    ) -> Result<reqwest::Client, StorageError> {
        self.0
            .clone()
            .await
            .map_err(|e| StorageError::message(name, false, format!("{}: {e}", what())))
    }
}

/// The extra trusted roots of a store's `ca_file` (PEM, one or more certificates: a company CA,
/// an internal mirror's), read when the store is made. An unreadable file, or one holding no
/// certificate, is a settings error of `store` that names the file.
pub fn read_ca_file(store: &str, path: &std::path::Path) -> Result<Vec<u8>, StorageError> {
    let fail = |why: String| {
        StorageError::message(store, false, format!("ca_file {}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(fail("no PEM certificate in it".into())),
        Err(e) => Err(fail(super::error_chain(&e))),
    }
}

/// `builder` trusting the roots of `pem` (from [`read_ca_file`]) besides the system's.
pub fn trusting(mut builder: reqwest::ClientBuilder, pem: Option<&[u8]>) -> reqwest::ClientBuilder {
    if let Some(pem) = pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
}

/// Whether a request that failed on the way (no response) may succeed when tried again: a
/// refused, reset or timed-out connection may; a request that could not be built (a bad URL, ours)
/// will not, and neither will a TLS handshake that refused the server's certificate (untrusted,
/// expired, wrong name) or a protocol the server does not speak — a retry meets the same server,
/// and five attempts only delay the error the operator must act on (measured: 39 s for 200 files
/// against a server with a self-signed certificate, every file retried five times).
pub fn transport_retryable(e: &reqwest::Error) -> bool {
    if e.is_builder() {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return !tls_refusal(tls);
        }
        // An io::Error's source() skips the error it wraps (rustls' error comes wrapped twice).
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    true
}

/// A TLS failure that the same server will give again.
fn tls_refusal(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::InvalidCertRevocationList(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_is_shared_by_clones() {
        let lazy = LazyClient::build(reqwest::Client::builder());
        let (a, b) = (
            lazy.get("n", String::new).await,
            lazy.clone().get("n", String::new).await,
        );
        assert!(a.is_ok() && b.is_ok());
    }

    #[test]
    fn outside_a_runtime_it_builds_at_once() {
        let lazy = LazyClient::build(reqwest::Client::builder());
        let ready = lazy.get("n", String::new).now_or_never();
        assert!(matches!(ready, Some(Ok(_))), "ready without waiting");
    }
}
