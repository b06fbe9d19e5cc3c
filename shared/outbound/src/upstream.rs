//! `GuardedUpstreamClient`: the `UpstreamRegistry` port on reqwest, reading manifests
//! and blobs from a remote registry (the upstream of a proxy project) through the
//! outbound guard.
//!
//! How it keeps the port's promises:
//! - every connection (the upstream, its token realm, the storage a blob redirects to)
//!   goes through `resolve::GuardedResolver`, and an IP-literal host is checked before
//!   the request; no proxy from the environment; redirects are never followed by
//!   reqwest (`get_blob` follows one itself, without the `Authorization` header);
//! - authentication as the upstream's `WWW-Authenticate` challenge asks: `Bearer` (a
//!   token from the realm, anonymous or with the credentials as Basic, cached per
//!   upstream, credentials (user name and a fingerprint of the password) and scope
//!   until shortly before `expires_in`, 60 s when unsaid) or
//!   `Basic`. The scheme is remembered per upstream, so later requests send their
//!   credentials (or a cached or freshly fetched token) up front, without a 401 first;
//!   a 401 to a cached token fetches a new one once;
//! - manifests and tokens have a total timeout; blob bodies only a read timeout (a
//!   stall), since they may be gigabytes; every request has a connect timeout;
//! - failure messages name the host and what failed, never credentials, tokens, nor a
//!   URL's query (a presigned URL's signature).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use registry_core::digest::{Digest, DigestAlgorithm};
use registry_core::error::{RegistryError, Result};
use registry_core::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST,
};
use registry_core::names::{Reference, RepoName};
use registry_core::outbound::OutboundGuard;
use registry_core::ports::{
    ByteStream, Upstream, UpstreamBlob, UpstreamCounts, UpstreamManifest, UpstreamManifestHead,
    UpstreamRegistry,
};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::resolve::registry_error_in;
use crate::{describe, literal_ip, parse_target};

/// The header a registry announces a manifest's digest in.
const DIGEST_HEADER: &str = "docker-content-digest";
/// A token answer larger than this is refused (real ones are a few kilobytes).
const MAX_TOKEN_ANSWER: usize = 1024 * 1024;
/// A token's lifetime when the realm does not say (`expires_in`), per the token spec.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The wait suggested on a 429 without a usable `Retry-After` (seconds).
const DEFAULT_RETRY_AFTER_SECS: u64 = 60;
/// Beyond this many cached tokens, expired ones are dropped on the next insert.
const TOKEN_CACHE_PRUNE_AT: usize = 1024;

/// Timeouts, user agent and the guard of a [`GuardedUpstreamClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Which internal networks the operator allows upstreams on (none by default).
    pub guard: OutboundGuard,
    /// Longest wait for a TCP connection to be established.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer (headers or body): a stalled blob
    /// download fails after this, however long the whole download takes.
    pub read_timeout: Duration,
    /// Longest time for a whole manifest, token or `blob_location` request, from
    /// connecting to the last byte. Blob downloads have no total limit.
    pub request_timeout: Duration,
    /// The `User-Agent` of every request.
    pub user_agent: String,
}

impl Default for UpstreamConfig {
    /// The default guard (no internal network), 5 s to connect, 60 s without data,
    /// 30 s for a manifest or token request, `registry-proxy/1`.
    fn default() -> Self {
        UpstreamConfig {
            guard: OutboundGuard::default(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            user_agent: "registry-proxy/1".to_owned(),
        }
    }
}

/// The `UpstreamRegistry` adapter: one connection pool, the auth state (schemes and
/// tokens) and the request counters. Share it behind an `Arc`.
pub struct GuardedUpstreamClient {
    config: UpstreamConfig,
    guard: Arc<OutboundGuard>,
    client: reqwest::Client,
    auth: Mutex<AuthState>,
    counters: Counters,
}

impl std::fmt::Debug for GuardedUpstreamClient {
    /// The configuration and counts only: the auth state holds tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedUpstreamClient")
            .field("config", &self.config)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    manifest_heads: AtomicU64,
    manifest_gets: AtomicU64,
    blob_heads: AtomicU64,
    blob_gets: AtomicU64,
    tokens: AtomicU64,
}

/// What each upstream asked for, and the tokens it gave.
#[derive(Default)]
struct AuthState {
    /// Upstream key → the scheme of its last challenge.
    schemes: HashMap<String, Scheme>,
    /// (upstream key, repository) → the scope its last Bearer challenge named.
    scopes: HashMap<(String, String), String>,
    tokens: HashMap<TokenKey, CachedToken>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Whose token it is. The password is part of it, as a sha256 fingerprint: a token
/// fetched with the right password must never be handed to a request that carries the
/// same user name with another password (another project's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    upstream: String,
    username: Option<String>,
    password_fingerprint: Option<Digest>,
    scope: String,
}

struct CachedToken {
    token: String,
    fresh_until: Instant,
}

/// A `WWW-Authenticate` challenge the client can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// What a request carries.
enum Credential {
    Anonymous,
    Basic,
    /// `fresh`: fetched for this very call (a 401 to it is final).
    Bearer {
        token: String,
        scope: String,
        fresh: bool,
    },
}

/// Which counter a request goes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    ManifestHead,
    ManifestGet,
    BlobHead,
    BlobGet,
}

/// One endpoint of the upstream and how to name it in messages.
struct Target<'a> {
    upstream: &'a Upstream,
    /// `upstream.url` without a trailing slash: the key of the auth state.
    key: String,
    repository: &'a str,
    url: Url,
    /// `host[:port]`.
    host: String,
    /// e.g. `manifest team/app:1.0`.
    what: String,
}

/// A token realm's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl GuardedUpstreamClient {
    /// Builds the client. Fails (`Upstream`) only if the HTTP client cannot be built,
    /// e.g. the platform certificate verifier cannot be created or the user agent is
    /// not a valid header value.
    pub fn new(config: UpstreamConfig) -> Result<Self> {
        let guard = Arc::new(config.guard.clone());
        let client = crate::build_client(
            crate::guarded_builder(&guard, config.connect_timeout)
                .read_timeout(config.read_timeout)
                .user_agent(config.user_agent.clone()),
            "upstream",
        )?;
        Ok(GuardedUpstreamClient {
            config,
            guard,
            client,
            auth: Mutex::new(AuthState::default()),
            counters: Counters::default(),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    fn auth(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // The state stays consistent whatever panicked while holding the lock.
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL of `/v2/<repository>/<section>/<reference>` on the upstream.
    /// `OutboundRefused` for an unusable upstream URL (scheme, or an IP literal the
    /// guard refuses); `NameInvalid`, `TagInvalid`, `DigestInvalid` for a bad name or
    /// reference.
    fn target<'a>(
        &self,
        upstream: &'a Upstream,
        repository: &'a str,
        section: &str,
        reference: &str,
    ) -> Result<Target<'a>> {
        repository.parse::<RepoName>()?;
        let base = parse_target(&upstream.url)?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(RegistryError::OutboundRefused(
                "an upstream URL has no query or fragment".to_owned(),
            ));
        }
        let key = upstream.url.trim_end_matches('/').to_owned();
        let url = Url::parse(&format!("{key}/v2/{repository}/{section}/{reference}"))
            .map_err(|e| RegistryError::OutboundRefused(format!("not a valid URL: {e}")))?;
        self.check_literal(&url)?;
        let host = authority(&url);
        let separator = if reference.contains(':') { '@' } else { ':' };
        let noun = if section == "blobs" {
            "blob"
        } else {
            "manifest"
        };
        Ok(Target {
            upstream,
            key,
            repository,
            url,
            host,
            what: format!("{noun} {repository}{separator}{reference}"),
        })
    }

    /// reqwest connects to an IP-literal host without asking the resolver: check it.
    fn check_literal(&self, url: &Url) -> Result<()> {
        match literal_ip(url) {
            Some(ip) => self.guard.check(ip),
            None => Ok(()),
        }
    }

    fn counter(&self, kind: Kind) -> &AtomicU64 {
        match kind {
            Kind::ManifestHead => &self.counters.manifest_heads,
            Kind::ManifestGet => &self.counters.manifest_gets,
            Kind::BlobHead => &self.counters.blob_heads,
            Kind::BlobGet => &self.counters.blob_gets,
        }
    }

    /// Sends `request`, counting it in `counter` unless it never reached the server (a
    /// guard refusal, a failed resolution or connection).
    async fn send_counted(
        &self,
        request: reqwest::RequestBuilder,
        counter: &AtomicU64,
        host: &str,
        what: &str,
    ) -> Result<Response> {
        let result = request.send().await;
        match &result {
            Err(e) if e.is_connect() || registry_error_in(e).is_some() => {}
            _ => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        result.map_err(|e| self.failure(e, host, what))
    }

    /// Maps a reqwest error: a refusal or resolution failure from the guarded resolver
    /// is given back as it was (`OutboundRefused` stays `OutboundRefused`); anything else
    /// is `Upstream`, naming the host and what failed, without URL or headers.
    fn failure(&self, err: reqwest::Error, host: &str, what: &str) -> RegistryError {
        match registry_error_in(&err) {
            Some(RegistryError::OutboundRefused(why)) => {
                return RegistryError::OutboundRefused(why.clone());
            }
            Some(RegistryError::Upstream(why)) => return RegistryError::Upstream(why.clone()),
            _ => {}
        }
        if err.is_timeout() {
            return RegistryError::Upstream(format!(
                "{host} did not answer in time for the {what} (connect timeout {:?}, read \
                 timeout {:?}, request timeout {:?})",
                self.config.connect_timeout, self.config.read_timeout, self.config.request_timeout
            ));
        }
        if err.is_connect() {
            return RegistryError::Upstream(format!(
                "cannot connect to {host} for the {what}: {}",
                describe(&err.without_url())
            ));
        }
        RegistryError::Upstream(format!(
            "{host}: the request for the {what} failed: {}",
            describe(&err.without_url())
        ))
    }

    /// Sends one request to `target` with `credential`.
    async fn send_once(
        &self,
        target: &Target<'_>,
        method: &Method,
        accept: Option<&str>,
        timeout: Option<Duration>,
        credential: &Credential,
        kind: Kind,
    ) -> Result<Response> {
        let mut request = self.client.request(method.clone(), target.url.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        request = match credential {
            Credential::Anonymous => request,
            Credential::Basic => {
                let username = target.upstream.username.as_deref().unwrap_or_default();
                request.basic_auth(username, target.upstream.password.as_deref())
            }
            Credential::Bearer { token, .. } => request.bearer_auth(token),
        };
        self.send_counted(request, self.counter(kind), &target.host, &target.what)
            .await
    }

    /// Sends a request to `target`, authenticating as the upstream asks: credentials
    /// up front when the upstream's scheme is known, and on a 401 one retry answering
    /// its challenge. The answer is any status but 401.
    ///
    /// Errors: `Upstream` when a 401 comes after authenticating (credentials or token
    /// refused), when Basic is asked and there are no credentials, when the challenge
    /// cannot be answered, or when the token realm fails (`TooManyRequests` on its 429);
    /// `OutboundRefused` when the guard refuses the upstream or the realm.
    async fn send_authenticated(
        &self,
        target: &Target<'_>,
        method: Method,
        accept: Option<&str>,
        timeout: Option<Duration>,
        kind: Kind,
    ) -> Result<Response> {
        let credential = self.upfront_credential(target).await?;
        let response = self
            .send_once(target, &method, accept, timeout, &credential, kind)
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = pick_challenge(response.headers()).ok_or_else(|| {
            RegistryError::Upstream(format!(
                "{} answered 401 to the {} without a Basic or Bearer challenge",
                target.host, target.what
            ))
        })?;
        drop(response);
        self.remember(target, &challenge);
        let retry = match challenge {
            Challenge::Basic => match credential {
                Credential::Basic => return Err(refused(target)),
                _ if target.upstream.username.is_none() => {
                    return Err(RegistryError::Upstream(format!(
                        "{} needs credentials (Basic) for the {}",
                        target.host, target.what
                    )));
                }
                _ => Credential::Basic,
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope.unwrap_or_else(|| default_scope(target.repository));
                if let Credential::Bearer {
                    scope: used, fresh, ..
                } = &credential
                {
                    if *fresh && *used == scope {
                        return Err(refused(target));
                    }
                    // A cached token that is no longer good: never offer it again.
                    self.forget_token(target, used);
                }
                let token = self
                    .fetch_token(target, &realm, service.as_deref(), &scope)
                    .await?;
                Credential::Bearer {
                    token,
                    scope,
                    fresh: true,
                }
            }
        };
        let response = self
            .send_once(target, &method, accept, timeout, &retry, kind)
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Credential::Bearer { scope, .. } = &retry {
                self.forget_token(target, scope);
            }
            return Err(refused(target));
        }
        Ok(response)
    }

    /// What to send before any challenge: nothing for an upstream not yet seen; Basic
    /// credentials for one that asked for Basic; for one that asked for Bearer, the
    /// cached token for this scope, or a new one fetched now.
    async fn upfront_credential(&self, target: &Target<'_>) -> Result<Credential> {
        let (scheme, scope, cached) = {
            let state = self.auth();
            let Some(scheme) = state.schemes.get(&target.key).cloned() else {
                return Ok(Credential::Anonymous);
            };
            let scope = state
                .scopes
                .get(&(target.key.clone(), target.repository.to_owned()))
                .cloned()
                .unwrap_or_else(|| default_scope(target.repository));
            let cached = state
                .tokens
                .get(&token_key(target, &scope))
                .filter(|t| Instant::now() < t.fresh_until)
                .map(|t| t.token.clone());
            (scheme, scope, cached)
        };
        match (scheme, cached) {
            (Scheme::Basic, _) if target.upstream.username.is_some() => Ok(Credential::Basic),
            (Scheme::Basic, _) => Ok(Credential::Anonymous),
            (Scheme::Bearer { .. }, Some(token)) => Ok(Credential::Bearer {
                token,
                scope,
                fresh: false,
            }),
            (Scheme::Bearer { realm, service }, None) => {
                let token = self
                    .fetch_token(target, &realm, service.as_deref(), &scope)
                    .await?;
                Ok(Credential::Bearer {
                    token,
                    scope,
                    fresh: true,
                })
            }
        }
    }

    /// Records the scheme (and, for Bearer, the realm and scope) a challenge asked for.
    fn remember(&self, target: &Target<'_>, challenge: &Challenge) {
        let scheme = match challenge {
            Challenge::Basic => Scheme::Basic,
            Challenge::Bearer { realm, service, .. } => Scheme::Bearer {
                realm: realm.clone(),
                service: service.clone(),
            },
        };
        let mut state = self.auth();
        if state.schemes.get(&target.key) != Some(&scheme) {
            tracing::debug!(upstream = %target.host, ?scheme, "upstream asks for authentication");
            state.schemes.insert(target.key.clone(), scheme);
        }
        if let Challenge::Bearer {
            scope: Some(scope), ..
        } = challenge
        {
            state.scopes.insert(
                (target.key.clone(), target.repository.to_owned()),
                scope.clone(),
            );
        }
    }

    fn forget_token(&self, target: &Target<'_>, scope: &str) {
        self.auth().tokens.remove(&token_key(target, scope));
    }

    /// GETs a token for `scope` from `realm`, with the upstream's credentials as Basic
    /// when it has any, and caches it until shortly before it expires.
    ///
    /// Errors: `OutboundRefused` when the realm's URL or address is refused; `Upstream`
    /// when the realm is not a URL, cannot be reached, refuses the credentials (or
    /// anonymous access), answers otherwise than 200, or without a token;
    /// `TooManyRequests` on its 429.
    async fn fetch_token(
        &self,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String> {
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::Upstream(format!(
                "{} named a token realm that is not a URL: {e}",
                target.host
            ))
        })?;
        OutboundGuard::check_scheme(&url)?;
        self.check_literal(&url)?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scope.split_whitespace() {
                query.append_pair("scope", scope);
            }
        }
        let realm_host = authority(&url);
        let what = format!("token for {scope}");
        let mut request = self.client.get(url).timeout(self.config.request_timeout);
        let upstream = target.upstream;
        if let Some(username) = &upstream.username {
            request = request.basic_auth(username, upstream.password.as_deref());
        }
        let started = Instant::now();
        let mut response = self
            .send_counted(request, &self.counters.tokens, &realm_host, &what)
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let who = if upstream.username.is_some() {
                "the credentials"
            } else {
                "anonymous access (the upstream may need credentials)"
            };
            return Err(RegistryError::Upstream(format!(
                "the token service {realm_host} of {} refused {who} for {scope} ({status})",
                target.host
            )));
        }
        if status != StatusCode::OK {
            return Err(unexpected(&response, &realm_host, &what));
        }
        let body = self
            .read_capped(&mut response, MAX_TOKEN_ANSWER, &realm_host, &what)
            .await?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Upstream(format!(
                "the token service {realm_host} sent an invalid answer: {e}"
            ))
        })?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                RegistryError::Upstream(format!(
                    "the token service {realm_host} answered without a token"
                ))
            })?;
        let lifetime = answer
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Not used in its last fifth (at most 30 s): it must not expire on the way.
        let margin = (lifetime / 5).min(Duration::from_secs(30));
        let fresh_until = started + lifetime - margin;
        tracing::debug!(upstream = %target.host, realm = %realm_host, scope, ?lifetime, "fetched an upstream token");
        let mut state = self.auth();
        if state.tokens.len() >= TOKEN_CACHE_PRUNE_AT {
            let now = Instant::now();
            state.tokens.retain(|_, t| now < t.fresh_until);
        }
        state.tokens.insert(
            token_key(target, scope),
            CachedToken {
                token: token.clone(),
                fresh_until,
            },
        );
        Ok(token)
    }

    /// Reads a body of at most `cap` bytes; `Upstream` when it is larger or breaks off.
    async fn read_capped(
        &self,
        response: &mut Response,
        cap: usize,
        host: &str,
        what: &str,
    ) -> Result<Vec<u8>> {
        let too_large = || {
            RegistryError::Upstream(format!(
                "{host} sent a {what} larger than the limit of {cap} bytes"
            ))
        };
        let announced = header_u64(response.headers(), CONTENT_LENGTH.as_str());
        if announced.is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(announced.unwrap_or(0) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.failure(e, host, what))?
        {
            if body.len() + chunk.len() > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A GET of the blob's storage URL the upstream redirected to: no `Authorization`
    /// (it is for the upstream only), the guard applied to the new host.
    async fn follow_redirect(&self, target: &Target<'_>, location: Url) -> Result<Response> {
        self.follow_redirect_with(target, location, None).await
    }

    /// [`Self::follow_redirect`] with an optional `Range` (a 206 is then the answer).
    async fn follow_redirect_with(
        &self,
        target: &Target<'_>,
        location: Url,
        range: Option<&str>,
    ) -> Result<Response> {
        OutboundGuard::check_scheme(&location)?;
        self.check_literal(&location)?;
        let host = authority(&location);
        let what = format!("{} (redirected by {})", target.what, target.host);
        let mut request = self.client.get(location);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.failure(e, &host, &what))?;
        match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(response),
            status if status.is_redirection() => Err(RegistryError::Upstream(format!(
                "{host} redirected the {what} once more; only one redirect is followed"
            ))),
            _ => Err(unexpected(&response, &host, &what)),
        }
    }
}

#[async_trait]
impl UpstreamRegistry for GuardedUpstreamClient {
    async fn check_upstream(&self, url: &str) -> Result<()> {
        crate::check_url(&self.guard, url, self.config.request_timeout).await
    }

    /// A HEAD with the Accept header (the given types joined, or the OCI and Docker
    /// manifest and index types when none). Falls back to a GET (verified as
    /// `get_manifest` does) when the upstream does not say the digest, type or size.
    ///
    /// Errors as the port says; also `NameInvalid`/`TagInvalid`/`DigestInvalid` for a
    /// repository or reference outside the grammar, and `Upstream` when the upstream
    /// announces a digest other than the one asked for.
    async fn head_manifest(
        &self,
        upstream: &Upstream,
        repository: &str,
        reference: &str,
        accept: &[String],
    ) -> Result<Option<UpstreamManifestHead>> {
        let asked = reference_digest(reference)?;
        let target = self.target(upstream, repository, "manifests", reference)?;
        let accept_header = accept_header(accept);
        let response = self
            .send_authenticated(
                &target,
                Method::HEAD,
                Some(&accept_header),
                Some(self.config.request_timeout),
                Kind::ManifestHead,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::OK => {}
            _ => return Err(unexpected(&response, &target.host, &target.what)),
        }
        let headers = response.headers();
        let digest = announced_digest(headers, &target)?;
        let media_type = content_type(headers);
        let size = header_u64(headers, CONTENT_LENGTH.as_str());
        let (Some(digest), Some(media_type), Some(size)) = (digest, media_type, size) else {
            drop(response);
            let manifest = self
                .get_manifest(upstream, repository, reference, accept)
                .await?;
            return Ok(manifest.map(|m| UpstreamManifestHead {
                digest: m.digest,
                media_type: m.media_type,
                size: m.content.len() as u64,
            }));
        };
        if let Some(asked) = asked
            && asked.algorithm() == digest.algorithm()
            && asked != digest
        {
            return Err(RegistryError::Upstream(format!(
                "{} announced digest {digest} for the {}",
                target.host, target.what
            )));
        }
        Ok(Some(UpstreamManifestHead {
            digest,
            media_type,
            size,
        }))
    }

    /// A GET with the Accept header as `head_manifest`; the body is read up to
    /// `MAX_MANIFEST_SIZE`. The digest is the upstream's `Docker-Content-Digest`, checked
    /// against the bytes (with that header's algorithm), else the one asked for, else
    /// the sha256 of the bytes. The media type is the `Content-Type`, or the body's
    /// `mediaType` when the header is missing or generic.
    ///
    /// Errors as the port says; `Upstream` when the body is too large, does not match
    /// the announced or asked-for digest, or its media type cannot be told; and the
    /// grammar errors of `head_manifest`.
    async fn get_manifest(
        &self,
        upstream: &Upstream,
        repository: &str,
        reference: &str,
        accept: &[String],
    ) -> Result<Option<UpstreamManifest>> {
        let asked = reference_digest(reference)?;
        let target = self.target(upstream, repository, "manifests", reference)?;
        let accept = accept_header(accept);
        let mut response = self
            .send_authenticated(
                &target,
                Method::GET,
                Some(&accept),
                Some(self.config.request_timeout),
                Kind::ManifestGet,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::OK => {}
            _ => return Err(unexpected(&response, &target.host, &target.what)),
        }
        let announced = announced_digest(response.headers(), &target)?;
        let header_type = content_type(response.headers());
        let content = self
            .read_capped(&mut response, MAX_MANIFEST_SIZE, &target.host, &target.what)
            .await?;
        for expected in announced.iter().chain(asked.iter()) {
            let actual = Digest::of(expected.algorithm(), &content);
            if actual != *expected {
                return Err(RegistryError::Upstream(format!(
                    "{} sent a {} whose bytes have digest {actual}, not {expected}",
                    target.host, target.what
                )));
            }
        }
        let digest = announced
            .or(asked)
            .unwrap_or_else(|| Digest::of(DigestAlgorithm::Sha256, &content));
        let media_type = match header_type.filter(|t| !is_generic_type(t)) {
            Some(t) => t,
            None => body_media_type(&content).ok_or_else(|| {
                RegistryError::Upstream(format!(
                    "{} sent a {} whose media type cannot be told (no Content-Type, no \
                     mediaType)",
                    target.host, target.what
                ))
            })?,
        };
        Ok(Some(UpstreamManifest {
            digest,
            media_type,
            content,
        }))
    }

    /// A GET; a redirect (301, 302, 303, 307, 308 with `Location`) is followed once,
    /// without `Authorization`, its host checked by the guard. The body is streamed as
    /// it arrives; the stream's errors are `Upstream` (a read stalled past
    /// `read_timeout`, a connection broken off).
    ///
    /// A HEAD; when the upstream redirects it (to its storage, whose URL may be signed
    /// for GET only), a one-byte ranged GET of the target, whose `Content-Range` gives
    /// the size.
    ///
    /// Errors as the port says; also `Upstream` when no size can be read.
    async fn head_blob(
        &self,
        upstream: &Upstream,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let target = self.target(upstream, repository, "blobs", &digest.to_string())?;
        let response = self
            .send_authenticated(
                &target,
                Method::HEAD,
                None,
                Some(self.config.request_timeout),
                Kind::BlobHead,
            )
            .await?;
        let size = match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::OK => header_u64(response.headers(), CONTENT_LENGTH.as_str()),
            status if status.is_redirection() => {
                let location = redirect_location(&response, &target)?;
                drop(response);
                let ranged = self
                    .follow_redirect_with(&target, location, Some("bytes=0-0"))
                    .await?;
                let headers = ranged.headers();
                let total = headers
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit_once('/'))
                    .and_then(|(_, total)| total.parse().ok());
                total.or_else(|| {
                    (ranged.status() == StatusCode::OK)
                        .then(|| header_u64(headers, CONTENT_LENGTH.as_str()))
                        .flatten()
                })
            }
            _ => return Err(unexpected(&response, &target.host, &target.what)),
        };
        size.map(Some).ok_or_else(|| {
            RegistryError::Upstream(format!(
                "{} did not say the size of the {}",
                target.host, target.what
            ))
        })
    }

    /// Errors as the port says; also `Upstream` when the answer has no `Content-Length`,
    /// the redirect target answers other than 200 or redirects again.
    async fn get_blob(
        &self,
        upstream: &Upstream,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>> {
        let target = self.target(upstream, repository, "blobs", &digest.to_string())?;
        let response = self
            .send_authenticated(&target, Method::GET, None, None, Kind::BlobGet)
            .await?;
        let (response, host) = match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::OK => (response, target.host.clone()),
            status if status.is_redirection() => {
                let location = redirect_location(&response, &target)?;
                drop(response);
                let host = authority(&location);
                (self.follow_redirect(&target, location).await?, host)
            }
            _ => return Err(unexpected(&response, &target.host, &target.what)),
        };
        let length = header_u64(response.headers(), CONTENT_LENGTH.as_str()).ok_or_else(|| {
            RegistryError::Upstream(format!(
                "{host} sent the {} without a Content-Length",
                target.what
            ))
        })?;
        let what = target.what.clone();
        let read_timeout = self.config.read_timeout;
        let body: ByteStream = Box::pin(response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                if e.is_timeout() {
                    RegistryError::Upstream(format!(
                        "{host} stalled for more than {read_timeout:?} sending the {what}"
                    ))
                } else {
                    RegistryError::Upstream(format!(
                        "{host}: reading the {what} failed: {}",
                        describe(&e.without_url())
                    ))
                }
            })
        }));
        Ok(Some(UpstreamBlob { length, body }))
    }

    /// A GET that follows no redirect: the absolute `Location` of a 3xx; `None` for a
    /// 2xx (the body is dropped unread) or a 404.
    ///
    /// Errors as the port says; also `Upstream` for a redirect without a usable
    /// `Location` (missing, not a URL, not http or https).
    async fn blob_location(
        &self,
        upstream: &Upstream,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let target = self.target(upstream, repository, "blobs", &digest.to_string())?;
        let response = self
            .send_authenticated(
                &target,
                Method::GET,
                None,
                Some(self.config.request_timeout),
                Kind::BlobGet,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(None),
            status if status.is_redirection() => {
                let location = redirect_location(&response, &target)?;
                OutboundGuard::check_scheme(&location).map_err(|_| {
                    RegistryError::Upstream(format!(
                        "{} redirected the {} to a URL that is not http or https",
                        target.host, target.what
                    ))
                })?;
                Ok(Some(location.into()))
            }
            _ => Err(unexpected(&response, &target.host, &target.what)),
        }
    }

    /// Every request the upstream (or its token realm) received, retries after a 401
    /// included: a `head_manifest` that falls back to a GET counts one HEAD and one GET,
    /// `blob_location` counts a blob GET. Not counted: requests the guard refused or that
    /// never connected, and the GET of a blob's redirect target (not the upstream).
    fn counts(&self) -> UpstreamCounts {
        UpstreamCounts {
            manifest_heads: self.counters.manifest_heads.load(Ordering::Relaxed),
            manifest_gets: self.counters.manifest_gets.load(Ordering::Relaxed),
            blob_heads: self.counters.blob_heads.load(Ordering::Relaxed),
            blob_gets: self.counters.blob_gets.load(Ordering::Relaxed),
            tokens: self.counters.tokens.load(Ordering::Relaxed),
        }
    }
}

/// `host` or `host:port` of a URL, for messages (never its path or query).
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn token_key(target: &Target<'_>, scope: &str) -> TokenKey {
    let upstream = target.upstream;
    TokenKey {
        upstream: target.key.clone(),
        username: upstream.username.clone(),
        password_fingerprint: upstream
            .password
            .as_ref()
            .map(|p| Digest::of(DigestAlgorithm::Sha256, p.as_bytes())),
        scope: scope.to_owned(),
    }
}

/// The scope asked for when a challenge names none.
fn default_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The error for a 401 after authenticating.
fn refused(target: &Target<'_>) -> RegistryError {
    let what = if target.upstream.username.is_some() {
        "the credentials"
    } else {
        "anonymous access"
    };
    RegistryError::Upstream(format!(
        "{} refused {what} for the {} (401 after authenticating)",
        target.host, target.what
    ))
}

/// The error for an answer the caller has no use for: `TooManyRequests` for a 429
/// (its `Retry-After` in seconds, 60 when it gives none), `Upstream` naming the status
/// otherwise.
fn unexpected(response: &Response, host: &str, what: &str) -> RegistryError {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after_secs = header_u64(response.headers(), RETRY_AFTER.as_str())
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
        return RegistryError::TooManyRequests {
            message: format!("{host} is limiting requests (429 to the {what})"),
            retry_after_secs,
        };
    }
    if status == StatusCode::FORBIDDEN {
        return RegistryError::Upstream(format!("{host} denied the {what} (403)"));
    }
    RegistryError::Upstream(format!("{host} answered {status} to the {what}"))
}

/// The digest asked for, when the reference is one; a tag gives `None`.
/// `TagInvalid`/`DigestInvalid` for a reference outside the grammar.
fn reference_digest(reference: &str) -> Result<Option<Digest>> {
    Ok(match reference.parse::<Reference>()? {
        Reference::Digest(d) => Some(d),
        Reference::Tag(_) => None,
    })
}

/// The Accept header: the given types, or every manifest and index type.
fn accept_header(accept: &[String]) -> String {
    if accept.is_empty() {
        [
            OCI_INDEX,
            OCI_MANIFEST,
            DOCKER_MANIFEST_LIST,
            DOCKER_MANIFEST,
        ]
        .join(", ")
    } else {
        accept.join(", ")
    }
}

/// A header as a number, when present and numeric.
fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Content-Type` without its parameters, when present and not empty.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let media_type = value.split(';').next().unwrap_or_default().trim();
    (!media_type.is_empty()).then(|| media_type.to_owned())
}

/// Types a misconfigured server sends for anything: not a manifest's media type.
fn is_generic_type(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/json" | "text/plain" | "application/octet-stream"
    )
}

/// The `mediaType` field of a manifest body.
fn body_media_type(content: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Envelope>(content)
        .ok()?
        .media_type
        .filter(|t| !t.is_empty())
}

/// `Docker-Content-Digest`, when present; `Upstream` when it is not a digest.
fn announced_digest(headers: &HeaderMap, target: &Target<'_>) -> Result<Option<Digest>> {
    let Some(value) = headers.get(DIGEST_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<Digest>().ok())
        .map(Some)
        .ok_or_else(|| {
            RegistryError::Upstream(format!(
                "{} announced an invalid Docker-Content-Digest for the {}",
                target.host, target.what
            ))
        })
}

/// The absolute URL of a redirect's `Location` (relative to the request's URL).
fn redirect_location(response: &Response, target: &Target<'_>) -> Result<Url> {
    let invalid = || {
        RegistryError::Upstream(format!(
            "{} redirected the {} without a usable Location",
            target.host, target.what
        ))
    };
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(invalid)?;
    target.url.join(location).map_err(|_| invalid())
}

/// The challenge to answer among the `WWW-Authenticate` headers: Bearer (with a realm)
/// before Basic.
fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        for (scheme, params) in parse_challenges(value) {
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            };
            if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: param("service"),
                        scope: param("scope"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1): challenges, each a scheme and
/// `name=value` parameters (values plain or quoted, with `\` escapes), separated by
/// commas; a token without `=` after a comma starts the next challenge.
fn parse_challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let chars: Vec<char> = value.chars().collect();
    let mut i = 0;
    let mut challenges = Vec::new();
    let skip = |i: &mut usize, also_commas: bool| {
        while *i < chars.len() && (chars[*i].is_whitespace() || (also_commas && chars[*i] == ',')) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i, true);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ',' {
            i += 1;
        }
        let scheme: String = chars[start..i].iter().collect();
        let mut params = Vec::new();
        loop {
            let before = i;
            skip(&mut i, true);
            if i >= chars.len() {
                break;
            }
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '=' | ',') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            skip(&mut i, false);
            if i >= chars.len() || chars[i] != '=' {
                // Not a parameter: the next challenge's scheme.
                i = before;
                break;
            }
            i += 1;
            skip(&mut i, false);
            let mut value = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ',' {
                    value.push(chars[i]);
                    i += 1;
                }
            }
            params.push((name, value));
        }
        challenges.push((scheme, params));
    }
    challenges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_with_quoted_commas_and_several_schemes() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push", Basic realm="x\"y""#,
        );
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "Bearer");
        assert_eq!(
            parsed[0].1,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        assert_eq!(parsed[1].0, "Basic");
        assert_eq!(parsed[1].1, vec![("realm".into(), "x\"y".into())]);
    }

    #[test]
    fn bearer_is_preferred_and_a_bearer_without_realm_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Basic realm=\"r\"".parse().unwrap(),
        );
        headers.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Bearer realm=\"http://t/token\"".parse().unwrap(),
        );
        assert_eq!(
            pick_challenge(&headers),
            Some(Challenge::Bearer {
                realm: "http://t/token".into(),
                service: None,
                scope: None
            })
        );
        let mut headers = HeaderMap::new();
        headers.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Bearer service=\"s\", Basic realm=r".parse().unwrap(),
        );
        assert_eq!(pick_challenge(&headers), Some(Challenge::Basic));
        assert_eq!(pick_challenge(&HeaderMap::new()), None);
    }

    #[test]
    fn garbage_challenges_end() {
        for value in [
            "",
            ",,,",
            "=",
            "a=",
            "Bearer realm=\"unterminated",
            "x y z = , =",
        ] {
            let _ = parse_challenges(value);
        }
    }
}
