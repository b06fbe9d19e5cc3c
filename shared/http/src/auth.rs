//! Authentication on every route (deny by default) and the Docker token endpoint.
//!
//! Each `/v2` request is mapped to the scopes it needs (pull, push, delete on a
//! repository; the catalog), and `AuthService::decide` answers: go ahead (the caller's
//! subject is put in the request's extensions as [`AuthContext`]), a `401` with a
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge, or a `403 DENIED`.
//! `/token` issues bearer tokens (GET with Basic or no credentials; POST with the OAuth2
//! password and refresh-token grants). With no `AuthService` configured, everything is
//! allowed and the caller is a system admin (the loopback-only development mode).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use registry_core::auth::{AuthService, Credentials, Decided, Resource, Scope, parse_scopes};
use registry_core::identity::Action;
use registry_core::{RegistryError, RepoName};
use serde_json::json;

use crate::AppState;
use crate::distribution::{Route, parse_route};
use crate::errors::ApiError;

/// Who the request runs as, for the routes that need it (catalog filtering, management).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    /// The token subject: `user:alice`, `robot:…`, `anonymous`; `system` when auth is off.
    pub subject: String,
    /// Whether authentication is on.
    pub enabled: bool,
}

/// Reads the `Authorization` header.
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credentials::None;
    };
    let (kind, rest) = value.split_once(' ').unwrap_or((value, ""));
    match kind.to_ascii_lowercase().as_str() {
        "bearer" => Credentials::Bearer(rest.trim().to_owned()),
        "basic" => B64
            .decode(rest.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':').map(|(u, p)| Credentials::Basic {
                    username: u.to_owned(),
                    password: p.to_owned(),
                })
            })
            .unwrap_or(Credentials::None),
        _ => Credentials::None,
    }
}

fn repo_scope(name: &str, actions: &[Action]) -> Option<Scope> {
    let repo: RepoName = name.parse().ok()?;
    Some(Scope {
        resource: Resource::Repository(repo),
        actions: actions.iter().copied().collect::<BTreeSet<_>>(),
    })
}

/// The scopes a `/v2` request needs; `None` when the path names no valid repository
/// (the route itself then answers the error).
pub fn required_scopes(method: &Method, path: &str, query: Option<&str>) -> Option<Vec<Scope>> {
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    if rest.is_empty() {
        return Some(Vec::new());
    }
    if rest == "_catalog" {
        return Some(vec![Scope::catalog()]);
    }
    let route = parse_route(rest)?;
    let read = [Action::Pull];
    let write = [Action::Pull, Action::Push];
    let delete = [Action::Delete];
    let mut scopes = Vec::new();
    match route {
        Route::Tags(n) | Route::Referrers(n, _) => scopes.push(repo_scope(n, &read)?),
        Route::Manifest(n, _) | Route::Blob(n, _) => {
            let actions: &[Action] = match *method {
                Method::GET | Method::HEAD => &read,
                Method::DELETE => &delete,
                _ => &write,
            };
            scopes.push(repo_scope(n, actions)?);
        }
        Route::UploadStart(n) => {
            scopes.push(repo_scope(n, &write)?);
            // A cross-repository mount also reads the source repository.
            let from = query.and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "from")
                    .map(|(_, v)| v.into_owned())
            });
            if let Some(from) = from.and_then(|f| repo_scope(&f, &read)) {
                scopes.push(from);
            }
        }
        Route::Upload(n, _) => scopes.push(repo_scope(n, &write)?),
    }
    Some(scopes)
}

/// The `WWW-Authenticate` challenge for `scopes`.
pub fn challenge(auth: &AuthService, scopes: &[Scope], insufficient: bool) -> String {
    let s = auth.settings();
    let mut value = format!("Bearer realm=\"{}\",service=\"{}\"", s.realm, s.service);
    if !scopes.is_empty() {
        let scope: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        value.push_str(&format!(",scope=\"{}\"", scope.join(" ")));
    }
    if insufficient {
        value.push_str(",error=\"insufficient_scope\"");
    }
    value
}

fn unauthorized(auth: &AuthService, scopes: &[Scope], insufficient: bool) -> Response {
    let mut res = ApiError(RegistryError::Unauthorized(
        "authentication required".into(),
    ))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge(auth, scopes, insufficient)) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// The middleware on `/v2`: decide, then run the route as the caller.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth.clone() else {
        request.extensions_mut().insert(AuthContext {
            subject: "system".into(),
            enabled: false,
        });
        return next.run(request).await;
    };
    // The upload endpoint trusts its signed session tokens instead of credentials, on
    // upload-session routes only (the registry checks the token there); elsewhere a
    // `_state` parameter must not skip authorization.
    if state.registry.config().require_upload_token
        && request.uri().query().is_some_and(|q| q.contains("_state="))
        && matches!(
            request
                .uri()
                .path()
                .strip_prefix("/v2/")
                .and_then(parse_route),
            Some(Route::Upload(..))
        )
    {
        request.extensions_mut().insert(AuthContext {
            subject: "upload-token".into(),
            enabled: true,
        });
        return next.run(request).await;
    }
    let Some(needs) = required_scopes(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    ) else {
        return next.run(request).await;
    };
    let creds = credentials(request.headers());
    match auth.decide(&creds, &needs).await {
        Ok(Decided::Allowed(subject)) => {
            request.extensions_mut().insert(AuthContext {
                subject: subject.clone(),
                enabled: true,
            });
            // The author of the events this request records: the user or robot name.
            let actor = subject
                .split_once(':')
                .map_or(subject.as_str(), |(_, name)| name)
                .to_owned();
            registry_core::events::with_actor(Some(actor), next.run(request)).await
        }
        Ok(Decided::Challenge) => unauthorized(&auth, &needs, false),
        Ok(Decided::InsufficientScope) => unauthorized(&auth, &needs, true),
        Ok(Decided::Denied) => ApiError(RegistryError::Denied(format!(
            "{} {} is not allowed",
            request.method(),
            request.uri().path()
        )))
        .into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

fn token_response(grant: registry_core::auth::TokenGrant) -> Response {
    let issued_at = grant.issued_at_ms / 1000;
    let mut body = json!({
        "token": grant.token,
        "access_token": grant.token,
        "expires_in": grant.expires_in,
        "issued_at": format_rfc3339(issued_at),
    });
    if let Some(refresh) = grant.refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-28T12:00:00Z`).
fn format_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn auth_of(state: &AppState) -> Result<Arc<AuthService>, ApiError> {
    state.auth.clone().ok_or_else(|| {
        ApiError(RegistryError::Unsupported(
            "authentication is off: no tokens to issue".into(),
        ))
    })
}

/// `GET /token?service=…&scope=…`: Basic credentials or anonymous.
pub async fn token_get(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let auth = auth_of(&state)?;
        let query = uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let scopes = parse_scopes(
            pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.as_str()),
        )?;
        let offline = pairs
            .iter()
            .any(|(k, v)| k == "offline_token" && v == "true");
        let caller = match credentials(&headers) {
            Credentials::Basic { username, password } => auth.login(&username, &password).await?,
            Credentials::Bearer(_) | Credentials::None => registry_core::auth::Caller::Anonymous,
        };
        Ok::<_, ApiError>(token_response(auth.issue(&caller, &scopes, offline).await?))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /token` (form): `grant_type=password` or `grant_type=refresh_token`.
pub async fn token_post(State(state): State<AppState>, body: String) -> Response {
    let result = async {
        let auth = auth_of(&state)?;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let scopes = parse_scopes(
            pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.as_str()),
        )?;
        let (caller, refresh) = match get("grant_type") {
            Some("password") => {
                let (Some(u), Some(p)) = (get("username"), get("password")) else {
                    return Err(ApiError(RegistryError::Unauthorized(
                        "username and password required".into(),
                    )));
                };
                (
                    auth.login(u, p).await?,
                    get("access_type") == Some("offline"),
                )
            }
            Some("refresh_token") => {
                let token = get("refresh_token").ok_or_else(|| {
                    ApiError(RegistryError::Unauthorized("refresh_token required".into()))
                })?;
                (auth.refresh(token).await?, true)
            }
            other => {
                return Err(ApiError(RegistryError::Unsupported(format!(
                    "unsupported grant_type {other:?}"
                ))));
            }
        };
        let mut grant = auth.issue(&caller, &scopes, refresh).await?;
        if get("grant_type") == Some("refresh_token") {
            grant.refresh_token = get("refresh_token").map(str::to_owned);
        }
        Ok::<_, ApiError>(token_response(grant))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_867_200), "2026-11-28T12:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn routes_need_their_scopes() {
        let s = |m: Method, p: &str, q: Option<&str>| {
            required_scopes(&m, p, q)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert!(s(Method::GET, "/v2/", None).is_empty());
        assert_eq!(s(Method::GET, "/v2/_catalog", None), ["registry:catalog:*"]);
        assert_eq!(
            s(Method::GET, "/v2/a/b/manifests/x", None),
            ["repository:a/b:pull"]
        );
        assert_eq!(
            s(Method::PUT, "/v2/a/b/manifests/x", None),
            ["repository:a/b:pull,push"]
        );
        assert_eq!(
            s(Method::DELETE, "/v2/a/blobs/sha256:1", None),
            ["repository:a:delete"]
        );
        assert_eq!(
            s(
                Method::POST,
                "/v2/a/blobs/uploads/",
                Some("mount=sha256:1&from=b/c")
            ),
            ["repository:a:pull,push", "repository:b/c:pull"]
        );
        assert_eq!(
            s(Method::GET, "/v2/a/tags/list", None),
            ["repository:a:pull"]
        );
        assert_eq!(
            s(Method::PATCH, "/v2/a/blobs/uploads/x", None),
            ["repository:a:pull,push"]
        );
        assert!(required_scopes(&Method::GET, "/v2/BAD/tags/list", None).is_none());
    }
}
