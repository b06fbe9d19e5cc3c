//! The scan function as Lambda runs it, on LocalStack: real messages of a scan queue of
//! this test's own (with receipt handles and receive counts) handed to the function's
//! body, `run_worker_batch` over the scan worker: a pushed image gets its report, and a
//! message that cannot be handled is reported in `batchItemFailures` (retried by SQS).
//! Needs `source localstack/env`; fails (never skips) without it.

use registry_app::ServerConfig;
use registry_app::compose::{aws_clients, build};
use registry_aws::sqs_batch::run_queue_batches;
use registry_aws::{SqsJobQueue, sqs_job_queue};
use registry_core::ports::{Job, JobQueue};
use registry_core::registry::StartUpload;
use registry_core::scan::ScanStatus;
use registry_core::{Digest, DigestAlgorithm, Reference, RepoName};

fn layer() -> Vec<u8> {
    registry_testkit::support::tar_layer(&[
        ("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
        (
            "lib/apk/db/installed",
            b"P:musl\nV:1.2.4_git20230717-r4\no:musl\n\nP:busybox\nV:1.36.1-r15\no:busybox\n\n",
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batches_scan_images_and_report_failures() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| !e.is_empty()),
        "AWS_ENDPOINT_URL is unset: run `source localstack/env` (LocalStack on 4566) first"
    );
    let sfx = registry_testkit::support::run_suffix();
    let probe = ServerConfig::parse_from_args(["registry"]);
    let clients = aws_clients(&probe.aws).await;
    let settings = sqs_job_queue::create_queue_with_dead_letters(
        &clients.sqs,
        &format!("lambdatest-scan-{sfx}"),
        3,
        60,
    )
    .await
    .expect("test queues");
    let config = ServerConfig::parse_from_args([
        "registry".to_owned(),
        "--backend".into(),
        "aws".into(),
        "--no-auth".into(),
        "--s3-prefix".into(),
        format!("scantest-{sfx}/"),
        "--scan-queue-url".into(),
        settings.queue_url.clone(),
        "--scan-dlq-url".into(),
        settings.dead_letter_queue_url.clone(),
        "--scan-max-receives".into(),
        "3".into(),
    ]);
    let composed = build(&config, false).await.expect("registry");
    let scanning = composed
        .scanning
        .clone()
        .expect("a scan queue is configured");
    let registry = composed.state.registry.clone();
    let reports = composed.state.scanning.clone().unwrap().reports;

    // Push an image: its manifest.pushed event is routed to the scan queue.
    let repo: RepoName = format!("lambda{sfx}/alpine").parse().unwrap();
    let mut descriptors = Vec::new();
    for (bytes, media_type) in [
        (
            b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec(),
            "config",
        ),
        (layer(), "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let digest = Digest::of(DigestAlgorithm::Sha256, &bytes);
        let size = bytes.len();
        let body = Box::pin(futures_util::stream::once(async move {
            Ok::<_, registry_core::RegistryError>(bytes::Bytes::from(bytes))
        }));
        registry
            .start_upload(
                &repo,
                StartUpload {
                    digest: Some(digest.clone()),
                    body: Some(body),
                    ..StartUpload::default()
                },
            )
            .await
            .unwrap();
        descriptors.push((digest, size, media_type));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": descriptors[0].0, "size": descriptors[0].1},
        "layers": [{"mediaType": descriptors[1].2, "digest": descriptors[1].0, "size": descriptors[1].1}],
    });
    let pushed = registry
        .put_manifest(
            &repo,
            &Reference::Tag("3.19".parse().unwrap()),
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();

    // And a message no worker can decode into its job.
    let queue = SqsJobQueue::new(clients.sqs.clone(), settings.clone()).with_receive_wait_secs(1);
    queue
        .enqueue(&Job {
            kind: "scan.image".into(),
            payload: serde_json::json!({"repository": "not a repo!"}),
        })
        .await
        .unwrap();

    let failures: Vec<_> = run_queue_batches(
        &queue,
        &scanning.worker,
        2,
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("both messages handled")
    .into_iter()
    .map(|job| job.payload)
    .collect();
    assert_eq!(
        failures,
        vec![serde_json::json!({"repository": "not a repo!"})]
    );
    let report = reports
        .get_report(&repo, &pushed.digest)
        .await
        .unwrap()
        .expect("a report");
    assert_eq!(report.status, ScanStatus::Completed);
    assert_eq!(report.packages, 2);
    assert!(report.sbom.is_some());
    sqs_job_queue::delete_queues(&clients.sqs, &settings).await;
}
