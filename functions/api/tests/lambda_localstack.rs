//! The API function driven through its Lambda entry point (the harness: event JSON in,
//! response JSON out, 6 MB limits) over S3, DynamoDB and SQS on LocalStack: call budgets,
//! payload limits, chunked uploads through the function, and the upload endpoint.
//! Needs `localstack/start && source localstack/env`; fails (never skips) without it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use registry_api::harness;
use registry_app::ServerConfig;
use registry_core::metrics::{self, CallCounts, calls_to};
use registry_core::{Digest, DigestAlgorithm};
use tower::ServiceExt;

struct Stack {
    function: axum::Router,
    endpoint: axum::Router,
    repo: String,
}

fn require_localstack() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run `localstack/start && source localstack/env` first"
    );
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{nanos:x}")
}

async fn stack() -> Stack {
    require_localstack();
    let prefix = format!("{}/", unique("t"));
    let base =
        ServerConfig::parse_from_args(["registry", "--backend", "aws", "--s3-prefix", &prefix]);
    let (function, endpoint) =
        harness::function_and_endpoint(&base, "127.0.0.1:9".parse().unwrap());
    let function = registry_api::app(&function).await.expect("function app");
    let endpoint = registry_http::router(
        registry_app::compose::build_state(&endpoint, true)
            .await
            .expect("endpoint state"),
    );
    Stack {
        function,
        endpoint,
        repo: format!("lambda/{}", unique("r")),
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
    calls: CallCounts,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
    }
}

async fn answer(res: Response, calls: CallCounts) -> Answer {
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
        calls,
    }
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "registry.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).unwrap()
}

impl Stack {
    /// One invocation of the function through the harness, with its backend calls.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let req = request(method, uri, headers, body);
        let ((res, _sizes), calls) =
            metrics::scoped(harness::invoke(self.function.clone(), req)).await;
        answer(res, calls).await
    }

    /// A request to the upload endpoint (a long-lived server: no payload limit).
    async fn upload(
        &self,
        method: Method,
        location: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        let path = location.split_once("//").map_or(location, |(_, rest)| {
            rest.find('/').map_or("/", |i| &rest[i..])
        });
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (res, calls) =
            metrics::scoped(self.endpoint.clone().oneshot(b.body(body).unwrap())).await;
        answer(res.unwrap(), calls).await
    }

    async fn push_blob(&self, data: &[u8]) -> Digest {
        let digest = Digest::of(DigestAlgorithm::Sha256, data);
        let a = self
            .call(
                Method::POST,
                &format!("/v2/{}/blobs/uploads/?digest={digest}", self.repo),
                &[("content-type", "application/octet-stream")],
                data.to_vec(),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        digest
    }

    async fn push_manifest(&self, tag: &str, manifest: &serde_json::Value) -> Digest {
        let body = serde_json::to_vec(manifest).unwrap();
        let a = self
            .call(
                Method::PUT,
                &format!("/v2/{}/manifests/{tag}", self.repo),
                &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                body.clone(),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        Digest::of(DigestAlgorithm::Sha256, &body)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn manifest(
    config: &Digest,
    config_len: usize,
    layers: &[(Digest, usize)],
    pad: usize,
) -> serde_json::Value {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_len},
        "layers": layers.iter().map(|(d, n)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": n
        })).collect::<Vec<_>>(),
    });
    if pad > 0 {
        m["annotations"] = serde_json::json!({ "pad": "x".repeat(pad) });
    }
    m
}

async fn fetch(url: &str) -> Vec<u8> {
    let res = reqwest::get(url).await.expect("GET presigned URL");
    assert_eq!(res.status().as_u16(), 200, "presigned GET of {url}");
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_get_is_one_dynamodb_read_and_a_redirect_to_s3() {
    let s = stack().await;
    let data = pattern(300_000, 1);
    let digest = s.push_blob(&data).await;
    let uri = format!("/v2/{}/blobs/{digest}", s.repo);

    let get = s.call(Method::GET, &uri, &[], vec![]).await;
    assert_eq!(get.status, StatusCode::TEMPORARY_REDIRECT);
    assert!(calls_to(&get.calls, "DynamoDB") <= 1, "{:?}", get.calls);
    assert_eq!(calls_to(&get.calls, "S3"), 0, "{:?}", get.calls);
    assert!(get.body.is_empty(), "no blob bytes through the function");
    assert_eq!(fetch(get.header("location")).await, data);

    let head = s.call(Method::HEAD, &uri, &[], vec![]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert!(calls_to(&head.calls, "DynamoDB") <= 1, "{:?}", head.calls);
    assert_eq!(calls_to(&head.calls, "S3"), 0, "{:?}", head.calls);

    // Repository scoping: another repository does not serve it.
    let other = s
        .call(
            Method::GET,
            &format!("/v2/{}x/blobs/{digest}", s.repo),
            &[],
            vec![],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.code(), "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_get_by_tag_is_one_dynamodb_read_or_plus_s3_when_large() {
    let s = stack().await;
    let config = pattern(100, 2);
    let c = s.push_blob(&config).await;
    let layer = pattern(1000, 3);
    let l = s.push_blob(&layer).await;
    let small = s
        .push_manifest("small", &manifest(&c, 100, &[(l.clone(), 1000)], 0))
        .await;
    let large = s
        .push_manifest("large", &manifest(&c, 100, &[(l, 1000)], 600_000))
        .await;

    let accept = [("accept", "application/vnd.oci.image.manifest.v1+json")];
    // The project (its vulnerability policy, whether it is a proxy) is read once per
    // process and cached: here by the pushes' read-only check, so the pull reads only
    // the manifest.
    let warm = s
        .call(
            Method::GET,
            &format!("/v2/{}/manifests/small", s.repo),
            &accept,
            vec![],
        )
        .await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(calls_to(&warm.calls, "DynamoDB"), 1, "{:?}", warm.calls);
    let a = s
        .call(
            Method::GET,
            &format!("/v2/{}/manifests/small", s.repo),
            &accept,
            vec![],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("docker-content-digest"), small.to_string());
    assert_eq!(calls_to(&a.calls, "DynamoDB"), 1, "{:?}", a.calls);
    assert_eq!(calls_to(&a.calls, "S3"), 0, "{:?}", a.calls);

    let a = s
        .call(
            Method::GET,
            &format!("/v2/{}/manifests/large", s.repo),
            &accept,
            vec![],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(Digest::of(DigestAlgorithm::Sha256, &a.body), large);
    assert_eq!(calls_to(&a.calls, "DynamoDB"), 1, "{:?}", a.calls);
    assert!(calls_to(&a.calls, "S3") <= 1, "{:?}", a.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_over_the_lambda_limit_are_refused_clearly() {
    let s = stack().await;
    let post = s
        .call(
            Method::POST,
            &format!("/v2/{}/blobs/uploads/", s.repo),
            &[],
            vec![],
        )
        .await;
    assert_eq!(post.status, StatusCode::ACCEPTED);
    let location = post.header("location").to_owned();
    assert!(location.starts_with("http://127.0.0.1:9/v2/"), "{location}");
    assert!(location.contains("_state="), "{location}");
    assert_eq!(
        post.header("oci-chunk-max-length"),
        registry_api::DEFAULT_MAX_REQUEST_BODY.to_string()
    );
    let path = location.trim_start_matches("http://127.0.0.1:9");

    // Over 6 MB as an event: the gateway refuses it before the function runs.
    let huge = s
        .call(
            Method::PATCH,
            path,
            &[("content-type", "application/octet-stream")],
            vec![0; 5 << 20],
        )
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        huge.calls.is_empty(),
        "the function never ran: {:?}",
        huge.calls
    );

    // Under the event limit but over the function's own limit: a clear registry error.
    let big = s
        .call(
            Method::PATCH,
            path,
            &[("content-type", "application/octet-stream")],
            vec![0; 4 * 1024 * 1024 + 100_000],
        )
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.code(), "SIZE_INVALID");
    let message = String::from_utf8_lossy(&big.body);
    assert!(
        message.contains("upload endpoint") && message.contains("chunks"),
        "{message}"
    );

    // The session is intact: nothing was accepted.
    let status = s.call(Method::GET, path, &[], vec![]).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerability_database_uploads_are_refused_and_the_direct_import_named() {
    let s = stack().await;
    let upload = s
        .call(
            Method::POST,
            "/api/v1/vulndb?source=lambda.zip",
            &[("content-type", "application/zip")],
            b"PK\x05\x06".to_vec(),
        )
        .await;
    assert_eq!(upload.status, StatusCode::BAD_REQUEST);
    assert_eq!(upload.code(), "UNSUPPORTED");
    let message = String::from_utf8_lossy(&upload.body);
    assert!(message.contains("vulndb import --direct"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_through_the_function_verifies_and_reads_back() {
    let s = stack().await;
    let data = pattern(11 * 1024 * 1024 + 123, 4);
    let digest = Digest::of(DigestAlgorithm::Sha256, &data);
    let post = s
        .call(
            Method::POST,
            &format!("/v2/{}/blobs/uploads/", s.repo),
            &[],
            vec![],
        )
        .await;
    let mut path = post
        .header("location")
        .trim_start_matches("http://127.0.0.1:9")
        .to_owned();
    let chunk = 3 * 1024 * 1024;
    for (i, part) in data.chunks(chunk).enumerate() {
        let start = i * chunk;
        let range = format!("{start}-{}", start + part.len() - 1);
        let a = s
            .call(
                Method::PATCH,
                &path,
                &[
                    ("content-range", &range),
                    ("content-type", "application/octet-stream"),
                ],
                part.to_vec(),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.header("range"), format!("0-{}", start + part.len() - 1));
        path = a
            .header("location")
            .trim_start_matches("http://127.0.0.1:9")
            .to_owned();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = s
        .call(
            Method::PUT,
            &format!("{path}{sep}digest={digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        put.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&put.body)
    );
    let get = s
        .call(
            Method::GET,
            &format!("/v2/{}/blobs/{digest}", s.repo),
            &[],
            vec![],
        )
        .await;
    assert_eq!(get.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(fetch(get.header("location")).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_endpoint_streams_a_large_layer_and_requires_the_signed_token() {
    let s = stack().await;
    let post = s
        .call(
            Method::POST,
            &format!("/v2/{}/blobs/uploads/", s.repo),
            &[],
            vec![],
        )
        .await;
    let location = post.header("location").to_owned();
    let bare = location.split('?').next().unwrap().to_owned();

    // Without the token, or with another one, the endpoint knows no such upload.
    let none = s.upload(Method::GET, &bare, &[], Body::empty()).await;
    assert_eq!(
        (none.status, none.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    let forged = format!("{bare}?_state=99999999999999.00");
    let forged = s.upload(Method::GET, &forged, &[], Body::empty()).await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);

    // 24 MiB in one streamed PATCH (several multipart parts), then PUT.
    let size = 24 * 1024 * 1024 + 7;
    let data = pattern(size, 5);
    let digest = Digest::of(DigestAlgorithm::Sha256, &data);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let patch = s
        .upload(
            Method::PATCH,
            &location,
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await;
    assert_eq!(
        patch.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&patch.body)
    );
    assert_eq!(patch.header("range"), format!("0-{}", size - 1));
    let next = patch.header("location").to_owned();
    let put = s
        .upload(
            Method::PUT,
            &format!("{next}&digest={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        put.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&put.body)
    );

    // Pulled through the function: a redirect to the very bytes.
    let get = s
        .call(
            Method::GET,
            &format!("/v2/{}/blobs/{digest}", s.repo),
            &[],
            vec![],
        )
        .await;
    assert_eq!(get.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(fetch(get.header("location")).await, data);
}
