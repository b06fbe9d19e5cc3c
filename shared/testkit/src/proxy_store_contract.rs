//! The contract every [`ProxyCacheStore`] adapter must pass: tag check times read back
//! what was last set, per repository and tag; cache sizes are atomic counters per project.
//!
//! Each check takes a fresh, empty store, and names its repositories and projects with
//! [`run_suffix`] so that a backend shared between runs holds nothing of an earlier one.
//! Run them all, one test each, with
//! [`proxy_cache_store_contract_tests!`](crate::proxy_cache_store_contract_tests).

use std::sync::Arc;

use registry_core::ports::ProxyCacheStore;
use registry_core::{RepoName, Tag};

use crate::support::run_suffix;

/// A repository name unique to this run.
fn repo(sfx: &str, name: &str) -> RepoName {
    format!("proxy-{sfx}/{name}")
        .parse()
        .expect("repository name")
}

fn tag(name: &str) -> Tag {
    name.parse().expect("tag")
}

/// A project name unique to this run.
fn project(sfx: &str, name: &str) -> String {
    format!("{name}-{sfx}")
}

/// An unchecked tag has no time; a set reads back; a later set overwrites it.
pub async fn tag_checks_round_trip(store: Arc<dyn ProxyCacheStore>) {
    let sfx = run_suffix();
    let (r, t) = (repo(&sfx, "library/alpine"), tag("3.20"));
    assert_eq!(store.tag_checked(&r, &t).await.unwrap(), None);

    store
        .set_tag_checked(&r, &t, 1_700_000_000_000)
        .await
        .unwrap();
    assert_eq!(
        store.tag_checked(&r, &t).await.unwrap(),
        Some(1_700_000_000_000)
    );

    store
        .set_tag_checked(&r, &t, 1_700_000_060_000)
        .await
        .unwrap();
    assert_eq!(
        store.tag_checked(&r, &t).await.unwrap(),
        Some(1_700_000_060_000)
    );

    // An earlier time is stored too: the last write wins, not the largest time.
    store.set_tag_checked(&r, &t, 5).await.unwrap();
    assert_eq!(store.tag_checked(&r, &t).await.unwrap(), Some(5));
}

/// Check times are per repository and per tag.
pub async fn tag_checks_are_independent(store: Arc<dyn ProxyCacheStore>) {
    let sfx = run_suffix();
    let (alpine, busybox) = (repo(&sfx, "library/alpine"), repo(&sfx, "library/busybox"));
    let (latest, edge) = (tag("latest"), tag("edge"));
    store
        .set_tag_checked(&alpine, &latest, 1_000)
        .await
        .unwrap();
    store.set_tag_checked(&alpine, &edge, 2_000).await.unwrap();
    store
        .set_tag_checked(&busybox, &latest, 3_000)
        .await
        .unwrap();

    assert_eq!(
        store.tag_checked(&alpine, &latest).await.unwrap(),
        Some(1_000)
    );
    assert_eq!(
        store.tag_checked(&alpine, &edge).await.unwrap(),
        Some(2_000)
    );
    assert_eq!(
        store.tag_checked(&busybox, &latest).await.unwrap(),
        Some(3_000)
    );
    assert_eq!(store.tag_checked(&busybox, &edge).await.unwrap(), None);
    assert_eq!(
        store
            .tag_checked(&repo(&sfx, "library/debian"), &latest)
            .await
            .unwrap(),
        None
    );

    store
        .set_tag_checked(&alpine, &latest, 9_000)
        .await
        .unwrap();
    assert_eq!(
        store.tag_checked(&alpine, &edge).await.unwrap(),
        Some(2_000)
    );
    assert_eq!(
        store.tag_checked(&busybox, &latest).await.unwrap(),
        Some(3_000)
    );
}

/// A project that never cached anything has 0 bytes.
pub async fn unknown_project_has_no_bytes(store: Arc<dyn ProxyCacheStore>) {
    let sfx = run_suffix();
    assert_eq!(store.cached_bytes(&project(&sfx, "hub")).await.unwrap(), 0);
}

/// Each add returns the running total, which `cached_bytes` then reads; adding 0 is a
/// read of the total.
pub async fn adds_return_the_running_total(store: Arc<dyn ProxyCacheStore>) {
    let sfx = run_suffix();
    let hub = project(&sfx, "hub");
    assert_eq!(store.add_cached_bytes(&hub, 100).await.unwrap(), 100);
    assert_eq!(store.add_cached_bytes(&hub, 2_500).await.unwrap(), 2_600);
    assert_eq!(store.add_cached_bytes(&hub, 0).await.unwrap(), 2_600);
    let big = 5 * 1024 * 1024 * 1024; // beyond 32 bits
    assert_eq!(
        store.add_cached_bytes(&hub, big).await.unwrap(),
        2_600 + big
    );
    assert_eq!(store.cached_bytes(&hub).await.unwrap(), 2_600 + big);
}

/// 16 adds of different amounts at once all count: the total is their exact sum, and
/// every add returned a distinct running total no larger than it.
pub async fn concurrent_adds_all_count(store: Arc<dyn ProxyCacheStore>) {
    let sfx = run_suffix();
    let hub = project(&sfx, "hub");
    store.add_cached_bytes(&hub, 7).await.unwrap();
    let amounts: Vec<u64> = (1..=16u64).map(|i| i * 1_000 + i).collect();
    let mut tasks = Vec::new();
    for &n in &amounts {
        let (store, hub) = (store.clone(), hub.clone());
        tasks.push(tokio::spawn(async move {
            store.add_cached_bytes(&hub, n).await.unwrap()
        }));
    }
    let mut totals = Vec::new();
    for t in tasks {
        totals.push(t.await.unwrap());
    }
    let sum = 7 + amounts.iter().sum::<u64>();
    assert_eq!(store.cached_bytes(&hub).await.unwrap(), sum);
    totals.sort_unstable();
    totals.dedup();
    assert_eq!(totals.len(), amounts.len(), "two adds saw the same total");
    assert_eq!(totals.last(), Some(&sum), "the last add returns the sum");
    assert!(totals[0] > 7, "every add counts the earlier one");
}

/// Projects count separately.
pub async fn projects_are_independent(store: Arc<dyn ProxyCacheStore>) {
    let sfx = run_suffix();
    let (hub, quay, ghcr) = (
        project(&sfx, "hub"),
        project(&sfx, "quay"),
        project(&sfx, "ghcr"),
    );
    assert_eq!(store.add_cached_bytes(&hub, 10).await.unwrap(), 10);
    assert_eq!(store.add_cached_bytes(&quay, 300).await.unwrap(), 300);
    assert_eq!(store.add_cached_bytes(&hub, 5).await.unwrap(), 15);
    assert_eq!(store.cached_bytes(&hub).await.unwrap(), 15);
    assert_eq!(store.cached_bytes(&quay).await.unwrap(), 300);
    assert_eq!(store.cached_bytes(&ghcr).await.unwrap(), 0);
}
