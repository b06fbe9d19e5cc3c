//! A local stand-in for API Gateway (HTTP API, payload format 2.0) in front of the API
//! Lambda function: each HTTP request becomes the event JSON Lambda would deliver, goes
//! through `lambda_http`'s own adapter into the app, and the response JSON comes back the
//! same way. Like Lambda, it refuses request and response payloads over 6 MB as
//! serialised (base64 counts), so tests see what production would.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::BodyExt;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::{Value, json};
use tower::Service;

/// Lambda's limit on a synchronous invocation's request and response payloads.
pub const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// What a harness invocation produced, besides the response: the payload sizes.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvocationSizes {
    pub request_payload: usize,
    pub response_payload: usize,
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// The API Gateway v2 event for one HTTP request.
pub fn event_json(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Value {
    let mut joined: serde_json::Map<String, Value> = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        joined.insert(name.as_str().to_owned(), Value::String(values.join(",")));
    }
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost"),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent
            },
            "requestId": "local",
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": 0
        },
        "body": B64.encode(body),
        "isBase64Encoded": true
    })
}

/// Invokes the function for one request, as Lambda would; returns the HTTP response.
pub async fn invoke(app: axum::Router, request: Request) -> (Response, InvocationSizes) {
    let mut sizes = InvocationSizes::default();
    let (parts, body) = request.into_parts();
    // Collect at most the limit: the gateway refuses anything larger before Lambda runs.
    let limited = http_body_util::Limited::new(body, LAMBDA_PAYLOAD_LIMIT);
    let body: Bytes = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return (
                gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
                sizes,
            );
        }
    };
    let event = event_json(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    );
    let payload = serde_json::to_vec(&event).expect("event serialises");
    sizes.request_payload = payload.len();
    if payload.len() > LAMBDA_PAYLOAD_LIMIT {
        return (
            gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
            sizes,
        );
    }
    let lambda_request: LambdaRequest =
        serde_json::from_slice(&payload).expect("lambda_http reads the event it defines");
    // The adapter itself is not `Send`: let it go before awaiting its future.
    let pending = {
        let mut adapter = Adapter::from(app);
        adapter.call(LambdaEvent::new(lambda_request, Context::default()))
    };
    let response = match pending.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = ?e, "function error");
            return (
                gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                sizes,
            );
        }
    };
    let payload = serde_json::to_vec(&response).expect("response serialises");
    sizes.response_payload = payload.len();
    if payload.len() > LAMBDA_PAYLOAD_LIMIT {
        return (
            gateway_error(StatusCode::BAD_GATEWAY, "Response payload size exceeded"),
            sizes,
        );
    }
    (
        http_response(&serde_json::from_slice(&payload).expect("JSON")),
        sizes,
    )
}

/// Turns the function's response JSON (payload format 2.0) into the HTTP response.
fn http_response(v: &Value) -> Response {
    let status = v["statusCode"].as_u64().unwrap_or(500) as u16;
    let body = match v["body"].as_str() {
        Some(b) if v["isBase64Encoded"].as_bool() == Some(true) => {
            B64.decode(b).unwrap_or_default()
        }
        Some(b) => b.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut add = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            res.headers_mut().append(n, v);
        }
    };
    if let Some(h) = v["headers"].as_object() {
        for (name, value) in h {
            if let Some(value) = value.as_str() {
                add(name, value);
            }
        }
    }
    if let Some(h) = v["multiValueHeaders"].as_object() {
        for (name, values) in h {
            for value in values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                add(name, value);
            }
        }
    }
    for cookie in v["cookies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        add("set-cookie", cookie);
    }
    res
}

/// An HTTP server that answers every request through [`invoke`] (the "API Gateway").
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gateway = axum::Router::new().fallback(move |request: Request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(invoke(app, request).await.0) }
    });
    axum::serve(listener, gateway)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The API function (behind the gateway stand-in on `api_addr`) and the upload endpoint
/// (on `upload_addr`), configured from the environment like the deployed pair: upload
/// `Location`s point at the endpoint with signed tokens, and the endpoint requires them.
pub async fn run_local(
    api_addr: std::net::SocketAddr,
    upload_addr: std::net::SocketAddr,
) -> Result<(), registry_app::BoxError> {
    let base = registry_app::ServerConfig::from_env();
    registry_app::logging::init_logging(&base.log, base.log_format)?;
    let api_listener = tokio::net::TcpListener::bind(api_addr).await?;
    let upload_listener = tokio::net::TcpListener::bind(upload_addr).await?;
    let (function, endpoint) = function_and_endpoint(&base, upload_listener.local_addr()?);
    let app = crate::app(&function).await?;
    let upload_app =
        registry_http::router(registry_app::compose::build_state(&endpoint, true).await?);
    tracing::info!(
        api = %api_listener.local_addr()?,
        upload = %upload_listener.local_addr()?,
        backend = ?base.backend,
        "lambda harness listening"
    );
    let stop = tokio::sync::watch::channel(false);
    let mut stop_api = stop.1.clone();
    let mut stop_upload = stop.1.clone();
    let api = tokio::spawn(serve(api_listener, app, async move {
        let _ = stop_api.changed().await;
    }));
    let upload = tokio::spawn(async move {
        axum::serve(upload_listener, upload_app)
            .with_graceful_shutdown(async move {
                let _ = stop_upload.changed().await;
            })
            .await
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    let _ = stop.0.send(true);
    api.await??;
    upload.await??;
    Ok(())
}

/// The configurations of the function and of its upload endpoint, derived from `base`.
pub fn function_and_endpoint(
    base: &registry_app::ServerConfig,
    upload_addr: std::net::SocketAddr,
) -> (registry_app::ServerConfig, registry_app::ServerConfig) {
    let secret = base
        .upload_token_secret
        .clone()
        .unwrap_or_else(registry_core::auth::generate_secret);
    let url = base
        .upload_endpoint_url
        .clone()
        .unwrap_or_else(|| format!("http://{upload_addr}"));
    let mut function = base.clone();
    // A local stand-in: without an admin password it runs open, as the local binary does.
    function.no_auth |= base.admin_password.is_none();
    function.upload_endpoint_url = Some(url.clone());
    function.upload_token_secret = Some(secret.clone());
    function.require_upload_token = false;
    let mut endpoint = function.clone();
    endpoint.require_upload_token = true;
    endpoint.max_request_body = None;
    (function, endpoint)
}
