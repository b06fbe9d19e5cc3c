//! Runs the metadata store contract of `registry-testkit` against `DynamoMetadataStore`
//! on LocalStack: every test gets a fresh table (string `pk` HASH, string `sk` RANGE,
//! on-demand, as `localstack/init/ready.d/10-resources.py` creates the real one) and a
//! fresh S3 prefix for large manifests, both removed when the test ends. Fails, never
//! skips, when LocalStack is not there.

mod common;

use std::sync::Arc;

use common::FreshTable;
use registry_core::ports::MetadataStore;

async fn dynamo_metadata_store() -> (Arc<dyn MetadataStore>, FreshTable) {
    let table = FreshTable::create("registry-test").await;
    (Arc::new(table.store()), table)
}

mod metadata_store {
    registry_testkit::metadata_store_contract_tests!(super::dynamo_metadata_store);
}
