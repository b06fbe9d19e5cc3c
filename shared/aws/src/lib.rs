//! AWS adapters of the registry's ports: `S3BlobStore`, `DynamoMetadataStore`,
//! `SqsJobQueue`. The only crate that depends on `aws-sdk-*`.

pub mod clients;

pub use clients::{AwsClients, AwsSettings};
