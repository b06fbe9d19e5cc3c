//! `WebhookStore`: webhook policies per project and the delivery log of each policy.
//!
//! Policies live under `WEBHOOKS#<project>` / `POLICY#<id>`; deliveries under
//! `WEBHOOK#<policy id>` / `DELIVERY#<event id>` (see [`crate::keys`]). One delivery is one
//! event sent to one policy's target; it keeps the event (so it can be re-sent by hand)
//! and every attempt, oldest first.
//!
//! Consistency: every method is atomic and reads see earlier writes. `record_attempt`
//! appends atomically (concurrent attempts on one delivery both land), creating the
//! delivery on its first attempt; a delivery keeps its latest [`MAX_ATTEMPTS_KEPT`]
//! attempts. `list_deliveries` is newest first (event ids are time-ordered). Deleting a
//! policy deletes its deliveries, or leaves them to expire (DynamoDB: TTL) where a
//! delete of many items is not atomic; they are never listed under another policy.
//!
//! Errors: `Storage` for backend failures.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::events::{Event, EventKind};

/// The attempts a delivery keeps (older ones are dropped).
pub const MAX_ATTEMPTS_KEPT: usize = 50;

/// The body a policy's target receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// CloudEvents 1.0, structured JSON (`application/cloudevents+json`).
    #[default]
    CloudEvents,
    /// Harbor's webhook JSON (`type`, `occur_at`, `operator`, `event_data`).
    Harbor,
}

/// Where a project's events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPolicy {
    pub id: String,
    pub project: String,
    pub name: String,
    pub target_url: String,
    pub event_types: BTreeSet<EventKind>,
    pub enabled: bool,
    /// Signs each body (HMAC-SHA256); never shown by the API once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub format: PayloadFormat,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttemptOutcome {
    /// The target answered 2xx.
    Delivered,
    /// Failed; the job will be retried.
    Failed,
    /// Failed on the last try: the job goes to the dead-letter queue.
    GaveUp,
    /// Not sent: the policy is disabled, no longer wants this event type, or its target
    /// is refused by the outbound guard.
    Skipped,
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// 1 for the first try; counts every try of this delivery, re-sends included.
    pub attempt: u32,
    pub time_ms: u64,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the target's answer, capped (see the webhook module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    /// Sent by a re-send asked for by hand.
    #[serde(default)]
    pub manual: bool,
}

/// One event sent to one policy's target, with every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub policy_id: String,
    pub event: Event,
    pub attempts: Vec<DeliveryAttempt>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Creates or replaces a policy.
    async fn put_policy(&self, policy: &WebhookPolicy) -> Result<()>;
    async fn get_policy(&self, project: &str, policy_id: &str) -> Result<Option<WebhookPolicy>>;
    /// Every policy of `project`, by id.
    async fn list_policies(&self, project: &str) -> Result<Vec<WebhookPolicy>>;
    /// Deletes a policy (and its deliveries, see the module doc); `false` if absent.
    async fn delete_policy(&self, project: &str, policy_id: &str) -> Result<bool>;

    /// Appends `attempt` to the delivery of `event` to `policy_id`, creating it.
    async fn record_attempt(
        &self,
        policy_id: &str,
        event: &Event,
        attempt: &DeliveryAttempt,
    ) -> Result<()>;
    async fn get_delivery(&self, policy_id: &str, event_id: &str) -> Result<Option<Delivery>>;
    /// Up to `limit` deliveries of `policy_id`, newest first, starting after event id
    /// `before` when given.
    async fn list_deliveries(
        &self,
        policy_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
}
