//! Runs the metadata store, webhook store and proxy cache store contracts of
//! `registry-testkit` against `DynamoMetadataStore` on LocalStack: every test gets a fresh
//! table (string `pk` HASH, string `sk` RANGE, on-demand, as
//! `localstack/init/ready.d/10-resources.py` creates the real one) and a fresh S3 prefix
//! for large manifests, both removed when the test ends. Then checks what is DynamoDB's
//! own: the delivery items' TTL, the trim of a delivery holding more attempts than it
//! keeps, that a repeated append lands once, and the proxy cache items' number
//! attributes. Fails, never skips, when LocalStack is not there.

use crate::common;

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use common::FreshTable;
use registry_core::RepoName;
use registry_core::events::{Event, EventKind};
use registry_core::keys;
use registry_core::ports::webhook_store::MAX_ATTEMPTS_KEPT;
use registry_core::ports::{
    AttemptOutcome, DeliveryAttempt, MetadataStore, ProxyCacheStore, WebhookStore,
};

async fn dynamo_metadata_store() -> (Arc<dyn MetadataStore>, FreshTable) {
    let table = FreshTable::create("registry-test").await;
    (Arc::new(table.store()), table)
}

async fn dynamo_webhook_store() -> (Arc<dyn WebhookStore>, FreshTable) {
    let table = FreshTable::create("registry-webhooks").await;
    (Arc::new(table.store()), table)
}

mod metadata_store {
    registry_testkit::metadata_store_contract_tests!(super::dynamo_metadata_store);
}

mod webhook_store {
    registry_testkit::webhook_store_contract_tests!(super::dynamo_webhook_store);
}

async fn dynamo_proxy_cache_store() -> (Arc<dyn ProxyCacheStore>, FreshTable) {
    let table = FreshTable::create("registry-proxy").await;
    (Arc::new(table.store()), table)
}

mod proxy_cache_store {
    registry_testkit::proxy_cache_store_contract_tests!(super::dynamo_proxy_cache_store);
}

fn event(at_ms: u64) -> Event {
    let repo: RepoName = "dynamo/hooks".parse().expect("repository name");
    Event::new(EventKind::ManifestPushed, &repo, at_ms)
}

fn attempt(n: u32, time_ms: u64) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt: n,
        time_ms,
        duration_ms: 5,
        outcome: AttemptOutcome::Failed,
        http_status: Some(503),
        error: None,
        response_excerpt: None,
        manual: false,
    }
}

fn delivery_key(
    policy_id: &str,
    event_id: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    std::collections::HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(keys::deliveries_pk(policy_id)),
        ),
        (
            "sk".to_owned(),
            AttributeValue::S(keys::delivery_sk(event_id)),
        ),
    ])
}

/// A delivery expires (TTL attribute `expires_at`, epoch seconds) 30 days after its
/// latest attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_a_ttl_from_their_latest_attempt() {
    let table = FreshTable::create("registry-webhooks").await;
    let store = table.store();
    let e = event(1_700_000_000_000);
    store
        .record_attempt("p1", &e, &attempt(1, 1_700_000_000_500))
        .await
        .expect("record_attempt");
    store
        .record_attempt("p1", &e, &attempt(2, 1_700_000_100_000))
        .await
        .expect("record_attempt");
    let item = table
        .clients
        .dynamodb
        .get_item()
        .table_name(&table.settings.table)
        .set_key(Some(delivery_key("p1", &e.id)))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the delivery item");
    assert_eq!(
        item.get("expires_at"),
        Some(&AttributeValue::N(
            (1_700_000_100 + 30 * 24 * 3600).to_string()
        ))
    );
}

/// A delivery holding more attempts than it keeps (written before a trim, or by a trim
/// that lost every race) is trimmed to the latest `MAX_ATTEMPTS_KEPT` by the next append,
/// however many it drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_trims_every_surplus_attempt() {
    let table = FreshTable::create("registry-webhooks").await;
    let store = table.store();
    let e = event(5_000);
    store
        .record_attempt("p1", &e, &attempt(1, 10_000))
        .await
        .expect("record_attempt");
    let extra = MAX_ATTEMPTS_KEPT as u32 + 5;
    let attempts: Vec<AttributeValue> = (2..=extra)
        .map(|i| {
            AttributeValue::S(serde_json::to_string(&attempt(i, 10_000 + u64::from(i))).unwrap())
        })
        .collect();
    table
        .clients
        .dynamodb
        .update_item()
        .table_name(&table.settings.table)
        .set_key(Some(delivery_key("p1", &e.id)))
        .update_expression("SET attempts = list_append(attempts, :more)")
        .expression_attribute_values(":more", AttributeValue::L(attempts))
        .send()
        .await
        .expect("UpdateItem");
    let before = store.get_delivery("p1", &e.id).await.unwrap().unwrap();
    assert_eq!(before.attempts.len(), extra as usize);

    store
        .record_attempt("p1", &e, &attempt(extra + 1, 20_000))
        .await
        .expect("record_attempt");
    let after = store.get_delivery("p1", &e.id).await.unwrap().unwrap();
    let numbers: Vec<u32> = after.attempts.iter().map(|a| a.attempt).collect();
    let want: Vec<u32> = (extra + 2 - MAX_ATTEMPTS_KEPT as u32..=extra + 1).collect();
    assert_eq!(numbers, want);
    assert_eq!(after.event, e);
}

/// Recording the very same attempt again (a resent append) keeps one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_append_is_recorded_once() {
    let table = FreshTable::create("registry-webhooks").await;
    let store = table.store();
    let e = event(5_000);
    for a in [attempt(1, 10_000), attempt(1, 10_000), attempt(2, 11_000)] {
        store
            .record_attempt("p1", &e, &a)
            .await
            .expect("record_attempt");
    }
    let d = store.get_delivery("p1", &e.id).await.unwrap().unwrap();
    assert_eq!(d.attempts, vec![attempt(1, 10_000), attempt(2, 11_000)]);
}

/// A tag check is `at_ms` (N) on `REPO#<name>` / `CHECKED#<tag>`; a cache size is
/// `bytes` (N) on `PROXY#<project>` / `CACHED`, so `ADD` counts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_items_hold_plain_numbers() {
    let table = FreshTable::create("registry-proxy").await;
    let store = table.store();
    let repo: RepoName = "proxy/library/alpine".parse().expect("repository name");
    let tag = "3.20".parse().expect("tag");
    store
        .set_tag_checked(&repo, &tag, 1_700_000_000_123)
        .await
        .expect("set_tag_checked");
    store
        .add_cached_bytes("hub", 4_096)
        .await
        .expect("add_cached_bytes");
    let raw = |pk: String, sk: String| {
        let dynamodb = table.clients.dynamodb.clone();
        let name = table.settings.table.clone();
        async move {
            dynamodb
                .get_item()
                .table_name(name)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(sk))
                .consistent_read(true)
                .send()
                .await
                .expect("GetItem")
                .item
                .expect("the item")
        }
    };
    let checked = raw(keys::repo_pk(&repo), keys::tag_checked_sk(&tag)).await;
    assert_eq!(
        checked.get("at_ms"),
        Some(&AttributeValue::N("1700000000123".into()))
    );
    let cached = raw(keys::proxy_pk("hub"), keys::CACHED.to_owned()).await;
    assert_eq!(cached.get("bytes"), Some(&AttributeValue::N("4096".into())));
}
