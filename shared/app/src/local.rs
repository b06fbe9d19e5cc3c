//! The long-lived server process (the local all-in-one registry, or the upload endpoint):
//! the HTTP app, upload expiry sweeps, and a clean shutdown on SIGINT or SIGTERM.

use std::time::Duration;

use crate::compose::build_state;
use crate::config::ServerConfig;
use crate::logging::init_logging;

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// Runs the registry server until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig) -> Result<(), crate::BoxError> {
    init_logging(&config.log, config.log_format)?;
    let state = build_state(&config, true).await?;
    let sweeper = state.registry.clone();
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
        backend = ?config.backend,
        data_dir = %config.data_dir.display(),
        upload_endpoint = config.require_upload_token,
        auth = state.auth.is_some(),
        "registry listening"
    );
    registry_http::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}
