//! [`WebhookStore`] for [`DynamoMetadataStore`]: webhook policies and their delivery logs
//! in the metadata table, laid out by the key schema of [`registry_core::keys`].
//!
//! # Items
//!
//! Besides `pk`/`sk`, items carry (JSON is always a string attribute):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | webhook policy | `WEBHOOKS#<project>` | `POLICY#<policy id>` | `v`: the [`WebhookPolicy`] |
//! | webhook delivery | `WEBHOOK#<policy id>` | `DELIVERY#<event id>` | `event` (S): the [`Event`]; `attempts` (L of S): each [`DeliveryAttempt`], oldest first; `expires_at` (N, TTL) |
//!
//! A delivery's `expires_at` is its latest attempt's time (epoch seconds, rounded up) plus
//! [`DELIVERY_TTL_SECS`] (30 days): DynamoDB's TTL removes deliveries a month after their
//! last attempt (LocalStack never runs TTL). Attempts are a list on the delivery item,
//! not items of their own, so that a delivery is one read and `list_deliveries` one
//! Query page; the item stays far below DynamoDB's 400 KB (50 attempts, each with a
//! response excerpt of at most 1 KiB).
//!
//! # Calls per method
//!
//! All reads are strongly consistent (`ConsistentRead = true`). Single writes rejected by
//! a concurrent transaction (`TransactionConflictException`) are resent with jittered
//! backoff, up to [`MAX_ATTEMPTS`] times.
//!
//! - `put_policy`: one PutItem (unconditional: creates or replaces).
//! - `get_policy`, `get_delivery`: one GetItem.
//! - `list_policies`: Query of `WEBHOOKS#<project>` with `begins_with(sk, "POLICY#")`,
//!   over all pages (by policy id).
//! - `delete_policy`: one DeleteItem with `ReturnValues = ALL_OLD` (to tell whether it
//!   existed). Its deliveries are left to expire by TTL (the port allows it: deleting a
//!   partition of any size is not atomic); policy ids are never reused, so they are never
//!   listed under another policy, and the registry checks a policy exists before it lists
//!   its deliveries.
//! - `record_attempt`: one UpdateItem `SET attempts = list_append(if_not_exists(attempts,
//!   :empty), :attempt), event = if_not_exists(event, :event), expires_at = :ttl` with
//!   `ReturnValues = UPDATED_NEW`: an atomic append, so concurrent attempts all land, and
//!   the first one creates the delivery. Its condition `attribute_not_exists(attempts) OR
//!   NOT contains(attempts, :attempt)` makes it idempotent: an append the SDK resends
//!   after a lost answer, or a caller repeats, does not record the same attempt twice
//!   (a failed condition is success). When the list returned is longer than
//!   [`MAX_ATTEMPTS_KEPT`], a second UpdateItem `REMOVE attempts[0], …` of the surplus,
//!   on condition `size(attempts) = :seen`; when that fails (a concurrent append or trim
//!   came first), it starts over from the size the failure returns. So a trim never
//!   drops more than the surplus, and the last writer leaves at most
//!   [`MAX_ATTEMPTS_KEPT`]. The trim is best effort: the attempt is recorded once the
//!   append succeeds, so a failed trim is logged, not returned (the next attempt trims).
//! - `list_deliveries`: Query of `WEBHOOK#<policy id>` with `begins_with(sk,
//!   "DELIVERY#")`, `ScanIndexForward = false` (newest first: event ids are UUIDv7),
//!   `ExclusiveStartKey` = `DELIVERY#<before>`, `Limit` = what is still wanted, over pages
//!   until `limit`.
//!
//! # Errors
//!
//! `Storage` (naming the operation) for every DynamoDB failure and for items this adapter
//! cannot decode; `Conflict` when contention outlasts the retries.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use registry_core::Result;
use registry_core::events::Event;
use registry_core::keys;
use registry_core::ports::webhook_store::MAX_ATTEMPTS_KEPT;
use registry_core::ports::{Delivery, DeliveryAttempt, WebhookPolicy, WebhookStore};

use crate::dynamo_metadata_store::{
    DynamoMetadataStore, EXPIRES_AT, Item, MAX_ATTEMPTS, V, Walk, backoff, corrupt, decode_json,
    encode_json, key, n, require_s, retry_conflicts, s, storage,
};

/// How long after a delivery's latest attempt DynamoDB's TTL may remove it.
pub const DELIVERY_TTL_SECS: u64 = 30 * 24 * 3600;

const EVENT: &str = "event";
const ATTEMPTS: &str = "attempts";

/// Epoch seconds at which TTL may remove a delivery last attempted at `time_ms`.
fn delivery_ttl_secs(time_ms: u64) -> u64 {
    time_ms.div_ceil(1000).saturating_add(DELIVERY_TTL_SECS)
}

fn delivery_key(policy_id: &str, event_id: &str) -> Item {
    key(keys::deliveries_pk(policy_id), keys::delivery_sk(event_id))
}

/// The `attempts` list of an item (empty when absent).
fn attempts_of<'i>(op: &str, item: &'i Item) -> Result<&'i [AttributeValue]> {
    match item.get(ATTEMPTS) {
        Some(AttributeValue::L(list)) => Ok(list),
        None => Ok(&[]),
        Some(_) => Err(corrupt(op, format!("attribute {ATTEMPTS} is not a list"))),
    }
}

/// The delivery a delivery item holds.
fn delivery_of(op: &str, policy_id: &str, item: &Item) -> Result<Delivery> {
    let event = serde_json::from_str(require_s(op, item, EVENT)?).map_err(|e| corrupt(op, e))?;
    let attempts = attempts_of(op, item)?
        .iter()
        .map(|a| match a {
            AttributeValue::S(json) => serde_json::from_str(json).map_err(|e| corrupt(op, e)),
            _ => Err(corrupt(
                op,
                format!("an element of {ATTEMPTS} is not a string"),
            )),
        })
        .collect::<Result<Vec<DeliveryAttempt>>>()?;
    Ok(Delivery {
        policy_id: policy_id.to_owned(),
        event,
        attempts,
    })
}

impl DynamoMetadataStore {
    /// Drops the oldest attempts of the delivery at `k` while it has more than
    /// [`MAX_ATTEMPTS_KEPT`], `len` being the length last seen (see `record_attempt` in
    /// the module doc). Best effort: failures are logged.
    async fn trim_attempts(&self, k: &Item, mut len: usize) {
        const OP: &str = "DynamoDB UpdateItem (record_attempt trim)";
        for attempt in 0..MAX_ATTEMPTS {
            if len <= MAX_ATTEMPTS_KEPT {
                return;
            }
            if attempt > 0 {
                backoff(attempt).await;
            }
            let surplus = len - MAX_ATTEMPTS_KEPT;
            let remove: Vec<String> = (0..surplus).map(|i| format!("#attempts[{i}]")).collect();
            let result = retry_conflicts(|| {
                self.ddb
                    .update_item()
                    .table_name(self.table())
                    .set_key(Some(k.clone()))
                    .update_expression(format!("REMOVE {}", remove.join(", ")))
                    .condition_expression("size(#attempts) = :seen")
                    .expression_attribute_names("#attempts", ATTEMPTS)
                    .expression_attribute_values(":seen", n(len as u64))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .send()
            })
            .await;
            let failed = match result {
                Ok(_) => return,
                Err(e) => match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c,
                    other => {
                        tracing::warn!(error = %storage(OP, other), "delivery attempts not trimmed");
                        return;
                    }
                },
            };
            let now = match failed.item {
                Some(item) if !item.is_empty() => Some(item),
                // A backend that does not return the old item: read it.
                _ => match self.get_item(OP, k.clone(), Some("#attempts")).await {
                    Ok(item) => item,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery attempts not trimmed");
                        return;
                    }
                },
            };
            len = match now.as_ref().map(|i| attempts_of(OP, i)) {
                Some(Ok(list)) => list.len(),
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "delivery attempts not trimmed");
                    return;
                }
            };
        }
        tracing::warn!(
            "{OP}: delivery attempts still changing after {MAX_ATTEMPTS} trims; the next attempt trims"
        );
    }
}

#[async_trait]
impl WebhookStore for DynamoMetadataStore {
    async fn put_policy(&self, policy: &WebhookPolicy) -> Result<()> {
        const OP: &str = "DynamoDB PutItem (put_policy)";
        let mut item = key(
            keys::webhooks_pk(&policy.project),
            keys::policy_sk(&policy.id),
        );
        item.insert(V.to_owned(), s(encode_json(OP, policy)?));
        self.put_one(OP, item).await
    }

    async fn get_policy(&self, project: &str, policy_id: &str) -> Result<Option<WebhookPolicy>> {
        const OP: &str = "DynamoDB GetItem (get_policy)";
        let k = key(keys::webhooks_pk(project), keys::policy_sk(policy_id));
        let item = self.get_item(OP, k, Some("#v")).await?;
        item.map(|i| decode_json(OP, &i)).transpose()
    }

    async fn list_policies(&self, project: &str) -> Result<Vec<WebhookPolicy>> {
        const OP: &str = "DynamoDB Query (list_policies)";
        let pk = keys::webhooks_pk(project);
        self.query(OP, &pk, keys::POLICY_PREFIX, None, usize::MAX, V)
            .await?
            .iter()
            .map(|v| serde_json::from_str(v).map_err(|e| corrupt(OP, e)))
            .collect()
    }

    async fn delete_policy(&self, project: &str, policy_id: &str) -> Result<bool> {
        const OP: &str = "DynamoDB DeleteItem (delete_policy)";
        let k = key(keys::webhooks_pk(project), keys::policy_sk(policy_id));
        let resp = retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(k.clone()))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        Ok(resp.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn record_attempt(
        &self,
        policy_id: &str,
        event: &Event,
        attempt: &DeliveryAttempt,
    ) -> Result<()> {
        const OP: &str = "DynamoDB UpdateItem (record_attempt)";
        let k = delivery_key(policy_id, &event.id);
        let event_json = encode_json(OP, event)?;
        let attempt_json = encode_json(OP, attempt)?;
        let result = retry_conflicts(|| {
            self.ddb
                .update_item()
                .table_name(self.table())
                .set_key(Some(k.clone()))
                .update_expression(
                    "SET #attempts = list_append(if_not_exists(#attempts, :empty), :attempt), \
                     #event = if_not_exists(#event, :event), #exp = :exp",
                )
                .condition_expression(
                    "attribute_not_exists(#attempts) OR NOT contains(#attempts, :one)",
                )
                .expression_attribute_names("#attempts", ATTEMPTS)
                .expression_attribute_names("#event", EVENT)
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
                .expression_attribute_values(
                    ":attempt",
                    AttributeValue::L(vec![s(attempt_json.as_str())]),
                )
                .expression_attribute_values(":one", s(attempt_json.as_str()))
                .expression_attribute_values(":event", s(event_json.as_str()))
                .expression_attribute_values(":exp", n(delivery_ttl_secs(attempt.time_ms)))
                .return_values(ReturnValue::UpdatedNew)
                .send()
        })
        .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => match e.into_service_error() {
                // This very attempt is there already: a resent append.
                UpdateItemError::ConditionalCheckFailedException(_) => return Ok(()),
                other => return Err(storage(OP, other)),
            },
        };
        let len = match &resp.attributes {
            Some(item) => attempts_of(OP, item)?.len(),
            None => 0,
        };
        if len > MAX_ATTEMPTS_KEPT {
            self.trim_attempts(&k, len).await;
        }
        Ok(())
    }

    async fn get_delivery(&self, policy_id: &str, event_id: &str) -> Result<Option<Delivery>> {
        const OP: &str = "DynamoDB GetItem (get_delivery)";
        let item = self
            .get_item(
                OP,
                delivery_key(policy_id, event_id),
                Some("#event, #attempts"),
            )
            .await?;
        item.map(|i| delivery_of(OP, policy_id, &i)).transpose()
    }

    async fn list_deliveries(
        &self,
        policy_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        const OP: &str = "DynamoDB Query (list_deliveries)";
        let walk = Walk::Down {
            before: before.map(keys::delivery_sk),
        };
        let items = self
            .query_items(
                OP,
                &keys::deliveries_pk(policy_id),
                keys::DELIVERY_PREFIX,
                walk,
                limit,
                &[EVENT, ATTEMPTS],
            )
            .await?;
        items
            .iter()
            .map(|item| delivery_of(OP, policy_id, item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_a_month_after_the_attempt() {
        assert_eq!(delivery_ttl_secs(1_000), 1 + DELIVERY_TTL_SECS);
        assert_eq!(delivery_ttl_secs(1_001), 2 + DELIVERY_TTL_SECS);
        assert_eq!(
            delivery_ttl_secs(u64::MAX),
            u64::MAX.div_ceil(1000) + DELIVERY_TTL_SECS
        );
    }
}
