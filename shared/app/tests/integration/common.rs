//! Helpers the app's router-level tests share: Basic credentials, a request through the
//! router, and a monolithic blob push.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use sha2::Digest as _;
use tower::ServiceExt;

/// `Basic <base64 user:password>`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// One request through `app`: its status, headers and whole body.
pub async fn send(
    app: &axum::Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    ct: &str,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// Pushes `data` into `repo` in one request (`POST ?digest=`); returns its digest.
pub async fn push_blob(app: &axum::Router, auth: &str, repo: &str, data: &[u8]) -> String {
    let hex: String = sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("sha256:{hex}");
    let (status, _, body) = send(
        app,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        Some(auth),
        "application/octet-stream",
        data.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    digest
}
