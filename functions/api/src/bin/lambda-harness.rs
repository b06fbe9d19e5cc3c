//! `lambda-harness`: runs the API function behind a local API Gateway stand-in (6 MB
//! payload limits) and, beside it, the upload endpoint, both configured from the
//! environment, so stock clients and the conformance suite can drive a Lambda deployment.

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address of the API Gateway stand-in (the registry's public address).
    #[arg(long, env = "HARNESS_API_ADDR", default_value = "127.0.0.1:5000")]
    api_addr: std::net::SocketAddr,
    /// Address of the upload endpoint.
    #[arg(long, env = "HARNESS_UPLOAD_ADDR", default_value = "127.0.0.1:5001")]
    upload_addr: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), registry_app::BoxError> {
    let args = Args::parse();
    registry_api::harness::run_local(args.api_addr, args.upload_addr).await
}
