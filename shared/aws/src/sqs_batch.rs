//! `handle_batch`: runs a [`Job`] handler over the messages of an SQS-triggered Lambda
//! invocation and reports the partial batch failures, so only failed messages are retried.
//!
//! The event source mapping must have `FunctionResponseTypes: [ReportBatchItemFailures]`;
//! Lambda then deletes every message of the batch except those listed in
//! `batchItemFailures`, which become visible again after the queue's visibility timeout
//! and, after `maxReceiveCount` receives, go to the dead-letter queue (poison messages).
//!
//! Each message's body is decoded as a [`Job`] (the JSON that
//! [`SqsJobQueue::enqueue`](crate::SqsJobQueue) sends) and handed to the handler as a
//! [`ReceivedJob`] whose `receive_count` is the message's `ApproximateReceiveCount`
//! attribute (1 when absent) and whose `receipt` is its receipt handle (Lambda deletes
//! succeeded messages itself; the handler need not ack). Messages run concurrently, at
//! most [`MAX_CONCURRENT`] at a time; handlers are idempotent (at-least-once delivery).
//!
//! Errors: none of its own. A message fails when the handler returns an error or its body
//! is not a job; it is reported by its `messageId`, and logged. A failed message without a
//! `messageId` is reported with an empty identifier, which Lambda treats as a failure of
//! the whole batch (the safe side). A panicking handler fails the invocation, and so the
//! whole batch.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::StreamExt;
use registry_core::RegistryError;
use registry_core::ports::{Job, ReceivedJob};

/// How many messages of one batch are handled at the same time.
pub const MAX_CONCURRENT: usize = 4;

/// Handles every message of `event` with `handler`; the response lists the messages to
/// retry (handler error or undecodable body), in the order of the event.
pub async fn handle_batch<F, Fut>(event: SqsEvent, handler: F) -> SqsBatchResponse
where
    F: Fn(ReceivedJob) -> Fut,
    Fut: Future<Output = Result<(), RegistryError>>,
{
    let handler = &handler;
    let failures: Vec<Option<String>> = futures_util::stream::iter(event.records)
        .map(|message| async move {
            let id = message.message_id.clone().unwrap_or_default();
            let outcome = match decode(message) {
                Ok(job) => handler(job).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "SQS job failed: reported for retry");
                    Some(id)
                }
            }
        })
        .buffered(MAX_CONCURRENT)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for id in failures.into_iter().flatten() {
        response.add_failure(id);
    }
    response
}

/// Runs `worker` over the messages of an SQS-triggered invocation (every worker
/// function's body): failures set their backoff and are reported for retry.
pub async fn run_worker_batch(
    worker: &registry_core::worker::Worker,
    event: SqsEvent,
) -> SqsBatchResponse {
    handle_batch(event, |job| worker.process(job)).await
}

/// The SQS event Lambda's event source mapping would deliver for `jobs` received from a
/// queue (message ids `m0`, `m1`, …): for driving a worker function as Lambda does, in
/// tests and local replays.
pub fn event_of(jobs: &[ReceivedJob]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, j) in jobs.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m{i}"));
        m.receipt_handle = Some(j.receipt.clone());
        m.body = serde_json::to_string(&j.job).ok();
        m.attributes.insert(
            "ApproximateReceiveCount".into(),
            j.receive_count.to_string(),
        );
        event.records.push(m);
    }
    event
}

/// Receives `want` messages of `queue` and runs them through `worker` in batches, as
/// Lambda's event source mapping would (successes deleted, failures left for SQS to
/// retry): for driving a worker function against a real queue in tests and local
/// replays. Returns the jobs reported as failed; fails after `within` without `want`.
pub async fn run_queue_batches(
    queue: &crate::SqsJobQueue,
    worker: &registry_core::worker::Worker,
    want: usize,
    within: std::time::Duration,
) -> Result<Vec<Job>, RegistryError> {
    use registry_core::ports::JobQueue;
    let deadline = std::time::Instant::now() + within;
    let (mut handled, mut failed) = (0, Vec::new());
    while handled < want {
        if std::time::Instant::now() > deadline {
            return Err(RegistryError::Storage(format!(
                "{handled} of {want} messages arrived within {within:?}"
            )));
        }
        let jobs = queue.receive(10, 120).await?;
        handled += jobs.len();
        if jobs.is_empty() {
            continue;
        }
        let response = run_worker_batch(worker, event_of(&jobs)).await;
        let failures: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for (i, j) in jobs.into_iter().enumerate() {
            if failures.contains(&format!("m{i}").as_str()) {
                failed.push(j.job);
            } else {
                queue.ack(&j.receipt).await?;
            }
        }
    }
    Ok(failed)
}

/// The job of `message`, with its receive count and receipt handle.
fn decode(message: SqsMessage) -> Result<ReceivedJob, RegistryError> {
    let body = message.body.as_deref().unwrap_or_default();
    let job: Job = serde_json::from_str(body)
        .map_err(|e| RegistryError::Storage(format!("SQS message body is not a job: {e}")))?;
    let receive_count = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    Ok(ReceivedJob {
        job,
        receipt: message.receipt_handle.unwrap_or_default(),
        receive_count,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn job(n: u64) -> Job {
        Job {
            kind: "scan".into(),
            payload: json!({ "n": n }),
        }
    }

    fn message(id: &str, body: &str, receive_count: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.receipt_handle = Some(format!("receipt-{id}"));
        m.body = Some(body.to_owned());
        if let Some(c) = receive_count {
            m.attributes
                .insert("ApproximateReceiveCount".to_owned(), c.to_owned());
        }
        m
    }

    fn event(messages: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = messages;
        e
    }

    fn job_message(id: &str, n: u64) -> SqsMessage {
        message(id, &serde_json::to_string(&job(n)).unwrap(), Some("1"))
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn all_succeed_no_failures() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let response = handle_batch(
            event((0..5).map(|n| job_message(&format!("m{n}"), n)).collect()),
            |r| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(r.job.payload["n"].as_u64().unwrap());
                    Ok(())
                }
            },
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3, 4], "each job handled once");
        // The response serialises as Lambda expects.
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({ "batchItemFailures": [] })
        );
    }

    #[tokio::test]
    async fn a_failing_handler_reports_exactly_its_message() {
        let response = handle_batch(
            event(vec![
                job_message("ok-1", 1),
                job_message("bad-2", 2),
                job_message("ok-3", 3),
            ]),
            |r| async move {
                if r.job == job(2) {
                    Err(RegistryError::Storage("upstream down".into()))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert_eq!(failed_ids(&response), vec!["bad-2"]);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({ "batchItemFailures": [{ "itemIdentifier": "bad-2" }] })
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_reported_and_not_handled() {
        let handled = AtomicUsize::new(0);
        let response = handle_batch(
            event(vec![
                job_message("ok-1", 1),
                message("garbage", "not json at all", Some("1")),
                message("wrong-shape", r#"{"n": 1}"#, Some("1")),
                job_message("ok-2", 2),
            ]),
            |_| {
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .await;
        assert_eq!(failed_ids(&response), vec!["garbage", "wrong-shape"]);
        assert_eq!(handled.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_handler_gets_receive_count_and_receipt() {
        let got = std::sync::Mutex::new(Vec::new());
        let response = handle_batch(
            event(vec![
                message("a", &serde_json::to_string(&job(1)).unwrap(), Some("4")),
                message("b", &serde_json::to_string(&job(2)).unwrap(), None),
            ]),
            |r| {
                got.lock().unwrap().push(r);
                async { Ok(()) }
            },
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        let mut got = got.into_inner().unwrap();
        got.sort_by_key(|r| r.receipt.clone());
        assert_eq!(
            got,
            vec![
                ReceivedJob {
                    job: job(1),
                    receipt: "receipt-a".into(),
                    receive_count: 4
                },
                ReceivedJob {
                    job: job(2),
                    receipt: "receipt-b".into(),
                    receive_count: 1
                },
            ]
        );
    }

    #[tokio::test]
    async fn messages_run_concurrently_within_the_bound() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let response = handle_batch(
            event((0..10).map(|n| job_message(&format!("m{n}"), n)).collect()),
            |r| {
                let (running, peak) = (&running, &peak);
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    if r.job == job(7) {
                        Err(RegistryError::Storage("fails".into()))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert_eq!(failed_ids(&response), vec!["m7"]);
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak > 1, "handled one at a time");
        assert!(peak <= MAX_CONCURRENT, "peak {peak} above the bound");
    }

    #[tokio::test]
    async fn the_fixture_event_decodes_and_its_bad_body_fails() {
        // aws_lambda_events' own example: a real SQS event shape whose body is not a job.
        let event: SqsEvent = serde_json::from_value(json!({
            "Records": [{
                "messageId": "MessageID_1",
                "receiptHandle": "MessageReceiptHandle",
                "body": "Message Body",
                "attributes": { "ApproximateReceiveCount": "2" },
                "messageAttributes": {},
                "eventSource": "aws:sqs"
            }]
        }))
        .unwrap();
        let response = handle_batch(event, |_| async { Ok(()) }).await;
        assert_eq!(failed_ids(&response), vec!["MessageID_1"]);
    }
}
