//! Bench (prints figures, asserts nothing about speed): AWS calls per registry operation
//! through the API function on LocalStack, the function's cold start (process start to
//! first response, against a stand-in Lambda Runtime API) and its release binary size.
//! Run: `localstack/start && source localstack/env && cargo bench -p registry-api --bench aws_calls`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use registry_api::harness;
use registry_app::ServerConfig;
use registry_core::metrics::{self, CallCounts, calls_to};
use registry_core::{Digest, DigestAlgorithm};

fn summary(calls: &CallCounts) -> String {
    format!(
        "DynamoDB {:>2}  S3 {:>2}  ({})",
        calls_to(calls, "DynamoDB"),
        calls_to(calls, "S3"),
        registry_http::observe::format_calls(calls)
    )
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String, CallCounts) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "bench.local");
    if let Some(ct) = ct {
        b = b.header("content-type", ct).header("accept", ct);
    }
    let ((res, _), calls) = metrics::scoped(harness::invoke(
        app.clone(),
        b.body(Body::from(body)).unwrap(),
    ))
    .await;
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = res.into_body().collect().await;
    (status, location, calls)
}

fn add(total: &mut CallCounts, calls: &CallCounts) {
    for (k, v) in calls {
        *total.entry(k.clone()).or_default() += v;
    }
}

async fn calls_per_operation(layers: usize) {
    let prefix = format!("bench-{}/", std::process::id());
    let base =
        ServerConfig::parse_from_args(["registry", "--backend", "aws", "--s3-prefix", &prefix]);
    let (function, _) = harness::function_and_endpoint(&base, "127.0.0.1:9".parse().unwrap());
    let app = registry_api::app(&function).await.expect("app");
    let repo = format!("bench/app{}", std::process::id());

    // An image push as docker/skopeo do it: per blob HEAD, POST, PATCH, PUT; then the manifest.
    let mut push = CallCounts::new();
    let mut descriptors = Vec::new();
    let mut config_digest = None;
    for i in 0..=layers {
        let data: Vec<u8> = (0..200_000).map(|j| ((i * 7 + j) % 251) as u8).collect();
        let d = Digest::of(DigestAlgorithm::Sha256, &data);
        let (_, _, c) = call(
            &app,
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{d}"),
            None,
            vec![],
        )
        .await;
        add(&mut push, &c);
        let (_, loc, c) = call(
            &app,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            None,
            vec![],
        )
        .await;
        add(&mut push, &c);
        let path = loc.trim_start_matches("http://127.0.0.1:9").to_owned();
        let (_, loc, c) = call(
            &app,
            Method::PATCH,
            &path,
            Some("application/octet-stream"),
            data.clone(),
        )
        .await;
        add(&mut push, &c);
        let path = loc.trim_start_matches("http://127.0.0.1:9").to_owned();
        let (st, _, c) = call(
            &app,
            Method::PUT,
            &format!("{path}&digest={d}"),
            None,
            vec![],
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
        add(&mut push, &c);
        if i == 0 {
            config_digest = Some((d, data.len()));
        } else {
            descriptors.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": data.len()}));
        }
    }
    let (cd, cl) = config_digest.unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cl},
        "layers": descriptors,
    })).unwrap();
    let oci = Some("application/vnd.oci.image.manifest.v1+json");
    let (st, _, c) = call(
        &app,
        Method::PUT,
        &format!("/v2/{repo}/manifests/v1"),
        oci,
        manifest,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    add(&mut push, &c);

    let (_, _, by_tag) = call(
        &app,
        Method::GET,
        &format!("/v2/{repo}/manifests/v1"),
        oci,
        vec![],
    )
    .await;
    let (_, _, blob_get) = call(
        &app,
        Method::GET,
        &format!("/v2/{repo}/blobs/{cd}"),
        None,
        vec![],
    )
    .await;
    let (_, _, blob_head) = call(
        &app,
        Method::HEAD,
        &format!("/v2/{repo}/blobs/{cd}"),
        None,
        vec![],
    )
    .await;
    println!("AWS calls per operation (API function on LocalStack):");
    println!("  manifest GET by tag      {}", summary(&by_tag));
    println!("  blob GET (307)           {}", summary(&blob_get));
    println!("  blob HEAD                {}", summary(&blob_head));
    println!("  image push, {layers} layers     {}", summary(&push));
}

#[derive(Clone)]
struct Runtime {
    served: tokio::sync::mpsc::UnboundedSender<Instant>,
    event: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

async fn next(State(rt): State<Runtime>) -> axum::response::Response {
    let event = rt.event.lock().unwrap().take();
    match event {
        Some(e) => axum::response::Response::builder()
            .header("lambda-runtime-aws-request-id", "bench-1")
            .header("lambda-runtime-deadline-ms", "99999999999999")
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:api",
            )
            .header("lambda-runtime-trace-id", "Root=1-0-0")
            .body(Body::from(e))
            .unwrap(),
        None => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT)
        }
    }
}

async fn respond(State(rt): State<Runtime>, Path(_id): Path<String>, _body: String) -> StatusCode {
    let _ = rt.served.send(Instant::now());
    StatusCode::ACCEPTED
}

async fn cold_start() {
    let bin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/registry-api");
    if !bin.exists() {
        println!(
            "cold start: build it first with `cargo build --release -p registry-api` ({} missing)",
            bin.display()
        );
        return;
    }
    println!(
        "release binary size: {:.1} MiB",
        std::fs::metadata(&bin).unwrap().len() as f64 / 1048576.0
    );
    let event =
        harness::event_json("GET", "/v2/", "", &axum::http::HeaderMap::new(), b"").to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = Runtime {
        served: tx,
        event: std::sync::Arc::new(std::sync::Mutex::new(Some(event))),
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("REGISTRY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the function");
    let answered = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    let _ = child.kill().await;
    match answered {
        Ok(Some(at)) => println!(
            "cold start (process start to first response): {:.1} ms",
            (at - started).as_secs_f64() * 1000.0
        ),
        _ => println!("cold start: no response within 30 s"),
    }
}

#[tokio::main]
async fn main() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "run `localstack/start && source localstack/env` first"
    );
    for layers in [1, 5] {
        calls_per_operation(layers).await;
    }
    cold_start().await;
}
