//! `JobQueue`: a durable at-least-once queue of background jobs (scan, proxy-fill, webhook).
//!
//! Jobs carry ids, never bytes, and every handler is idempotent. Consistency: a job
//! enqueued is delivered at least once; a received job is invisible to other receivers
//! until its visibility timeout passes or it is acknowledged; a job received more than
//! `max_receives` times (set by the adapter) moves to the dead-letter queue instead of
//! being delivered again. Errors: `Storage` for backend failures.

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

    /// Up to `max` visible jobs, hidden from other receivers for `visibility_secs`.
    async fn receive(&self, max: usize, visibility_secs: u64) -> Result<Vec<ReceivedJob>>;

    /// Removes a handled job. Acknowledging twice is not an error.
    async fn ack(&self, receipt: &str) -> Result<()>;

    /// Jobs moved to the dead-letter queue, oldest first.
    async fn dead_letters(&self, max: usize) -> Result<Vec<Job>>;
}
