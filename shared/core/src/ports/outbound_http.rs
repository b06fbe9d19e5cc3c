//! `OutboundHttp`: the registry's requests to addresses that users choose (webhook
//! targets; later upstream registries), guarded against internal addresses.
//!
//! Guarantees every adapter gives:
//! - only `http` and `https` URLs; no redirects are followed (a redirect is an answer);
//! - every address the host resolves to is checked with [`OutboundGuard`]; the
//!   connection goes to an address that was checked (no second resolution, so DNS
//!   rebinding cannot slip an internal address in);
//! - bounded connect and total timeouts; the answer body is read up to a small cap.
//!
//! Errors: `OutboundRefused` when the URL or an address it resolves to is refused;
//! `Upstream` for failures to resolve, connect, send or read (timeouts included). A
//! non-2xx answer is not an error: it is returned.
//!
//! [`OutboundGuard`]: crate::outbound::OutboundGuard

use async_trait::async_trait;

use crate::error::Result;

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The target's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    /// The start of the body, lossily decoded, at most the adapter's cap.
    pub body_excerpt: String,
}

#[async_trait]
pub trait OutboundHttp: Send + Sync + 'static {
    /// Checks that `url` is allowed now: scheme, host, and every resolved address.
    async fn check_target(&self, url: &str) -> Result<()>;
    /// POSTs `request` (after the same checks).
    async fn post(&self, request: &OutboundRequest) -> Result<OutboundResponse>;
}
