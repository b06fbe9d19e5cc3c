//! What one invocation of the webhook function does: an SQS event (`Records`) runs each
//! message through the worker harness and answers the partial batch failures; any other
//! event (the EventBridge schedule) sweeps the event outbox.

use aws_lambda_events::event::sqs::SqsEvent;
use registry_app::compose::EventsRuntime;
use registry_aws::sqs_batch::run_worker_batch;

/// Outbox events one scheduled sweep publishes at most.
pub const SWEEP_LIMIT: usize = 1000;

/// Handles one invocation: the answer is an `SqsBatchResponse` for an SQS event, or
/// `{"published": n}` for a sweep.
pub async fn handle(
    events: &EventsRuntime,
    payload: serde_json::Value,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    if payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(payload)?;
        let response = run_worker_batch(&events.worker, batch).await;
        Ok(serde_json::to_value(response)?)
    } else {
        let published = events.relay.sweep(SWEEP_LIMIT).await?;
        tracing::info!(published, "outbox sweep");
        Ok(serde_json::json!({ "published": published }))
    }
}
