//! Registry events (push, delete, pull, upload, scan, quota) and their outbox relay.
//!
//! An event is built by a use-case and handed to the [`MetadataStore`] inside the same
//! transaction as the change it describes (the *outbox*: `OUTBOX` / `EVENT#<id>` items),
//! so an event exists if and only if its change committed. The [`EventRelay`] then
//! moves outbox events onto the webhook queue as `event.published` jobs:
//!
//! - right after the commit (the fast path, same request), and
//! - from a sweep of outbox events older than a grace period (the local binary runs it
//!   every few seconds; on AWS the webhook function runs it on a schedule), which
//!   publishes what a process that died after its commit never published.
//!
//! An event id is a UUIDv7 (time-ordered, unique), fixed when the event is built, so a
//! consumer recognises a redelivery (the sweep and the fast path may both publish one
//! event; queues deliver at least once). Pull events are not changes: when enabled they
//! go straight to the queue, with no outbox.

use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Result;
use crate::names::RepoName;
use crate::ports::{Clock, Job, JobQueue, MetadataStore};

/// The job kind that carries one [`Event`] on the webhook queue.
pub const EVENT_PUBLISHED_JOB: &str = "event.published";

/// What happened. The serialised names are stable: webhook policies and consumers
/// match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "manifest.pushed")]
    ManifestPushed,
    #[serde(rename = "manifest.deleted")]
    ManifestDeleted,
    #[serde(rename = "tag.deleted")]
    TagDeleted,
    #[serde(rename = "image.pulled")]
    ImagePulled,
    #[serde(rename = "blob.uploaded")]
    BlobUploaded,
    #[serde(rename = "scan.completed")]
    ScanCompleted,
    #[serde(rename = "scan.failed")]
    ScanFailed,
    #[serde(rename = "quota.exceeded")]
    QuotaExceeded,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::ManifestPushed,
        EventKind::ManifestDeleted,
        EventKind::TagDeleted,
        EventKind::ImagePulled,
        EventKind::BlobUploaded,
        EventKind::ScanCompleted,
        EventKind::ScanFailed,
        EventKind::QuotaExceeded,
    ];

    /// The stable name, e.g. `manifest.pushed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ManifestPushed => "manifest.pushed",
            EventKind::ManifestDeleted => "manifest.deleted",
            EventKind::TagDeleted => "tag.deleted",
            EventKind::ImagePulled => "image.pulled",
            EventKind::BlobUploaded => "blob.uploaded",
            EventKind::ScanCompleted => "scan.completed",
            EventKind::ScanFailed => "scan.failed",
            EventKind::QuotaExceeded => "quota.exceeded",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = crate::RegistryError;
    fn from_str(s: &str) -> Result<Self> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                crate::RegistryError::Unsupported(format!(
                    "unknown event type {s:?}; known: {}",
                    known.join(", ")
                ))
            })
    }
}

/// One event. Small (ids and names, never content), so it travels inside jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// UUIDv7: unique, time-ordered, stable across redeliveries.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub time_ms: u64,
    pub repository: RepoName,
    /// The repository's project (its first path component).
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Tags pushed with a manifest, or the tag deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Who made the change (user or robot name); `None` when authentication is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Kind-specific facts (scan summary, quota figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// A new time-ordered event id (UUIDv7) for time `now_ms`.
pub fn new_event_id(now_ms: u64) -> String {
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    uuid::Builder::from_unix_timestamp_millis(now_ms, &random)
        .into_uuid()
        .to_string()
}

impl Event {
    /// An event of `kind` on `repo` at `now_ms`, by the current [`actor`].
    pub fn new(kind: EventKind, repo: &RepoName, now_ms: u64) -> Self {
        Event {
            id: new_event_id(now_ms),
            kind,
            time_ms: now_ms,
            repository: repo.clone(),
            project: repo.project().to_owned(),
            digest: None,
            tags: Vec::new(),
            media_type: None,
            size: None,
            actor: actor(),
            detail: None,
        }
    }

    pub fn with_digest(mut self, digest: &Digest) -> Self {
        self.digest = Some(digest.clone());
        self
    }

    pub fn with_tags(mut self, tags: impl IntoIterator<Item = impl ToString>) -> Self {
        self.tags = tags.into_iter().map(|t| t.to_string()).collect();
        self
    }

    pub fn with_media_type(mut self, media_type: &str) -> Self {
        self.media_type = Some(media_type.to_owned());
        self
    }

    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The job that carries this event on a queue.
    pub fn to_job(&self) -> Job {
        Job {
            kind: EVENT_PUBLISHED_JOB.into(),
            payload: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

tokio::task_local! {
    static ACTOR: Option<String>;
}

/// Runs `fut` with `actor` as the author of the events it emits (the HTTP layer wraps
/// each authenticated request in it).
pub async fn with_actor<F: std::future::Future>(actor: Option<String>, fut: F) -> F::Output {
    ACTOR.scope(actor, fut).await
}

/// The author set by [`with_actor`] around the current task, if any.
pub fn actor() -> Option<String> {
    ACTOR.try_with(Clone::clone).ok().flatten()
}

/// Which events the registry records, and where they go.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Record `image.pulled` on each manifest GET (off by default: pulls are frequent).
    pub pull_events: bool,
    /// The sweep publishes outbox events at least this old (younger ones are left to the
    /// fast path of the request that recorded them).
    pub sweep_grace_ms: u64,
    /// Fault injection for crash tests: abort the process right after a change that
    /// recorded an event of this kind has committed, before the fast path publishes it.
    pub fault_abort_before_publish: Option<EventKind>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            pull_events: false,
            sweep_grace_ms: 10_000,
            fault_abort_before_publish: None,
        }
    }
}

/// Another queue that wants some events, as its own jobs (the scan queue wants
/// `manifest.pushed` as `scan.image`).
struct Route {
    queue: Arc<dyn JobQueue>,
    kinds: Vec<EventKind>,
    job: fn(&Event) -> Job,
}

/// Moves events from the outbox to the webhook queue (and to the queues routed to).
pub struct EventRelay {
    meta: Arc<dyn MetadataStore>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    config: EventsConfig,
    routes: Vec<Route>,
}

impl EventRelay {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
        config: EventsConfig,
    ) -> Self {
        EventRelay {
            meta,
            queue,
            clock,
            config,
            routes: Vec::new(),
        }
    }

    /// Also sends events of `kinds` to `queue`, as the job `job` makes of each.
    pub fn with_route(
        mut self,
        queue: Arc<dyn JobQueue>,
        kinds: &[EventKind],
        job: fn(&Event) -> Job,
    ) -> Self {
        self.routes.push(Route {
            queue,
            kinds: kinds.to_vec(),
            job,
        });
        self
    }

    /// Enqueues `event` on the webhook queue and every queue routed to.
    async fn send(&self, event: &Event) -> Result<()> {
        self.queue.enqueue(&event.to_job()).await?;
        for route in self.routes.iter().filter(|r| r.kinds.contains(&event.kind)) {
            route.queue.enqueue(&(route.job)(event)).await?;
        }
        Ok(())
    }

    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// The fast path: publish events just committed to the outbox, then remove them.
    /// A failure is logged, not returned: the change has committed and the sweep
    /// publishes the event later.
    pub async fn publish_committed(&self, events: &[Event]) {
        if let Some(kind) = self.config.fault_abort_before_publish
            && events.iter().any(|e| e.kind == kind)
        {
            tracing::error!(%kind, "fault injection: aborting after the commit, before publishing");
            std::process::abort();
        }
        for event in events {
            if let Err(e) = self.publish(event).await {
                tracing::warn!(event = %event.id, error = %e, "event left in the outbox for the sweep");
            }
        }
    }

    /// Publishes an event that has no outbox item (a pull); a failure is logged.
    pub async fn publish_direct(&self, event: &Event) {
        if let Err(e) = self.send(event).await {
            tracing::warn!(event = %event.id, error = %e, "event not published");
        }
    }

    async fn publish(&self, event: &Event) -> Result<()> {
        self.send(event).await?;
        self.meta.remove_outbox_event(&event.id).await?;
        Ok(())
    }

    /// The sweep: publishes outbox events older than the grace period, oldest first, at
    /// most `limit`; returns how many it published.
    pub async fn sweep(&self, limit: usize) -> Result<usize> {
        let cutoff = self
            .clock
            .now_millis()
            .saturating_sub(self.config.sweep_grace_ms);
        let pending = self.meta.outbox_events(limit).await?;
        let mut published = 0;
        for event in pending.iter().filter(|e| e.time_ms <= cutoff) {
            self.publish(event).await?;
            tracing::info!(event = %event.id, kind = %event.kind, "published by the outbox sweep");
            published += 1;
        }
        Ok(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in EventKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
        }
        assert!("image.pushed".parse::<EventKind>().is_err());
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = new_event_id(1_000);
        let b = new_event_id(1_000);
        let c = new_event_id(2_000);
        assert_ne!(a, b);
        assert!(a < c && b < c, "{a} {b} {c}");
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
    }

    #[tokio::test]
    async fn actor_is_scoped_to_the_task() {
        assert_eq!(actor(), None);
        let inside = with_actor(Some("alice".into()), async { actor() }).await;
        assert_eq!(inside.as_deref(), Some("alice"));
        assert_eq!(actor(), None);
    }
}
