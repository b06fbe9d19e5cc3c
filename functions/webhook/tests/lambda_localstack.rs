//! The webhook function as Lambda runs it, on LocalStack: SQS batches (real messages with
//! their receipt handles and receive counts, as the event source mapping hands them over)
//! through `registry_webhook::handle`, which reports partial batch failures and backs off
//! through the message visibility; and a scheduled invocation that sweeps the outbox.
//! Needs `source localstack/env`; fails (never skips) without it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry_app::ServerConfig;
use registry_app::compose::{EventsRuntime, build_events, stores};
use registry_core::admin::{Actor, Admin};
use registry_core::events::{Event, EventKind};
use registry_core::ports::{JobQueue, ReceivedJob, SystemClock};
use registry_core::webhooks::PolicyInput;
use serde_json::{Value, json};

/// A receiver on 127.0.0.1 answering 503 to the first `fail_first` POSTs, then 200.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<u16>>>) {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            let mut s = seen.lock().unwrap();
            let status = if s.len() < fail_first { 503 } else { 200 };
            s.push(status);
            axum::http::StatusCode::from_u16(status).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, statuses)
}

/// The SQS event Lambda would invoke the function with for these messages.
fn sqs_event(jobs: &[ReceivedJob]) -> Value {
    serde_json::to_value(registry_aws::sqs_batch::event_of(jobs)).unwrap()
}

/// One poll of the event source mapping: receive, invoke, delete what succeeded.
/// Returns the receive counts of the failed messages of `project` (the sweep may have
/// published other projects' orphans too).
async fn invoke_once(events: &EventsRuntime, queue: &Arc<dyn JobQueue>, project: &str) -> Vec<u32> {
    let jobs = queue.receive(10, 30).await.unwrap();
    if jobs.is_empty() {
        return Vec::new();
    }
    let answer = registry_webhook::handle(events, sqs_event(&jobs))
        .await
        .unwrap();
    let failed: Vec<usize> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    for (i, j) in jobs.iter().enumerate() {
        if !failed.contains(&i) {
            queue.ack(&j.receipt).await.unwrap(); // Lambda deletes the successes
        }
    }
    failed
        .iter()
        .filter(|&&i| jobs[i].job.payload["project"] == project)
        .map(|&i| jobs[i].receive_count)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batches_deliver_with_backoff_and_schedules_sweep_the_outbox() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| !e.is_empty()),
        "AWS_ENDPOINT_URL is unset: run `source localstack/env` (LocalStack on 4566) first"
    );
    let sfx = registry_testkit::support::run_suffix();
    let probe = ServerConfig::parse_from_args(["registry"]);
    let clients = registry_app::compose::aws_clients(&probe.aws).await;
    let settings = registry_aws::sqs_job_queue::create_queue_with_dead_letters(
        &clients.sqs,
        &format!("lambdatest-webhook-{sfx}"),
        3,
        30,
    )
    .await
    .expect("test queues");
    let config = ServerConfig::parse_from_args([
        "registry".to_owned(),
        "--backend".into(),
        "aws".into(),
        "--s3-prefix".into(),
        format!("lambdatest-{sfx}/"),
        "--webhook-queue-url".into(),
        settings.queue_url.clone(),
        "--webhook-dlq-url".into(),
        settings.dead_letter_queue_url.clone(),
        "--outbound-allow".into(),
        "127.0.0.0/8".into(),
        "--webhook-retry-base-secs".into(),
        "1".into(),
        "--webhook-max-receives".into(),
        "3".into(),
        // Only orphans older than a minute: other tests' fresh events are theirs.
        "--outbox-grace-secs".into(),
        "60".into(),
    ]);
    let events = build_events(&config).await.expect("webhook function state");
    let stores = stores(&config).await.unwrap();
    let admin = Admin::new(stores.identities.clone(), Arc::new(SystemClock));
    let project = format!("lambda{sfx}");
    let (url, statuses) = receiver(1).await;
    events
        .webhooks
        .create_policy(
            &admin,
            &Actor::System,
            &project,
            serde_json::from_value::<PolicyInput>(json!({
                "name": "lambda", "targetUrl": url, "eventTypes": ["manifest.pushed"], "secret": "s"
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    // A scheduled invocation sweeps an event its process never published.
    let repo = format!("{project}/app").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let digest: registry_core::Digest =
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            .parse()
            .unwrap();
    let orphan = Event::new(EventKind::ManifestPushed, &repo, now - 120_000).with_digest(&digest);
    stores
        .meta
        .link_blob(&repo, &digest, 2, std::slice::from_ref(&orphan))
        .await
        .unwrap();
    let swept = registry_webhook::handle(
        &events,
        json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
    )
    .await
    .unwrap();
    assert!(swept["published"].as_u64().unwrap() >= 1, "{swept}");
    assert!(
        !stores
            .meta
            .outbox_events(1000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.id == orphan.id),
        "the swept event left the outbox"
    );

    // The event source mapping: fan-out, a failed POST (reported, backed off), success.
    let queue = events.queue.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = Vec::new();
    while statuses.lock().unwrap().last() != Some(&200) {
        assert!(
            Instant::now() < deadline,
            "statuses {:?}",
            statuses.lock().unwrap()
        );
        failures.extend(invoke_once(&events, &queue, &project).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*statuses.lock().unwrap(), vec![503, 200]);
    assert_eq!(
        failures,
        vec![1],
        "the first try failed, was reported, and retried"
    );
    // Nothing of this project left: no job visible, none dead.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mine = |p: &Value| p["project"] == project.as_str();
    assert!(
        !queue
            .receive(10, 30)
            .await
            .unwrap()
            .iter()
            .any(|j| mine(&j.job.payload))
    );
    assert!(
        !queue
            .dead_letters(10)
            .await
            .unwrap()
            .iter()
            .any(|j| mine(&j.payload))
    );
    registry_aws::sqs_job_queue::delete_queues(&clients.sqs, &settings).await;
}
