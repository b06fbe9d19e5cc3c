//! The long-lived server process (the local all-in-one registry, or the upload endpoint):
//! the HTTP app, upload expiry sweeps, the webhook, scan and proxy-fill workers and the outbox sweep
//! (unless `--workers false`), and a clean shutdown on SIGINT or SIGTERM.

use std::time::Duration;

use registry_core::worker::PollConfig;

use crate::compose::{EventsRuntime, build};
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
    let composed = build(&config, true).await?;
    let state = composed.state;
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    if let Some(events) = composed.events.filter(|_| config.events.workers) {
        background = spawn_workers(events, &config, workers_stopped.clone());
    }
    let queue_workers = [composed.scanning.map(|s| s.worker), composed.proxy_fill];
    for worker in queue_workers
        .into_iter()
        .flatten()
        .filter(|_| config.events.workers)
    {
        let stop = workers_stopped.clone();
        background.push(tokio::spawn(async move {
            worker.run(PollConfig::default(), stop).await
        }));
    }
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
    let _ = stop_workers.send(true);
    for task in background {
        let _ = task.await;
    }
    Ok(())
}

/// The webhook worker and the outbox sweep, until `stop` turns true.
fn spawn_workers(
    events: EventsRuntime,
    config: &ServerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let worker = events.worker.clone();
    let worker_stop = stop.clone();
    let poll = PollConfig::default();
    let worker_task = tokio::spawn(async move { worker.run(poll, worker_stop).await });
    let relay = events.relay.clone();
    let every = Duration::from_secs(config.events.outbox_sweep_secs.max(1));
    let mut stop = stop;
    let sweep_task = tokio::spawn(async move {
        while !*stop.borrow() {
            match relay.sweep(100).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "published outbox events"),
                Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    });
    vec![worker_task, sweep_task]
}
