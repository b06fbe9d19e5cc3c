//! The webhook Lambda function: SQS batches of the webhook queue through the worker
//! harness, and scheduled invocations that sweep the event outbox.

use lambda_runtime::{LambdaEvent, service_fn};
use registry_app::{LogFormat, ServerConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = ServerConfig::from_env();
    registry_app::logging::init_logging(&config.log, LogFormat::Json)?;
    let events = registry_app::compose::build_events(&config).await?;
    let events = &events;
    lambda_runtime::run(service_fn(
        move |invocation: LambdaEvent<serde_json::Value>| async move {
            registry_webhook::handle(events, invocation.payload).await
        },
    ))
    .await
}
