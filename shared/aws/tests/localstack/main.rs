//! The AWS adapters against LocalStack, one module per adapter, linked into one binary
//! (one test binary per crate: each link of the AWS SDK costs seconds and ~100 MB of disk).

mod common;
mod dynamo_call_budget;
mod dynamo_identity_store;
mod dynamo_metadata_store;
mod dynamo_scan_store;
mod s3_blob_store;
mod sqs_job_queue;
