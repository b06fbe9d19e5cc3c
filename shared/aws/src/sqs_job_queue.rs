//! `SqsJobQueue`: the [`JobQueue`] port on one SQS standard queue and its dead-letter
//! queue.
//!
//! # Queues
//!
//! The queue must have a redrive policy (`RedrivePolicy`: `deadLetterTargetArn` = the
//! dead-letter queue, `maxReceiveCount` = the port's `max_receives`): dead-lettering is
//! SQS's own, so this adapter has no `max_receives` of its own. A message is moved on the
//! receive attempt after its `maxReceiveCount`-th receive. For a standard queue a moved
//! message keeps its original enqueue time, so give the dead-letter queue a longer
//! retention period than the source queue.
//!
//! # Calls per method
//!
//! - `enqueue`: one SendMessage; the body is the [`Job`] as JSON, with a `String` message
//!   attribute `kind` = `job.kind` (omitted when the kind is empty: SQS rejects empty
//!   attribute values), so consumers and filters can route without parsing the body.
//! - `receive(max, visibility_secs)`: ReceiveMessage with `MaxNumberOfMessages` =
//!   min(max, 10), `VisibilityTimeout` = `visibility_secs` (at most SQS's 12 hours),
//!   `MessageSystemAttributeNames` = `ApproximateReceiveCount` (the job's
//!   `receive_count`), and a long-poll wait of [`DEFAULT_RECEIVE_WAIT_SECS`] (see
//!   [`SqsJobQueue::with_receive_wait_secs`]). While `max` is not reached and SQS keeps
//!   returning full batches, further ReceiveMessage calls without a wait follow, up to
//!   [`MAX_RECEIVE_CALLS`]. The receipt is SQS's `ReceiptHandle`.
//! - `ack`: one DeleteMessage.
//! - `retry_later(receipt, delay_secs)`: one ChangeMessageVisibility with
//!   `VisibilityTimeout` = `delay_secs` (at most SQS's 12 hours). SQS counts the next
//!   receive as one more, so dead-lettering is unchanged.
//! - `dead_letters(max)`: ReceiveMessage on the dead-letter queue with
//!   `VisibilityTimeout` = 0, so the messages stay there and stay visible (SQS has no
//!   listing call; peeking raises their receive count in the dead-letter queue, which has
//!   no redrive policy of its own). Up to [`MAX_RECEIVE_CALLS`] calls while `max` is not
//!   reached and a call brings messages not seen before (by `MessageId`).
//!
//! # Consistency
//!
//! As the port doc says, with these SQS specifics: `receive` returns at least one job
//! when one is visible only with a long-poll wait (short polling samples a subset of
//! SQS's servers and may come back empty); it may return fewer than `max`. Dead letters
//! come in no particular order, and beyond 10 the listing is best effort (a zero
//! visibility peek cannot page). Receive counts are SQS's `ApproximateReceiveCount`.
//!
//! **Stale receipts.** A receipt handle names the message, not just one receive of it:
//! SQS deletes the message with the handle of any earlier receive too (documented as
//! "must provide the most recently received ReceiptHandle", but observed, and LocalStack
//! does the same), and a handle never deletes another message. Deleting a message that
//! is already gone (acknowledged, or moved to the dead-letter queue) succeeds. SQS answers
//! `ReceiptHandleIsInvalid` "… has expired" for some old handles; the message was then
//! received again or is gone, so `ack` treats that as success (at-least-once). Any other
//! `ReceiptHandleIsInvalid` (a string SQS never issued) is `Storage`.
//!
//! **Retry of a job that is gone.** ChangeMessageVisibility on a message that is no longer
//! in flight fails where DeleteMessage succeeds: SQS answers `MessageNotInflight` for a
//! message visible again, and `InvalidParameterValue` "… Message does not exist or is
//! not available for visibility timeout change" for one deleted or dead-lettered
//! (LocalStack gives the latter for a deleted message and accepts a visible one).
//! `retry_later` treats those, and an expired `ReceiptHandleIsInvalid` as `ack` does, as
//! success: the job is gone or will be delivered again anyway. A handle SQS never issued
//! is `Storage`.
//!
//! **Foreign messages.** A message whose body is not a [`Job`] (or that has no receipt
//! handle) is not returned and not deleted: it stays invisible for the visibility timeout
//! of the receive that met it, and the redrive policy moves it to the dead-letter queue
//! after `maxReceiveCount` receives. `dead_letters` skips such bodies too. Both log a
//! warning with the message id.
//!
//! # Errors
//!
//! Every SDK failure is `Storage` naming the operation, with the SDK's error chain.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use registry_core::ports::{Job, JobQueue, ReceivedJob};
use registry_core::{RegistryError, Result};

/// The most messages SQS hands out per ReceiveMessage.
pub const SQS_MAX_BATCH: usize = 10;

/// The most ReceiveMessage calls one `receive` or `dead_letters` makes.
pub const MAX_RECEIVE_CALLS: usize = 10;

/// The long-poll wait of the first ReceiveMessage of a `receive`, in seconds.
pub const DEFAULT_RECEIVE_WAIT_SECS: u8 = 1;

/// SQS's longest long-poll wait, in seconds.
const SQS_MAX_WAIT_SECS: u8 = 20;

/// SQS's longest visibility timeout, in seconds (12 hours).
const SQS_MAX_VISIBILITY_SECS: u64 = 43_200;

/// The name of the message attribute that carries `Job::kind`.
pub const KIND_ATTRIBUTE: &str = "kind";

/// Where the queues are; filled by the composition root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsQueueSettings {
    /// The queue jobs are sent to and received from; it must have a redrive policy to
    /// `dead_letter_queue_url`.
    pub queue_url: String,
    /// Its dead-letter queue, read by `dead_letters`.
    pub dead_letter_queue_url: String,
}

/// A job queue on SQS; cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    sqs: Client,
    settings: SqsQueueSettings,
    receive_wait_secs: i32,
}

impl SqsJobQueue {
    /// A queue on `settings` with the client of [`AwsClients`](crate::AwsClients), long
    /// polling [`DEFAULT_RECEIVE_WAIT_SECS`].
    pub fn new(sqs: Client, settings: SqsQueueSettings) -> Self {
        SqsJobQueue {
            sqs,
            settings,
            receive_wait_secs: i32::from(DEFAULT_RECEIVE_WAIT_SECS),
        }
    }

    /// Sets the long-poll wait of `receive` and `dead_letters` (at most 20 s). 0 is short
    /// polling: an empty queue answers at once, but on AWS a receive may then come back
    /// empty although jobs are visible, which the port does not allow; use it only
    /// against an emulator that sees every message (LocalStack), as the contract tests do.
    #[must_use]
    pub fn with_receive_wait_secs(mut self, secs: u8) -> Self {
        self.receive_wait_secs = i32::from(secs.min(SQS_MAX_WAIT_SECS));
        self
    }

    /// The queues this adapter uses.
    pub fn settings(&self) -> &SqsQueueSettings {
        &self.settings
    }

    /// Receives up to `max` messages from `queue_url`, in as many calls as needed (and
    /// allowed), handing each new message to `take`.
    async fn receive_from(
        &self,
        queue_url: &str,
        max: usize,
        visibility_secs: i32,
        with_receive_count: bool,
        mut take: impl FnMut(&Message) -> bool,
    ) -> Result<()> {
        let mut taken = 0;
        let mut seen = HashSet::new();
        for call in 0..MAX_RECEIVE_CALLS {
            let want = max.saturating_sub(taken).min(SQS_MAX_BATCH);
            if want == 0 {
                break;
            }
            let mut request = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(want as i32)
                .visibility_timeout(visibility_secs)
                .wait_time_seconds(if call == 0 { self.receive_wait_secs } else { 0 });
            if with_receive_count {
                request = request.message_system_attribute_names(
                    MessageSystemAttributeName::ApproximateReceiveCount,
                );
            }
            let out = request.send().await.map_err(|e| sdk("ReceiveMessage", e))?;
            let messages = out.messages();
            let mut new = 0;
            for m in messages {
                if let Some(id) = m.message_id()
                    && !seen.insert(id.to_owned())
                {
                    continue;
                }
                new += 1;
                if taken < max && take(m) {
                    taken += 1;
                }
            }
            if taken >= max || new == 0 || messages.len() < want {
                break;
            }
        }
        Ok(())
    }
}

/// Creates queue `name` and its dead-letter queue `<name>-dlq`, with a redrive policy of
/// `max_receive_count` and the given visibility timeout; for tests and tooling
/// (deployments create their queues from `infra/`).
pub async fn create_queue_with_dead_letters(
    sqs: &Client,
    name: &str,
    max_receive_count: u32,
    visibility_secs: u32,
) -> Result<SqsQueueSettings> {
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(|e| sdk("CreateQueue", e))?;
    let dead_letter_queue_url = dlq
        .queue_url()
        .ok_or_else(|| RegistryError::Storage("CreateQueue returned no URL".into()))?
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&dead_letter_queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk("GetQueueAttributes", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| RegistryError::Storage("the dead-letter queue has no ARN".into()))?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count });
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .send()
        .await
        .map_err(|e| sdk("CreateQueue", e))?;
    Ok(SqsQueueSettings {
        queue_url: queue
            .queue_url()
            .ok_or_else(|| RegistryError::Storage("CreateQueue returned no URL".into()))?
            .to_owned(),
        dead_letter_queue_url,
    })
}

/// Deletes a queue and its dead-letter queue (best effort: errors are ignored).
pub async fn delete_queues(sqs: &Client, settings: &SqsQueueSettings) {
    for url in [&settings.queue_url, &settings.dead_letter_queue_url] {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }
}

fn sdk<E, R>(op: &str, err: SdkError<E, R>) -> RegistryError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    RegistryError::Storage(format!("SQS {op}: {}", DisplayErrorContext(&err)))
}

/// Whether a failed ChangeMessageVisibility says the message is gone or not in flight
/// (see "Retry of a job that is gone" in the module doc), not that the call is wrong.
fn message_is_gone(err: &ChangeMessageVisibilityError) -> bool {
    let message = err.message().unwrap_or_default().to_ascii_lowercase();
    match err {
        ChangeMessageVisibilityError::MessageNotInflight(_) => true,
        ChangeMessageVisibilityError::ReceiptHandleIsInvalid(_) => message.contains("expired"),
        other => {
            other
                .code()
                .is_some_and(|c| c.ends_with("InvalidParameterValue"))
                && (message.contains("does not exist") || message.contains("not available"))
        }
    }
}

/// The job in a message body, or `None` (logged) when the body is not a job.
fn decode(m: &Message, queue_url: &str) -> Option<Job> {
    let id = m.message_id().unwrap_or("?");
    match serde_json::from_str::<Job>(m.body().unwrap_or_default()) {
        Ok(job) => Some(job),
        Err(e) => {
            tracing::warn!(
                message_id = id,
                queue_url,
                error = %e,
                "SQS message is not a job: skipped, left for the redrive policy"
            );
            None
        }
    }
}

/// The JSON of `job`, with the two noncharacters SQS refuses in a body (U+FFFE, U+FFFF)
/// escaped; serde_json escapes control characters itself, and Rust strings hold no
/// lone surrogates, so the rest is within SQS's allowed characters.
fn encode(job: &Job) -> Result<String> {
    let json = serde_json::to_string(job).map_err(RegistryError::storage)?;
    if json.contains(['\u{fffe}', '\u{ffff}']) {
        Ok(json
            .replace('\u{fffe}', "\\ufffe")
            .replace('\u{ffff}', "\\uffff"))
    } else {
        Ok(json)
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &Job) -> Result<()> {
        let mut request = self
            .sqs
            .send_message()
            .queue_url(&self.settings.queue_url)
            .message_body(encode(job)?);
        if !job.kind.is_empty() {
            let kind = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(&job.kind)
                .build()
                .map_err(RegistryError::storage)?;
            request = request.message_attributes(KIND_ATTRIBUTE, kind);
        }
        request.send().await.map_err(|e| sdk("SendMessage", e))?;
        Ok(())
    }

    async fn receive(&self, max: usize, visibility_secs: u64) -> Result<Vec<ReceivedJob>> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // Lossless: clamped to 43 200.
        let visibility = visibility_secs.min(SQS_MAX_VISIBILITY_SECS) as i32;
        let queue_url = &self.settings.queue_url;
        self.receive_from(queue_url, max, visibility, true, |m| {
            let Some(job) = decode(m, queue_url) else {
                return false;
            };
            let Some(receipt) = m.receipt_handle() else {
                tracing::warn!(
                    message_id = m.message_id().unwrap_or("?"),
                    "SQS message without a receipt handle: skipped"
                );
                return false;
            };
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse::<u32>().ok())
                .unwrap_or_else(|| {
                    tracing::warn!(
                        message_id = m.message_id().unwrap_or("?"),
                        "SQS message without ApproximateReceiveCount: counted as 1"
                    );
                    1
                });
            out.push(ReceivedJob {
                job,
                receipt: receipt.to_owned(),
                receive_count,
            });
            true
        })
        .await?;
        Ok(out)
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        match self
            .sqs
            .delete_message()
            .queue_url(&self.settings.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DeleteMessageError::ReceiptHandleIsInvalid(_))
                    && e.err()
                        .message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("expired")) =>
            {
                tracing::debug!(
                    error = e.err().message().unwrap_or_default(),
                    "ack with an expired receipt handle: the job was received again or is gone"
                );
                Ok(())
            }
            Err(e) => Err(sdk("DeleteMessage", e)),
        }
    }

    async fn retry_later(&self, receipt: &str, delay_secs: u64) -> Result<()> {
        // Lossless: clamped to 43 200.
        let delay = delay_secs.min(SQS_MAX_VISIBILITY_SECS) as i32;
        match self
            .sqs
            .change_message_visibility()
            .queue_url(&self.settings.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(delay)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if message_is_gone(e.err()) => {
                tracing::debug!(
                    code = e.err().code().unwrap_or_default(),
                    error = e.err().message().unwrap_or_default(),
                    "retry_later of a job no longer in flight: it is gone or visible again"
                );
                Ok(())
            }
            Err(e) => Err(sdk("ChangeMessageVisibility", e)),
        }
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let dlq = &self.settings.dead_letter_queue_url;
        self.receive_from(dlq, max, 0, false, |m| match decode(m, dlq) {
            Some(job) => {
                out.push(job);
                true
            }
            None => false,
        })
        .await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_escape_the_noncharacters_sqs_refuses() {
        let job = Job {
            kind: "scan".into(),
            payload: json!({ "odd": "a\u{fffe}b\u{ffff}c", "ctl": "\u{1}", "ok": "✓" }),
        };
        let body = encode(&job).unwrap();
        assert!(!body.contains(['\u{fffe}', '\u{ffff}', '\u{1}']), "{body}");
        assert_eq!(serde_json::from_str::<Job>(&body).unwrap(), job);
    }

    #[test]
    fn retry_of_a_gone_message_is_recognised() {
        use aws_sdk_sqs::error::ErrorMetadata;
        use aws_sdk_sqs::types::error::{MessageNotInflight, ReceiptHandleIsInvalid};
        let generic = |code: &str, message: &str| {
            ChangeMessageVisibilityError::generic(
                ErrorMetadata::builder().code(code).message(message).build(),
            )
        };
        let gone = "Value abc for parameter ReceiptHandle is invalid. Reason: Message does not \
                    exist or is not available for visibility timeout change.";
        assert!(message_is_gone(&generic("InvalidParameterValue", gone)));
        assert!(message_is_gone(&generic(
            "AWS.SimpleQueueService.InvalidParameterValue",
            gone
        )));
        assert!(!message_is_gone(&generic(
            "InvalidParameterValue",
            "Value 50000 for parameter VisibilityTimeout is invalid."
        )));
        assert!(message_is_gone(
            &ChangeMessageVisibilityError::MessageNotInflight(
                MessageNotInflight::builder().build()
            )
        ));
        let invalid = |message: &str| {
            ChangeMessageVisibilityError::ReceiptHandleIsInvalid(
                ReceiptHandleIsInvalid::builder()
                    .message(message)
                    .meta(ErrorMetadata::builder().message(message).build())
                    .build(),
            )
        };
        assert!(message_is_gone(&invalid("The receipt handle has expired.")));
        assert!(!message_is_gone(&invalid(
            "The input receipt handle \"garbage\" is not a valid receipt handle."
        )));
    }

    #[test]
    fn wait_is_clamped_to_the_sqs_maximum() {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        let queue = SqsJobQueue::new(
            Client::from_conf(conf),
            SqsQueueSettings {
                queue_url: "q".into(),
                dead_letter_queue_url: "d".into(),
            },
        );
        assert_eq!(queue.receive_wait_secs, 1);
        assert_eq!(queue.with_receive_wait_secs(60).receive_wait_secs, 20);
    }
}
