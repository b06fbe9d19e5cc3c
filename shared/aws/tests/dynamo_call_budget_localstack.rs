//! The DynamoDB and S3 calls that the hot metadata reads of `DynamoMetadataStore` cost on
//! LocalStack, counted by `registry_core::metrics::scoped`: a manifest GET by tag is one
//! GetItem (plus one GetObject when the manifest is in S3), a blob link check one GetItem.
//! Each test uses a fresh table and S3 prefix, removed at its end; the tests fail, never
//! skip, when LocalStack is not there.

mod common;

use std::collections::BTreeMap;

use common::FreshTable;
use registry_aws::DynamoMetadataStore;
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
        .put_manifest(&repo(), &m, &[tag("latest")])
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
    let (put, counts) = scoped(store.put_manifest(&repo(), &m, &[tag("big")])).await;
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
        .link_blob(&repo(), &digest, 5)
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
