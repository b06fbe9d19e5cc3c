//! The contract every [`JobQueue`] adapter must pass: delivery and acknowledgement,
//! visibility timeouts, dead-lettering after `max_receives`, stale receipts and `max`.
//!
//! Each check takes a fresh, empty queue built with `max_receives = 3` that reads the
//! given [`ManualClock`]; the checks move that clock to pass visibility timeouts. Run them
//! all, one test each, with [`job_queue_contract_tests!`](crate::job_queue_contract_tests).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use registry_core::ports::{Job, JobQueue, ReceivedJob};
use serde_json::json;

use crate::clock::ManualClock;

/// The `max_receives` the factory must build the queue with.
pub const MAX_RECEIVES: u32 = 3;

/// The visibility timeout the checks receive with, in seconds.
const VISIBILITY: u64 = 30;

fn job(kind: &str, n: u64) -> Job {
    Job {
        kind: kind.to_owned(),
        payload: json!({ "n": n }),
    }
}

/// Moves the clock just past one visibility timeout.
fn pass_visibility(clock: &ManualClock) {
    clock.advance(Duration::from_secs(VISIBILITY) + Duration::from_millis(1));
}

async fn receive(queue: &dyn JobQueue, max: usize) -> Vec<ReceivedJob> {
    let got = queue
        .receive(max, VISIBILITY)
        .await
        .expect("receive must succeed");
    assert!(got.len() <= max, "receive returned more than `max` jobs");
    got
}

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

/// A job is delivered as enqueued, with a receipt and a receive count of 1; acknowledging
/// removes it for good, and acknowledging twice is not an error.
pub async fn enqueue_receive_ack(queue: Arc<dyn JobQueue>, clock: ManualClock) {
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
    pass_visibility(&clock);
    assert_nothing_visible(queue, "after ack").await;
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
}

/// A received job stays invisible for the visibility timeout given at that receive, then
/// is delivered again with a new receipt and a higher receive count.
pub async fn invisible_until_visibility_timeout(queue: Arc<dyn JobQueue>, clock: ManualClock) {
    let queue = &*queue;
    queue.enqueue(&job("scan", 1)).await.unwrap();
    let first = receive_one(queue, "first receive").await;
    assert_nothing_visible(queue, "right after a receive").await;
    clock.advance(Duration::from_secs(VISIBILITY - 1));
    assert_nothing_visible(queue, "before the visibility timeout").await;

    clock.advance(Duration::from_secs(1) + Duration::from_millis(1));
    let second = queue.receive(10, 2 * VISIBILITY).await.unwrap();
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
    pass_visibility(&clock);
    assert_nothing_visible(queue, "within the longer visibility timeout").await;
    pass_visibility(&clock);
    let third = receive_one(queue, "after the longer visibility timeout").await;
    assert_eq!(third.receive_count, 3);
    queue.ack(&third.receipt).await.unwrap();
    pass_visibility(&clock);
    assert_nothing_visible(queue, "after ack").await;
}

/// A job received `max_receives` times without an acknowledgement moves to the dead
/// letters instead of being delivered again; dead letters list oldest first, at most
/// `max`; the queue goes on delivering other jobs.
pub async fn dead_letter_after_max_receives(queue: Arc<dyn JobQueue>, clock: ManualClock) {
    let queue = &*queue;
    let mut last_receipt = String::new();
    for (n, kind) in [(1, "poison"), (2, "poison")] {
        let sent = job(kind, n);
        queue.enqueue(&sent).await.unwrap();
        for count in 1..=MAX_RECEIVES {
            let got = receive_one(queue, &format!("receive {count} of job {n}")).await;
            assert_eq!(got.job, sent);
            assert_eq!(got.receive_count, count);
            last_receipt = got.receipt;
            pass_visibility(&clock);
        }
        assert_nothing_visible(queue, &format!("job {n} after max_receives")).await;
        pass_visibility(&clock);
        assert_nothing_visible(queue, &format!("dead job {n}, later")).await;
    }
    assert_eq!(
        queue.dead_letters(10).await.unwrap(),
        vec![job("poison", 1), job("poison", 2)]
    );
    assert_eq!(queue.dead_letters(1).await.unwrap(), vec![job("poison", 1)]);

    // A late acknowledgement of a dead job changes nothing.
    queue.ack(&last_receipt).await.unwrap();
    assert_eq!(queue.dead_letters(10).await.unwrap().len(), 2);

    queue.enqueue(&job("healthy", 3)).await.unwrap();
    let got = receive_one(queue, "a new job after dead-lettering").await;
    assert_eq!(got.job, job("healthy", 3));
    assert_eq!(got.receive_count, 1);
    queue.ack(&got.receipt).await.unwrap();
    assert_eq!(queue.dead_letters(10).await.unwrap().len(), 2);
}

/// Acknowledging with the receipt of an earlier receive does not delete a job that was
/// received again since; the current receipt does.
pub async fn stale_receipt_does_not_ack(queue: Arc<dyn JobQueue>, clock: ManualClock) {
    let queue = &*queue;
    queue.enqueue(&job("webhook", 1)).await.unwrap();
    let first = receive_one(queue, "first receive").await;
    pass_visibility(&clock);
    let second = receive_one(queue, "second receive").await;

    queue.ack(&first.receipt).await.unwrap();
    assert_nothing_visible(queue, "still within the second receive's timeout").await;
    pass_visibility(&clock);
    let third = receive_one(queue, "the stale ack must not have deleted the job").await;
    assert_eq!(third.job, job("webhook", 1));
    assert_eq!(third.receive_count, 3);

    queue.ack(&second.receipt).await.unwrap();
    queue.ack(&third.receipt).await.unwrap();
    pass_visibility(&clock);
    assert_nothing_visible(queue, "after acking with the current receipt").await;
    pass_visibility(&clock);
    assert_nothing_visible(queue, "acked, not dead-lettered").await;
    assert!(queue.dead_letters(10).await.unwrap().is_empty());
}

/// A repeated acknowledgement of a finished job (a retried ack) never deletes a job
/// enqueued after it: receipts are never reused.
pub async fn receipts_are_not_reused(queue: Arc<dyn JobQueue>, clock: ManualClock) {
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

    pass_visibility(&clock);
    let again = receive_one(queue, "the retried ack must not delete the second job").await;
    assert_eq!(again.job, job("scan", 2));
    assert_eq!(again.receive_count, 2);
}

/// `receive` returns at most `max` jobs, and every job exactly once across receives
/// within the visibility timeout.
pub async fn receive_respects_max(queue: Arc<dyn JobQueue>, clock: ManualClock) {
    let queue = &*queue;
    for n in 0..5 {
        queue.enqueue(&job("fill", n)).await.unwrap();
    }
    let mut seen = Vec::new();
    for (max, expected) in [(2, 2), (2, 2), (2, 1), (2, 0)] {
        let got = receive(queue, max).await;
        assert_eq!(got.len(), expected, "receive({max}) with jobs waiting");
        seen.extend(
            got.into_iter()
                .map(|r| r.job.payload["n"].as_u64().unwrap()),
        );
    }
    assert_eq!(
        seen.iter().copied().collect::<BTreeSet<_>>(),
        (0..5).collect(),
        "every job once: {seen:?}"
    );
    assert_eq!(seen.len(), 5, "no job twice: {seen:?}");

    pass_visibility(&clock);
    assert_eq!(receive(queue, 1).await.len(), 1);
    assert_eq!(receive(queue, 10).await.len(), 4);
}

/// Workers receiving at the same time never get the same job within its timeout.
pub async fn concurrent_receivers_do_not_share_a_job(
    queue: Arc<dyn JobQueue>,
    _clock: ManualClock,
) {
    const JOBS: u64 = 12;
    for n in 0..JOBS {
        queue.enqueue(&job("scan", n)).await.unwrap();
    }
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..4 {
                    for r in queue.receive(1, VISIBILITY).await.unwrap() {
                        got.push(r.job.payload["n"].as_u64().unwrap());
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
