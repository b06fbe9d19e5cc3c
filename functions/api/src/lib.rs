//! The API Lambda function's app, and [`harness`]: a local stand-in for API Gateway and
//! Lambda that invokes the function exactly as Lambda would, payload limits included.

pub mod harness;

use registry_app::ServerConfig;

/// Largest request body the function takes when none is configured: under Lambda's 6 MB
/// payload limit once base64 and the event envelope are added.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 4 * 1024 * 1024;

/// The function's HTTP app over the configured backend (built once, reused per event).
pub async fn app(config: &ServerConfig) -> Result<axum::Router, registry_core::RegistryError> {
    let mut config = config.clone();
    config
        .max_request_body
        .get_or_insert(DEFAULT_MAX_REQUEST_BODY);
    // A function cannot stream a large blob: uncached proxy blobs go to the upstream's
    // download URL while a proxy-fill job caches them.
    config.events.proxy_redirect_blobs = true;
    // A deployed function never runs open by accident: it needs an admin or --no-auth.
    let mut state = registry_app::compose::build_state(&config, false).await?;
    // An import writes a whole vulnerability database: longer than a function runs and
    // larger than its payload. It goes straight to the backend (`vulndb import --direct`).
    if let Some(scanning) = state.scanning.as_mut() {
        scanning.importer = None;
    }
    Ok(registry_http::router(state))
}
