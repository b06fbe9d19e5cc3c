//! The proxy-fill path as it runs on AWS, on LocalStack: the API function's mode
//! (uncached proxy blobs answered with the upstream's own download URL, a `proxy-fill`
//! job queued) over a real SQS queue of this test's own, the proxy-fill function's body
//! (`run_worker_batch` over the fill worker) run on the real messages, and then the blob
//! in the proxy's S3 prefix with the next pull redirected there. The upstream is a real
//! registry too: this code on the AWS backend under another S3 prefix, served over HTTP
//! on 127.0.0.1, which redirects blob GETs to presigned S3 URLs as a CDN-backed upstream
//! would. Needs `source localstack/env`; fails (never skips) without it.

use std::sync::Arc;
use std::time::Duration;

use registry_app::ServerConfig;
use registry_app::compose::{aws_clients, build};
use registry_aws::sqs_batch::run_queue_batches;
use registry_aws::{SqsJobQueue, sqs_job_queue};
use registry_core::admin::{Actor, Admin, NewProject};
use registry_core::ports::{BlobContent, JobQueue, SystemClock};
use registry_core::proxy::{FILL_BLOB_JOB, PrefetchRequest, ProxyRequest};
use registry_core::registry::StartUpload;
use registry_core::{Digest, DigestAlgorithm, Reference, Registry, RepoName};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn aws_config(sfx: &str, role: &str, extra: &[String]) -> ServerConfig {
    let mut args = vec![
        "registry".to_owned(),
        "--backend".into(),
        "aws".into(),
        "--no-auth".into(),
        "--s3-prefix".into(),
        format!("proxyfill-{role}-{sfx}/"),
    ];
    args.extend_from_slice(extra);
    ServerConfig::parse_from_args(args)
}

/// Pushes a two-blob image to `registry` as `repo:v1`; returns the blobs' digests and bytes.
async fn push_image(registry: &Registry, repo: &RepoName) -> Vec<(Digest, Vec<u8>)> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = registry_testkit::support::pattern(3 * 1024 * 1024 + 17, 7);
    let mut blobs = Vec::new();
    for bytes in [config, layer] {
        let digest = Digest::of(DigestAlgorithm::Sha256, &bytes);
        let body = bytes.clone();
        registry
            .start_upload(
                repo,
                StartUpload {
                    digest: Some(digest.clone()),
                    body: Some(Box::pin(futures_util::stream::once(async move {
                        Ok::<_, registry_core::RegistryError>(bytes::Bytes::from(body))
                    }))),
                    ..StartUpload::default()
                },
            )
            .await
            .expect("upstream blob");
        blobs.push((digest, bytes));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blobs[0].0, "size": blobs[0].1.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blobs[1].0, "size": blobs[1].1.len()}],
    });
    registry
        .put_manifest(
            repo,
            &Reference::Tag("v1".parse().unwrap()),
            &[],
            Some(OCI_MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .expect("upstream manifest");
    blobs
}

/// Runs `want` messages of `queue` through the proxy-fill function's body; returns the
/// kinds of the jobs it reported as failed.
async fn run_fill_function(
    queue: &SqsJobQueue,
    worker: &registry_core::worker::Worker,
    want: usize,
) -> Vec<String> {
    run_queue_batches(queue, worker, want, Duration::from_secs(60))
        .await
        .expect("fill jobs handled")
        .into_iter()
        .map(|job| job.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_blobs_redirect_upstream_and_the_fill_job_caches_them_in_s3() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is unset: run `source localstack/env` (LocalStack on 4566) first"
    );
    let sfx = registry_testkit::support::run_suffix();

    // The upstream: a registry on the AWS backend (blob GETs are 307s to presigned S3 URLs).
    let upstream_cfg = aws_config(&sfx, "upstream", &[]);
    let upstream = build(&upstream_cfg, false)
        .await
        .expect("upstream registry");
    let upstream_repo: RepoName = "team/app".parse().unwrap();
    let blobs = push_image(&upstream.state.registry, &upstream_repo).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", listener.local_addr().unwrap());
    let app = registry_http::router(upstream.state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The proxy, as the API function runs it, with a proxy-fill queue of the test's own.
    let clients = aws_clients(&upstream_cfg.aws).await;
    let queues = sqs_job_queue::create_queue_with_dead_letters(
        &clients.sqs,
        &format!("lambdatest-proxyfill-{sfx}"),
        3,
        120,
    )
    .await
    .expect("test queues");
    let proxy_cfg = aws_config(
        &sfx,
        "proxy",
        &[
            "--proxy-fill-queue-url".into(),
            queues.queue_url.clone(),
            "--proxy-fill-dlq-url".into(),
            queues.dead_letter_queue_url.clone(),
            "--proxy-fill-max-receives".into(),
            "3".into(),
            "--proxy-redirect-blobs".into(),
            // The upstream and LocalStack (its download URLs) are on loopback.
            "--outbound-allow".into(),
            "127.0.0.0/8".into(),
        ],
    );
    let proxy = build(&proxy_cfg, false).await.expect("proxy registry");
    let registry = proxy.state.registry.clone();
    let fill_worker = proxy.proxy_fill.clone().expect("a proxy-fill queue");
    let project = format!("hub{sfx}");
    let admin = Admin::new(
        proxy.state.identities.clone().unwrap(),
        Arc::new(SystemClock),
    )
    .with_proxy(registry.proxy().cloned());
    admin
        .create_project(
            &Actor::System,
            NewProject {
                name: project.clone(),
                public: false,
                vulnerability_policy: None,
                proxy: Some(ProxyRequest {
                    upstream_url: upstream_url.clone(),
                    username: None,
                    password: None,
                    freshness_secs: Some(300),
                    max_cache_bytes: None,
                }),
            },
        )
        .await
        .expect("proxy project");
    let repo: RepoName = format!("{project}/team/app").parse().unwrap();
    let counts = || registry.proxy().unwrap().upstream().counts();

    // The manifest comes through (HEAD, then GET) and is cached in DynamoDB.
    let pulled = registry
        .pull_manifest(&repo, &Reference::Tag("v1".parse().unwrap()), &[])
        .await
        .expect("manifest through the proxy");
    assert!(pulled.stale.is_none());
    assert_eq!((counts().manifest_heads, counts().manifest_gets), (1, 1));

    // An uncached blob: a 307 to the upstream's own download URL, and a fill job queued.
    let (layer, layer_bytes) = &blobs[1];
    let read = registry.get_blob(&repo, layer, None).await.expect("blob");
    let BlobContent::Redirect { url } = read.content else {
        panic!("an uncached blob in redirect mode is a redirect");
    };
    assert!(url.starts_with(&endpoint), "{url}");
    assert!(
        url.contains(&format!("proxyfill-upstream-{sfx}/")),
        "the upstream's object: {url}"
    );
    let fetched = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        &fetched[..],
        &layer_bytes[..],
        "the upstream's URL serves the layer"
    );
    assert_eq!(
        counts().blob_gets,
        1,
        "one request upstream for its location"
    );

    // The proxy-fill function runs the job from SQS: the blob lands in the proxy's S3.
    let fill_queue =
        SqsJobQueue::new(clients.sqs.clone(), queues.clone()).with_receive_wait_secs(1);
    let failures = run_fill_function(&fill_queue, &fill_worker, 1).await;
    assert!(failures.is_empty(), "fill failures: {failures:?}");
    let cached = registry
        .get_blob(&repo, layer, None)
        .await
        .expect("cached blob");
    let BlobContent::Redirect { url } = cached.content else {
        panic!("a cached blob on S3 is a redirect");
    };
    assert!(
        url.contains(&format!("proxyfill-proxy-{sfx}/")),
        "now from the proxy's own prefix: {url}"
    );
    let fetched = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(&fetched[..], &layer_bytes[..]);
    assert_eq!(
        counts().blob_gets,
        2,
        "the fill job's one GET upstream; the second pull made none"
    );
    assert_eq!(cached.size, layer_bytes.len() as u64);

    // A job run twice is idempotent: nothing is fetched again.
    fill_queue
        .enqueue(&registry_core::ports::Job {
            kind: FILL_BLOB_JOB.into(),
            payload: serde_json::json!({"repository": repo, "digest": layer}),
        })
        .await
        .unwrap();
    assert!(
        run_fill_function(&fill_queue, &fill_worker, 1)
            .await
            .is_empty()
    );
    assert_eq!(counts().blob_gets, 2);

    // Prefetch (air-gapped preparation) queues the whole image; the config blob, never
    // pulled, is then cached too.
    let queued = registry
        .proxy()
        .unwrap()
        .prefetch(
            &admin,
            &Actor::System,
            &project,
            PrefetchRequest {
                images: vec!["team/app:v1".into()],
                platform: None,
            },
        )
        .await
        .expect("prefetch");
    assert_eq!(queued.queued.len(), 1);
    assert!(
        run_fill_function(&fill_queue, &fill_worker, 1)
            .await
            .is_empty()
    );
    let (config_digest, config_bytes) = &blobs[0];
    let read = registry.get_blob(&repo, config_digest, None).await.unwrap();
    assert_eq!(read.size, config_bytes.len() as u64);
    assert!(
        matches!(read.content, BlobContent::Redirect { ref url } if url.contains(&format!("proxyfill-proxy-{sfx}/")))
    );
    assert_eq!(
        counts().blob_gets,
        3,
        "only the config blob was fetched by the prefetch"
    );

    // Proxy projects are read-only to clients.
    let push = registry.start_upload(&repo, StartUpload::default()).await;
    assert!(
        matches!(push, Err(registry_core::RegistryError::Denied(_))),
        "no pushes into a proxy project"
    );

    sqs_job_queue::delete_queues(&clients.sqs, &queues).await;
}
