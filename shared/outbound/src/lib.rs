//! `GuardedHttpClient`: the `OutboundHttp` port on reqwest, for requests to addresses
//! that users choose (webhook targets; later upstream registries).
//!
//! How it keeps the port's promises:
//! - the URL must be `http`/`https` (`OutboundGuard::check_scheme`); an IP-literal host
//!   is checked directly;
//! - a host name is resolved by `resolve::GuardedResolver`, reqwest's DNS resolver,
//!   which checks every address before returning any: a connection only ever goes to a
//!   checked address, and there is no second, unchecked lookup (DNS rebinding);
//! - no redirects, no proxies from the environment, connect and total timeouts, and
//!   the answer body read chunk by chunk up to `max_response_bytes`, then dropped;
//! - failure messages name the host and the cause, never the request headers (they may
//!   carry signatures or tokens) nor the full URL (its query may carry a secret).

mod resolve;
pub mod upstream;

use std::error::Error;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use registry_core::error::{RegistryError, Result};
use registry_core::outbound::OutboundGuard;
use registry_core::ports::{OutboundHttp, OutboundRequest, OutboundResponse};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use crate::resolve::{GuardedResolver, registry_error_in, resolve_checked};
pub use crate::upstream::{GuardedUpstreamClient, UpstreamConfig};

/// Limits and the guard of a [`GuardedHttpClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Which internal networks the operator allows (none by default).
    pub guard: OutboundGuard,
    /// Longest wait for a TCP connection to be established.
    pub connect_timeout: Duration,
    /// Longest time for a whole request: resolution, connection, sending, and reading
    /// the answer (up to the cap). `check_target` also bounds its resolution by it.
    pub timeout: Duration,
    /// At most this many bytes of the answer body are read into `body_excerpt`.
    pub max_response_bytes: usize,
}

impl Default for OutboundConfig {
    /// The default guard (no internal network allowed), 5 s to connect, 10 s in total,
    /// 1024 bytes of answer.
    fn default() -> Self {
        OutboundConfig {
            guard: OutboundGuard::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_bytes: 1024,
        }
    }
}

/// A reqwest builder whose every connection goes through `guard` (in the resolver), with
/// no redirects followed, no proxy from the environment and `connect_timeout`.
pub(crate) fn guarded_builder(
    guard: &Arc<OutboundGuard>,
    connect_timeout: std::time::Duration,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::new(Arc::clone(guard)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
}

/// Builds `builder`; fails (`Upstream`) only if the TLS set-up fails (`what`: which client).
pub(crate) fn build_client(builder: reqwest::ClientBuilder, what: &str) -> Result<reqwest::Client> {
    builder.build().map_err(|e| {
        RegistryError::Upstream(format!(
            "cannot build the {what} HTTP client: {}",
            describe(&e)
        ))
    })
}

/// Checks that `url` may be reached now: scheme, host, and every address it resolves to
/// (within `timeout`).
pub(crate) async fn check_url(
    guard: &OutboundGuard,
    url: &str,
    timeout: std::time::Duration,
) -> Result<()> {
    let url = parse_target(url)?;
    if let Some(ip) = literal_ip(&url) {
        return guard.check(ip);
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    tokio::time::timeout(timeout, resolve_checked(guard, host, port))
        .await
        .map_err(|_| {
            RegistryError::Upstream(format!("resolving {host} took longer than {timeout:?}"))
        })??;
    Ok(())
}

/// The guarded outbound HTTP client; cheap to share (`Arc`), one connection pool.
#[derive(Debug, Clone)]
pub struct GuardedHttpClient {
    guard: Arc<OutboundGuard>,
    config: OutboundConfig,
    client: reqwest::Client,
}

impl GuardedHttpClient {
    /// Builds the client. Fails (`Upstream`) only if the TLS set-up fails, e.g. the
    /// platform certificate verifier cannot be created.
    pub fn new(config: OutboundConfig) -> Result<Self> {
        let guard = Arc::new(config.guard.clone());
        let client = build_client(
            guarded_builder(&guard, config.connect_timeout).timeout(config.timeout),
            "outbound",
        )?;
        Ok(GuardedHttpClient {
            guard,
            config,
            client,
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Reads the answer body up to the cap, chunk by chunk; the rest is never read.
    async fn excerpt(&self, response: &mut reqwest::Response, host: &str) -> Result<String> {
        let cap = self.config.max_response_bytes;
        let mut body = Vec::with_capacity(cap.min(64 * 1024));
        while body.len() < cap {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(cap - body.len());
                    body.extend_from_slice(&chunk[..take]);
                }
                Ok(None) => break,
                Err(e) => return Err(self.failure(e, host)),
            }
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Maps a reqwest error: a refusal or resolution failure from the guarded resolver
    /// is given back as it was; anything else is `Upstream`, without URL or headers.
    fn failure(&self, err: reqwest::Error, host: &str) -> RegistryError {
        match registry_error_in(&err) {
            Some(RegistryError::OutboundRefused(why)) => {
                return RegistryError::OutboundRefused(why.clone());
            }
            Some(RegistryError::Upstream(why)) => return RegistryError::Upstream(why.clone()),
            _ => {}
        }
        if err.is_timeout() {
            return RegistryError::Upstream(format!(
                "{host} did not answer in time (connect timeout {:?}, total {:?})",
                self.config.connect_timeout, self.config.timeout
            ));
        }
        RegistryError::Upstream(format!("{host}: {}", describe(&err.without_url())))
    }
}

#[async_trait]
impl OutboundHttp for GuardedHttpClient {
    async fn check_target(&self, url: &str) -> Result<()> {
        check_url(&self.guard, url, self.config.timeout).await
    }

    async fn post(&self, request: &OutboundRequest) -> Result<OutboundResponse> {
        let url = parse_target(&request.url)?;
        // reqwest connects to an IP literal without asking the resolver: check it here.
        // A host name is checked by the resolver, at connection time.
        if let Some(ip) = literal_ip(&url) {
            self.guard.check(ip)?;
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let headers = header_map(&request.headers)?;
        let mut response = self
            .client
            .post(url)
            .headers(headers)
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| self.failure(e, &host))?;
        let status = response.status().as_u16();
        let body_excerpt = self.excerpt(&mut response, &host).await?;
        Ok(OutboundResponse {
            status,
            body_excerpt,
        })
    }
}

/// Parses `raw` and checks its scheme; an unparsable URL is refused.
fn parse_target(raw: &str) -> Result<Url> {
    let url = Url::parse(raw)
        .map_err(|e| RegistryError::OutboundRefused(format!("not a valid URL: {e}")))?;
    OutboundGuard::check_scheme(&url)?;
    Ok(url)
}

/// The host as an address when the URL names one (`http://10.0.0.1/`, `http://[::1]/`).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// The request headers, every value marked sensitive (kept out of `Debug` output).
/// A bad header is named, its value never shown.
fn header_map(headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            RegistryError::Unsupported(format!("{name:?} is not a valid HTTP header name"))
        })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            RegistryError::Unsupported(format!("the value of header {name} is not valid"))
        })?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// An error and its causes, `outer: inner: …`, each message once.
fn describe(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}
