//! Proxy projects: a project bound to an upstream registry serves its images as a
//! pull-through cache. Manifests are served from the cache while fresh, checked with a
//! HEAD upstream otherwise (fetched only when the digest changed); index children and
//! blobs are fetched on demand, one fetch per blob however many clients ask at once,
//! streamed to the client while stored (long-lived processes) or, in the Lambda API
//! function, answered with the upstream's own download URL while a `proxy-fill` job
//! copies the blob into the cache. When the upstream is down or rate-limits, cached
//! copies are served (stale) and say so; only never-cached content fails. Proxy projects
//! are read-only to clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::StreamExt;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::{Digest, DigestHasher};
use crate::error::{RegistryError, Result};
use crate::manifest;
use crate::names::{Reference, RepoName, Tag};
use crate::ports::{
    BlobContent, ByteStream, Job, JobQueue, ManifestRecord, ProxyCacheStore, Upstream,
    UpstreamManifest, UpstreamRegistry,
};
use crate::registry::{BlobRead, RangeRequest, Registry};
use crate::worker::{Attempt, JobHandler, JobOutcome};

/// How long a tag is served from the cache before it is checked upstream again, unless
/// the project says otherwise.
pub const DEFAULT_FRESHNESS_SECS: u64 = 300;
/// The response header that marks a manifest served from the cache because the upstream
/// could not be asked (down, or rate-limiting).
pub const STALE_HEADER: &str = "x-registry-proxy-stale";
/// Job kinds of the proxy-fill queue.
pub const FILL_BLOB_JOB: &str = "proxy.fill-blob";
pub const FILL_IMAGE_JOB: &str = "proxy.fill-image";

/// A proxy project's binding to its upstream, as stored with the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySettings {
    /// Base URL of the upstream registry (`https://registry-1.docker.io`).
    pub upstream_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The upstream password, sealed with the registry's credential key (never stored
    /// in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_password: Option<String>,
    /// Seconds a cached tag is served before it is checked upstream again.
    pub freshness_secs: u64,
    /// Most bytes of blobs to cache; past it, blobs are passed through uncached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cache_bytes: Option<u64>,
}

impl ProxySettings {
    /// Docker Hub (`docker.io`, `registry-1.docker.io`): single-name images live under
    /// `library/`.
    pub fn is_docker_hub(&self) -> bool {
        let url = url::Url::parse(&self.upstream_url).ok();
        let host = url.as_ref().and_then(|u| u.host_str()).unwrap_or("");
        matches!(
            host,
            "docker.io" | "registry-1.docker.io" | "index.docker.io"
        )
    }

    /// The upstream repository of a repository of this project: the project name
    /// removed (`hub/library/ubuntu` → `library/ubuntu`; on Docker Hub, `hub/ubuntu` →
    /// `library/ubuntu` too).
    pub fn upstream_repository(&self, repo: &RepoName) -> String {
        let path = repo.as_str();
        let rest = path.split_once('/').map(|(_, r)| r).unwrap_or(path);
        if self.is_docker_hub() && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_owned()
        }
    }
}

/// What a client sends to make or change a proxy project (the password in clear, once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyRequest {
    pub upstream_url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub freshness_secs: Option<u64>,
    #[serde(default)]
    pub max_cache_bytes: Option<u64>,
}

/// A proxy project's settings as the API shows them: never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyView {
    pub upstream_url: String,
    pub username: Option<String>,
    pub has_password: bool,
    pub freshness_secs: u64,
    pub max_cache_bytes: Option<u64>,
}

impl From<&ProxySettings> for ProxyView {
    fn from(s: &ProxySettings) -> Self {
        ProxyView {
            upstream_url: s.upstream_url.clone(),
            username: s.username.clone(),
            has_password: s.sealed_password.is_some(),
            freshness_secs: s.freshness_secs,
            max_cache_bytes: s.max_cache_bytes,
        }
    }
}

/// Seals upstream passwords at rest (AES-256-GCM, random nonce, base64 of nonce ‖
/// ciphertext) with a key derived from a registry secret; opens with it or with keys of
/// earlier secrets (after a signing-key rotation).
pub struct CredentialBox {
    key: LessSafeKey,
    previous: Vec<LessSafeKey>,
}

fn derived_key(secret: &[u8]) -> LessSafeKey {
    let mut sha256 = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    sha256.update(b"registry proxy credentials v1\0");
    sha256.update(secret);
    let raw = sha256.finish();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw.as_ref()).expect("a 32-byte AES-256 key"))
}

impl CredentialBox {
    /// A box keyed by SHA-256 of a domain label and `secret` (the token signing key).
    pub fn from_secret(secret: &[u8]) -> Self {
        CredentialBox {
            key: derived_key(secret),
            previous: Vec::new(),
        }
    }

    /// Also opens what was sealed under `secrets` (the signing keys before a rotation).
    pub fn with_previous<'a>(mut self, secrets: impl IntoIterator<Item = &'a [u8]>) -> Self {
        self.previous.extend(secrets.into_iter().map(derived_key));
        self
    }

    pub fn seal(&self, clear: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = clear.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| RegistryError::Storage("cannot seal an upstream credential".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(B64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String> {
        let bad = || {
            RegistryError::Storage(
                "an upstream credential cannot be opened (was the signing key changed?)".into(),
            )
        };
        let raw = B64.decode(sealed).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        for key in std::iter::once(&self.key).chain(&self.previous) {
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
            let mut data = data.to_vec();
            if let Ok(clear) = key.open_in_place(nonce, Aad::empty(), &mut data) {
                return String::from_utf8(clear.to_vec()).map_err(|_| bad());
            }
        }
        Err(bad())
    }
}

/// How an uncached blob reaches a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFetchMode {
    /// Fetch once, stream to the client while storing (local binary, upload endpoint).
    StreamAndStore,
    /// Redirect to the upstream's download URL when it has one and queue a `proxy-fill`
    /// job; otherwise store first, then serve from the cache (the Lambda API function).
    RedirectAndFill,
}

type FlightResult = Option<std::result::Result<u64, String>>;

/// The proxy machinery one process shares: settings lookups, the upstream client, the
/// blob fetches in flight.
pub struct ProxyCache {
    pub(crate) projects: Arc<crate::identity::ProjectCache>,
    store: Arc<dyn ProxyCacheStore>,
    upstream: Arc<dyn UpstreamRegistry>,
    credentials: Option<Arc<CredentialBox>>,
    fill_queue: Option<Arc<dyn JobQueue>>,
    mode: BlobFetchMode,
    flights: Flights,
}

/// The blob fetches in flight in this process: one leader per project and digest (a
/// fetch is from one project's upstream, with its credentials and cap), the others wait
/// for what it lands.
#[derive(Default)]
struct Flights(Mutex<HashMap<(String, Digest), tokio::sync::watch::Receiver<FlightResult>>>);

impl Flights {
    /// Joins the fetch of `digest` for `project` in flight (`Ok`: wait on it), or becomes
    /// its leader (`Err`: fetch, then [`Flights::land`]).
    fn join(
        &self,
        project: &str,
        digest: &Digest,
    ) -> std::result::Result<
        tokio::sync::watch::Receiver<FlightResult>,
        tokio::sync::watch::Sender<FlightResult>,
    > {
        let mut flights = self.0.lock().expect("flights lock");
        let key = (project.to_owned(), digest.clone());
        // A leader that went away without landing (its request was cancelled) closed its
        // channel: the next caller leads instead.
        if let Some(rx) = flights.get(&key)
            && rx.has_changed().is_ok()
        {
            return Ok(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        flights.insert(key, rx);
        Err(tx)
    }

    /// Ends the flight of `digest` for `project` with `result`, for everyone waiting.
    fn land(
        &self,
        project: &str,
        digest: &Digest,
        tx: &tokio::sync::watch::Sender<FlightResult>,
        result: std::result::Result<u64, String>,
    ) {
        if let Ok(mut flights) = self.0.lock() {
            flights.remove(&(project.to_owned(), digest.clone()));
        }
        let _ = tx.send(Some(result));
    }
}

impl ProxyCache {
    pub fn new(
        projects: Arc<crate::identity::ProjectCache>,
        store: Arc<dyn ProxyCacheStore>,
        upstream: Arc<dyn UpstreamRegistry>,
        credentials: Option<Arc<CredentialBox>>,
        mode: BlobFetchMode,
    ) -> Self {
        ProxyCache {
            projects,
            store,
            upstream,
            credentials,
            fill_queue: None,
            mode,
            flights: Flights::default(),
        }
    }

    /// Queues `proxy-fill` jobs on `queue` (redirect mode, prefetch).
    pub fn with_fill_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.fill_queue = Some(queue);
        self
    }

    pub fn upstream(&self) -> &Arc<dyn UpstreamRegistry> {
        &self.upstream
    }

    pub fn store(&self) -> &Arc<dyn ProxyCacheStore> {
        &self.store
    }

    pub fn credentials(&self) -> Option<&Arc<CredentialBox>> {
        self.credentials.as_ref()
    }

    /// The proxy settings of `project`, `None` when it is not a proxy project (or does
    /// not exist); read through the process's project cache.
    pub async fn settings_of(&self, project: &str) -> Result<Option<ProxySettings>> {
        Ok(self.projects.get(project).await?.and_then(|p| p.proxy))
    }

    /// The upstream and credentials of a project's settings.
    pub fn upstream_of(&self, settings: &ProxySettings) -> Result<Upstream> {
        let password = match (&settings.sealed_password, &self.credentials) {
            (Some(sealed), Some(creds)) => Some(creds.open(sealed)?),
            (Some(_), None) => {
                return Err(RegistryError::Storage(
                    "the upstream password cannot be opened: no credential key configured".into(),
                ));
            }
            (None, _) => None,
        };
        Ok(Upstream {
            url: settings.upstream_url.trim_end_matches('/').to_owned(),
            username: settings.username.clone(),
            password,
        })
    }

    async fn enqueue_fill(&self, job: Job) {
        if let Some(queue) = &self.fill_queue
            && let Err(e) = queue.enqueue(&job).await
        {
            tracing::warn!(error = %e, kind = %job.kind, "could not queue a proxy-fill job");
        }
    }
}

/// `POST /api/v1/projects/{p}/proxy/prefetch`: images to copy into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefetchRequest {
    /// Upstream-side names with a tag or digest: `library/ubuntu:18.04`,
    /// `team/app@sha256:…` (the project's name is prepended).
    pub images: Vec<String>,
    /// `os/architecture[/variant]` of indexes; default `linux/amd64`.
    #[serde(default)]
    pub platform: Option<String>,
}

/// What a prefetch queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefetchQueued {
    pub queued: Vec<FillImageJob>,
}

impl ProxyCache {
    /// Queues a `proxy.fill-image` job per image of a prefetch (project admins).
    pub async fn prefetch(
        &self,
        admin: &crate::admin::Admin,
        actor: &crate::admin::Actor,
        project: &str,
        request: PrefetchRequest,
    ) -> Result<PrefetchQueued> {
        admin
            .require_project_admin(actor, project, "prefetching into this project")
            .await?;
        if self.settings_of(project).await?.is_none() {
            return Err(RegistryError::Unsupported(format!(
                "{project} is not a proxy project"
            )));
        }
        let Some(queue) = &self.fill_queue else {
            return Err(RegistryError::Unsupported(
                "prefetch needs the proxy-fill queue (REGISTRY_PROXY_FILL_QUEUE_URL)".into(),
            ));
        };
        if request.images.is_empty() || request.images.len() > 1000 {
            return Err(RegistryError::Unsupported(
                "a prefetch names between 1 and 1000 images".into(),
            ));
        }
        let mut jobs = Vec::new();
        for image in &request.images {
            let (name, reference) = match image.split_once('@') {
                Some((name, digest)) => (name, digest.to_owned()),
                None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                    Some((name, tag)) => (name, tag.to_owned()),
                    None => (image.as_str(), "latest".to_owned()),
                },
            };
            let repository: RepoName = format!("{project}/{name}").parse()?;
            reference.parse::<Reference>()?;
            jobs.push(FillImageJob {
                repository,
                reference,
                platform: request.platform.clone(),
            });
        }
        for job in &jobs {
            queue.enqueue(&job.to_job()).await?;
        }
        Ok(PrefetchQueued { queued: jobs })
    }
}

/// A manifest and how it was served.
#[derive(Debug, Clone)]
pub struct ManifestPull {
    pub record: ManifestRecord,
    /// Why a proxy project served its cached copy without asking upstream, if it did.
    pub stale: Option<String>,
}

tokio::task_local! {
    static INTERNAL_WRITE: ();
}

/// Runs `fut` as the registry's own writer (the scanner storing an SBOM): writes into
/// proxy projects are allowed inside it, where clients are refused.
pub async fn as_internal_writer<F: std::future::Future>(fut: F) -> F::Output {
    INTERNAL_WRITE.scope((), fut).await
}

fn internal_write() -> bool {
    INTERNAL_WRITE.try_with(|_| ()).is_ok()
}

fn upstream_trouble(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::Upstream(_) | RegistryError::TooManyRequests { .. }
    )
}

/// The client's Accept as asked upstream: its media types, without wildcards (an empty
/// list makes the upstream client ask for every manifest and index type).
fn upstream_accept(accept: &[String]) -> Vec<String> {
    accept
        .iter()
        .flat_map(|a| a.split(','))
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty() && a != "*/*")
        .collect()
}

impl Registry {
    /// The proxy settings of `repo`'s project, if it is a proxy project.
    pub async fn proxy_settings(&self, repo: &RepoName) -> Result<Option<ProxySettings>> {
        match &self.proxy {
            Some(proxy) => proxy.settings_of(repo.project()).await,
            None => Ok(None),
        }
    }

    /// Refuses a client's write into a proxy project.
    pub(crate) async fn writable(&self, repo: &RepoName) -> Result<()> {
        if self.proxy.is_some() && !internal_write() && self.proxy_settings(repo).await?.is_some() {
            return Err(RegistryError::Denied(format!(
                "{} is a proxy project: it is read-only (its content comes from its upstream)",
                repo.project()
            )));
        }
        Ok(())
    }

    /// GET/HEAD of a manifest, through the proxy for proxy projects, with how it was
    /// served.
    pub async fn fetch_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
    ) -> Result<ManifestPull> {
        let Some(settings) = self.proxy_settings(repo).await? else {
            return Ok(ManifestPull {
                record: self.cached_manifest(repo, reference, accept).await?,
                stale: None,
            });
        };
        let pull = self
            .proxy_manifest(repo, reference, accept, &settings)
            .await?;
        if !manifest::accepts(accept, &pull.record.media_type) {
            return Err(RegistryError::ManifestUnknown(format!(
                "{reference} is a {} manifest, which the Accept header does not admit",
                pull.record.media_type
            )));
        }
        Ok(pull)
    }

    async fn proxy_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        settings: &ProxySettings,
    ) -> Result<ManifestPull> {
        let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
        let upstream = proxy.upstream_of(settings)?;
        let upstream_repo = settings.upstream_repository(repo);
        let ask = upstream_accept(accept);
        let fresh = |record| ManifestPull {
            record,
            stale: None,
        };
        match reference {
            Reference::Digest(d) => {
                if let Some(record) = self.meta.get_manifest(repo, d).await? {
                    return Ok(fresh(record));
                }
                let fetched = proxy
                    .upstream
                    .get_manifest(&upstream, &upstream_repo, &d.to_string(), &ask)
                    .await
                    .map_err(|e| never_cached(e, repo, reference))?
                    .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))?;
                if &fetched.digest != d {
                    return Err(RegistryError::Upstream(format!(
                        "the upstream answered {} for {d}",
                        fetched.digest
                    )));
                }
                let record = self.cache_manifest(repo, fetched, &[]).await?;
                Ok(fresh(record))
            }
            Reference::Tag(tag) => {
                let cached = self.meta.get_manifest_by_tag(repo, tag).await?;
                let now = self.clock.now_millis();
                if let Some(record) = &cached
                    && let Some(checked) = proxy.store.tag_checked(repo, tag).await?
                    && now.saturating_sub(checked) < settings.freshness_secs * 1000
                {
                    return Ok(fresh(record.clone()));
                }
                let head = match proxy
                    .upstream
                    .head_manifest(&upstream, &upstream_repo, tag.as_str(), &ask)
                    .await
                {
                    Ok(head) => head,
                    Err(e) if upstream_trouble(&e) => {
                        return match cached {
                            Some(record) => {
                                tracing::warn!(
                                    repository = %repo, tag = %tag, error = %e,
                                    "upstream unavailable: serving the cached manifest"
                                );
                                Ok(ManifestPull {
                                    record,
                                    stale: Some(e.to_string()),
                                })
                            }
                            None => Err(never_cached(e, repo, reference)),
                        };
                    }
                    Err(e) => return Err(e),
                };
                let Some(head) = head else {
                    return Err(RegistryError::ManifestUnknown(format!(
                        "{reference} (the upstream has no such tag)"
                    )));
                };
                if let Some(record) = cached.filter(|r| r.digest == head.digest) {
                    proxy.store.set_tag_checked(repo, tag, now).await?;
                    return Ok(fresh(record));
                }
                let record = match self.meta.get_manifest(repo, &head.digest).await? {
                    Some(known) => {
                        self.meta
                            .put_manifest(repo, &known, std::slice::from_ref(tag), &[])
                            .await?;
                        known
                    }
                    None => {
                        let fetched = proxy
                            .upstream
                            .get_manifest(&upstream, &upstream_repo, &head.digest.to_string(), &ask)
                            .await
                            .map_err(|e| never_cached(e, repo, reference))?
                            .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))?;
                        self.cache_manifest(repo, fetched, std::slice::from_ref(tag))
                            .await?
                    }
                };
                proxy.store.set_tag_checked(repo, tag, now).await?;
                Ok(fresh(record))
            }
        }
    }

    /// Stores a manifest read from the upstream (its blobs and children come on demand),
    /// with its `manifest.pushed` event, so scanning and webhooks see cached content as
    /// they see pushed content.
    /// `fetched.digest` is the one the upstream adapter verified the bytes against.
    async fn cache_manifest(
        &self,
        repo: &RepoName,
        fetched: UpstreamManifest,
        tags: &[Tag],
    ) -> Result<ManifestRecord> {
        let parsed = manifest::parse_manifest(Some(&fetched.media_type), &fetched.content)?;
        let content = String::from_utf8(fetched.content)
            .map_err(|_| RegistryError::Upstream("the upstream manifest is not UTF-8".into()))?;
        let record = ManifestRecord {
            digest: fetched.digest,
            media_type: parsed.media_type,
            content,
            subject: parsed.subject,
            artifact_type: parsed.artifact_type,
            annotations: parsed.annotations,
        };
        self.store_manifest(repo, &record, tags).await?;
        Ok(record)
    }

    /// HEAD of a blob of `repo`: its link's size, or for a proxy project the stored
    /// blob's (linked) or, uncached, the upstream's answer to a HEAD (nothing fetched).
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.meta.blob_link(repo, digest).await? {
            return Ok(size);
        }
        if let Some(settings) = self.proxy_settings(repo).await? {
            if let Some(size) = self.link_stored(repo, digest).await? {
                return Ok(size);
            }
            let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
            let upstream = proxy.upstream_of(&settings)?;
            return proxy
                .upstream
                .head_blob(&upstream, &settings.upstream_repository(repo), digest)
                .await
                .map_err(|e| never_cached(e, repo, &Reference::Digest(digest.clone())))?
                .ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()));
        }
        Err(RegistryError::BlobUnknown(digest.to_string()))
    }

    /// GET of a blob: one metadata read (the link), then the store's answer; for a proxy
    /// project, an uncached blob comes from the upstream.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead> {
        if let Some(size) = self.meta.blob_link(repo, digest).await? {
            return self.serve_blob(digest, size, range).await;
        }
        match self.proxy_settings(repo).await? {
            Some(settings) => self.proxy_blob(repo, digest, range, &settings).await,
            None => Err(RegistryError::BlobUnknown(digest.to_string())),
        }
    }

    /// A blob not linked in `repo` (a proxy project): linked if the store holds it,
    /// otherwise from the upstream as the fetch mode says.
    async fn proxy_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeRequest>,
        settings: &ProxySettings,
    ) -> Result<BlobRead> {
        let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
        if let Some(size) = self.link_stored(repo, digest).await? {
            return self.serve_blob(digest, size, range).await;
        }
        let size = match proxy.mode {
            BlobFetchMode::RedirectAndFill => {
                let upstream = proxy.upstream_of(settings)?;
                let location = proxy
                    .upstream
                    .blob_location(&upstream, &settings.upstream_repository(repo), digest)
                    .await
                    .map_err(|e| never_cached(e, repo, &Reference::Digest(digest.clone())))?;
                if let Some(url) = location {
                    proxy
                        .enqueue_fill(
                            FillBlobJob {
                                repository: repo.clone(),
                                digest: digest.clone(),
                            }
                            .to_job(),
                        )
                        .await;
                    return Ok(BlobRead {
                        content: BlobContent::Redirect { url },
                        size: 0,
                        range: None,
                    });
                }
                self.fetch_shared(repo, digest, settings).await?
            }
            BlobFetchMode::StreamAndStore if range.is_some() => {
                self.fetch_shared(repo, digest, settings).await?
            }
            BlobFetchMode::StreamAndStore => {
                return self.stream_and_store(repo, digest, settings).await;
            }
        };
        self.serve_blob(digest, size, range).await
    }

    /// Links `digest` in `repo` if the blob store holds it already (another repository
    /// cached it); its size, or `None` when it is not stored.
    async fn link_stored(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let Some(size) = self.blobs.stat(digest).await? else {
            return Ok(None);
        };
        self.meta.link_blob(repo, digest, size, &[]).await?;
        Ok(Some(size))
    }

    /// Makes `digest` cached and linked in `repo` (a proxy project), fetching it from
    /// the upstream unless it is stored already; concurrent callers share one fetch.
    /// Returns its size.
    pub async fn ensure_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.meta.blob_link(repo, digest).await? {
            return Ok(size);
        }
        let Some(settings) = self.proxy_settings(repo).await? else {
            return Err(RegistryError::BlobUnknown(digest.to_string()));
        };
        self.fetch_shared(repo, digest, &settings).await
    }

    /// Stores and links `digest` in `repo` by one fetch per project and digest in this
    /// process: the leader looks in the blob store, then fetches; the others wait for
    /// what it lands (and look again).
    async fn fetch_shared(
        &self,
        repo: &RepoName,
        digest: &Digest,
        settings: &ProxySettings,
    ) -> Result<u64> {
        let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
        loop {
            match proxy.flights.join(repo.project(), digest) {
                Ok(mut rx) => {
                    let landed = rx.wait_for(Option::is_some).await.map(|r| r.clone());
                    match landed {
                        Ok(Some(Err(e))) => return Err(RegistryError::Upstream(e)),
                        // Landed (or the leader vanished): look again.
                        _ => continue,
                    }
                }
                Err(tx) => {
                    // A fetch may have landed before this lead.
                    let result = match self.link_stored(repo, digest).await {
                        Ok(Some(size)) => Ok(size),
                        Ok(None) => self.fetch_into_cache(repo, digest, settings).await,
                        Err(e) => Err(e),
                    };
                    proxy.flights.land(
                        repo.project(),
                        digest,
                        &tx,
                        result.as_ref().map(|s| *s).map_err(|e| e.to_string()),
                    );
                    return result;
                }
            }
        }
    }

    /// Fetches `digest` from the upstream into the blob store and links it in `repo`.
    async fn fetch_into_cache(
        &self,
        repo: &RepoName,
        digest: &Digest,
        settings: &ProxySettings,
    ) -> Result<u64> {
        let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
        let upstream = proxy.upstream_of(settings)?;
        let blob = proxy
            .upstream
            .get_blob(&upstream, &settings.upstream_repository(repo), digest)
            .await
            .map_err(|e| never_cached(e, repo, &Reference::Digest(digest.clone())))?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()))?;
        self.check_cache_room(repo, settings, blob.length).await?;
        let size = self.store_blob_stream(repo, digest, blob.body).await?;
        proxy.store.add_cached_bytes(repo.project(), size).await?;
        Ok(size)
    }

    async fn check_cache_room(
        &self,
        repo: &RepoName,
        settings: &ProxySettings,
        length: u64,
    ) -> Result<()> {
        let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
        if let Some(cap) = settings.max_cache_bytes {
            let used = proxy.store.cached_bytes(repo.project()).await?;
            if used.saturating_add(length) > cap {
                return Err(RegistryError::Denied(format!(
                    "proxy project {} has cached {used} of its {cap} bytes: a blob of {length} bytes does not fit",
                    repo.project()
                )));
            }
        }
        Ok(())
    }

    /// Stores `body` as blob `digest` (verified) and links it in `repo`, with constant
    /// memory and no request-size limit. Returns its size.
    pub(crate) async fn store_blob_stream(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        self.blob_sink().store(repo, digest, body).await
    }

    fn blob_sink(&self) -> BlobSink {
        BlobSink {
            blobs: self.blobs.clone(),
            meta: self.meta.clone(),
        }
    }

    /// The leader's fetch of an uncached blob in stream mode: the client gets the bytes
    /// as they arrive while they are stored; other clients asking meanwhile wait for the
    /// stored copy.
    async fn stream_and_store(
        &self,
        repo: &RepoName,
        digest: &Digest,
        settings: &ProxySettings,
    ) -> Result<BlobRead> {
        let proxy = self.proxy.as_ref().expect("proxy settings imply a proxy");
        let project = repo.project();
        let tx = match proxy.flights.join(project, digest) {
            Ok(_) => {
                let size = self.fetch_shared(repo, digest, settings).await?;
                return self.serve_blob(digest, size, None).await;
            }
            Err(tx) => tx,
        };
        // A fetch may have landed between the caller's look and the lead.
        match self.link_stored(repo, digest).await {
            Ok(None) => {}
            stored => {
                let landed = stored
                    .as_ref()
                    .map(|s| s.unwrap_or(0))
                    .map_err(|e| e.to_string());
                proxy.flights.land(project, digest, &tx, landed);
                let size = stored?.expect("matched Some");
                return self.serve_blob(digest, size, None).await;
            }
        }
        let fail = |e: RegistryError| {
            proxy.flights.land(project, digest, &tx, Err(e.to_string()));
            e
        };
        let upstream = proxy.upstream_of(settings).map_err(fail)?;
        let blob = proxy
            .upstream
            .get_blob(&upstream, &settings.upstream_repository(repo), digest)
            .await
            .map_err(|e| fail(never_cached(e, repo, &Reference::Digest(digest.clone()))))?
            .ok_or_else(|| fail(RegistryError::BlobUnknown(digest.to_string())))?;
        let length = blob.length;
        let store_it = self.check_cache_room(repo, settings, length).await.is_ok();
        let (client_tx, client_rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(8);
        let (store_tx, store_rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(8);
        let mut upstream_body = blob.body;
        tokio::spawn(async move {
            let mut client = Some(client_tx);
            let mut store = store_it.then_some(store_tx);
            while let Some(chunk) = upstream_body.next().await {
                let failed = chunk.is_err();
                let copy = match &chunk {
                    Ok(bytes) => Ok(bytes.clone()),
                    Err(e) => Err(RegistryError::Upstream(e.to_string())),
                };
                if let Some(s) = &store
                    && s.send(copy).await.is_err()
                {
                    store = None;
                }
                if let Some(c) = &client
                    && c.send(chunk).await.is_err()
                {
                    // The client went away: the copy still lands in the cache.
                    client = None;
                }
                if failed || (client.is_none() && store.is_none()) {
                    break;
                }
            }
        });
        let this_repo = repo.clone();
        let this_digest = digest.clone();
        // The store side runs on its own, so the copy lands even if the client leaves.
        let sink = self.blob_sink();
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let result = if store_it {
                let stored = sink
                    .store(
                        &this_repo,
                        &this_digest,
                        Box::pin(tokio_stream_from(store_rx)),
                    )
                    .await;
                if let Ok(size) = &stored {
                    let _ = proxy
                        .store
                        .add_cached_bytes(this_repo.project(), *size)
                        .await;
                }
                stored.map_err(|e| e.to_string())
            } else {
                Err("not cached (the project's cache is full)".to_owned())
            };
            if let Err(e) = &result {
                tracing::warn!(repository = %this_repo, digest = %this_digest, error = %e, "proxied blob not cached");
            }
            proxy
                .flights
                .land(this_repo.project(), &this_digest, &tx, result);
        });
        Ok(BlobRead {
            content: BlobContent::Stream {
                body: Box::pin(tokio_stream_from(client_rx)),
                length,
            },
            size: length,
            range: None,
        })
    }
}

/// Writes verified blobs into the blob store and links them (owned, so a spawned task
/// can finish a copy the request that started it no longer waits for).
struct BlobSink {
    blobs: Arc<dyn crate::ports::BlobStore>,
    meta: Arc<dyn crate::ports::MetadataStore>,
}

impl BlobSink {
    async fn store(&self, repo: &RepoName, digest: &Digest, body: ByteStream) -> Result<u64> {
        let upload_id = crate::registry::new_upload_id();
        let store_state = self.blobs.begin_upload(&upload_id).await?;
        let mut cursor = crate::ports::UploadCursor {
            upload_id,
            offset: 0,
            store_state,
        };
        let (hashed, tally) =
            crate::upload::hashing_stream(body, DigestHasher::new(digest.algorithm()), None);
        let written = self.blobs.write_upload(&cursor, hashed).await;
        let tally = crate::upload::into_tally(tally);
        let store_state = match written {
            Ok(s) => s,
            Err(e) => {
                let _ = self.blobs.abort_upload(&cursor).await;
                return Err(e);
            }
        };
        cursor.offset = tally.length;
        cursor.store_state = store_state;
        let computed = tally.hasher.finish();
        if &computed != digest {
            let _ = self.blobs.abort_upload(&cursor).await;
            return Err(RegistryError::Upstream(format!(
                "the upstream sent content with digest {computed} for {digest}"
            )));
        }
        self.blobs.commit_upload(&cursor, digest).await?;
        self.meta.link_blob(repo, digest, tally.length, &[]).await?;
        Ok(tally.length)
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes>>,
) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// An upstream failure for content never cached: a clear error naming both.
fn never_cached(e: RegistryError, repo: &RepoName, reference: &Reference) -> RegistryError {
    match e {
        RegistryError::Upstream(msg) => RegistryError::Upstream(format!(
            "{repo}:{reference} is not cached and the upstream cannot be read: {msg}"
        )),
        RegistryError::TooManyRequests {
            message,
            retry_after_secs,
        } => RegistryError::TooManyRequests {
            message: format!(
                "{repo}:{reference} is not cached and the upstream is rate-limiting: {message}"
            ),
            retry_after_secs,
        },
        other => other,
    }
}

/// Copy one blob of a proxy repository into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FillBlobJob {
    pub repository: RepoName,
    pub digest: Digest,
}

impl FillBlobJob {
    pub fn to_job(&self) -> Job {
        Job {
            kind: FILL_BLOB_JOB.into(),
            payload: serde_json::to_value(self).expect("serialisable"),
        }
    }
}

/// Copy one image (for an index: the manifest of one platform) with all its blobs into
/// the cache: the prefetch of air-gapped preparation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FillImageJob {
    pub repository: RepoName,
    pub reference: String,
    /// `os/architecture[/variant]`; default `linux/amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl FillImageJob {
    pub fn to_job(&self) -> Job {
        Job {
            kind: FILL_IMAGE_JOB.into(),
            payload: serde_json::to_value(self).expect("serialisable"),
        }
    }
}

/// The proxy-fill queue's handler: `proxy.fill-blob` and `proxy.fill-image` jobs,
/// idempotent (what is cached already is not fetched again).
pub struct ProxyFiller {
    registry: Arc<Registry>,
}

impl ProxyFiller {
    pub fn new(registry: Arc<Registry>) -> Self {
        ProxyFiller { registry }
    }

    /// Caches the image `reference` of `repo` with every blob of one platform; returns
    /// the bytes of blobs it holds.
    pub async fn fill_image(
        &self,
        repo: &RepoName,
        reference: &Reference,
        platform: Option<&str>,
    ) -> Result<u64> {
        // No Accept: any manifest or index (the upstream client asks for every type).
        let accept: [String; 0] = [];
        let mut record = self
            .registry
            .fetch_manifest(repo, reference, &accept)
            .await?
            .record;
        if let Some(child) = platform_child(&record, platform.unwrap_or("linux/amd64"))? {
            record = self
                .registry
                .fetch_manifest(repo, &Reference::Digest(child), &accept)
                .await?
                .record;
        }
        let parsed = manifest::parse_manifest(Some(&record.media_type), record.content.as_bytes())?;
        let mut total = 0;
        for blob in &parsed.blobs {
            total += self.registry.ensure_blob(repo, blob).await?;
        }
        Ok(total)
    }
}

/// For an index, the digest of the manifest of `platform` (`os/arch[/variant]`).
fn platform_child(record: &ManifestRecord, platform: &str) -> Result<Option<Digest>> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Option<Vec<Entry>>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: Digest,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Platform {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let index: Index = serde_json::from_str(&record.content)
        .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
    let Some(entries) = index.manifests else {
        return Ok(None);
    };
    let mut want = platform.split('/');
    let (os, arch, variant) = (want.next(), want.next(), want.next());
    entries
        .into_iter()
        .find(|e| {
            e.platform.as_ref().is_some_and(|p| {
                Some(p.os.as_str()) == os
                    && Some(p.architecture.as_str()) == arch
                    && (variant.is_none() || p.variant.as_deref() == variant)
            })
        })
        .map(|e| Some(e.digest))
        .ok_or_else(|| {
            RegistryError::ManifestUnknown(format!("{} has no {platform} image", record.digest))
        })
}

#[async_trait]
impl JobHandler for ProxyFiller {
    async fn handle(&self, job: &Job, attempt: Attempt) -> JobOutcome {
        let discard = |why: String| {
            tracing::warn!(kind = %job.kind, reason = %why, "proxy-fill job dropped");
            JobOutcome::Done
        };
        let result = match job.kind.as_str() {
            FILL_BLOB_JOB => match serde_json::from_value::<FillBlobJob>(job.payload.clone()) {
                Ok(fill) => self
                    .registry
                    .ensure_blob(&fill.repository, &fill.digest)
                    .await
                    .map(|size| json!({"digest": fill.digest, "size": size})),
                Err(e) => return discard(format!("bad {FILL_BLOB_JOB} job: {e}")),
            },
            FILL_IMAGE_JOB => match serde_json::from_value::<FillImageJob>(job.payload.clone()) {
                Ok(fill) => match fill.reference.parse::<Reference>() {
                    Ok(reference) => self
                        .fill_image(&fill.repository, &reference, fill.platform.as_deref())
                        .await
                        .map(|bytes| json!({"bytes": bytes})),
                    Err(e) => return discard(format!("bad reference: {e}")),
                },
                Err(e) => return discard(format!("bad {FILL_IMAGE_JOB} job: {e}")),
            },
            other => return discard(format!("not a proxy-fill job: {other}")),
        };
        match result {
            Ok(done) => {
                tracing::info!(kind = %job.kind, result = %done, "proxy fill done");
                JobOutcome::Done
            }
            // Gone upstream: retrying cannot help.
            Err(e @ (RegistryError::ManifestUnknown(_) | RegistryError::BlobUnknown(_))) => {
                discard(e.to_string())
            }
            Err(e) => {
                if attempt.last {
                    tracing::warn!(kind = %job.kind, error = %e, "proxy fill failed on its last try");
                }
                JobOutcome::Retry(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestAlgorithm;

    fn digest(n: u8) -> Digest {
        Digest::of(DigestAlgorithm::Sha256, &[n])
    }

    #[tokio::test]
    async fn one_leader_per_digest_and_followers_see_what_it_lands() {
        let flights = Flights::default();
        let tx = flights
            .join("hub", &digest(1))
            .expect_err("the first caller leads");
        let mut follower = flights.join("hub", &digest(1)).expect("the second follows");
        let other = flights.join("hub", &digest(2));
        assert!(other.is_err(), "another digest has its own leader");
        let other_project = flights.join("quay", &digest(1));
        assert!(
            other_project.is_err(),
            "another project (its own upstream) has its own leader"
        );
        flights.land("hub", &digest(1), &tx, Ok(42));
        let landed = follower.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(landed, Some(Ok(42)));
        assert!(
            flights.join("hub", &digest(1)).is_err(),
            "landed: the next caller leads a new flight"
        );
    }

    #[tokio::test]
    async fn a_leader_that_went_away_hands_the_lead_to_the_next_caller() {
        let flights = Flights::default();
        let tx = flights.join("hub", &digest(3)).expect_err("leads");
        let mut follower = flights.join("hub", &digest(3)).expect("follows");
        drop(tx); // its request was cancelled before it landed
        assert!(
            follower.wait_for(Option::is_some).await.is_err(),
            "the follower wakes"
        );
        let _next = flights
            .join("hub", &digest(3))
            .expect_err("and the next caller leads");
    }

    #[test]
    fn docker_hub_names_get_library_and_other_upstreams_keep_theirs() {
        let settings = |url: &str| ProxySettings {
            upstream_url: url.into(),
            username: None,
            sealed_password: None,
            freshness_secs: 0,
            max_cache_bytes: None,
        };
        let repo = |r: &str| r.parse::<RepoName>().unwrap();
        let hub = settings("https://registry-1.docker.io");
        assert_eq!(
            hub.upstream_repository(&repo("hub/ubuntu")),
            "library/ubuntu"
        );
        assert_eq!(
            hub.upstream_repository(&repo("hub/library/ubuntu")),
            "library/ubuntu"
        );
        assert_eq!(
            hub.upstream_repository(&repo("hub/bitnami/redis")),
            "bitnami/redis"
        );
        let other = settings("http://127.0.0.1:5000");
        assert_eq!(other.upstream_repository(&repo("mirror/ubuntu")), "ubuntu");
    }

    #[test]
    fn sealed_credentials_open_only_with_the_same_key() {
        let sealer = CredentialBox::from_secret(b"key one");
        let sealed = sealer.seal("hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            sealer.seal("hunter2").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open(&sealed).unwrap(), "hunter2");
        assert!(
            CredentialBox::from_secret(b"key two")
                .open(&sealed)
                .is_err()
        );
        assert!(sealer.open("not base64!").is_err());
    }
}
