//! The local all-in-one process: embedded storage, the HTTP app, upload expiry sweeps,
//! and a clean shutdown on SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use registry_core::ports::SystemClock;
use registry_core::{Registry, RegistryConfig, Result};
use registry_embedded::{EmbeddedMetadataStore, FileBlobStore, open_database};
use registry_http::AppState;

use crate::config::LocalConfig;

/// Builds the registry over embedded storage under `config.data_dir`.
pub fn build_embedded(config: &LocalConfig) -> Result<Arc<Registry>> {
    let db = open_database(&config.data_dir.join("metadata.redb"))?;
    let meta = Arc::new(EmbeddedMetadataStore::new(db)?);
    let blobs = Arc::new(FileBlobStore::new(&config.data_dir)?);
    let registry_config = RegistryConfig {
        upload_ttl_secs: config.upload_ttl_secs,
        ..RegistryConfig::default()
    };
    Ok(Arc::new(Registry::new(
        blobs,
        meta,
        Arc::new(SystemClock),
        registry_config,
    )))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// Runs the local registry until SIGINT or SIGTERM.
pub async fn run(config: LocalConfig) -> std::result::Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log)?)
        .init();
    let registry = build_embedded(&config)?;
    let sweeper = registry.clone();
    let interval = Duration::from_secs(config.sweep_interval_secs.max(1));
    tokio::spawn(async move {
        loop {
            match sweeper.purge_expired_uploads().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "discarded expired upload sessions"),
                Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
            }
            tokio::time::sleep(interval).await;
        }
    });
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        "registry listening"
    );
    registry_http::serve(listener, AppState { registry }, shutdown_signal()).await?;
    Ok(())
}
