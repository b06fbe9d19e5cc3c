//! `registry`: the whole registry in one process with embedded storage (`cargo run`).

use clap::Parser;
use registry_app::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), registry_app::BoxError> {
    registry_app::local::run(ServerConfig::parse()).await
}
