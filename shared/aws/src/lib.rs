//! AWS adapters of the registry's ports: `S3BlobStore`, `DynamoMetadataStore` (also the
//! `IdentityStore`, the `WebhookStore`, the `ScanStore`, the `VulnerabilityStore` and the
//! `ProxyCacheStore`), `SqsJobQueue`. The only crate that depends on `aws-sdk-*`.

pub mod clients;
mod dynamo_identity_store;
pub mod dynamo_metadata_store;
mod dynamo_proxy_store;
pub mod dynamo_scan_store;
mod dynamo_webhook_store;
pub mod s3_blob_store;
pub mod sqs_batch;
pub mod sqs_job_queue;

pub use clients::{AwsClients, AwsSettings};
pub use dynamo_metadata_store::{DynamoMetadataStore, DynamoSettings};
pub use s3_blob_store::{S3BlobStore, S3BlobStoreSettings};
pub use sqs_job_queue::{SqsJobQueue, SqsQueueSettings};
