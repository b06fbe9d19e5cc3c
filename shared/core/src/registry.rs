//! The registry's use-cases: push, pull, upload, mount, delete, tag list, referrers, catalog.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::StreamExt;
use rand::RngCore;

use crate::digest::{Digest, DigestAlgorithm, DigestHasher};
use crate::error::{RegistryError, Result};
use crate::events::{Event, EventKind, EventRelay};
use crate::manifest::{self, ReferrerDescriptor};
use crate::names::{Reference, RepoName, Tag};
use crate::ports::{
    BlobContent, BlobStore, ByteRange, ByteStream, Clock, ManifestRecord, MetadataStore, Page,
    PageRequest,
};
use crate::upload::{UploadSession, hashing_stream, into_tally};
use crate::upload_token;

/// Tunables of the use-cases; the composition root fills them from flags or environment.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How long an idle upload session lives.
    pub upload_ttl_secs: u64,
    /// Smallest chunk the registry asks clients for (`OCI-Chunk-Min-Length`).
    pub chunk_min_length: u64,
    /// Largest body one request may carry (the Lambda payload limit); `None` for no limit.
    pub max_request_body: Option<u64>,
    /// Largest page of tags or repositories one request returns.
    pub max_page_size: usize,
    /// Where upload `Location`s point (the upload endpoint's public base URL, no
    /// trailing slash); `None` keeps them relative to this server.
    pub upload_endpoint_url: Option<String>,
    /// Key that signs upload-session tokens; when set, every upload `Location` carries one.
    pub upload_token_secret: Option<Vec<u8>>,
    /// Refuse upload requests without a valid token (the upload endpoint's mode).
    pub require_upload_token: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            upload_ttl_secs: 24 * 3600,
            chunk_min_length: 0,
            max_request_body: None,
            max_page_size: 10_000,
            upload_endpoint_url: None,
            upload_token_secret: None,
            require_upload_token: false,
        }
    }
}

/// A blob read answer: the content and, for a range request, the range served.
pub struct BlobRead {
    pub content: BlobContent,
    pub size: u64,
    pub range: Option<ByteRange>,
}

/// A `Range: bytes=…` request before it is checked against the blob size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=start-` or `bytes=start-end`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// How `POST /blobs/uploads/` ended.
pub enum UploadStart {
    /// The blob is in the repository (monolithic upload or mount): 201.
    Created(Digest),
    /// An upload session to send data to: 202.
    Session(UploadSession),
}

/// Parameters of `POST /blobs/uploads/`.
#[derive(Default)]
pub struct StartUpload {
    /// `?digest=`: the body is the whole blob.
    pub digest: Option<Digest>,
    /// `?digest-algorithm=`: the hash the client will name at the end.
    pub algorithm: Option<DigestAlgorithm>,
    /// `?mount=`.
    pub mount: Option<Digest>,
    /// `?from=`, already parsed; `None` asks for an automatic mount.
    pub from: Option<RepoName>,
    pub body: Option<ByteStream>,
}

/// A chunk sent with PATCH or with the final PUT.
pub struct Chunk {
    /// `Content-Range` start and inclusive end, when sent.
    pub range: Option<(u64, u64)>,
    pub content_length: Option<u64>,
    pub body: ByteStream,
}

/// A stored manifest as the HTTP layer answers it.
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// The tags now pointing at the manifest.
    pub tags: Vec<Tag>,
}

/// Most `?tag=` parameters one manifest push may carry.
pub const MAX_TAGS_PER_PUSH: usize = 95;

/// The use-cases over the ports.
pub struct Registry {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: RegistryConfig,
    /// Proxy projects' upstreams; `None`: no project is a proxy.
    pub(crate) proxy: Option<Arc<crate::proxy::ProxyCache>>,
    /// Publishes the events the use-cases record; `None`: no events are recorded.
    events: Option<Arc<EventRelay>>,
    /// Projects' vulnerability policies on pulls; `None`: every pull passes.
    pull_gate: Option<Arc<crate::scan::PullGate>>,
    /// Serialises writes to one upload within this process (striped by upload id).
    upload_locks: Vec<tokio::sync::Mutex<()>>,
}

const UPLOAD_LOCK_STRIPES: usize = 64;

impl Registry {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        config: RegistryConfig,
    ) -> Self {
        Registry {
            blobs,
            meta,
            clock,
            config,
            events: None,
            pull_gate: None,
            proxy: None,
            upload_locks: (0..UPLOAD_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Records events with each change and publishes them through `relay`.
    pub fn with_events(mut self, relay: Arc<EventRelay>) -> Self {
        self.events = Some(relay);
        self
    }

    /// Applies projects' vulnerability policies to manifest GETs.
    pub fn with_pull_gate(mut self, gate: Arc<crate::scan::PullGate>) -> Self {
        self.pull_gate = Some(gate);
        self
    }

    /// Serves proxy projects through `proxy`.
    pub fn with_proxy(mut self, proxy: Arc<crate::proxy::ProxyCache>) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// The proxy machinery, if proxy projects are served.
    pub fn proxy(&self) -> Option<&Arc<crate::proxy::ProxyCache>> {
        self.proxy.as_ref()
    }

    /// The process's cache of projects, which the pull gate and the proxy read through
    /// (one cache: the composition root gives both the same); whoever changes a project
    /// drops it there ([`crate::admin::Admin::with_project_cache`]).
    pub fn project_cache(&self) -> Option<&Arc<crate::identity::ProjectCache>> {
        self.proxy
            .as_ref()
            .map(|p| &p.projects)
            .or_else(|| self.pull_gate.as_ref().map(|g| &g.projects))
    }

    /// The relay the registry publishes through, if events are on.
    pub fn events(&self) -> Option<&Arc<EventRelay>> {
        self.events.as_ref()
    }

    /// `event` when events are on (the events a change records).
    pub(crate) fn event(&self, event: impl FnOnce(u64) -> Event) -> Vec<Event> {
        match self.events {
            Some(_) => vec![event(self.clock.now_millis())],
            None => Vec::new(),
        }
    }

    /// After a commit: publish what it recorded (the fast path of the outbox).
    pub(crate) async fn published(&self, events: &[Event]) {
        if let Some(relay) = &self.events
            && !events.is_empty()
        {
            relay.publish_committed(events).await;
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The registry's time source.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn upload_lock(&self, upload_id: &str) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        upload_id.hash(&mut h);
        &self.upload_locks[(h.finish() as usize) % UPLOAD_LOCK_STRIPES]
    }

    // ---- blobs ----

    /// The store's answer for a blob of `size` bytes.
    pub(crate) async fn serve_blob(
        &self,
        digest: &Digest,
        size: u64,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead> {
        let range = range.map(|r| resolve_range(r, size)).transpose()?;
        let content = self.blobs.read(digest, range).await?;
        Ok(BlobRead {
            content,
            size,
            range,
        })
    }

    /// Removes a blob from a repository (the bytes stay until garbage collection).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.writable(repo).await?;
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.to_string()))
        }
    }

    // ---- uploads ----

    pub async fn start_upload(&self, repo: &RepoName, req: StartUpload) -> Result<UploadStart> {
        self.writable(repo).await?;
        if let Some(mounted) = &req.mount
            && self.try_mount(repo, mounted, req.from.as_ref()).await?
        {
            return Ok(UploadStart::Created(mounted.clone()));
        }
        let algorithm = req
            .digest
            .as_ref()
            .map(Digest::algorithm)
            .or(req.algorithm)
            .unwrap_or(DigestAlgorithm::Sha256);
        let now = self.clock.now_millis();
        let id = new_upload_id();
        let store_state = self.blobs.begin_upload(&id).await?;
        let session = UploadSession::new(
            id,
            repo.clone(),
            algorithm,
            store_state,
            now,
            self.config.upload_ttl_secs * 1000,
        );
        self.meta.create_upload(&session).await?;
        match (req.digest, req.body) {
            (Some(digest), body) => {
                let body = body.unwrap_or_else(|| Box::pin(futures_util::stream::empty()));
                let chunk = Chunk {
                    range: None,
                    content_length: None,
                    body,
                };
                let digest = self.finish(repo, &session.id, &digest, Some(chunk)).await?;
                Ok(UploadStart::Created(digest))
            }
            (None, _) => Ok(UploadStart::Session(session)),
        }
    }

    async fn try_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<bool> {
        let sources = match from {
            Some(from) => vec![from.clone()],
            None => self.meta.repositories_linking(digest, 1).await?,
        };
        for source in sources {
            if let Some(size) = self.meta.blob_link(&source, digest).await? {
                self.meta.link_blob(repo, digest, size, &[]).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Where the client sends the upload's next request: relative to this server, or to
    /// the upload endpoint, with a signed token when a secret is configured.
    pub fn upload_location(&self, repo: &RepoName, session: &UploadSession) -> String {
        let base = self.config.upload_endpoint_url.as_deref().unwrap_or("");
        let path = format!("{base}/v2/{repo}/blobs/uploads/{}", session.id);
        match &self.config.upload_token_secret {
            Some(secret) => {
                let token = upload_token::sign(secret, repo, &session.id, session.expires_at_ms);
                format!("{path}?_state={token}")
            }
            None => path,
        }
    }

    fn authorize_upload(
        &self,
        repo: &RepoName,
        upload_id: &str,
        token: Option<&str>,
    ) -> Result<()> {
        match (
            &self.config.upload_token_secret,
            self.config.require_upload_token,
        ) {
            (Some(secret), true) => {
                upload_token::verify(secret, repo, upload_id, token, self.clock.now_millis())
            }
            (None, true) => Err(RegistryError::BlobUploadUnknown),
            (_, false) => Ok(()),
        }
    }

    /// GET of an upload: its live session (an expired one is purged and unknown).
    pub async fn upload_status(
        &self,
        repo: &RepoName,
        upload_id: &str,
        token: Option<&str>,
    ) -> Result<UploadSession> {
        self.authorize_upload(repo, upload_id, token)?;
        self.live_session(repo, upload_id).await
    }

    async fn live_session(&self, repo: &RepoName, upload_id: &str) -> Result<UploadSession> {
        let session = self
            .meta
            .get_upload(upload_id)
            .await?
            .filter(|s| &s.repo == repo)
            .ok_or(RegistryError::BlobUploadUnknown)?;
        if session.expires_at_ms <= self.clock.now_millis() {
            self.discard_upload(&session).await?;
            return Err(RegistryError::BlobUploadUnknown);
        }
        Ok(session)
    }

    /// PATCH: appends one chunk, in order, and returns the updated session.
    pub async fn write_chunk(
        &self,
        repo: &RepoName,
        upload_id: &str,
        token: Option<&str>,
        chunk: Chunk,
    ) -> Result<UploadSession> {
        self.authorize_upload(repo, upload_id, token)?;
        let _guard = self.upload_lock(upload_id).lock().await;
        let session = self.live_session(repo, upload_id).await?;
        self.append(session, chunk).await
    }

    async fn append(&self, mut session: UploadSession, chunk: Chunk) -> Result<UploadSession> {
        let expected_len = match chunk.range {
            Some((start, end)) => {
                if start != session.offset || end < start {
                    return Err(RegistryError::UploadOutOfOrder {
                        offset: session.offset,
                    });
                }
                let len = end - start + 1;
                if let Some(l) = chunk.content_length.filter(|&l| l != len) {
                    return Err(RegistryError::SizeInvalid(format!(
                        "Content-Length {l} does not match Content-Range {start}-{end}"
                    )));
                }
                Some(len)
            }
            None => chunk.content_length,
        };
        if let (Some(limit), Some(len)) = (self.config.max_request_body, expected_len)
            && len > limit
        {
            return Err(RegistryError::PayloadTooLarge(format!(
                "chunk of {len} bytes is over the limit of {limit} bytes per request; \
                 send smaller chunks (PATCH with Content-Range) or use the upload endpoint"
            )));
        }
        let (body, tally) =
            hashing_stream(chunk.body, session.hasher()?, self.config.max_request_body);
        let store_state = self.blobs.write_upload(&session.cursor(), body).await?;
        let tally = into_tally(tally);
        if expected_len.is_some_and(|l| l != tally.length) {
            // The stored tail past the old offset is discarded by the next write.
            return Err(RegistryError::SizeInvalid(format!(
                "received {} bytes, expected {}",
                tally.length,
                expected_len.unwrap_or_default()
            )));
        }
        let old_offset = session.offset;
        session.offset += tally.length;
        session.set_hasher(&tally.hasher);
        session.store_state = store_state;
        session.expires_at_ms = self.clock.now_millis() + self.config.upload_ttl_secs * 1000;
        self.meta.update_upload(&session, old_offset).await?;
        Ok(session)
    }

    /// PUT `?digest=`: appends the optional last chunk, verifies the digest, and makes the
    /// blob visible in `repo`. A mismatch discards the upload: nothing is left behind.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        upload_id: &str,
        token: Option<&str>,
        digest: &Digest,
        last_chunk: Option<Chunk>,
    ) -> Result<Digest> {
        self.authorize_upload(repo, upload_id, token)?;
        self.finish(repo, upload_id, digest, last_chunk).await
    }

    async fn finish(
        &self,
        repo: &RepoName,
        upload_id: &str,
        digest: &Digest,
        last_chunk: Option<Chunk>,
    ) -> Result<Digest> {
        let _guard = self.upload_lock(upload_id).lock().await;
        let mut session = self.live_session(repo, upload_id).await?;
        if let Some(chunk) = last_chunk {
            session = match self.append(session.clone(), chunk).await {
                Ok(s) => s,
                Err(e @ RegistryError::UploadOutOfOrder { .. }) => return Err(e),
                Err(e) => {
                    self.discard_upload(&session).await?;
                    return Err(e);
                }
            };
        }
        let computed = if session.hash_algorithm == digest.algorithm() {
            session.hasher()?.finish()
        } else {
            self.rehash_upload(&session, digest.algorithm()).await?
        };
        if &computed != digest {
            self.discard_upload(&session).await?;
            return Err(RegistryError::DigestInvalid(format!(
                "content has digest {computed}, not {digest}"
            )));
        }
        self.blobs.commit_upload(&session.cursor(), digest).await?;
        let events = self.event(|now| {
            Event::new(EventKind::BlobUploaded, repo, now)
                .with_digest(digest)
                .with_size(session.offset)
        });
        self.meta
            .link_blob(repo, digest, session.offset, &events)
            .await?;
        self.published(&events).await;
        self.meta.delete_upload(&session.id).await?;
        Ok(computed)
    }

    async fn rehash_upload(&self, session: &UploadSession, alg: DigestAlgorithm) -> Result<Digest> {
        let mut stream = self.blobs.read_upload(&session.cursor()).await?;
        let mut hasher = DigestHasher::new(alg);
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finish())
    }

    /// DELETE of an upload session.
    pub async fn cancel_upload(
        &self,
        repo: &RepoName,
        upload_id: &str,
        token: Option<&str>,
    ) -> Result<()> {
        self.authorize_upload(repo, upload_id, token)?;
        let _guard = self.upload_lock(upload_id).lock().await;
        let session = self.live_session(repo, upload_id).await?;
        self.discard_upload(&session).await
    }

    async fn discard_upload(&self, session: &UploadSession) -> Result<()> {
        self.blobs.abort_upload(&session.cursor()).await?;
        self.meta.delete_upload(&session.id).await?;
        Ok(())
    }

    /// Discards sessions past their expiry; returns how many.
    pub async fn purge_expired_uploads(&self) -> Result<usize> {
        let expired = self
            .meta
            .expired_uploads(self.clock.now_millis(), 1000)
            .await?;
        for session in &expired {
            self.discard_upload(session).await?;
        }
        Ok(expired.len())
    }

    // ---- manifests ----

    /// PUT of a manifest: verify digest and references, then store it and point its tags
    /// at it atomically. The tags are the reference when it is a tag, plus `extra_tags`
    /// (the `?tag=` parameters of a push by digest).
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<PushedManifest> {
        self.writable(repo).await?;
        if extra_tags.len() > MAX_TAGS_PER_PUSH {
            return Err(RegistryError::TagInvalid(format!(
                "at most {MAX_TAGS_PER_PUSH} tags per manifest push"
            )));
        }
        if body.len() > manifest::MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                limit: manifest::MAX_MANIFEST_SIZE,
            });
        }
        let digest = match reference {
            Reference::Digest(d) => {
                let computed = Digest::of(d.algorithm(), &body);
                if &computed != d {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest has digest {computed}, not {d}"
                    )));
                }
                computed
            }
            Reference::Tag(_) => Digest::of(DigestAlgorithm::Sha256, &body),
        };
        let parsed = manifest::parse_manifest(content_type, &body)?;
        for blob in &parsed.blobs {
            if self.meta.blob_link(repo, blob).await?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(blob.to_string()));
            }
        }
        for child in &parsed.manifests {
            if self.meta.get_manifest(repo, child).await?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(child.to_string()));
            }
        }
        let content = String::from_utf8(body)
            .map_err(|_| RegistryError::ManifestInvalid("manifest is not UTF-8".into()))?;
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: parsed.media_type,
            content,
            subject: parsed.subject.clone(),
            artifact_type: parsed.artifact_type,
            annotations: parsed.annotations,
        };
        let mut tags = extra_tags.to_vec();
        if let Reference::Tag(t) = reference {
            tags.insert(0, t.clone());
        }
        tags.sort();
        tags.dedup();
        self.store_manifest(repo, &record, &tags).await?;
        Ok(PushedManifest {
            digest,
            subject: parsed.subject,
            tags,
        })
    }

    /// Stores `record` under `tags` with its `manifest.pushed` event (so scanning and
    /// webhooks see it), then hands the event on.
    pub(crate) async fn store_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
    ) -> Result<()> {
        let events = self.event(|now| {
            Event::new(EventKind::ManifestPushed, repo, now)
                .with_digest(&record.digest)
                .with_tags(tags)
                .with_media_type(&record.media_type)
                .with_size(record.size())
        });
        self.meta.put_manifest(repo, record, tags, &events).await?;
        self.published(&events).await;
        Ok(())
    }

    /// GET/HEAD of a manifest by tag or digest, negotiated against `accept` (through
    /// the upstream for a proxy project).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
    ) -> Result<ManifestRecord> {
        Ok(self.fetch_manifest(repo, reference, accept).await?.record)
    }

    /// A stored manifest by tag or digest, negotiated against `accept`.
    pub(crate) async fn cached_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
    ) -> Result<ManifestRecord> {
        let unknown = || RegistryError::ManifestUnknown(reference.to_string());
        let record = match reference {
            Reference::Digest(d) => self.meta.get_manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.get_manifest_by_tag(repo, t).await?,
        }
        .ok_or_else(unknown)?;
        if !manifest::accepts(accept, &record.media_type) {
            return Err(RegistryError::ManifestUnknown(format!(
                "{reference} is a {} manifest, which the Accept header does not admit",
                record.media_type
            )));
        }
        Ok(record)
    }

    /// GET of a manifest: [`Registry::fetch_manifest`], refused (`Denied`) when the
    /// project's vulnerability policy blocks the image, and an `image.pulled` event when
    /// pull events are on.
    pub async fn pull_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
    ) -> Result<crate::proxy::ManifestPull> {
        let pull = self.fetch_manifest(repo, reference, accept).await?;
        let record = &pull.record;
        if let Some(gate) = &self.pull_gate {
            gate.check(repo, record).await?;
        }
        if let Some(relay) = &self.events
            && relay.config().pull_events
        {
            let mut event = Event::new(EventKind::ImagePulled, repo, self.clock.now_millis())
                .with_digest(&record.digest)
                .with_media_type(&record.media_type);
            if let Reference::Tag(t) = reference {
                event = event.with_tags([t]);
            }
            relay.publish_direct(&event).await;
        }
        Ok(pull)
    }

    /// DELETE of a manifest (by digest: the manifest and its tags) or of a tag.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.writable(repo).await?;
        let (deleted, events) = match reference {
            Reference::Digest(d) => {
                let events = self
                    .event(|now| Event::new(EventKind::ManifestDeleted, repo, now).with_digest(d));
                (self.meta.delete_manifest(repo, d, &events).await?, events)
            }
            Reference::Tag(t) => {
                let events =
                    self.event(|now| Event::new(EventKind::TagDeleted, repo, now).with_tags([t]));
                (self.meta.delete_tag(repo, t, &events).await?, events)
            }
        };
        if deleted {
            self.published(&events).await;
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown(reference.to_string()))
        }
    }

    // ---- discovery ----

    fn page_request(&self, n: Option<usize>, last: Option<String>) -> PageRequest {
        PageRequest {
            after: last.filter(|l| !l.is_empty()),
            limit: n
                .unwrap_or(self.config.max_page_size)
                .min(self.config.max_page_size),
        }
    }

    /// Tags of a repository in lexical order, `n` at most, after `last`.
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<String>,
    ) -> Result<Page> {
        if !self.meta.repository_exists(repo).await? {
            return Err(RegistryError::NameUnknown(repo.to_string()));
        }
        let page = self.page_request(n, last);
        if page.limit == 0 {
            return Ok(Page::default());
        }
        self.meta.list_tags(repo, &page).await
    }

    /// Repositories in lexical order, `n` at most, after `last`.
    pub async fn catalog(&self, n: Option<usize>, last: Option<String>) -> Result<Page> {
        let page = self.page_request(n, last);
        if page.limit == 0 {
            return Ok(Page::default());
        }
        self.meta.list_repositories(&page).await
    }

    /// Manifests whose subject is `subject`, filtered by `artifact_type` when given.
    pub async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerDescriptor>> {
        let mut all = self.meta.list_referrers(repo, subject).await?;
        if let Some(wanted) = artifact_type {
            all.retain(|d| d.artifact_type.as_deref() == Some(wanted));
        }
        Ok(all)
    }
}

/// Checks a range request against the blob size (RFC 9110 semantics).
pub fn resolve_range(range: RangeRequest, size: u64) -> Result<ByteRange> {
    let unsatisfiable = || RegistryError::RangeNotSatisfiable { size };
    match range {
        RangeRequest::From { start, end } => {
            if start >= size {
                return Err(unsatisfiable());
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            if end < start {
                return Err(unsatisfiable());
            }
            Ok(ByteRange { start, end })
        }
        RangeRequest::Suffix(n) => {
            if n == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            Ok(ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            })
        }
    }
}

/// A fresh upload id: 32 hex digits (the file store accepts only hex).
pub(crate) fn new_upload_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |start, end| RangeRequest::From { start, end };
        assert_eq!(
            resolve_range(r(0, Some(9)), 100).unwrap(),
            ByteRange { start: 0, end: 9 }
        );
        assert_eq!(
            resolve_range(r(90, None), 100).unwrap(),
            ByteRange { start: 90, end: 99 }
        );
        assert_eq!(
            resolve_range(r(90, Some(500)), 100).unwrap(),
            ByteRange { start: 90, end: 99 }
        );
        assert_eq!(
            resolve_range(RangeRequest::Suffix(10), 100).unwrap(),
            ByteRange { start: 90, end: 99 }
        );
        assert!(resolve_range(r(100, None), 100).is_err());
        assert!(resolve_range(r(5, Some(4)), 100).is_err());
        assert!(resolve_range(RangeRequest::Suffix(0), 100).is_err());
    }
}
