//! Runs the metadata store contract of `registry-testkit` against `DynamoMetadataStore`
//! on LocalStack: every test gets a fresh table (string `pk` HASH, string `sk` RANGE,
//! on-demand, as `localstack/init/ready.d/10-resources.py` creates the real one) and a
//! fresh S3 prefix for large manifests, both removed when the test ends. Fails, never
//! skips, when LocalStack is not there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use registry_aws::{AwsClients, AwsSettings, DynamoMetadataStore, DynamoSettings};
use registry_core::ports::MetadataStore;

const HINT: &str = "run `localstack/start && source localstack/env` first";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HINT}"))
}

/// A name no other test (or earlier run) uses.
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
                let _ = self
                    .clients
                    .dynamodb
                    .delete_table()
                    .table_name(&self.table)
                    .send()
                    .await;
                let listed = self
                    .clients
                    .s3
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .send()
                    .await;
                if let Ok(listed) = listed {
                    for object in listed.contents() {
                        if let Some(key) = object.key() {
                            let _ = self
                                .clients
                                .s3
                                .delete_object()
                                .bucket(&self.bucket)
                                .key(key)
                                .send()
                                .await;
                        }
                    }
                }
            })
        });
    }
}

/// A fresh, empty table with the registry's key schema, and settings pointing at it.
async fn fresh_table() -> (AwsClients, DynamoSettings, Cleanup) {
    let settings = AwsSettings {
        endpoint_url: Some(env("AWS_ENDPOINT_URL")),
        region: Some(env("AWS_REGION")),
    };
    let clients = AwsClients::load(&settings).await;
    let table = unique("registry-test");
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
    let cleanup = Cleanup {
        clients: clients.clone(),
        table,
        bucket,
        prefix,
    };
    (clients, store_settings, cleanup)
}

async fn dynamo_metadata_store() -> (Arc<dyn MetadataStore>, Cleanup) {
    let (clients, settings, cleanup) = fresh_table().await;
    let store = DynamoMetadataStore::new(clients.dynamodb.clone(), clients.s3.clone(), settings);
    (Arc::new(store), cleanup)
}

mod metadata_store {
    registry_testkit::metadata_store_contract_tests!(super::dynamo_metadata_store);
}
