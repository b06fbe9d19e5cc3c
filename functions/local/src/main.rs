//! `registry`: the whole registry in one process with embedded storage (`cargo run`).

use clap::Parser;
use registry_app::LocalConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    registry_app::local::run(LocalConfig::parse()).await
}
