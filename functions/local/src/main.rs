//! `registry`: the whole registry in one process with embedded storage (`cargo run`), and
//! the management subcommands (`registry user …`, `registry project …`) that drive it.

use std::process::ExitCode;

use clap::Parser;
use registry_app::cli::{self, Cli};

#[tokio::main]
async fn main() -> Result<ExitCode, registry_app::BoxError> {
    let Cli { server, command } = Cli::parse();
    match command {
        None => registry_app::local::run(server)
            .await
            .map(|()| ExitCode::SUCCESS),
        Some(command) => Ok(cli::run(command, &server).await),
    }
}
