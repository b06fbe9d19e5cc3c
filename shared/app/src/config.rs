//! Configuration of the local registry process, from flags or `REGISTRY_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// `registry`: an OCI registry in one process, with embedded storage.
#[derive(Debug, Clone, Parser)]
#[command(name = "registry", version, about)]
pub struct LocalConfig {
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,

    /// Folder for blobs and the metadata database.
    #[arg(long, env = "REGISTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `registry_http=debug`).
    #[arg(long, env = "REGISTRY_LOG", default_value = "info")]
    pub log: String,

    /// Seconds an idle upload session lives before it is discarded.
    #[arg(long, env = "REGISTRY_UPLOAD_TTL_SECS", default_value_t = 24 * 3600)]
    pub upload_ttl_secs: u64,

    /// Seconds between sweeps of expired upload sessions.
    #[arg(long, env = "REGISTRY_SWEEP_INTERVAL_SECS", default_value_t = 600)]
    pub sweep_interval_secs: u64,
}
