//! `JobQueue`: a durable at-least-once queue of background jobs (scan, proxy-fill, webhook).
//!
//! Jobs carry ids, never bytes, and every handler is idempotent. What every adapter
//! guarantees (the contract in `registry-testkit` checks each point, on every adapter):
//!
//! - **Delivery.** A job enqueued is delivered at least once, as enqueued.
//! - **Receive.** `receive` returns at most `max` jobs, and at least one when at least one
//!   is visible; it may return fewer than `max` even when more are visible (SQS hands out
//!   at most 10 messages per request and samples its servers), so a worker that wants
//!   them all receives again.
//! - **Visibility.** A received job is invisible to every receiver until the visibility
//!   timeout given at that receive passes or it is acknowledged; it is then delivered
//!   again with a new receipt and a receive count one higher.
//! - **Dead letters.** A job received `max_receives` times without an acknowledgement
//!   moves to the dead-letter queue instead of being delivered again. `max_receives` is
//!   set by the adapter's configuration (the embedded queue's constructor, the SQS
//!   queue's redrive policy `maxReceiveCount`). `dead_letters` lists at most `max` of
//!   them without removing them, in no guaranteed order (the embedded queue lists
//!   oldest first; SQS in any order, and possibly fewer than `max` when more are dead).
//! - **Acknowledgement.** `ack` with the receipt of the latest receive deletes the job.
//!   Acknowledging twice, or with the receipt of a job that is gone (acknowledged or
//!   dead-lettered), is not an error and changes nothing. A receipt only ever refers to
//!   the job it was handed out with: it never deletes another job, even one enqueued
//!   later. A stale receipt (from an earlier receive of a job received again since) is
//!   not an error, but whether it deletes the job is up to the adapter: the embedded
//!   queue keeps the job, SQS may delete it (LocalStack does). Workers ack with the
//!   receipt they were given.
//! - **Retry later.** `retry_later` with the receipt of the latest receive makes the job
//!   visible again `delay_secs` from now (SQS: `ChangeMessageVisibility`), instead of
//!   when the visibility timeout of the receive ends: how workers back off
//!   exponentially without sleeping. It counts as a receive that failed: the next
//!   receive counts one more, and dead-lettering is unchanged. A receipt of a job that is
//!   gone is not an error.
//! - **Foreign messages.** A message in the backing queue that is not a [`Job`] (SQS: a
//!   body that is not a `Job` JSON document) is never returned and never deleted by the
//!   adapter; the backend dead-letters it after `max_receives` receives.
//!
//! Errors: `Storage` for backend failures and for a receipt this adapter never issued
//! (malformed).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A job: a stable `kind` naming its handler and a small JSON payload of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub payload: serde_json::Value,
}

/// A job handed to a worker, with the handle that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedJob {
    pub job: Job,
    pub receipt: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    async fn enqueue(&self, job: &Job) -> Result<()>;

    /// Up to `max` visible jobs (at least one when any is visible, possibly fewer than
    /// `max` when more are), hidden from every receiver for `visibility_secs`.
    async fn receive(&self, max: usize, visibility_secs: u64) -> Result<Vec<ReceivedJob>>;

    /// Removes a handled job. Acknowledging twice, or after the job is gone, is not an
    /// error; a stale receipt may or may not delete the job (see the module doc).
    async fn ack(&self, receipt: &str) -> Result<()>;

    /// Makes a received job visible again `delay_secs` from now (at most 12 hours).
    async fn retry_later(&self, receipt: &str, delay_secs: u64) -> Result<()>;

    /// At most `max` jobs moved to the dead-letter queue, left there; in no guaranteed
    /// order (the embedded queue: oldest first).
    async fn dead_letters(&self, max: usize) -> Result<Vec<Job>>;

    /// A poller's pause after an empty receive: returns after `max`, or earlier when a
    /// job may have been enqueued (a hint, never a promise). The default sleeps `max`;
    /// the embedded queue wakes on its own enqueues; SQS long-polls in `receive` instead.
    async fn wait_for_enqueue(&self, max: std::time::Duration) {
        tokio::time::sleep(max).await;
    }
}
