//! The contract every [`JobQueue`] adapter must pass: delivery and acknowledgement,
//! visibility timeouts, dead-lettering after `max_receives`, stale receipts and `max`.
//!
//! Each check takes a fresh, empty queue whose `max_receives` is [`MAX_RECEIVES`], and the
//! [`TestTime`] that lets time pass for it: a [`ManualClock`](crate::ManualClock) the queue
//! reads (embedded), or [`RealTime`](crate::clock::RealTime) for a backend that keeps its
//! own time (SQS). The checks receive with short visibility timeouts ([`VISIBILITY_SECS`])
//! so that real time stays cheap. Whenever a timeout must have passed they wait the
//! time's [`timer_slack`](TestTime::timer_slack) more, so the slack must stay well under
//! one visibility timeout (a check waits one timeout plus the slack and expects a job
//! received with twice the timeout to be still invisible). They need a `receive` that
//! finds nothing to return at once: an adapter that long-polls is built without a wait
//! for the contract.
//!
//! Where backends legitimately differ, the checks hold every adapter to what the port doc
//! of [`JobQueue`] promises and no more (a receive may return fewer jobs than are
//! visible, dead letters come in no guaranteed order, a stale receipt may or may not
//! delete); adapter-specific promises belong in that adapter's own tests. Run them all,
//! one test each, with [`job_queue_contract_tests!`](crate::job_queue_contract_tests).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use registry_core::ports::{Job, JobQueue, ReceivedJob};
use serde_json::json;

use crate::clock::TestTime;

/// The `max_receives` the factory must build the queue with (SQS: the redrive policy's
/// `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 3;

/// The visibility timeout the checks receive with, in seconds.
pub const VISIBILITY_SECS: u64 = 2;

const VISIBILITY: Duration = Duration::from_secs(VISIBILITY_SECS);

/// How many receives a check makes, at most, to collect jobs that one receive may not
/// return all at once.
const MAX_ATTEMPTS: usize = 10;

fn job(kind: &str, n: u64) -> Job {
    Job {
        kind: kind.to_owned(),
        payload: json!({ "n": n }),
    }
}

fn n_of(r: &ReceivedJob) -> u64 {
    r.job.payload["n"]
        .as_u64()
        .expect("a contract job has a numeric `n`")
}

/// Lets just more than one visibility timeout pass (plus the backend's timer slack).
async fn pass_visibility(time: &dyn TestTime) {
    time.pass(VISIBILITY + Duration::from_millis(1) + time.timer_slack())
        .await;
}

async fn receive_with(queue: &dyn JobQueue, max: usize, visibility_secs: u64) -> Vec<ReceivedJob> {
    let got = queue
        .receive(max, visibility_secs)
        .await
        .expect("receive must succeed");
    assert!(got.len() <= max, "receive returned more than `max` jobs");
    got
}

async fn receive(queue: &dyn JobQueue, max: usize) -> Vec<ReceivedJob> {
    receive_with(queue, max, VISIBILITY_SECS).await
}

/// The one visible job: a receive returns at least one job when one is visible.
async fn receive_one(queue: &dyn JobQueue, what: &str) -> ReceivedJob {
    let mut got = receive(queue, 10).await;
    assert_eq!(
        got.len(),
        1,
        "{what}: expected exactly one job, got {got:?}"
    );
    got.remove(0)
}

async fn assert_nothing_visible(queue: &dyn JobQueue, what: &str) {
    let got = receive(queue, 10).await;
    assert!(
        got.is_empty(),
        "{what}: expected no visible job, got {got:?}"
    );
}

/// Receives with `max` until `count` jobs have come (each receive returning at least one
/// and at most `max`), then checks that nothing more is visible.
async fn receive_all(queue: &dyn JobQueue, max: usize, count: usize, what: &str) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        if seen.len() >= count {
            break;
        }
        let got = receive(queue, max).await;
        assert!(
            !got.is_empty(),
            "{what}: a receive returned nothing with {} of {count} jobs still visible",
            count - seen.len()
        );
        seen.extend(got.iter().map(n_of));
    }
    assert_eq!(seen.len(), count, "{what}: every job once, got {seen:?}");
    assert_nothing_visible(queue, &format!("{what}, once all were received")).await;
    seen
}

/// The dead letters, collected over a few calls (one call may return fewer than are
/// dead), checking that each call keeps to `max`.
async fn dead_letter_set(queue: &dyn JobQueue, expected: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let got = queue
            .dead_letters(10)
            .await
            .expect("dead_letters must succeed");
        assert!(got.len() <= 10, "dead_letters returned more than `max`");
        seen.extend(got.iter().map(job_key));
        if seen.len() >= expected {
            break;
        }
    }
    seen
}

/// A job as a comparable string, for sets of jobs.
fn job_key(job: &Job) -> String {
    format!("{}:{}", job.kind, job.payload)
}

/// A job is delivered as enqueued, with a receipt and a receive count of 1; acknowledging
/// removes it for good, and acknowledging twice is not an error.
pub async fn enqueue_receive_ack(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    assert_nothing_visible(queue, "an empty queue").await;
    let sent = Job {
        kind: "scan".to_owned(),
        payload: json!({
            "repo": "library/alpine",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "attempt": 1,
            "nested": { "list": [1, "two", null, true], "ünïcødé": "✓" }
        }),
    };
    queue.enqueue(&sent).await.unwrap();
    let got = receive_one(queue, "after enqueue").await;
    assert_eq!(got.job, sent);
    assert_eq!(got.receive_count, 1);
    assert!(!got.receipt.is_empty());

    queue.ack(&got.receipt).await.unwrap();
    queue
        .ack(&got.receipt)
        .await
        .expect("acknowledging twice must not be an error");
    pass_visibility(&*time).await;
    assert_nothing_visible(queue, "after ack").await;
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
}

/// A received job stays invisible for the visibility timeout given at that receive, then
/// is delivered again with a new receipt and a higher receive count.
pub async fn invisible_until_visibility_timeout(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    queue.enqueue(&job("scan", 1)).await.unwrap();
    let first = receive_one(queue, "first receive").await;
    assert_nothing_visible(queue, "right after a receive").await;
    time.pass(VISIBILITY - Duration::from_secs(1)).await;
    assert_nothing_visible(queue, "before the visibility timeout").await;

    time.pass(Duration::from_secs(1) + Duration::from_millis(1) + time.timer_slack())
        .await;
    let second = receive_with(queue, 10, 2 * VISIBILITY_SECS).await;
    assert_eq!(
        second.len(),
        1,
        "the job is visible again after its timeout"
    );
    let second = &second[0];
    assert_eq!(second.job, job("scan", 1));
    assert_eq!(second.receive_count, 2);
    assert_ne!(
        second.receipt, first.receipt,
        "each receive gets its own receipt"
    );

    // This receive asked for twice the timeout.
    pass_visibility(&*time).await;
    assert_nothing_visible(queue, "within the longer visibility timeout").await;
    pass_visibility(&*time).await;
    let third = receive_one(queue, "after the longer visibility timeout").await;
    assert_eq!(third.receive_count, 3);
    queue.ack(&third.receipt).await.unwrap();
    pass_visibility(&*time).await;
    assert_nothing_visible(queue, "after ack").await;
}

/// A job received `max_receives` times without an acknowledgement moves to the dead
/// letters instead of being delivered again; dead letters list every dead job (in any
/// order), at most `max` per call; a late acknowledgement of a dead job changes nothing;
/// the queue goes on delivering other jobs.
pub async fn dead_letter_after_max_receives(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    // Both jobs go through their receives together: real time is dear on some backends.
    queue.enqueue(&job("poison", 1)).await.unwrap();
    queue.enqueue(&job("poison", 2)).await.unwrap();
    let mut last_receipt = String::new();
    for count in 1..=MAX_RECEIVES {
        let mut got = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            if got.len() >= 2 {
                break;
            }
            let batch = receive(queue, 10).await;
            assert!(!batch.is_empty(), "receive {count}: a job is visible");
            got.extend(batch);
        }
        got.sort_by_key(n_of);
        assert_eq!(got.len(), 2, "receive {count}: {got:?}");
        for (r, n) in got.iter().zip([1, 2]) {
            assert_eq!(r.job, job("poison", n));
            assert_eq!(r.receive_count, count, "receive {count} of job {n}");
        }
        assert_nothing_visible(queue, &format!("both jobs received {count} times")).await;
        last_receipt = got[0].receipt.clone();
        pass_visibility(&*time).await;
    }
    assert_nothing_visible(queue, "after max_receives").await;
    pass_visibility(&*time).await;
    assert_nothing_visible(queue, "dead jobs, later").await;
    let both: BTreeSet<String> = [job("poison", 1), job("poison", 2)]
        .iter()
        .map(job_key)
        .collect();
    assert_eq!(dead_letter_set(queue, 2).await, both);
    let one = queue.dead_letters(1).await.unwrap();
    assert_eq!(one.len(), 1, "dead_letters(1): {one:?}");
    assert!(both.contains(&job_key(&one[0])), "{one:?}");

    // A late acknowledgement of a dead job changes nothing.
    queue
        .ack(&last_receipt)
        .await
        .expect("acknowledging a dead-lettered job must not be an error");
    assert_eq!(dead_letter_set(queue, 2).await, both);

    queue.enqueue(&job("healthy", 3)).await.unwrap();
    let got = receive_one(queue, "a new job after dead-lettering").await;
    assert_eq!(got.job, job("healthy", 3));
    assert_eq!(got.receive_count, 1);
    queue.ack(&got.receipt).await.unwrap();
    assert_eq!(dead_letter_set(queue, 2).await, both);
}

/// Acknowledging with the receipt of an earlier receive of a job received again since is
/// not an error; whether it deletes the job is up to the adapter (the embedded queue keeps
/// it, SQS deletes it), but the job is never delivered before the current receive's
/// timeout. The current receipt deletes it, and an acknowledged job is not dead-lettered.
pub async fn stale_receipt_ack(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    queue.enqueue(&job("webhook", 1)).await.unwrap();
    let first = receive_one(queue, "first receive").await;
    pass_visibility(&*time).await;
    let second = receive_one(queue, "second receive").await;
    assert_eq!(second.receive_count, 2);

    queue
        .ack(&first.receipt)
        .await
        .expect("acknowledging with a stale receipt must not be an error");
    assert_nothing_visible(queue, "still within the second receive's timeout").await;
    pass_visibility(&*time).await;
    // The job again (the stale ack kept it) or nothing (the stale ack deleted it).
    let third = receive(queue, 10).await;
    assert!(third.len() <= 1, "one job at most: {third:?}");
    for t in &third {
        assert_eq!(t.job, job("webhook", 1));
        assert_eq!(t.receive_count, 3);
    }

    queue
        .ack(&second.receipt)
        .await
        .expect("acknowledging with a stale receipt must not be an error");
    for t in &third {
        queue.ack(&t.receipt).await.unwrap();
    }
    pass_visibility(&*time).await;
    assert_nothing_visible(queue, "after acking with the current receipt").await;
    pass_visibility(&*time).await;
    assert_nothing_visible(queue, "acked, not dead-lettered").await;
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
}

/// A repeated acknowledgement of a finished job (a retried ack) never deletes a job
/// enqueued after it: receipts are never reused.
pub async fn receipts_are_not_reused(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    queue.enqueue(&job("scan", 1)).await.unwrap();
    let done = receive_one(queue, "the first job").await;
    queue.ack(&done.receipt).await.unwrap();

    queue.enqueue(&job("scan", 2)).await.unwrap();
    let pending = receive_one(queue, "the second job").await;
    assert_eq!(pending.job, job("scan", 2));
    assert_ne!(
        pending.receipt, done.receipt,
        "a receipt must never be reused"
    );
    queue.ack(&done.receipt).await.unwrap();

    pass_visibility(&*time).await;
    let again = receive_one(queue, "the retried ack must not delete the second job").await;
    assert_eq!(again.job, job("scan", 2));
    assert_eq!(again.receive_count, 2);
}

/// `receive` returns at most `max` jobs (and at least one while any is visible), and every
/// job exactly once across receives within the visibility timeout.
pub async fn receive_respects_max(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    for n in 0..5 {
        queue.enqueue(&job("fill", n)).await.unwrap();
    }
    let seen = receive_all(queue, 2, 5, "receive(2) with jobs waiting").await;
    assert_eq!(
        seen.iter().copied().collect::<BTreeSet<_>>(),
        (0..5).collect(),
        "every job once: {seen:?}"
    );

    pass_visibility(&*time).await;
    let one = receive(queue, 1).await;
    assert_eq!(one.len(), 1, "receive(1) with five jobs visible again");
    let mut again = receive_all(queue, 10, 4, "receive(10) after the timeout").await;
    again.push(n_of(&one[0]));
    again.sort_unstable();
    assert_eq!(again, (0..5).collect::<Vec<_>>(), "every job once again");
}

/// Workers receiving at the same time never get the same job within its timeout.
pub async fn concurrent_receivers_do_not_share_a_job(
    queue: Arc<dyn JobQueue>,
    _time: Arc<dyn TestTime>,
) {
    const JOBS: u64 = 12;
    // No time passes in this check: a long timeout keeps it about sharing, not timing.
    const LONG_VISIBILITY_SECS: u64 = 30;
    for n in 0..JOBS {
        queue.enqueue(&job("scan", n)).await.unwrap();
    }
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..4 {
                    for r in receive_with(&*queue, 1, LONG_VISIBILITY_SECS).await {
                        got.push(n_of(&r));
                    }
                }
                got
            })
        })
        .collect();
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.expect("worker task"));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..JOBS).collect::<Vec<_>>(), "each job exactly once");
}

/// `retry_later` hides a received job for the delay given (not the receive's visibility
/// timeout), then it comes back with a receive count one higher; a delay of zero makes
/// it visible at once; a stale receipt or a receipt of a job that is gone is not an error.
pub async fn retry_later_sets_the_next_delivery(queue: Arc<dyn JobQueue>, time: Arc<dyn TestTime>) {
    let queue = &*queue;
    queue.enqueue(&job("retry", 1)).await.unwrap();
    // Received with a long visibility: only `retry_later` can bring it back early.
    let first = receive_with(queue, 10, 4 * VISIBILITY_SECS).await;
    assert_eq!(first.len(), 1, "the job: {first:?}");
    queue.retry_later(&first[0].receipt, 0).await.unwrap();
    let second = receive_one(queue, "after a retry with no delay").await;
    assert_eq!(n_of(&second), 1);
    assert_eq!(second.receive_count, 2);

    queue
        .retry_later(&second.receipt, VISIBILITY_SECS)
        .await
        .unwrap();
    assert_nothing_visible(queue, "during the retry delay").await;
    pass_visibility(&*time).await;
    let third = receive_one(queue, "after the retry delay").await;
    assert_eq!(third.receive_count, 3);

    queue.ack(&third.receipt).await.unwrap();
    queue.retry_later(&third.receipt, 0).await.unwrap();
    assert_nothing_visible(queue, "after an ack and a late retry").await;
}
