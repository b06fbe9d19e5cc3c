//! Runs the job queue contract of `registry-testkit` against `SqsJobQueue` on LocalStack,
//! each test on a fresh queue and dead-letter queue (redrive `maxReceiveCount` =
//! `MAX_RECEIVES`, deleted afterwards), and checks what is SQS's own: the `kind` message
//! attribute, dead-lettering by the redrive policy, messages that are not jobs, receives
//! of more than 10. Needs LocalStack: `localstack/start && source localstack/env`; the
//! tests fail (never skip) without it.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use common::{HOW_TO_START, clients};
use registry_aws::sqs_job_queue::{KIND_ATTRIBUTE, create_queue_with_dead_letters, delete_queues};
use registry_aws::{SqsJobQueue, SqsQueueSettings};
use registry_core::ports::{Job, JobQueue};
use registry_testkit::job_queue_contract::MAX_RECEIVES;
use registry_testkit::{RealTime, TestTime};
use serde_json::json;

/// A queue and its dead-letter queue made for one test; dropping it deletes both.
struct FreshQueues {
    sqs: Client,
    settings: SqsQueueSettings,
}

impl FreshQueues {
    async fn create(sqs: &Client) -> Self {
        let name = common::unique("regtest-jobs");
        let settings = create_queue_with_dead_letters(sqs, &name, MAX_RECEIVES, 30)
            .await
            .unwrap_or_else(|e| panic!("CreateQueue: {e:?}: {HOW_TO_START}"));
        FreshQueues {
            sqs: sqs.clone(),
            settings,
        }
    }

    fn settings(&self) -> SqsQueueSettings {
        self.settings.clone()
    }
}

impl Drop for FreshQueues {
    fn drop(&mut self) {
        // Best effort: a leftover test queue is harmless.
        common::finish_in_drop(delete_queues(&self.sqs, &self.settings));
    }
}

/// LocalStack re-queues expired in-flight messages on a one-second tick: a job becomes
/// visible again between its visibility deadline and about a second later.
const LOCALSTACK_TIMER_SLACK: Duration = Duration::from_millis(1_250);

/// The contract's factory: short polling (LocalStack sees every message, and the checks
/// need an empty receive to answer at once) and real time with LocalStack's timer slack.
async fn sqs_job_queue() -> (Arc<dyn JobQueue>, FreshQueues, Arc<dyn TestTime>) {
    let clients = clients().await;
    let queues = FreshQueues::create(&clients.sqs).await;
    let queue = SqsJobQueue::new(clients.sqs.clone(), queues.settings()).with_receive_wait_secs(0);
    let time = RealTime::with_timer_slack(LOCALSTACK_TIMER_SLACK);
    (Arc::new(queue), queues, Arc::new(time))
}

mod contract {
    registry_testkit::job_queue_contract_tests!(super::sqs_job_queue);
}

/// A queue with the production settings (a one-second long poll).
async fn default_queue() -> (SqsJobQueue, FreshQueues) {
    let clients = clients().await;
    let queues = FreshQueues::create(&clients.sqs).await;
    (
        SqsJobQueue::new(clients.sqs.clone(), queues.settings()),
        queues,
    )
}

fn job(kind: &str, n: u64) -> Job {
    Job {
        kind: kind.to_owned(),
        payload: json!({ "n": n, "repo": "library/alpine" }),
    }
}

/// Lets a one-second visibility timeout pass, with LocalStack's slack.
async fn pass_one_second() {
    tokio::time::sleep(Duration::from_secs(1) + LOCALSTACK_TIMER_SLACK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_attribute_and_payload_round_trip() {
    let (queue, queues) = default_queue().await;
    let sent = job("proxy-fill", 7);
    queue.enqueue(&sent).await.unwrap();

    // Peek with the SDK: the body is the job's JSON, and `kind` is a String attribute.
    let raw = queues
        .sqs
        .receive_message()
        .queue_url(&queues.settings.queue_url)
        .message_attribute_names("All")
        .visibility_timeout(0)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("ReceiveMessage");
    let [m] = raw.messages() else {
        panic!("one message expected: {raw:?}");
    };
    let kind = m
        .message_attributes()
        .and_then(|a| a.get(KIND_ATTRIBUTE))
        .expect("the `kind` message attribute");
    assert_eq!(kind.data_type(), "String");
    assert_eq!(kind.string_value(), Some("proxy-fill"));
    assert_eq!(
        serde_json::from_str::<Job>(m.body().unwrap()).unwrap(),
        sent
    );

    // The adapter receives the same job (its second receive, after the peek).
    let got = queue.receive(10, 30).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].job, sent);
    assert_eq!(got[0].receive_count, 2);
    queue.ack(&got[0].receipt).await.unwrap();
    assert!(queue.receive(10, 30).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_moves_an_unacked_job_to_the_dead_letters() {
    let (queue, queues) = default_queue().await;
    let sent = job("scan", 1);
    queue.enqueue(&sent).await.unwrap();
    for count in 1..=MAX_RECEIVES {
        let got = queue.receive(10, 1).await.unwrap();
        assert_eq!(got.len(), 1, "receive {count}: {got:?}");
        assert_eq!(got[0].job, sent);
        assert_eq!(got[0].receive_count, count);
        pass_one_second().await;
    }
    assert!(
        queue.receive(10, 1).await.unwrap().is_empty(),
        "moved to the dead-letter queue, not delivered again"
    );
    assert_eq!(queue.dead_letters(10).await.unwrap(), vec![sent.clone()]);
    // Peeking leaves it there.
    assert_eq!(queue.dead_letters(10).await.unwrap(), vec![sent]);
    let left = queues
        .sqs
        .get_queue_attributes()
        .queue_url(&queues.settings.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = left.attributes().unwrap();
    assert_eq!(attrs[&QueueAttributeName::ApproximateNumberOfMessages], "0");
    assert_eq!(
        attrs[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_are_skipped_and_dead_lettered() {
    let (queue, queues) = default_queue().await;
    queues
        .sqs
        .send_message()
        .queue_url(&queues.settings.queue_url)
        .message_body("not a job")
        .send()
        .await
        .unwrap();
    queue.enqueue(&job("webhook", 1)).await.unwrap();

    let got = queue.receive(10, 1).await.unwrap();
    assert_eq!(got.len(), 1, "only the job: {got:?}");
    assert_eq!(got[0].job, job("webhook", 1));
    queue.ack(&got[0].receipt).await.unwrap();
    for _ in 1..=MAX_RECEIVES {
        pass_one_second().await;
        assert!(queue.receive(10, 1).await.unwrap().is_empty());
    }
    assert!(
        queue.dead_letters(10).await.unwrap().is_empty(),
        "dead_letters lists jobs only"
    );
    let dead = queues
        .sqs
        .receive_message()
        .queue_url(&queues.settings.dead_letter_queue_url)
        .visibility_timeout(0)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["not a job"], "the redrive policy moved it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_takes_more_than_ten_in_several_calls() {
    let (queue, _queues) = default_queue().await;
    assert!(queue.receive(0, 30).await.unwrap().is_empty());
    for n in 0..25 {
        queue.enqueue(&job("fill", n)).await.unwrap();
    }
    let got = queue.receive(25, 30).await.unwrap();
    let mut ns: Vec<u64> = got
        .iter()
        .map(|r| r.job.payload["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..25).collect::<Vec<_>>(), "all 25 in one receive");
    assert!(queue.receive(10, 30).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_errors_on_a_receipt_sqs_never_issued() {
    let (queue, _queues) = default_queue().await;
    let err = queue
        .ack("not-a-receipt")
        .await
        .expect_err("a malformed receipt is an error");
    assert!(err.to_string().contains("ReceiptHandleIsInvalid"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_queue_is_a_storage_error() {
    let clients = clients().await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let queue = SqsJobQueue::new(
        clients.sqs.clone(),
        SqsQueueSettings {
            queue_url: format!("{endpoint}/000000000000/regtest-no-such-queue"),
            dead_letter_queue_url: format!("{endpoint}/000000000000/regtest-no-such-dlq"),
        },
    );
    let err = queue.enqueue(&job("scan", 1)).await.unwrap_err();
    assert!(
        matches!(err, registry_core::RegistryError::Storage(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("SendMessage"), "{err}");
}

/// SQS calls count in the per-request backend call figures, as S3 and DynamoDB calls do.
#[tokio::test]
async fn sqs_calls_are_counted() {
    let (queue, _queues) = default_queue().await;
    let ((), calls) = registry_core::metrics::scoped(async {
        queue.enqueue(&job("counted", 1)).await.unwrap();
    })
    .await;
    assert_eq!(
        registry_core::metrics::calls_to(&calls, "SQS"),
        1,
        "{calls:?}"
    );
}
