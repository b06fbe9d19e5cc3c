//! The registry's HTTP API: the axum Router serving the OCI Distribution API v1.1, the
//! token endpoint and the management API (`/api/v1`, [`management`]).
//!
//! Routes decode a request, call one use-case of [`registry_core::Registry`] (or of
//! [`registry_core::admin::Admin`]) and encode its answer; [`errors`] is the one table
//! from core errors to OCI error codes.

pub mod auth;
pub mod distribution;
pub mod errors;
pub mod management;
pub mod observe;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{any, get};
use registry_core::Registry;

/// State shared by every route.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Authentication and authorization; `None` turns them off (loopback development).
    pub auth: Option<Arc<registry_core::auth::AuthService>>,
    /// The identity store the management API (`/api/v1`) works on when authentication is
    /// off (with it on, the `AuthService`'s store is used); `None` with `auth` `None`: the
    /// management API answers that it is unavailable.
    pub identities: Option<Arc<dyn registry_core::ports::IdentityStore>>,
    /// Webhook policies and delivery logs (`/api/v1/projects/{p}/webhooks`); `None`: the
    /// routes answer that webhooks are not configured.
    pub webhooks: Option<Arc<registry_core::webhooks::Webhooks>>,
    /// Scan reports and the vulnerability database (`/api/v1/scan-reports`,
    /// `/api/v1/vulndb`); `None`: those routes answer that scanning is not configured.
    pub scanning: Option<ScanningState>,
}

/// What the scanning routes use.
#[derive(Clone)]
pub struct ScanningState {
    pub reports: Arc<dyn registry_core::ports::ScanStore>,
    pub vulns: Arc<dyn registry_core::ports::VulnerabilityStore>,
    /// Imports uploads; `None` where this process cannot (the Lambda API function: import
    /// with `registry vulndb import --direct`).
    pub importer: Option<Arc<dyn registry_core::scan::DatabaseImporter>>,
}

/// The header every `/v2` response carries.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

async fn add_api_version(mut res: Response) -> Response {
    res.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    res
}

/// The whole application: `/v2/…`, `/token` and the management API `/api/v1/…`.
pub fn router(state: AppState) -> Router {
    let v2 = Router::new()
        .route("/v2", get(distribution::api_root))
        .route("/v2/", get(distribution::api_root))
        .route("/v2/_catalog", get(distribution::catalog))
        .route("/v2/{*rest}", any(distribution::dispatch))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::map_response(add_api_version));
    Router::new()
        .merge(v2)
        .merge(management::routes())
        .route("/token", get(auth::token_get).post(auth::token_post))
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// Serves the app on `listener` until `shutdown` completes, finishing requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
