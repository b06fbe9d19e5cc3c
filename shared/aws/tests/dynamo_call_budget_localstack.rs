//! The DynamoDB and S3 calls that the hot metadata reads of `DynamoMetadataStore` cost on
//! LocalStack, counted by `registry_core::metrics::scoped`: a manifest GET by tag is one
//! GetItem (plus one GetObject when the manifest is in S3), a blob link check one GetItem.
//! Each test uses a fresh table and S3 prefix, removed at its end; the tests fail, never
//! skip, when LocalStack is not there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use registry_aws::{AwsClients, AwsSettings, DynamoMetadataStore, DynamoSettings};
use registry_core::metrics::{CallCounts, calls_to, scoped};
use registry_core::ports::{ManifestRecord, MetadataStore};
use registry_core::{Digest, DigestAlgorithm, RepoName, Tag};

const HINT: &str = "run `localstack/start && source localstack/env` first";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HINT}"))
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes the test's table and manifest objects when the test ends.
struct Cleanup {
    clients: AwsClients,
    table: String,
    bucket: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let (ddb, s3) = (&self.clients.dynamodb, &self.clients.s3);
                let _ = ddb.delete_table().table_name(&self.table).send().await;
                let listed = s3
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .send()
                    .await;
                for object in listed.iter().flat_map(|l| l.contents()) {
                    if let Some(key) = object.key() {
                        let _ = s3
                            .delete_object()
                            .bucket(&self.bucket)
                            .key(key)
                            .send()
                            .await;
                    }
                }
            })
        });
    }
}

/// A store on a fresh table with the registry's key schema.
async fn fresh_store() -> (DynamoMetadataStore, Cleanup) {
    let settings = AwsSettings {
        endpoint_url: Some(env("AWS_ENDPOINT_URL")),
        region: Some(env("AWS_REGION")),
    };
    let clients = AwsClients::load(&settings).await;
    let table = unique("registry-budget");
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema element")
    };
    clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating DynamoDB table {table} failed ({}): is LocalStack up? {HINT}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        });
    for _ in 0..600 {
        let described = clients
            .dynamodb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .expect("describe the new table");
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bucket = env("REGISTRY_S3_BUCKET");
    let prefix = format!("{}/", unique("test-manifests"));
    let mut store_settings = DynamoSettings::new(table.clone(), bucket.clone());
    store_settings.manifest_prefix = prefix.clone();
    let store =
        DynamoMetadataStore::new(clients.dynamodb.clone(), clients.s3.clone(), store_settings);
    let cleanup = Cleanup {
        clients,
        table,
        bucket,
        prefix,
    };
    (store, cleanup)
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
