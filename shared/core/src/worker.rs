//! The worker harness every queue consumer uses (webhook now; scan and proxy-fill
//! next): decode, run an idempotent [`JobHandler`], and on failure back off
//! exponentially through the queue's visibility (never by sleeping), until the queue
//! dead-letters the job after its last try.
//!
//! The same [`Worker::process`] runs in three places with the same retry and
//! dead-letter behaviour:
//! - inside Lambda, over the messages of an SQS event (`registry_aws::sqs_batch`), where
//!   a failed message is reported in `batchItemFailures`;
//! - in the local binary, [`Worker::run`] polling any [`JobQueue`]: SQS (LocalStack or
//!   AWS) or the embedded durable queue.
//!
//! A failed try sets the job's visibility to `base · 2^(n-1)` seconds (capped) with
//! [`JobQueue::retry_later`]; after `max_receives` tries the queue (SQS redrive
//! `maxReceiveCount`, or the embedded queue's limit, which must agree with
//! [`RetryPolicy::max_receives`]) moves it to the dead-letter queue. The handler is told
//! when a try is the last, so it can record that it gave up.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::ports::{Job, JobQueue, ReceivedJob};

/// How a try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done (or nothing to do): the job is removed.
    Done,
    /// Failed; try again later (after a backoff), or dead-letter after the last try.
    Retry(String),
}

/// Which try this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery of the job.
    pub receive_count: u32,
    /// No retry follows a failure of this try: the job goes to the dead-letter queue.
    pub last: bool,
}

/// Handles the jobs of one queue. Must be idempotent: queues deliver at least once.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn handle(&self, job: &Job, attempt: Attempt) -> JobOutcome;
}

/// Backoff and dead-lettering of a queue's consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed try.
    pub base_delay_secs: u64,
    /// Longest delay (SQS allows 12 hours).
    pub max_delay_secs: u64,
    /// Tries before the queue dead-letters the job (the redrive `maxReceiveCount`).
    pub max_receives: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay_secs: 10,
            max_delay_secs: 3600,
            max_receives: 8,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed try number `receive_count`: `base · 2^(n-1)`, capped.
    pub fn delay_secs(&self, receive_count: u32) -> u64 {
        let doublings = receive_count.saturating_sub(1).min(32);
        self.base_delay_secs
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_secs)
            .min(12 * 3600)
    }
}

/// Tunables of the polling loop.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    /// Jobs one receive asks for.
    pub batch: usize,
    /// Visibility of a received job while it is handled.
    pub visibility_secs: u64,
    /// Pause after an empty receive (SQS receives also long-poll on their own).
    pub idle: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            batch: 10,
            visibility_secs: 60,
            idle: Duration::from_millis(100),
        }
    }
}

/// A queue, its handler and its retry policy.
pub struct Worker {
    name: &'static str,
    queue: Arc<dyn JobQueue>,
    handler: Arc<dyn JobHandler>,
    retry: RetryPolicy,
}

impl Worker {
    pub fn new(
        name: &'static str,
        queue: Arc<dyn JobQueue>,
        handler: Arc<dyn JobHandler>,
        retry: RetryPolicy,
    ) -> Self {
        Worker {
            name,
            queue,
            handler,
            retry,
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Runs one received job. `Ok` when done (the caller acknowledges it, or Lambda
    /// deletes it); `Err` when it failed, after its visibility was set to the backoff.
    pub async fn process(&self, received: ReceivedJob) -> Result<()> {
        let attempt = Attempt {
            receive_count: received.receive_count,
            last: received.receive_count >= self.retry.max_receives,
        };
        match self.handler.handle(&received.job, attempt).await {
            JobOutcome::Done => Ok(()),
            JobOutcome::Retry(reason) => {
                // After the last try, no wait: the next receive dead-letters the job.
                let delay = if attempt.last {
                    0
                } else {
                    self.retry.delay_secs(received.receive_count)
                };
                tracing::warn!(
                    worker = self.name,
                    kind = %received.job.kind,
                    receive_count = received.receive_count,
                    last = attempt.last,
                    retry_in_secs = delay,
                    %reason,
                    "job failed"
                );
                if let Err(e) = self.queue.retry_later(&received.receipt, delay).await {
                    tracing::warn!(worker = self.name, error = %e, "could not set the backoff; the visibility timeout applies");
                }
                Err(crate::RegistryError::Upstream(reason))
            }
        }
    }

    /// Handles received jobs one after the other, acknowledging those done.
    async fn handle_all(&self, jobs: Vec<ReceivedJob>) -> Result<()> {
        for received in jobs {
            let receipt = received.receipt.clone();
            if self.process(received).await.is_ok() {
                self.queue.ack(&receipt).await?;
            }
        }
        Ok(())
    }

    /// One receive and its jobs; returns how many jobs were received.
    pub async fn poll_once(&self, config: &PollConfig) -> Result<usize> {
        let jobs = self
            .queue
            .receive(config.batch, config.visibility_secs)
            .await?;
        let n = jobs.len();
        self.handle_all(jobs).await?;
        Ok(n)
    }

    /// Polls until `shutdown` turns true. A receive in progress (SQS long-polls) is
    /// abandoned at shutdown; jobs being handled are finished first.
    pub async fn run(&self, config: PollConfig, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(worker = self.name, "worker started");
        while !*shutdown.borrow() {
            let received = tokio::select! {
                r = self.queue.receive(config.batch, config.visibility_secs) => r,
                _ = shutdown.changed() => break,
            };
            let pause = match received {
                Ok(jobs) if jobs.is_empty() => config.idle,
                Ok(jobs) => match self.handle_all(jobs).await {
                    Ok(()) => Duration::ZERO,
                    Err(e) => {
                        tracing::warn!(worker = self.name, error = %e, "acknowledgement failed");
                        Duration::from_secs(1)
                    }
                },
                Err(e) => {
                    tracing::warn!(worker = self.name, error = %e, "receive failed");
                    Duration::from_secs(1)
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = self.queue.wait_for_enqueue(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        tracing::info!(worker = self.name, "worker stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            base_delay_secs: 10,
            max_delay_secs: 300,
            max_receives: 8,
        };
        let delays: Vec<u64> = (1..=8).map(|n| p.delay_secs(n)).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        let huge = RetryPolicy {
            base_delay_secs: 10,
            max_delay_secs: u64::MAX,
            max_receives: 100,
        };
        assert_eq!(
            huge.delay_secs(100),
            12 * 3600,
            "SQS caps visibility at 12 h"
        );
    }
}
