//! The API Lambda function: the registry's HTTP app behind `lambda_http`, configured from
//! the environment, state built once per execution environment.

use registry_app::{LogFormat, ServerConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = ServerConfig::from_env();
    registry_app::logging::init_logging(&config.log, LogFormat::Json)?;
    let app = registry_api::app(&config).await?;
    lambda_http::run(app).await
}
