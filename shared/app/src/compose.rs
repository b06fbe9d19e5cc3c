//! Builds the `Registry` over the configured backend: the one place adapters are chosen.

use std::sync::Arc;

use registry_aws::dynamo_metadata_store::{DynamoMetadataStore, DynamoSettings};
use registry_aws::s3_blob_store::{S3BlobStore, S3BlobStoreSettings};
use registry_aws::{AwsClients, AwsSettings};
use registry_core::ports::{BlobStore, MetadataStore, SystemClock};
use registry_core::{Registry, RegistryConfig, Result};
use registry_embedded::{EmbeddedMetadataStore, FileBlobStore, open_database};

use crate::config::{AwsConfig, Backend, ServerConfig};

/// The use-case settings that come from configuration.
pub fn registry_config(config: &ServerConfig) -> RegistryConfig {
    RegistryConfig {
        upload_ttl_secs: config.upload_ttl_secs,
        max_request_body: config.max_request_body,
        upload_endpoint_url: config
            .upload_endpoint_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        upload_token_secret: config
            .upload_token_secret
            .as_ref()
            .map(|s| s.as_bytes().to_vec()),
        require_upload_token: config.require_upload_token,
        ..RegistryConfig::default()
    }
}

/// The AWS clients of `aws`, loaded once per process.
pub async fn aws_clients(aws: &AwsConfig) -> AwsClients {
    AwsClients::load(&AwsSettings {
        endpoint_url: aws.endpoint_url.clone(),
        region: aws.region.clone(),
    })
    .await
}

/// The storage adapters of the configured backend.
pub async fn stores(config: &ServerConfig) -> Result<(Arc<dyn BlobStore>, Arc<dyn MetadataStore>)> {
    match config.backend {
        Backend::Embedded => {
            let db = open_database(&config.data_dir.join("metadata.redb"))?;
            Ok((
                Arc::new(FileBlobStore::new(&config.data_dir)?),
                Arc::new(EmbeddedMetadataStore::new(db)?),
            ))
        }
        Backend::Aws => {
            let aws = &config.aws;
            let clients = aws_clients(aws).await;
            let blobs = S3BlobStore::new(
                clients.s3.clone(),
                S3BlobStoreSettings {
                    prefix: aws.prefix.clone(),
                    presign_expiry_secs: aws.presign_expiry_secs,
                    public_base_url: aws.blob_public_base_url.clone(),
                    ..S3BlobStoreSettings::new(&aws.bucket)
                },
            )?;
            let meta = DynamoMetadataStore::new(
                clients.dynamodb.clone(),
                clients.s3.clone(),
                DynamoSettings {
                    manifest_prefix: format!("{}manifests/", aws.prefix),
                    ..DynamoSettings::new(&aws.table, &aws.bucket)
                },
            );
            Ok((Arc::new(blobs), Arc::new(meta)))
        }
    }
}

/// The registry over the configured backend.
pub async fn build_registry(config: &ServerConfig) -> Result<Arc<Registry>> {
    let (blobs, meta) = stores(config).await?;
    Ok(Arc::new(Registry::new(
        blobs,
        meta,
        Arc::new(SystemClock),
        registry_config(config),
    )))
}
