//! `MetadataStore`: manifests, tags, blob links, referrers, repositories and upload
//! sessions, laid out by the single-table key schema of [`crate::keys`].
//!
//! Consistency: every method is atomic. `put_manifest` writes the manifest, its tags and
//! its referrer entry in one transaction; `delete_manifest` removes the manifest, every
//! tag that points at it and its referrer entry in one transaction; concurrent tag moves
//! end with the tag on one of the pushed manifests, never a missing one. Reads after a
//! successful write see it (strongly consistent reads).
//!
//! **Outbox.** The changing methods take the [`Event`]s that describe the change and
//! write them as outbox items in the same transaction, only when the change happens
//! (`delete_manifest` and `delete_tag` of something absent record nothing): an event
//! exists if and only if its change committed. `outbox_events` lists them oldest first
//! (event ids are time-ordered); `remove_outbox_event` deletes one once published
//! (idempotent).
//!
//! Errors: `Storage` for backend failures; `Conflict` when `update_upload`'s expected
//! offset does not match (another chunk won the race).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Result;
use crate::events::Event;
use crate::manifest::ReferrerDescriptor;
use crate::names::{RepoName, Tag};
use crate::upload::UploadSession;

/// A stored manifest: its exact bytes and what the registry derived from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest bytes exactly as pushed (valid UTF-8 JSON).
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ManifestRecord {
    pub fn size(&self) -> u64 {
        self.content.len() as u64
    }

    /// The descriptor the referrers API lists for this manifest.
    pub fn referrer_descriptor(&self) -> ReferrerDescriptor {
        ReferrerDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size(),
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// A page request: at most `limit` names strictly after `after`, in lexical order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: usize,
}

/// A page of names; `more` says whether names remain after the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Links a verified blob into a repository (idempotent) and records the repository,
    /// with `events` in the outbox.
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[Event],
    ) -> Result<()>;
    /// The size of a blob linked in `repo`, or `None`.
    async fn blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    /// Removes a link; `false` if there was none.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Up to `limit` repositories that link `digest` (for automatic cross-repo mounts).
    async fn repositories_linking(&self, digest: &Digest, limit: usize) -> Result<Vec<RepoName>>;

    /// Stores a manifest and points every tag of `tags` at it, with `events` in the
    /// outbox, in one transaction.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
        events: &[Event],
    ) -> Result<()>;
    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>>;
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>>;
    /// The manifest `tag` points at. Adapters whose tag items carry the manifest answer
    /// with one read (a manifest GET by tag costs one metadata read).
    async fn get_manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        match self.resolve_tag(repo, tag).await? {
            Some(digest) => self.get_manifest(repo, &digest).await,
            None => Ok(None),
        }
    }
    /// Removes a manifest, the tags that point at it and its referrer entry, and records
    /// `events` when it existed; `false` (and no events) when it did not.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[Event],
    ) -> Result<bool>;
    /// Removes a tag only, recording `events` when it existed.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[Event]) -> Result<bool>;
    async fn list_tags(&self, repo: &RepoName, page: &PageRequest) -> Result<Page>;
    /// Manifests in `repo` whose subject is `subject`.
    async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ReferrerDescriptor>>;

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;
    async fn list_repositories(&self, page: &PageRequest) -> Result<Page>;

    async fn create_upload(&self, session: &UploadSession) -> Result<()>;
    async fn get_upload(&self, upload_id: &str) -> Result<Option<UploadSession>>;
    /// Replaces a session if its stored offset is still `expected_offset`.
    async fn update_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<()>;
    async fn delete_upload(&self, upload_id: &str) -> Result<bool>;
    /// Up to `limit` sessions whose `expires_at_ms` is before `now_ms`.
    async fn expired_uploads(&self, now_ms: u64, limit: usize) -> Result<Vec<UploadSession>>;

    /// Up to `limit` outbox events, oldest first.
    async fn outbox_events(&self, limit: usize) -> Result<Vec<Event>>;
    /// Deletes a published outbox event; absent is not an error.
    async fn remove_outbox_event(&self, event_id: &str) -> Result<()>;
}
