//! `UpstreamRegistry`: reading manifests and blobs from a remote OCI registry (the
//! upstream of a proxy project), over the Distribution API with the Docker token flow.
//!
//! Guarantees every adapter gives:
//! - authentication as the upstream asks in its `WWW-Authenticate` challenge: `Bearer`
//!   (a token from the realm, anonymous or with the credentials as Basic, cached for its
//!   `expires_in`, 60 s when unsaid, and fetched again once on a 401) or `Basic`;
//! - every address it connects to is checked by the outbound guard (the operator allows
//!   internal upstreams explicitly), with bounded connect timeouts;
//! - `head_manifest` and `head_blob` are HEADs (which Docker Hub does not count against
//!   pull limits);
//!   `get_manifest` checks the bytes against the digest the upstream announces (or the
//!   digest asked for) and refuses more than [`crate::manifest::MAX_MANIFEST_SIZE`];
//! - `get_blob` streams the body as it arrives (constant memory); the caller verifies
//!   the digest of what it stores;
//! - `blob_location` asks for the blob without following a redirect: the upstream's own
//!   download URL (a CDN or presigned URL) when it answers with one;
//! - request counts per kind, for tests and benchmarks ([`UpstreamCounts`]).
//!
//! Errors: `Ok(None)` when the upstream says the manifest or blob does not exist (404).
//! `TooManyRequests` when it answers 429; `Upstream` when it cannot be reached, times
//! out, answers 5xx, refuses the credentials (401/403 after authenticating) or sends
//! something invalid (a digest mismatch); `OutboundRefused` when the guard refuses an
//! address. The caller serves its cached copy on `TooManyRequests` and `Upstream`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Result;
use crate::ports::blob_store::ByteStream;

/// Where and as whom to read: the upstream's base URL (`https://registry-1.docker.io`,
/// `http://127.0.0.1:5000`) and optional credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What a HEAD of a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A manifest read from the upstream, its bytes exactly as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// A blob body being read from the upstream.
pub struct UpstreamBlob {
    /// The length the upstream announced.
    pub length: u64,
    pub body: ByteStream,
}

/// Requests sent upstream since the client was made, by kind (token requests apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamCounts {
    pub manifest_heads: u64,
    pub manifest_gets: u64,
    pub blob_heads: u64,
    pub blob_gets: u64,
    pub tokens: u64,
}

#[async_trait]
pub trait UpstreamRegistry: Send + Sync + 'static {
    /// Checks that the upstream at `url` may be reached now (scheme, host, every address
    /// it resolves to): what a proxy project is refused at creation when it fails.
    async fn check_upstream(&self, url: &str) -> Result<()>;

    /// HEAD `/v2/<repository>/manifests/<reference>` with `accept` as the Accept header.
    async fn head_manifest(
        &self,
        upstream: &Upstream,
        repository: &str,
        reference: &str,
        accept: &[String],
    ) -> Result<Option<UpstreamManifestHead>>;

    /// GET `/v2/<repository>/manifests/<reference>`.
    async fn get_manifest(
        &self,
        upstream: &Upstream,
        repository: &str,
        reference: &str,
        accept: &[String],
    ) -> Result<Option<UpstreamManifest>>;

    /// HEAD `/v2/<repository>/blobs/<digest>`: the blob's size (`Content-Length`), without
    /// its bytes.
    async fn head_blob(
        &self,
        upstream: &Upstream,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>>;

    /// GET `/v2/<repository>/blobs/<digest>`, following the upstream's redirect (to its
    /// storage) with the guard applied to that host too.
    async fn get_blob(
        &self,
        upstream: &Upstream,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>>;

    /// The URL the upstream redirects a GET of the blob to, if it does (`Ok(None)` also
    /// when it would serve the bytes itself, or has no such blob).
    async fn blob_location(
        &self,
        upstream: &Upstream,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<String>>;

    /// Requests sent so far.
    fn counts(&self) -> UpstreamCounts;
}
