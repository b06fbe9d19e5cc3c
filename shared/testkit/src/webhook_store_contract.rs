//! The contract every [`WebhookStore`] adapter must pass: policies per project, and the
//! delivery log (attempts appended atomically, newest delivery first, kept per policy).
//!
//! Each check takes a fresh, empty store. Run them all, one test each, with
//! [`webhook_store_contract_tests!`](crate::webhook_store_contract_tests).

use std::collections::BTreeSet;
use std::sync::Arc;

use registry_core::RepoName;
use registry_core::events::{Event, EventKind};
use registry_core::ports::webhook_store::MAX_ATTEMPTS_KEPT;
use registry_core::ports::{
    AttemptOutcome, DeliveryAttempt, PayloadFormat, WebhookPolicy, WebhookStore,
};

fn policy(project: &str, id: &str) -> WebhookPolicy {
    WebhookPolicy {
        id: id.to_owned(),
        project: project.to_owned(),
        name: format!("hook {id}"),
        target_url: format!("https://hooks.example/{id}"),
        event_types: BTreeSet::from([EventKind::ManifestPushed, EventKind::ScanFailed]),
        enabled: true,
        secret: Some("s3cret".into()),
        format: PayloadFormat::CloudEvents,
        created_ms: 1_000,
        updated_ms: 1_000,
    }
}

fn event(at_ms: u64) -> Event {
    let repo: RepoName = "contract/hooks".parse().unwrap();
    Event::new(EventKind::ManifestPushed, &repo, at_ms).with_tags(["v1"])
}

fn attempt(n: u32, outcome: AttemptOutcome) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt: n,
        time_ms: 10_000 + u64::from(n),
        duration_ms: 12,
        outcome,
        http_status: Some(if outcome == AttemptOutcome::Delivered {
            200
        } else {
            503
        }),
        error: (outcome != AttemptOutcome::Delivered).then(|| "the target answered 503".into()),
        response_excerpt: Some("ok".into()),
        manual: false,
    }
}

/// Policies round-trip per project; a put replaces; delete answers whether it existed.
pub async fn policies_round_trip(store: Arc<dyn WebhookStore>) {
    let a = policy("alpha", "p1");
    let b = policy("alpha", "p2");
    let other = policy("beta", "p1");
    for p in [&a, &b, &other] {
        store.put_policy(p).await.unwrap();
    }
    assert_eq!(
        store.get_policy("alpha", "p1").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_policy("beta", "p1").await.unwrap(),
        Some(other.clone())
    );
    assert_eq!(store.get_policy("alpha", "p3").await.unwrap(), None);
    assert_eq!(store.get_policy("gamma", "p1").await.unwrap(), None);
    assert_eq!(
        store.list_policies("alpha").await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(store.list_policies("gamma").await.unwrap(), vec![]);

    let changed = WebhookPolicy {
        enabled: false,
        secret: None,
        format: PayloadFormat::Harbor,
        updated_ms: 2_000,
        ..a.clone()
    };
    store.put_policy(&changed).await.unwrap();
    assert_eq!(
        store.get_policy("alpha", "p1").await.unwrap(),
        Some(changed)
    );

    assert!(store.delete_policy("alpha", "p1").await.unwrap());
    assert!(!store.delete_policy("alpha", "p1").await.unwrap());
    assert_eq!(store.list_policies("alpha").await.unwrap(), vec![b]);
    assert_eq!(store.list_policies("beta").await.unwrap(), vec![other]);
}

/// Attempts append to one delivery per (policy, event), which keeps the event.
pub async fn attempts_append_to_a_delivery(store: Arc<dyn WebhookStore>) {
    let e = event(5_000);
    assert_eq!(store.get_delivery("p1", &e.id).await.unwrap(), None);
    store
        .record_attempt("p1", &e, &attempt(1, AttemptOutcome::Failed))
        .await
        .unwrap();
    store
        .record_attempt("p1", &e, &attempt(2, AttemptOutcome::Delivered))
        .await
        .unwrap();
    let d = store.get_delivery("p1", &e.id).await.unwrap().unwrap();
    assert_eq!(d.policy_id, "p1");
    assert_eq!(d.event, e);
    assert_eq!(
        d.attempts,
        vec![
            attempt(1, AttemptOutcome::Failed),
            attempt(2, AttemptOutcome::Delivered)
        ]
    );
    assert_eq!(store.get_delivery("p2", &e.id).await.unwrap(), None);
}

/// Deliveries list newest first, paged by `before`, only the policy's own.
pub async fn deliveries_list_newest_first(store: Arc<dyn WebhookStore>) {
    let events: Vec<Event> = (0..5).map(|i| event(1_000 + i * 1_000)).collect();
    for e in &events {
        store
            .record_attempt("p1", e, &attempt(1, AttemptOutcome::Delivered))
            .await
            .unwrap();
    }
    store
        .record_attempt("p2", &event(9_000), &attempt(1, AttemptOutcome::GaveUp))
        .await
        .unwrap();
    let ids = |ds: Vec<registry_core::ports::Delivery>| -> Vec<String> {
        ds.into_iter().map(|d| d.event.id).collect()
    };
    let newest_first: Vec<String> = events.iter().rev().map(|e| e.id.clone()).collect();
    assert_eq!(
        ids(store.list_deliveries("p1", None, 10).await.unwrap()),
        newest_first
    );
    assert_eq!(
        ids(store.list_deliveries("p1", None, 2).await.unwrap()),
        newest_first[..2]
    );
    assert_eq!(
        ids(store
            .list_deliveries("p1", Some(&newest_first[1]), 2)
            .await
            .unwrap()),
        newest_first[2..4]
    );
    assert_eq!(
        ids(store
            .list_deliveries("p1", Some(&newest_first[4]), 2)
            .await
            .unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(store.list_deliveries("p3", None, 10).await.unwrap(), vec![]);
}

/// Concurrent attempts on one delivery all land; only the latest `MAX_ATTEMPTS_KEPT` stay.
pub async fn concurrent_attempts_all_land(store: Arc<dyn WebhookStore>) {
    let e = event(7_000);
    let mut tasks = Vec::new();
    for n in 1..=8u32 {
        let (store, e) = (store.clone(), e.clone());
        tasks.push(tokio::spawn(async move {
            store
                .record_attempt("p1", &e, &attempt(n, AttemptOutcome::Failed))
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let d = store.get_delivery("p1", &e.id).await.unwrap().unwrap();
    let got: BTreeSet<u32> = d.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(got, (1..=8).collect());

    for n in 9..=(MAX_ATTEMPTS_KEPT as u32 + 5) {
        store
            .record_attempt("p1", &e, &attempt(n, AttemptOutcome::Failed))
            .await
            .unwrap();
    }
    let d = store.get_delivery("p1", &e.id).await.unwrap().unwrap();
    assert_eq!(d.attempts.len(), MAX_ATTEMPTS_KEPT);
    assert_eq!(
        d.attempts.last().unwrap().attempt,
        MAX_ATTEMPTS_KEPT as u32 + 5
    );
}

/// A deleted policy's deliveries are no longer listed under it once it is re-created
/// with another id, and the delete leaves other policies' deliveries alone.
pub async fn delete_policy_keeps_other_deliveries(store: Arc<dyn WebhookStore>) {
    store.put_policy(&policy("alpha", "p1")).await.unwrap();
    store.put_policy(&policy("alpha", "p2")).await.unwrap();
    let e = event(3_000);
    for p in ["p1", "p2"] {
        store
            .record_attempt(p, &e, &attempt(1, AttemptOutcome::Delivered))
            .await
            .unwrap();
    }
    assert!(store.delete_policy("alpha", "p1").await.unwrap());
    assert_eq!(
        store.list_deliveries("p2", None, 10).await.unwrap().len(),
        1
    );
}
