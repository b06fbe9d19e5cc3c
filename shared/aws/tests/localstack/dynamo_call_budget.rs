//! The DynamoDB and S3 calls that the hot metadata reads of `DynamoMetadataStore` cost on
//! LocalStack, counted by `registry_core::metrics::scoped`: a manifest GET by tag is one
//! GetItem (plus one GetObject when the manifest is in S3), a blob link check one GetItem;
//! and the writes that record outbox events: still one call each, and no more than
//! before when they record none.
//! Each test uses a fresh table and S3 prefix, removed at its end; the tests fail, never
//! skip, when LocalStack is not there.

use crate::common;

use std::collections::BTreeMap;

use common::FreshTable;
use registry_aws::DynamoMetadataStore;
use registry_core::events::{Event, EventKind};
use registry_core::metrics::{CallCounts, calls_to, scoped};
use registry_core::ports::{ManifestRecord, MetadataStore};
use registry_core::{Digest, DigestAlgorithm, RepoName, Tag};

/// A store on a fresh table with the registry's key schema, and the guard removing it.
async fn fresh_store() -> (DynamoMetadataStore, FreshTable) {
    let table = FreshTable::create("registry-budget").await;
    (table.store(), table)
}

fn repo() -> RepoName {
    "budget/app".parse().expect("repository name")
}

fn tag(name: &str) -> Tag {
    name.parse().expect("tag")
}

/// An image manifest of at least `len` bytes.
fn manifest(len: usize) -> ManifestRecord {
    let content = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": registry_core::manifest::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::of(DigestAlgorithm::Sha256, b"{}").to_string(),
            "size": 2
        },
        "layers": [],
        "annotations": { "filler": "x".repeat(len) }
    })
    .to_string();
    ManifestRecord {
        digest: Digest::of(DigestAlgorithm::Sha256, content.as_bytes()),
        media_type: registry_core::manifest::OCI_MANIFEST.to_owned(),
        content,
        subject: None,
        artifact_type: None,
        annotations: Some(BTreeMap::from([("filler".to_owned(), "x".to_owned())])),
    }
}

fn assert_calls(counts: &CallCounts, dynamodb_get_items: u64, s3_get_objects: u64, what: &str) {
    let want_ddb = CallCounts::from([("DynamoDB.GetItem".to_owned(), dynamodb_get_items)]);
    let got_ddb: CallCounts = counts
        .iter()
        .filter(|(k, _)| k.starts_with("DynamoDB."))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(
        got_ddb, want_ddb,
        "{what}: DynamoDB calls (all: {counts:?})"
    );
    assert_eq!(calls_to(counts, "DynamoDB"), dynamodb_get_items, "{what}");
    assert_eq!(
        calls_to(counts, "S3"),
        s3_get_objects,
        "{what}: S3 calls (all: {counts:?})"
    );
    if s3_get_objects > 0 {
        assert_eq!(counts.get("S3.GetObject"), Some(&s3_get_objects), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_manifest_by_tag_is_one_get_item() {
    let (store, _cleanup) = fresh_store().await;
    let m = manifest(1_000);
    store
        .put_manifest(&repo(), &m, &[tag("latest")], &[])
        .await
        .expect("put_manifest");

    let (got, counts) = scoped(store.get_manifest_by_tag(&repo(), &tag("latest"))).await;
    assert_eq!(got.expect("get_manifest_by_tag"), Some(m.clone()));
    assert_calls(&counts, 1, 0, "get_manifest_by_tag, small manifest");

    let (got, counts) = scoped(store.get_manifest(&repo(), &m.digest)).await;
    assert_eq!(got.expect("get_manifest"), Some(m.clone()));
    assert_calls(&counts, 1, 0, "get_manifest, small manifest");

    let (got, counts) = scoped(store.resolve_tag(&repo(), &tag("latest"))).await;
    assert_eq!(got.expect("resolve_tag"), Some(m.digest.clone()));
    assert_calls(&counts, 1, 0, "resolve_tag");

    let (got, counts) = scoped(store.get_manifest_by_tag(&repo(), &tag("missing"))).await;
    assert_eq!(got.expect("get_manifest_by_tag"), None);
    assert_calls(&counts, 1, 0, "get_manifest_by_tag of a missing tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_manifest_by_tag_is_one_get_item_and_one_get_object() {
    let (store, _cleanup) = fresh_store().await;
    let m = manifest(500 * 1024);
    let (put, counts) = scoped(store.put_manifest(&repo(), &m, &[tag("big")], &[])).await;
    put.expect("put_manifest");
    assert_eq!(
        counts.get("S3.PutObject"),
        Some(&1),
        "a 500 KB manifest goes to S3 (calls: {counts:?})"
    );
    assert_eq!(counts.get("DynamoDB.TransactWriteItems"), Some(&1));

    let (got, counts) = scoped(store.get_manifest_by_tag(&repo(), &tag("big"))).await;
    assert_eq!(got.expect("get_manifest_by_tag"), Some(m.clone()));
    assert_calls(&counts, 1, 1, "get_manifest_by_tag, large manifest");

    let (got, counts) = scoped(store.get_manifest(&repo(), &m.digest)).await;
    assert_eq!(got.expect("get_manifest"), Some(m.clone()));
    assert_calls(&counts, 1, 1, "get_manifest, large manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_link_is_one_get_item() {
    let (store, _cleanup) = fresh_store().await;
    let digest = Digest::of(DigestAlgorithm::Sha256, b"layer");
    store
        .link_blob(&repo(), &digest, 5, &[])
        .await
        .expect("link_blob");

    let (got, counts) = scoped(store.blob_link(&repo(), &digest)).await;
    assert_eq!(got.expect("blob_link"), Some(5));
    assert_calls(&counts, 1, 0, "blob_link");

    let other = Digest::of(DigestAlgorithm::Sha256, b"other");
    let (got, counts) = scoped(store.blob_link(&repo(), &other)).await;
    assert_eq!(got.expect("blob_link"), None);
    assert_calls(&counts, 1, 0, "blob_link of an unlinked blob");
}

/// The DynamoDB calls in `counts`, by operation.
fn dynamodb_calls(counts: &CallCounts) -> CallCounts {
    counts
        .iter()
        .filter(|(k, _)| k.starts_with("DynamoDB."))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn calls(pairs: &[(&str, u64)]) -> CallCounts {
    pairs
        .iter()
        .map(|(k, v)| (format!("DynamoDB.{k}"), *v))
        .collect()
}

/// An event at `at_ms` (ids of one millisecond are in no particular order).
fn event(kind: EventKind, at_ms: u64) -> Event {
    Event::new(kind, &repo(), at_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_events_are_one_call_and_without_cost_what_they_did() {
    let (store, _cleanup) = fresh_store().await;
    let digest = Digest::of(DigestAlgorithm::Sha256, b"layer");

    let (r, counts) = scoped(store.link_blob(&repo(), &digest, 5, &[])).await;
    r.expect("link_blob");
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("BatchWriteItem", 1)]),
        "link_blob, no events"
    );
    let uploaded = [event(EventKind::BlobUploaded, 1_000)];
    let (r, counts) = scoped(store.link_blob(&repo(), &digest, 5, &uploaded)).await;
    r.expect("link_blob");
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("TransactWriteItems", 1)]),
        "link_blob, one event"
    );

    let m = manifest(1_000);
    let pushed = [event(EventKind::ManifestPushed, 2_000)];
    let (r, counts) = scoped(store.put_manifest(&repo(), &m, &[tag("a"), tag("b")], &pushed)).await;
    r.expect("put_manifest");
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("TransactWriteItems", 1)]),
        "put_manifest"
    );

    let (r, counts) = scoped(store.delete_tag(&repo(), &tag("a"), &[])).await;
    assert!(r.expect("delete_tag"));
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("DeleteItem", 1)]),
        "delete_tag, no events"
    );
    let untagged = [event(EventKind::TagDeleted, 3_000)];
    let (r, counts) = scoped(store.delete_tag(&repo(), &tag("b"), &untagged)).await;
    assert!(r.expect("delete_tag"));
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("TransactWriteItems", 1)]),
        "delete_tag, one event"
    );
    let (r, counts) = scoped(store.delete_tag(&repo(), &tag("b"), &untagged)).await;
    assert!(!r.expect("delete_tag"), "the tag is gone");
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("TransactWriteItems", 1)]),
        "delete_tag of a missing tag"
    );

    let deleted = [event(EventKind::ManifestDeleted, 4_000)];
    let (r, counts) = scoped(store.delete_manifest(&repo(), &m.digest, &deleted)).await;
    assert!(r.expect("delete_manifest"));
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("GetItem", 1), ("Query", 1), ("TransactWriteItems", 1)]),
        "delete_manifest"
    );

    let (r, counts) = scoped(store.outbox_events(10)).await;
    let recorded: Vec<String> = r
        .expect("outbox_events")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        recorded,
        [&uploaded[0], &pushed[0], &untagged[0], &deleted[0]]
            .map(|e| e.id.clone())
            .to_vec()
    );
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("Query", 1)]),
        "outbox_events"
    );
    let (r, counts) = scoped(store.remove_outbox_event(&pushed[0].id)).await;
    r.expect("remove_outbox_event");
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("DeleteItem", 1)]),
        "remove_outbox_event"
    );
}

/// A push with as many tags as one put takes, a subject and an event needs more items
/// than one transaction holds: the repository's marker and catalog entry are written
/// first, and the manifest, its tags, its referrer entry and the event stay atomic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_push_with_an_event_writes_the_markers_first() {
    let (store, _cleanup) = fresh_store().await;
    let subject = manifest(10);
    store
        .put_manifest(&repo(), &subject, &[], &[])
        .await
        .expect("put_manifest of the subject");
    let mut m = manifest(20);
    m.subject = Some(subject.digest.clone());
    let tags: Vec<Tag> = (0..registry_aws::dynamo_metadata_store::MAX_TAGS_PER_PUT)
        .map(|i| tag(&format!("t{i:03}")))
        .collect();
    let pushed = [event(EventKind::ManifestPushed, 2_000)];
    let (r, counts) = scoped(store.put_manifest(&repo(), &m, &tags, &pushed)).await;
    r.expect("put_manifest with a full set of tags, a subject and an event");
    assert_eq!(
        dynamodb_calls(&counts),
        calls(&[("BatchWriteItem", 1), ("TransactWriteItems", 1)]),
        "the markers apart"
    );
    assert_eq!(
        store.resolve_tag(&repo(), &tags[95]).await.unwrap(),
        Some(m.digest.clone())
    );
    assert_eq!(
        store
            .list_referrers(&repo(), &subject.digest)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.outbox_events(10).await.unwrap(), pushed.to_vec());
    assert!(store.repository_exists(&repo()).await.unwrap());
}
