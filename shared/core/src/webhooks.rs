//! Webhooks: policies per project (management use-cases), the payloads (CloudEvents 1.0
//! or Harbor's JSON), their signature, and the webhook queue's handler.
//!
//! The webhook queue carries two job kinds:
//! - `event.published` (an [`Event`], from the [`EventRelay`](crate::events::EventRelay)):
//!   fanned out into one `webhook.deliver` job per enabled policy of the event's project
//!   that wants its type;
//! - `webhook.deliver` ([`DeliveryJob`]): one POST to one policy's target, written to the
//!   policy's delivery log. A non-2xx answer or a network failure is retried with
//!   exponential backoff by the [`worker`](crate::worker) harness; the last failed try is
//!   logged as `gaveUp` and the queue dead-letters the job.
//!
//! Idempotent: a delivery already `delivered` is not sent again by a redelivered job
//! (only a re-send asked for by hand sends it again), and every request carries the
//! event id (`webhook-id`), so a receiver that de-duplicates by it sees each event once.
//!
//! Signature (the Standard Webhooks scheme): with a secret, `webhook-signature: v1,<b64>`
//! where `<b64>` is base64 of HMAC-SHA256(secret, `<webhook-id>.<webhook-timestamp>.<body>`),
//! `webhook-timestamp` in Unix seconds. Receivers check it and refuse old timestamps.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::{Actor, Admin};
use crate::error::{RegistryError, Result};
use crate::events::{EVENT_PUBLISHED_JOB, Event, EventKind};
use crate::ports::{
    AttemptOutcome, Clock, Delivery, DeliveryAttempt, Job, JobQueue, OutboundHttp, OutboundRequest,
    PayloadFormat, WebhookPolicy, WebhookStore,
};
use crate::worker::{Attempt, JobHandler, JobOutcome};

/// The job kind of one delivery to one policy's target.
pub const DELIVER_JOB: &str = "webhook.deliver";
/// The CloudEvents `type` prefix: `<prefix>.<event kind>`.
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "dev.registry";
/// The most bytes of a target's answer kept in the delivery log.
pub const RESPONSE_EXCERPT_CAP: usize = 1024;
/// The largest secret accepted (HMAC keys longer than a block are hashed anyway).
const MAX_SECRET_LEN: usize = 256;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// One delivery to send: the event and the policy it goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryJob {
    pub project: String,
    pub policy_id: String,
    pub event: Event,
    /// A re-send asked for by hand: sent even if delivered before.
    #[serde(default)]
    pub manual: bool,
}

impl DeliveryJob {
    pub fn to_job(&self) -> Job {
        Job {
            kind: DELIVER_JOB.into(),
            payload: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// A policy as created or replaced through the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInput {
    pub name: String,
    pub target_url: String,
    pub event_types: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Omitted on a replace: the current secret stays. `""` removes it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub format: PayloadFormat,
}

fn yes() -> bool {
    true
}

/// A policy as the API shows it: the secret never leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub id: String,
    pub project: String,
    pub name: String,
    pub target_url: String,
    pub event_types: Vec<EventKind>,
    pub enabled: bool,
    pub has_secret: bool,
    pub format: PayloadFormat,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl From<&WebhookPolicy> for PolicyView {
    fn from(p: &WebhookPolicy) -> Self {
        PolicyView {
            id: p.id.clone(),
            project: p.project.clone(),
            name: p.name.clone(),
            target_url: p.target_url.clone(),
            event_types: p.event_types.iter().copied().collect(),
            enabled: p.enabled,
            has_secret: p.secret.is_some(),
            format: p.format,
            created_ms: p.created_ms,
            updated_ms: p.updated_ms,
        }
    }
}

/// A delivery as the API shows it: the event, every attempt, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub event_id: String,
    pub event_type: EventKind,
    /// `delivered`, `pending` (failed, will retry), `gaveUp` or `skipped`: the latest
    /// attempt's outcome.
    pub status: String,
    pub event: Event,
    pub attempts: Vec<DeliveryAttempt>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        let status = match d.attempts.last().map(|a| a.outcome) {
            Some(AttemptOutcome::Delivered) => "delivered",
            Some(AttemptOutcome::GaveUp) => "gaveUp",
            Some(AttemptOutcome::Skipped) => "skipped",
            Some(AttemptOutcome::Failed) | None => "pending",
        };
        DeliveryView {
            event_id: d.event.id.clone(),
            event_type: d.event.kind,
            status: status.into(),
            event: d.event,
            attempts: d.attempts,
        }
    }
}

/// The webhook use-cases and the webhook queue's handler.
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    queue: Arc<dyn JobQueue>,
    outbound: Arc<dyn OutboundHttp>,
    clock: Arc<dyn Clock>,
    /// The registry's public base URL (`https://registry.example.com`), for links in
    /// payloads.
    public_url: String,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        queue: Arc<dyn JobQueue>,
        outbound: Arc<dyn OutboundHttp>,
        clock: Arc<dyn Clock>,
        public_url: String,
    ) -> Self {
        Webhooks {
            store,
            queue,
            outbound,
            clock,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    // ---- management ----

    async fn validate(&self, input: &PolicyInput) -> Result<BTreeSet<EventKind>> {
        let name = input.name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(RegistryError::Unsupported(
                "name must be 1 to 128 characters".into(),
            ));
        }
        if input.target_url.len() > 2048 {
            return Err(RegistryError::Unsupported("targetUrl is too long".into()));
        }
        if input
            .secret
            .as_ref()
            .is_some_and(|s| s.len() > MAX_SECRET_LEN)
        {
            return Err(RegistryError::Unsupported(format!(
                "secret is longer than {MAX_SECRET_LEN} bytes"
            )));
        }
        let types = input
            .event_types
            .iter()
            .map(|t| t.parse::<EventKind>())
            .collect::<Result<BTreeSet<_>>>()?;
        if types.is_empty() {
            return Err(RegistryError::Unsupported(
                "eventTypes must name at least one event type".into(),
            ));
        }
        self.outbound.check_target(&input.target_url).await?;
        Ok(types)
    }

    /// Creates a policy on `project` (project admins and system admins).
    pub async fn create_policy(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
        input: PolicyInput,
    ) -> Result<PolicyView> {
        admin
            .require_project_admin(actor, project, "creating a webhook")
            .await?;
        let event_types = self.validate(&input).await?;
        let now = self.clock.now_millis();
        let policy = WebhookPolicy {
            id: crate::events::new_event_id(now),
            project: project.to_owned(),
            name: input.name.trim().to_owned(),
            target_url: input.target_url,
            event_types,
            enabled: input.enabled,
            secret: input.secret.filter(|s| !s.is_empty()),
            format: input.format,
            created_ms: now,
            updated_ms: now,
        };
        self.store.put_policy(&policy).await?;
        admin
            .audit(
                actor,
                "webhook.create",
                &format!("{project}/{}", policy.id),
                &policy.target_url,
            )
            .await?;
        Ok(PolicyView::from(&policy))
    }

    async fn policy(&self, project: &str, id: &str) -> Result<WebhookPolicy> {
        self.store
            .get_policy(project, id)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(format!("webhook {id} in project {project}")))
    }

    pub async fn list_policies(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
    ) -> Result<Vec<PolicyView>> {
        admin
            .require_project_admin(actor, project, "listing webhooks")
            .await?;
        Ok(self
            .store
            .list_policies(project)
            .await?
            .iter()
            .map(PolicyView::from)
            .collect())
    }

    pub async fn get_policy(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
        id: &str,
    ) -> Result<PolicyView> {
        admin
            .require_project_admin(actor, project, "reading a webhook")
            .await?;
        Ok(PolicyView::from(&self.policy(project, id).await?))
    }

    /// Replaces a policy; an omitted secret keeps the current one, `""` removes it.
    pub async fn replace_policy(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
        id: &str,
        input: PolicyInput,
    ) -> Result<PolicyView> {
        admin
            .require_project_admin(actor, project, "changing a webhook")
            .await?;
        let current = self.policy(project, id).await?;
        let event_types = self.validate(&input).await?;
        let policy = WebhookPolicy {
            name: input.name.trim().to_owned(),
            target_url: input.target_url,
            event_types,
            enabled: input.enabled,
            secret: match input.secret {
                None => current.secret.clone(),
                Some(s) if s.is_empty() => None,
                Some(s) => Some(s),
            },
            format: input.format,
            updated_ms: self.clock.now_millis(),
            ..current
        };
        self.store.put_policy(&policy).await?;
        admin
            .audit(
                actor,
                "webhook.update",
                &format!("{project}/{id}"),
                &policy.target_url,
            )
            .await?;
        Ok(PolicyView::from(&policy))
    }

    pub async fn delete_policy(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
        id: &str,
    ) -> Result<()> {
        admin
            .require_project_admin(actor, project, "deleting a webhook")
            .await?;
        if !self.store.delete_policy(project, id).await? {
            return Err(RegistryError::NameUnknown(format!(
                "webhook {id} in project {project}"
            )));
        }
        admin
            .audit(actor, "webhook.delete", &format!("{project}/{id}"), "")
            .await
    }

    /// The policy's deliveries, newest first, `before` an event id when given.
    pub async fn list_deliveries(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
        id: &str,
        before: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<DeliveryView>> {
        admin
            .require_project_admin(actor, project, "reading webhook deliveries")
            .await?;
        self.policy(project, id).await?;
        let limit = limit.unwrap_or(50).clamp(1, 500);
        Ok(self
            .store
            .list_deliveries(id, before, limit)
            .await?
            .into_iter()
            .map(DeliveryView::from)
            .collect())
    }

    /// Queues a re-send of one delivery (sent even if it was delivered).
    pub async fn redeliver(
        &self,
        admin: &Admin,
        actor: &Actor,
        project: &str,
        id: &str,
        event_id: &str,
    ) -> Result<DeliveryView> {
        admin
            .require_project_admin(actor, project, "re-sending a webhook delivery")
            .await?;
        self.policy(project, id).await?;
        let delivery = self
            .store
            .get_delivery(id, event_id)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(format!("delivery {event_id}")))?;
        let job = DeliveryJob {
            project: project.to_owned(),
            policy_id: id.to_owned(),
            event: delivery.event.clone(),
            manual: true,
        };
        self.queue.enqueue(&job.to_job()).await?;
        admin
            .audit(
                actor,
                "webhook.redeliver",
                &format!("{project}/{id}"),
                event_id,
            )
            .await?;
        Ok(DeliveryView::from(delivery))
    }

    // ---- the queue's handler ----

    /// `event.published`: one delivery job per policy that wants the event.
    async fn fan_out(&self, event: &Event) -> Result<usize> {
        let mut queued = 0;
        for policy in self.store.list_policies(&event.project).await? {
            if policy.enabled && policy.event_types.contains(&event.kind) {
                let job = DeliveryJob {
                    project: policy.project.clone(),
                    policy_id: policy.id.clone(),
                    event: event.clone(),
                    manual: false,
                };
                self.queue.enqueue(&job.to_job()).await?;
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// `webhook.deliver`: one POST, logged.
    async fn deliver(&self, job: &DeliveryJob, attempt: Attempt) -> Result<JobOutcome> {
        let Some(policy) = self.store.get_policy(&job.project, &job.policy_id).await? else {
            return Ok(JobOutcome::Done); // deleted since: nothing to do
        };
        let previous = self.store.get_delivery(&policy.id, &job.event.id).await?;
        let tries = previous
            .as_ref()
            .and_then(|d| d.attempts.last())
            .map_or(0, |a| a.attempt);
        if !job.manual
            && previous.as_ref().is_some_and(|d| {
                d.attempts
                    .iter()
                    .any(|a| a.outcome == AttemptOutcome::Delivered)
            })
        {
            return Ok(JobOutcome::Done); // a redelivered job: sent already
        }
        let started = self.clock.now_millis();
        let mut record = DeliveryAttempt {
            attempt: tries + 1,
            time_ms: started,
            duration_ms: 0,
            outcome: AttemptOutcome::Skipped,
            http_status: None,
            error: None,
            response_excerpt: None,
            manual: job.manual,
        };
        if !job.manual && (!policy.enabled || !policy.event_types.contains(&job.event.kind)) {
            record.error = Some("the policy is disabled or no longer wants this event".into());
            self.store
                .record_attempt(&policy.id, &job.event, &record)
                .await?;
            return Ok(JobOutcome::Done);
        }
        let request = self.request(&policy, &job.event, started / 1000);
        let result = self.outbound.post(&request).await;
        record.duration_ms = self.clock.now_millis().saturating_sub(started);
        let failed = |record: &mut DeliveryAttempt, why: String| {
            record.outcome = if attempt.last && !job.manual {
                AttemptOutcome::GaveUp
            } else {
                AttemptOutcome::Failed
            };
            record.error = Some(why);
        };
        match result {
            Ok(res) => {
                record.http_status = Some(res.status);
                record.response_excerpt = Some(excerpt(&res.body_excerpt));
                if (200..300).contains(&res.status) {
                    record.outcome = AttemptOutcome::Delivered;
                } else {
                    failed(&mut record, format!("the target answered {}", res.status));
                }
            }
            Err(RegistryError::OutboundRefused(why)) => {
                record.error = Some(format!("outbound target refused: {why}"));
            }
            Err(e) => failed(&mut record, e.to_string()),
        }
        self.store
            .record_attempt(&policy.id, &job.event, &record)
            .await?;
        Ok(match record.outcome {
            AttemptOutcome::Failed | AttemptOutcome::GaveUp if !job.manual => {
                JobOutcome::Retry(record.error.unwrap_or_default())
            }
            _ => JobOutcome::Done,
        })
    }

    /// The signed request for `event` to `policy`'s target at Unix time `unix_secs`.
    pub fn request(
        &self,
        policy: &WebhookPolicy,
        event: &Event,
        unix_secs: u64,
    ) -> OutboundRequest {
        let (content_type, body) = render(policy.format, event, &self.public_url);
        let mut headers = vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("user-agent".to_owned(), "registry-webhook/1".to_owned()),
            ("webhook-id".to_owned(), event.id.clone()),
            ("webhook-timestamp".to_owned(), unix_secs.to_string()),
            (
                "x-registry-event".to_owned(),
                event.kind.as_str().to_owned(),
            ),
        ];
        if let Some(secret) = &policy.secret {
            headers.push((
                "webhook-signature".to_owned(),
                sign(secret.as_bytes(), &event.id, unix_secs, &body),
            ));
        }
        OutboundRequest {
            url: policy.target_url.clone(),
            headers,
            body,
        }
    }
}

#[async_trait]
impl JobHandler for Webhooks {
    async fn handle(&self, job: &Job, attempt: Attempt) -> JobOutcome {
        let outcome = match job.kind.as_str() {
            EVENT_PUBLISHED_JOB => match serde_json::from_value::<Event>(job.payload.clone()) {
                Ok(event) => self.fan_out(&event).await.map(|n| {
                    tracing::debug!(event = %event.id, deliveries = n, "event fanned out");
                    JobOutcome::Done
                }),
                Err(e) => Err(RegistryError::Storage(format!("bad event job: {e}"))),
            },
            DELIVER_JOB => match serde_json::from_value::<DeliveryJob>(job.payload.clone()) {
                Ok(delivery) => self.deliver(&delivery, attempt).await,
                Err(e) => Err(RegistryError::Storage(format!("bad delivery job: {e}"))),
            },
            other => {
                tracing::warn!(kind = other, "not a webhook job: dropped");
                Ok(JobOutcome::Done)
            }
        };
        outcome.unwrap_or_else(|e| JobOutcome::Retry(e.to_string()))
    }
}

/// `text` cut to at most [`RESPONSE_EXCERPT_CAP`] bytes on a character boundary.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(RESPONSE_EXCERPT_CAP);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The Standard Webhooks signature header value: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &[u8], id: &str, unix_secs: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{id}.{unix_secs}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The Harbor event type of `kind`.
fn harbor_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ManifestPushed => "PUSH_ARTIFACT",
        EventKind::ManifestDeleted | EventKind::TagDeleted => "DELETE_ARTIFACT",
        EventKind::ImagePulled => "PULL_ARTIFACT",
        EventKind::BlobUploaded => "UPLOAD_BLOB",
        EventKind::ScanCompleted => "SCANNING_COMPLETED",
        EventKind::ScanFailed => "SCANNING_FAILED",
        EventKind::QuotaExceeded => "QUOTA_EXCEED",
    }
}

/// The body of `event` in `format`, and its content type.
pub fn render(format: PayloadFormat, event: &Event, public_url: &str) -> (&'static str, Vec<u8>) {
    let host = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest);
    let repo = event.repository.as_str();
    let reference = |tag: Option<&String>| match (tag, &event.digest) {
        (Some(t), _) => format!("{host}/{repo}:{t}"),
        (None, Some(d)) => format!("{host}/{repo}@{d}"),
        (None, None) => format!("{host}/{repo}"),
    };
    match format {
        PayloadFormat::CloudEvents => {
            let body = json!({
                "specversion": "1.0",
                "id": event.id,
                "source": format!("{public_url}/v2/{repo}"),
                "type": format!("{CLOUDEVENTS_TYPE_PREFIX}.{}", event.kind),
                "subject": reference(event.tags.first()),
                "time": crate::timefmt::rfc3339(event.time_ms),
                "datacontenttype": "application/json",
                "data": event,
            });
            (
                "application/cloudevents+json",
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
        PayloadFormat::Harbor => {
            let tags: Vec<Option<&String>> = if event.tags.is_empty() {
                vec![None]
            } else {
                event.tags.iter().map(Some).collect()
            };
            let resources: Vec<serde_json::Value> = tags
                .into_iter()
                .map(|tag| {
                    json!({
                        "digest": event.digest,
                        "tag": tag,
                        "resource_url": reference(tag),
                    })
                })
                .collect();
            let name = repo.split_once('/').map_or(repo, |(_, n)| n);
            let mut data = json!({
                "resources": resources,
                "repository": {
                    "name": name,
                    "namespace": event.project,
                    "repo_full_name": repo,
                    "repo_type": "private",
                },
            });
            if let Some(detail) = &event.detail {
                data["detail"] = detail.clone();
            }
            let body = json!({
                "type": harbor_type(event.kind),
                "occur_at": event.time_ms / 1000,
                "operator": event.actor.clone().unwrap_or_else(|| "anonymous".into()),
                "event_data": data,
            });
            (
                "application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoName;

    fn event() -> Event {
        let repo: RepoName = "team/app".parse().unwrap();
        Event::new(EventKind::ManifestPushed, &repo, 1_764_331_200_123)
            .with_digest(&crate::Digest::of(crate::DigestAlgorithm::Sha256, b"m"))
            .with_tags(["v1"])
    }

    #[test]
    fn cloudevents_body_is_structured_json() {
        let e = event();
        let (ct, body) = render(PayloadFormat::CloudEvents, &e, "https://reg.example");
        assert_eq!(ct, "application/cloudevents+json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], e.id.as_str());
        assert_eq!(v["type"], "dev.registry.manifest.pushed");
        assert_eq!(v["source"], "https://reg.example/v2/team/app");
        assert_eq!(v["subject"], "reg.example/team/app:v1");
        assert_eq!(v["time"], "2025-11-28T12:00:00.123Z");
        assert_eq!(v["data"]["repository"], "team/app");
        assert_eq!(v["data"]["tags"][0], "v1");
    }

    #[test]
    fn harbor_body_has_harbor_fields() {
        let e = event();
        let (ct, body) = render(PayloadFormat::Harbor, &e, "https://reg.example");
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "PUSH_ARTIFACT");
        assert_eq!(v["occur_at"], 1_764_331_200);
        assert_eq!(v["event_data"]["repository"]["namespace"], "team");
        assert_eq!(v["event_data"]["repository"]["name"], "app");
        assert_eq!(v["event_data"]["repository"]["repo_full_name"], "team/app");
        assert_eq!(v["event_data"]["resources"][0]["tag"], "v1");
        assert_eq!(
            v["event_data"]["resources"][0]["resource_url"],
            "reg.example/team/app:v1"
        );
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference libraries.
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn excerpts_are_capped_on_a_char_boundary() {
        let long = "é".repeat(RESPONSE_EXCERPT_CAP);
        let cut = excerpt(&long);
        assert!(cut.len() <= RESPONSE_EXCERPT_CAP);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
