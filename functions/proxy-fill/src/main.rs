//! The proxy-fill Lambda function: SQS batches of the proxy-fill queue (`proxy.fill-blob`,
//! `proxy.fill-image`) through the worker harness, reporting partial batch failures.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use registry_app::{LogFormat, ServerConfig};
use registry_aws::sqs_batch::run_worker_batch;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = ServerConfig::from_env();
    registry_app::logging::init_logging(&config.log, LogFormat::Json)?;
    let worker = registry_app::compose::build_proxy_fill(&config).await?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |batch: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(run_worker_batch(worker, batch.payload).await)
    }))
    .await
}
