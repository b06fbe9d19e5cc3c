//! Setup shared by the LocalStack tests of `registry-aws`: the variables `localstack/env`
//! exports, names no other test uses, SDK clients checked reachable, fresh DynamoDB tables
//! with the registry's key schema, and guards removing what a test created in S3 and
//! DynamoDB when it ends.
//!
//! Every test file compiles this module on its own and uses a part of it. The tests fail,
//! never skip, when LocalStack is not there.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use registry_aws::{AwsClients, AwsSettings, DynamoMetadataStore, DynamoSettings};

/// What to do when LocalStack is missing, for failure messages.
pub const HOW_TO_START: &str = "run `localstack/start && source localstack/env` first";

/// Reads a variable `localstack/env` exports; fails the test if it is missing.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW_TO_START}"))
}

/// `{prefix}-{suffix}`: a name no other test (or earlier run) uses, see
/// [`run_suffix`](registry_testkit::support::run_suffix).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", registry_testkit::support::run_suffix())
}

/// SDK clients for the LocalStack of the environment; fails the test when it is not
/// configured or does not accept connections.
pub async fn clients() -> AwsClients {
    let endpoint = env("AWS_ENDPOINT_URL");
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&authority),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("LocalStack at {endpoint} is not reachable ({e}): {HOW_TO_START}"),
        Err(_) => panic!("LocalStack at {endpoint} does not answer: {HOW_TO_START}"),
    }
    AwsClients::load(&AwsSettings {
        endpoint_url: Some(endpoint),
        region: Some(env("AWS_REGION")),
    })
    .await
}

/// Runs clean-up `work` to completion from a `Drop`, so that it is done before the test
/// ends. Does nothing outside a multi-threaded Tokio runtime (where it cannot block).
pub fn finish_in_drop(work: impl Future<Output = ()>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| runtime.block_on(work));
}

/// The keys of every object under `prefix`, over all pages.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    try_list_keys(s3, bucket, prefix)
        .await
        .expect("ListObjectsV2")
}

async fn try_list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, aws_sdk_s3::Error> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(String::from),
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(keys),
        }
    }
}

/// Removes every object and multipart upload under a test's S3 prefix when dropped.
pub struct PrefixCleaner {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
}

impl PrefixCleaner {
    /// Best effort: a leftover object under a test prefix is harmless.
    pub async fn clean(&self) {
        if let Ok(out) = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
        {
            for u in out.uploads() {
                let _ = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send()
                    .await;
            }
        }
        let keys = try_list_keys(&self.s3, &self.bucket, &self.prefix).await;
        for key in keys.unwrap_or_default() {
            let _ = self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
        }
    }
}

impl Drop for PrefixCleaner {
    fn drop(&mut self) {
        finish_in_drop(self.clean());
    }
}

/// A fresh, empty DynamoDB table with the registry's key schema (string `pk` HASH, string
/// `sk` RANGE, on-demand, as `localstack/init/ready.d/10-resources.py` creates the real
/// one) and a fresh S3 prefix for large manifests; dropping it removes both.
pub struct FreshTable {
    pub clients: AwsClients,
    /// Settings of a store on this table and prefix.
    pub settings: DynamoSettings,
    _manifests: PrefixCleaner,
}

impl FreshTable {
    /// Creates a table named after `name` and waits until it is active.
    pub async fn create(name: &str) -> Self {
        let clients = clients().await;
        let table = unique(name);
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
                    "creating DynamoDB table {table} failed ({}): is LocalStack up? {HOW_TO_START}",
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
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bucket = env("REGISTRY_S3_BUCKET");
        let prefix = format!("{}/", unique("test-manifests"));
        let mut settings = DynamoSettings::new(table, bucket.clone());
        settings.manifest_prefix = prefix.clone();
        settings.scan_prefix = prefix.clone();
        FreshTable {
            _manifests: PrefixCleaner {
                s3: clients.s3.clone(),
                bucket,
                prefix,
            },
            clients,
            settings,
        }
    }

    /// A `DynamoMetadataStore` on this table and prefix.
    pub fn store(&self) -> DynamoMetadataStore {
        DynamoMetadataStore::new(
            self.clients.dynamodb.clone(),
            self.clients.s3.clone(),
            self.settings.clone(),
        )
    }
}

impl Drop for FreshTable {
    fn drop(&mut self) {
        // The manifest objects go next, when `_manifests` is dropped.
        let table = self.settings.table.clone();
        let dynamodb = &self.clients.dynamodb;
        finish_in_drop(async {
            let _ = dynamodb.delete_table().table_name(table).send().await;
        });
    }
}
