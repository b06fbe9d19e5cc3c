//! `WebhookStore` for the embedded metadata store: policies and delivery logs in the same
//! redb table, by the key schema of `registry_core::keys`; each method one transaction.

use async_trait::async_trait;
use registry_core::events::Event;
use registry_core::keys;
use registry_core::ports::webhook_store::MAX_ATTEMPTS_KEPT;
use registry_core::ports::{Delivery, DeliveryAttempt, WebhookPolicy, WebhookStore};
use registry_core::{RegistryError, Result};

use crate::metadata_store::{EmbeddedMetadataStore, decode, encode, get_item, query};

#[async_trait]
impl WebhookStore for EmbeddedMetadataStore {
    async fn put_policy(&self, policy: &WebhookPolicy) -> Result<()> {
        let policy = policy.clone();
        self.write(move |t| {
            let (pk, sk) = (
                keys::webhooks_pk(&policy.project),
                keys::policy_sk(&policy.id),
            );
            t.insert((pk.as_str(), sk.as_str()), encode(&policy)?.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn get_policy(&self, project: &str, policy_id: &str) -> Result<Option<WebhookPolicy>> {
        let (pk, sk) = (keys::webhooks_pk(project), keys::policy_sk(policy_id));
        self.read(move |t| get_item(t, &pk, &sk)).await
    }

    async fn list_policies(&self, project: &str) -> Result<Vec<WebhookPolicy>> {
        let pk = keys::webhooks_pk(project);
        self.read(move |t| {
            query(t, &pk, keys::POLICY_PREFIX, None, usize::MAX)?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn delete_policy(&self, project: &str, policy_id: &str) -> Result<bool> {
        let (pk, sk) = (keys::webhooks_pk(project), keys::policy_sk(policy_id));
        let dpk = keys::deliveries_pk(policy_id);
        self.write(move |t| {
            let existed = t
                .remove((pk.as_str(), sk.as_str()))
                .map_err(RegistryError::storage)?
                .is_some();
            for (dsk, _) in query(t, &dpk, keys::DELIVERY_PREFIX, None, usize::MAX)? {
                t.remove((dpk.as_str(), dsk.as_str()))
                    .map_err(RegistryError::storage)?;
            }
            Ok(existed)
        })
        .await
    }

    async fn record_attempt(
        &self,
        policy_id: &str,
        event: &Event,
        attempt: &DeliveryAttempt,
    ) -> Result<()> {
        let (pk, sk) = (keys::deliveries_pk(policy_id), keys::delivery_sk(&event.id));
        let fresh = Delivery {
            policy_id: policy_id.to_owned(),
            event: event.clone(),
            attempts: Vec::new(),
        };
        let attempt = attempt.clone();
        self.write(move |t| {
            let mut delivery: Delivery = get_item(t, &pk, &sk)?.unwrap_or(fresh);
            delivery.attempts.push(attempt);
            let excess = delivery.attempts.len().saturating_sub(MAX_ATTEMPTS_KEPT);
            delivery.attempts.drain(..excess);
            t.insert((pk.as_str(), sk.as_str()), encode(&delivery)?.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn get_delivery(&self, policy_id: &str, event_id: &str) -> Result<Option<Delivery>> {
        let (pk, sk) = (keys::deliveries_pk(policy_id), keys::delivery_sk(event_id));
        self.read(move |t| get_item(t, &pk, &sk)).await
    }

    async fn list_deliveries(
        &self,
        policy_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let pk = keys::deliveries_pk(policy_id);
        let before = before.map(keys::delivery_sk);
        self.read(move |t| {
            let mut out = Vec::new();
            let start = (pk.as_str(), keys::DELIVERY_PREFIX);
            let end = match &before {
                Some(b) => (pk.as_str(), b.as_str()),
                None => (pk.as_str(), "DELIVERY$"), // '$' sorts right after '#'
            };
            for entry in t.range(start..end).map_err(RegistryError::storage)?.rev() {
                if out.len() == limit {
                    break;
                }
                let (_, v) = entry.map_err(RegistryError::storage)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }
}
