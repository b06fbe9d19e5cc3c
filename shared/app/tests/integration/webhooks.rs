//! Events and webhooks end to end on both backends (embedded, and AWS on LocalStack with
//! a fresh SQS queue pair per test), with a real receiver (a small HTTP server in the
//! test) and the real webhook worker polling the queue:
//! payloads, headers and signatures of every event type in both formats; retries with
//! backoff until the receiver is up; dead-lettering with every attempt in the delivery
//! log; re-sends by hand; the outbox sweep; and the outbound guard (SSRF). The AWS
//! tests need `source localstack/env` and fail (never skip) without it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use hmac::{KeyInit, Mac};
use registry_app::ServerConfig;
use registry_app::compose::{EventsRuntime, build, events_runtime, stores};
use registry_core::RepoName;
use registry_core::events::{Event, EventKind};
use registry_core::ports::SystemClock;
use registry_core::worker::PollConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "root";
const PASSWORD: &str = "pw-for-webhooks";
const SECRET: &str = "receiver-shared-secret";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---- the receiver ----------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: Bytes,
    status: u16,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct ReceiverState {
    /// Answer 503 to this many requests first.
    fail_first: usize,
    received: Vec<Received>,
}

/// A webhook target on 127.0.0.1 that records every request.
#[derive(Clone)]
struct Receiver {
    base: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            fail_first,
            received: Vec::new(),
        }));
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move {
                    assert_eq!(method, Method::POST);
                    let mut s = shared.lock().unwrap();
                    let status = if s.fail_first > 0 {
                        s.fail_first -= 1;
                        503
                    } else {
                        200
                    };
                    s.received.push(Received {
                        path: uri.path().to_owned(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                        body,
                        status,
                        at: Instant::now(),
                    });
                    (StatusCode::from_u16(status).unwrap(), "thanks")
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, state }
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `done` holds for what was received (or fails after `secs`).
    async fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if done(&self.received()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {:#?}",
                self.received()
                    .iter()
                    .map(|r| (
                        r.path.clone(),
                        r.status,
                        String::from_utf8_lossy(&r.body).into_owned()
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Standard Webhooks signature, computed here independently of the registry.
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

// ---- the registry ----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Aws,
}

struct Env {
    app: axum::Router,
    events: EventsRuntime,
    /// Per-run suffix of project names (the DynamoDB table outlives runs).
    sfx: String,
    _dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
    /// This test's SQS queues (AWS), deleted by `cleanup`.
    queues: Option<(registry_aws::AwsClients, registry_aws::SqsQueueSettings)>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn args(dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "registry",
        "--backend",
        "embedded",
        "--data-dir",
        dir.to_str().unwrap(),
        "--admin-user",
        ADMIN,
        "--admin-password",
        PASSWORD,
        "--webhook-retry-base-secs",
        "1",
        "--webhook-max-receives",
        "3",
        "--outbox-grace-secs",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// The registry on `backend` with its webhook worker running.
async fn env_on(backend: Backend, extra: &[&str]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sfx = registry_testkit::support::run_suffix();
    let mut args = args(dir.path(), extra);
    let mut queues = None;
    if backend == Backend::Aws {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        assert!(
            !endpoint.is_empty(),
            "AWS_ENDPOINT_URL is unset: run `source localstack/env` (LocalStack on 4566) first"
        );
        let probe = ServerConfig::parse_from_args(["registry"]);
        let clients = registry_app::compose::aws_clients(&probe.aws).await;
        let settings = registry_aws::sqs_job_queue::create_queue_with_dead_letters(
            &clients.sqs,
            &format!("apptest-webhook-{sfx}"),
            3,
            30,
        )
        .await
        .expect("test queues on LocalStack");
        let (_, pem) = registry_core::auth::KeySet::generate_pem().unwrap();
        args[2] = "aws".into();
        args.extend([
            "--s3-prefix".into(),
            format!("apptest-{sfx}/"),
            format!("--token-signing-key={pem}"),
            "--webhook-queue-url".into(),
            settings.queue_url.clone(),
            "--webhook-dlq-url".into(),
            settings.dead_letter_queue_url.clone(),
        ]);
        queues = Some((clients, settings));
    }
    let config = ServerConfig::parse_from_args(args);
    let composed = build(&config, false).await.expect("registry");
    let events = composed
        .events
        .expect("events are on with the embedded backend");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = events.worker.clone();
    let poll = PollConfig {
        idle: Duration::from_millis(20),
        ..PollConfig::default()
    };
    tokio::spawn(async move { worker.run(poll, stopped).await });
    Env {
        app: registry_http::router(composed.state),
        events,
        sfx,
        _dir: dir,
        stop,
        queues,
    }
}

async fn env_with(extra: &[&str]) -> Env {
    env_on(Backend::Embedded, extra).await
}

/// The registry on `backend`, loopback targets allowed, pull events on.
async fn env(backend: Backend) -> Env {
    env_on(
        backend,
        &["--outbound-allow", "127.0.0.0/8", "--pull-events"],
    )
    .await
}

/// Two tests of one check: on the embedded backend and on AWS (LocalStack).
macro_rules! on_both_backends {
    ($($check:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Backend::Embedded).await;
                }
            )+
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Backend::Aws).await;
                }
            )+
        }
    };
}

on_both_backends!(
    every_event_type_arrives_signed_in_both_formats,
    a_failing_receiver_gets_the_event_after_retries,
    a_receiver_down_for_good_dead_letters_the_delivery,
);

fn basic() -> String {
    common::basic(ADMIN, PASSWORD)
}

impl Env {
    /// A project name unique to this run.
    fn project(&self, base: &str) -> String {
        format!("{base}{}", self.sfx)
    }

    /// Deletes this test's queues (AWS).
    async fn cleanup(&self) {
        if let Some((clients, settings)) = &self.queues {
            registry_aws::sqs_job_queue::delete_queues(&clients.sqs, settings).await;
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        common::send(&self.app, method, uri, Some(&basic()), ct, body).await
    }

    async fn api(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, bytes) = self
            .send(
                method,
                uri,
                "application/json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn create_webhook(&self, project: &str, body: Value) -> String {
        let (status, res) = self
            .api(
                Method::POST,
                &format!("/api/v1/projects/{project}/webhooks"),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{res}");
        assert_eq!(res.get("secret"), None, "the secret never leaves");
        res["id"].as_str().unwrap().to_owned()
    }

    async fn deliveries(&self, project: &str, id: &str) -> Vec<Value> {
        let (status, res) = self
            .api(
                Method::GET,
                &format!("/api/v1/projects/{project}/webhooks/{id}/deliveries"),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{res}");
        res["deliveries"].as_array().unwrap().clone()
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        common::push_blob(&self.app, &basic(), repo, data).await
    }

    /// Pushes a one-layer image tagged `tag`; returns the manifest digest.
    async fn push_image(&self, repo: &str, tag: &str, note: &str) -> String {
        let config = self.push_blob(repo, b"{}").await;
        let layer = self
            .push_blob(repo, format!("layer {note}").as_bytes())
            .await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                        "size": format!("layer {note}").len()}],
        }))
        .unwrap();
        let (status, headers, body) = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                OCI_MANIFEST,
                manifest,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body:?}");
        headers["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    }
}

fn kinds_at(received: &[Received], path: &str) -> BTreeSet<String> {
    received
        .iter()
        .filter(|r| r.path == path && r.status == 200)
        .filter_map(|r| r.header("x-registry-event").map(str::to_owned))
        .collect()
}

// ---- the checks ------------------------------------------------------------------------

/// Every event type reaches a CloudEvents policy (signed) and a Harbor policy (unsigned),
/// with the right headers and payload.
async fn every_event_type_arrives_signed_in_both_formats(backend: Backend) {
    let env = env(backend).await;
    let rx = Receiver::start(0).await;
    let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    let team = env.project("team");
    env.create_webhook(
        &team,
        json!({"name": "ce", "targetUrl": format!("{}/ce", rx.base), "eventTypes": all, "secret": SECRET}),
    )
    .await;
    env.create_webhook(
        &team,
        json!({"name": "harbor", "targetUrl": format!("{}/harbor", rx.base),
               "eventTypes": ["manifest.pushed", "tag.deleted"], "format": "harbor"}),
    )
    .await;

    let repo_name = format!("{team}/app");
    let repo = repo_name.as_str();
    let digest = env.push_image(repo, "v1", "all").await;
    let (status, _, _) = env
        .send(Method::GET, &format!("/v2/{repo}/manifests/v1"), "", vec![])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = env
        .send(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/v1"),
            "",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, _) = env
        .send(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{digest}"),
            "",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Scan and quota events come from other workers; they publish through the same relay.
    let r: RepoName = repo.parse().unwrap();
    for (kind, detail) in [
        (EventKind::ScanCompleted, json!({"critical": 1, "high": 2})),
        (EventKind::ScanFailed, json!({"error": "layer unreadable"})),
        (
            EventKind::QuotaExceeded,
            json!({"limitBytes": 10, "usedBytes": 12}),
        ),
    ] {
        let event = Event::new(kind, &r, 1_764_331_200_000)
            .with_digest(&digest.parse().unwrap())
            .with_detail(detail);
        env.events.relay.publish_direct(&event).await;
    }

    let want: BTreeSet<String> = all.iter().map(|s| (*s).to_owned()).collect();
    rx.wait_for(20, "every event type at /ce and two at /harbor", |got| {
        kinds_at(got, "/ce") == want && kinds_at(got, "/harbor").len() == 2
    })
    .await;

    for r in rx.received().iter().filter(|r| r.path == "/ce") {
        let body = r.json();
        let id = r.header("webhook-id").unwrap();
        let ts = r.header("webhook-timestamp").unwrap();
        assert_eq!(
            r.header("content-type"),
            Some("application/cloudevents+json")
        );
        assert_eq!(
            r.header("webhook-signature").unwrap(),
            expected_signature(SECRET, id, ts, &r.body),
            "signature of {body}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            ts.parse::<u64>().unwrap().abs_diff(now) < 120,
            "fresh timestamp"
        );
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], id);
        let kind = r.header("x-registry-event").unwrap();
        assert_eq!(body["type"], format!("dev.registry.{kind}"));
        assert!(
            body["source"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/v2/{repo}"))
        );
        assert_eq!(body["datacontenttype"], "application/json");
        let data = &body["data"];
        assert_eq!(data["type"], kind);
        assert_eq!(data["repository"], repo);
        assert_eq!(data["project"], team.as_str());
        match kind {
            "manifest.pushed" => {
                assert_eq!(data["digest"], digest.as_str());
                assert_eq!(data["tags"], json!(["v1"]));
                assert_eq!(data["mediaType"], OCI_MANIFEST);
                assert_eq!(data["actor"], ADMIN);
                assert!(
                    body["subject"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!("/{repo}:v1"))
                );
            }
            "image.pulled" | "tag.deleted" => {
                assert_eq!(data["tags"], json!(["v1"]));
                assert_eq!(data["actor"], ADMIN);
            }
            "manifest.deleted" => {
                assert_eq!(data["digest"], digest.as_str());
                assert_eq!(data["actor"], ADMIN);
            }
            "blob.uploaded" => {
                assert!(data["digest"].as_str().unwrap().starts_with("sha256:"));
                assert!(data["size"].as_u64().unwrap() > 0);
                assert_eq!(data["actor"], ADMIN);
            }
            "scan.completed" => assert_eq!(data["detail"]["high"], 2),
            "scan.failed" => assert_eq!(data["detail"]["error"], "layer unreadable"),
            "quota.exceeded" => assert_eq!(data["detail"]["usedBytes"], 12),
            other => panic!("unexpected event type {other}"),
        }
    }
    let blob_events = rx
        .received()
        .iter()
        .filter(|r| r.path == "/ce" && r.header("x-registry-event") == Some("blob.uploaded"))
        .count();
    assert_eq!(blob_events, 2, "config and layer uploads");

    for r in rx.received().iter().filter(|r| r.path == "/harbor") {
        let body = r.json();
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("webhook-signature"),
            None,
            "no secret, no signature"
        );
        assert_eq!(body["operator"], ADMIN);
        assert_eq!(body["event_data"]["repository"]["repo_full_name"], repo);
        assert_eq!(body["event_data"]["repository"]["namespace"], team.as_str());
        let expected_type = match r.header("x-registry-event").unwrap() {
            "manifest.pushed" => "PUSH_ARTIFACT",
            "tag.deleted" => "DELETE_ARTIFACT",
            other => panic!("the harbor policy did not ask for {other}"),
        };
        assert_eq!(body["type"], expected_type);
        assert_eq!(body["event_data"]["resources"][0]["tag"], "v1");
    }
    env.cleanup().await;
}

/// A receiver that fails twice gets the event on the third try, after backoffs of 1 s
/// and 2 s; de-duplicating by event id it sees the event once; the delivery log shows
/// the three attempts; a re-send by hand delivers it again.
async fn a_failing_receiver_gets_the_event_after_retries(backend: Backend) {
    let env = env(backend).await;
    let rx = Receiver::start(2).await;
    let project = env.project("retry");
    let hook = env
        .create_webhook(
            &project,
            json!({"name": "r", "targetUrl": format!("{}/hook", rx.base),
                   "eventTypes": ["manifest.pushed"], "secret": SECRET}),
        )
        .await;
    env.push_image(&format!("{project}/app"), "v1", "retry")
        .await;
    rx.wait_for(30, "a successful delivery", |got| {
        got.iter().any(|r| r.status == 200)
    })
    .await;

    let got = rx.received();
    assert_eq!(got.len(), 3, "two failures, then success");
    let ids: BTreeSet<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every try carries the same event id");
    let delivered_once: BTreeMap<&str, usize> =
        got.iter()
            .filter(|r| r.status == 200)
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.header("webhook-id").unwrap()).or_default() += 1;
                m
            });
    assert_eq!(
        delivered_once.values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(900),
        "first backoff ~1 s, was {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(1900),
        "second backoff ~2 s, was {gap2:?}"
    );

    // The log is written after the POST: wait for the third attempt to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    let delivery = loop {
        let d = env.deliveries(&project, &hook).await;
        if d.len() == 1 && d[0]["attempts"].as_array().unwrap().len() == 3 {
            break d[0].clone();
        }
        assert!(Instant::now() < deadline, "delivery log: {d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["status"], "delivered");
    let outcomes: Vec<&str> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["failed", "failed", "delivered"]);
    assert_eq!(delivery["attempts"][0]["httpStatus"], 503);
    assert_eq!(delivery["attempts"][0]["responseExcerpt"], "thanks");

    let event_id = delivery["eventId"].as_str().unwrap();
    let (status, res) = env
        .api(
            Method::POST,
            &format!("/api/v1/projects/{project}/webhooks/{hook}/deliveries/{event_id}/redeliver"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    rx.wait_for(10, "the re-send", |got| got.len() == 4).await;
    assert_eq!(rx.received()[3].header("webhook-id"), Some(event_id));
    env.cleanup().await;
}

/// A receiver down for good: every try is logged, the last as `gaveUp`, and the job
/// lands in the dead-letter queue.
async fn a_receiver_down_for_good_dead_letters_the_delivery(backend: Backend) {
    let env = env(backend).await;
    let project = env.project("down");
    // A port nobody listens on: connection refused at every try.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hook = env
        .create_webhook(
            &project,
            json!({"name": "down", "targetUrl": format!("http://127.0.0.1:{closed}/hook"),
                   "eventTypes": ["manifest.pushed"]}),
        )
        .await;
    env.push_image(&format!("{project}/app"), "v1", "down")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = env.events.queue.dead_letters(10).await.unwrap();
        if let Some(job) = dead.iter().find(|j| j.kind == "webhook.deliver") {
            break job.clone();
        }
        assert!(Instant::now() < deadline, "no dead letter yet: {dead:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.payload["policyId"], hook.as_str());
    let log = env.deliveries(&project, &hook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "gaveUp");
    let attempts = log[0]["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["failed", "failed", "gaveUp"]);
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("refused"),
        "{}",
        attempts[0]
    );
    env.cleanup().await;
}

/// Targets on loopback, link-local (cloud metadata) and private addresses are refused
/// unless the operator allows their network; other schemes always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_unless_allowed() {
    let strict = env_with(&[]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]:9/hook",
        "file:///etc/passwd",
    ] {
        let (status, res) = strict
            .api(
                Method::POST,
                "/api/v1/projects/ssrf/webhooks",
                json!({"name": "x", "targetUrl": url, "eventTypes": ["manifest.pushed"]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {res}");
        assert_eq!(res["errors"][0]["code"], "DENIED", "{url}: {res}");
    }
    let allowed = env(Backend::Embedded).await;
    let (status, _) = allowed
        .api(
            Method::POST,
            "/api/v1/projects/ssrf/webhooks",
            json!({"name": "x", "targetUrl": "http://127.0.0.1:9/hook", "eventTypes": ["manifest.pushed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, res) = allowed
        .api(
            Method::POST,
            "/api/v1/projects/ssrf/webhooks",
            json!({"name": "x", "targetUrl": "http://169.254.169.254/", "eventTypes": ["manifest.pushed"]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "metadata stays refused: {res}"
    );
    let (status, res) = allowed
        .api(
            Method::POST,
            "/api/v1/projects/ssrf/webhooks",
            json!({"name": "x", "targetUrl": "http://127.0.0.1:9/", "eventTypes": ["image.pushed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown event type: {res}");
}

/// The webhook API needs credentials and an admin of the project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_api_needs_a_project_admin() {
    let env = env(Backend::Embedded).await;
    let req = Request::get("/api/v1/projects/team/webhooks")
        .body(Body::empty())
        .unwrap();
    let res = env.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = env
        .api(
            Method::POST,
            "/api/v1/users",
            json!({"name": "dev", "password": "dev-password-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let dev = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dev:dev-password-1")
    );
    let req = Request::get("/api/v1/projects/team/webhooks")
        .header("authorization", dev)
        .body(Body::empty())
        .unwrap();
    let res = env.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// The sweep publishes outbox events left behind by a process that died after its
/// commit (older than the grace period), and only those; published ones leave the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_sweep_publishes_what_the_fast_path_missed() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = args(dir.path(), &[]);
    let grace = args
        .iter()
        .position(|a| a == "--outbox-grace-secs")
        .unwrap();
    args[grace + 1] = "60".into();
    let config = ServerConfig::parse_from_args(args);
    let stores = stores(&config).await.unwrap();
    let events = events_runtime(&config, &stores, Arc::new(SystemClock))
        .unwrap()
        .unwrap();
    let repo: RepoName = "sweep/app".parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let old = Event::new(EventKind::BlobUploaded, &repo, now - 120_000);
    let young = Event::new(EventKind::BlobUploaded, &repo, now);
    let digest: registry_core::Digest =
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            .parse()
            .unwrap();
    // Committed with the change, never published (the process died).
    stores
        .meta
        .link_blob(&repo, &digest, 2, &[old.clone(), young.clone()])
        .await
        .unwrap();
    assert_eq!(events.relay.sweep(100).await.unwrap(), 1);
    let queued = events.queue.receive(10, 30).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].job, old.to_job());
    assert_eq!(stores.meta.outbox_events(10).await.unwrap(), vec![young]);
    assert_eq!(
        events.relay.sweep(100).await.unwrap(),
        0,
        "the young one waits"
    );
}

/// Replacing a policy: an omitted secret is kept, `""` removes it; a disabled policy
/// gets no delivery of what happens while it is disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_and_disabled_policies() {
    let env = env(Backend::Embedded).await;
    let rx = Receiver::start(0).await;
    let project = env.project("replace");
    let target = format!("{}/hook", rx.base);
    let id = env
        .create_webhook(
            &project,
            json!({"name": "r", "targetUrl": target, "eventTypes": ["manifest.pushed"], "secret": SECRET}),
        )
        .await;
    let path = format!("/api/v1/projects/{project}/webhooks/{id}");
    let put = |body: Value| {
        let (env, path) = (&env, path.clone());
        async move { env.api(Method::PUT, &path, body).await }
    };
    let (status, res) = put(json!({"name": "r2", "targetUrl": target,
                                    "eventTypes": ["manifest.pushed"], "enabled": false}))
    .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["hasSecret"], true, "an omitted secret is kept");
    assert_eq!(res["enabled"], false);
    assert_eq!(res["name"], "r2");
    // A probe policy on the same project: once it has the event of the push made while
    // the first is disabled, that event's fan-out is done.
    env.create_webhook(
        &project,
        json!({"name": "probe", "targetUrl": format!("{}/probe", rx.base), "eventTypes": ["manifest.pushed"]}),
    )
    .await;
    env.push_image(&format!("{project}/app"), "off", "while-disabled")
        .await;
    rx.wait_for(20, "the probe's delivery", |got| {
        got.iter().any(|r| r.path == "/probe")
    })
    .await;

    let (status, res) = put(json!({"name": "r2", "targetUrl": target,
                                    "eventTypes": ["manifest.pushed"], "secret": ""}))
    .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["hasSecret"], false, "an empty secret removes it");
    assert_eq!(res["enabled"], true);
    env.push_image(&format!("{project}/app"), "on", "while-enabled")
        .await;
    rx.wait_for(20, "the push made while enabled", |got| {
        got.iter().any(|r| r.path == "/hook")
    })
    .await;
    let got: Vec<Received> = rx
        .received()
        .into_iter()
        .filter(|r| r.path == "/hook")
        .collect();
    assert_eq!(got.len(), 1, "nothing for the push made while disabled");
    assert_eq!(got[0].json()["data"]["tags"], json!(["on"]));
    assert_eq!(got[0].header("webhook-signature"), None);
    let (status, res) = env.api(Method::GET, &path, Value::Null).await;
    assert_eq!((status, res["name"].clone()), (StatusCode::OK, json!("r2")));
    let (status, _) = env.api(Method::DELETE, &path, Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.api(Method::GET, &path, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
