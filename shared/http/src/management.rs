//! The management API, `/api/v1/…`: users, groups, projects, members, robot accounts and
//! the audit log, webhook policies and their delivery logs, as JSON; its OpenAPI 3.1 document is `openapi.json` (served at
//! `/api/v1/openapi.json`).
//!
//! Each route resolves the caller, decodes the request, calls one use-case of
//! [`registry_core::admin::Admin`] and encodes the answer; errors use the OCI error body
//! of [`crate::errors`]. The caller: Basic credentials (a user or robot login), or a bearer
//! token from `/token` (its subject, checked against the store now); no or bad credentials
//! are `401` with `WWW-Authenticate: Basic realm="registry"`. With authentication off every
//! call acts as a system admin.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use registry_core::RegistryError;
use registry_core::admin::{Actor, Admin};
use registry_core::auth::{Caller, Credentials};
use registry_core::ports::metadata_store::Page;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::AppState;
use crate::auth::credentials;
use crate::errors::ApiError;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The largest vulnerability database upload (a zip of OSV files).
pub const MAX_VULNDB_UPLOAD: usize = 2 * 1024 * 1024 * 1024;

/// The challenge of a `401` from the management API.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"registry\"";

/// One route: its path (axum syntax, also the OpenAPI path), the methods it serves
/// (lowercase, as OpenAPI names them) and its handlers.
type RouteEntry = (
    &'static str,
    &'static [&'static str],
    MethodRouter<AppState>,
);

/// Every route of the management API.
fn route_table() -> Vec<RouteEntry> {
    vec![
        ("/api/v1/openapi.json", &["get"], get(openapi)),
        ("/api/v1/me", &["get"], get(me)),
        (
            "/api/v1/users",
            &["get", "post"],
            get(list_users).post(create_user),
        ),
        (
            "/api/v1/users/{name}",
            &["get", "patch", "delete"],
            get(get_user).patch(update_user).delete(delete_user),
        ),
        (
            "/api/v1/groups",
            &["get", "post"],
            get(list_groups).post(create_group),
        ),
        (
            "/api/v1/groups/{name}",
            &["get", "put", "delete"],
            get(get_group).put(set_group_members).delete(delete_group),
        ),
        (
            "/api/v1/projects",
            &["get", "post"],
            get(list_projects).post(create_project),
        ),
        (
            "/api/v1/projects/{project}",
            &["get", "patch", "delete"],
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        ),
        (
            "/api/v1/projects/{project}/members",
            &["get"],
            get(list_members),
        ),
        (
            "/api/v1/projects/{project}/members/{principal}",
            &["put", "delete"],
            put(set_member).delete(remove_member),
        ),
        (
            "/api/v1/projects/{project}/robots",
            &["get", "post"],
            get(list_robots).post(create_robot),
        ),
        (
            "/api/v1/projects/{project}/robots/{robot}",
            &["delete"],
            delete(delete_robot),
        ),
        (
            "/api/v1/projects/{project}/webhooks",
            &["get", "post"],
            get(list_webhooks).post(create_webhook),
        ),
        (
            "/api/v1/projects/{project}/webhooks/{id}",
            &["get", "put", "delete"],
            get(get_webhook).put(replace_webhook).delete(delete_webhook),
        ),
        (
            "/api/v1/projects/{project}/webhooks/{id}/deliveries",
            &["get"],
            get(list_deliveries),
        ),
        (
            "/api/v1/projects/{project}/webhooks/{id}/deliveries/{event}/redeliver",
            &["post"],
            post(redeliver),
        ),
        (
            "/api/v1/projects/{project}/proxy/prefetch",
            &["post"],
            post(prefetch),
        ),
        (
            "/api/v1/vulndb",
            &["get", "post"],
            get(vulndb_status)
                .post(vulndb_import)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_VULNDB_UPLOAD)),
        ),
        ("/api/v1/scan-reports", &["get"], get(scan_report)),
        ("/api/v1/audit", &["get"], get(list_audit)),
    ]
}

/// The management routes (merged into [`crate::router`]).
pub fn routes() -> Router<AppState> {
    route_table()
        .into_iter()
        .fold(Router::new(), |r, (path, _, handlers)| {
            r.route(path, handlers)
        })
}

type ApiResult = Result<Response, MgmtError>;

/// An API error; a `401` carries the Basic challenge.
pub struct MgmtError(RegistryError);

impl From<RegistryError> for MgmtError {
    fn from(e: RegistryError) -> Self {
        MgmtError(e)
    }
}

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        let unauthorized = matches!(self.0, RegistryError::Unauthorized(_));
        let mut res = ApiError(self.0).into_response();
        if unauthorized {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        res
    }
}

/// The use-cases over the store in use, and who calls them.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<(Admin, Actor), MgmtError> {
    let Some(auth) = &state.auth else {
        let store = state.identities.clone().ok_or_else(|| {
            RegistryError::Unsupported("the management API has no identity store here".into())
        })?;
        return Ok((
            Admin::new(store, state.registry.clock().clone())
                .with_proxy(state.registry.proxy().cloned())
                .with_project_cache(state.registry.project_cache().cloned()),
            Actor::System,
        ));
    };
    let admin = Admin::new(auth.store().clone(), auth.clock().clone())
        .with_proxy(state.registry.proxy().cloned())
        .with_project_cache(state.registry.project_cache().cloned());
    let caller = match credentials(headers) {
        Credentials::None => {
            return Err(RegistryError::Unauthorized("authentication required".into()).into());
        }
        Credentials::Basic { username, password } => auth.login(&username, &password).await?,
        Credentials::Bearer(token) => {
            let claims = auth.verify(&token).map_err(|_| {
                RegistryError::Unauthorized("invalid or expired bearer token".into())
            })?;
            auth.caller_of_subject(&claims.sub).await?
        }
    };
    if caller == Caller::Anonymous {
        return Err(RegistryError::Unauthorized("authentication required".into()).into());
    }
    Ok((admin, Actor::Caller(caller)))
}

/// A JSON request body; malformed JSON or unknown fields are `400 UNSUPPORTED`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, MgmtError> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Unsupported(format!("invalid request body: {e}")).into())
}

fn limit(query: &HashMap<String, String>) -> Result<Option<usize>, MgmtError> {
    match query.get("n") {
        None => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| {
            RegistryError::PaginationInvalid(format!("n must be a non-negative number, not {n:?}"))
                .into()
        }),
    }
}

fn cursor(query: &HashMap<String, String>, key: &str) -> Option<String> {
    query.get(key).cloned().filter(|s| !s.is_empty())
}

/// A list page as `{"<key>": [names]}`, with `Link: <path?n=&last=>; rel="next"` when more
/// remain (as the tags list).
fn page_response(page: Page, path: &str, n: Option<usize>, key: &str) -> Response {
    let next = match (page.more, page.items.last()) {
        (true, Some(last)) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n.unwrap_or(page.items.len()).to_string())
                .append_pair("last", last)
                .finish();
            Some(format!("<{path}?{query}>; rel=\"next\""))
        }
        _ => None,
    };
    let mut res = Json(json!({ key: page.items })).into_response();
    if let Some(link) = next
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        res.headers_mut().insert(header::LINK, v);
    }
    res
}

fn ok<T: serde::Serialize>(status: StatusCode, value: T) -> ApiResult {
    Ok((status, Json(value)).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- routes ----

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(StatusCode::OK, admin.me(&actor).await?)
}

async fn create_user(State(state): State<AppState>, headers: HeaderMap, raw: Bytes) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::CREATED,
        admin.create_user(&actor, body(&raw)?).await?,
    )
}

async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let n = limit(&query)?;
    let page = admin.list_users(&actor, cursor(&query, "last"), n).await?;
    Ok(page_response(page, "/api/v1/users", n, "users"))
}

async fn get_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(StatusCode::OK, admin.get_user(&actor, &name).await?)
}

async fn update_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::OK,
        admin.update_user(&actor, &name, body(&raw)?).await?,
    )
}

async fn delete_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.delete_user(&actor, &name).await?;
    no_content()
}

async fn create_group(State(state): State<AppState>, headers: HeaderMap, raw: Bytes) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::CREATED,
        admin.create_group(&actor, body(&raw)?).await?,
    )
}

async fn list_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let n = limit(&query)?;
    let page = admin.list_groups(&actor, cursor(&query, "last"), n).await?;
    Ok(page_response(page, "/api/v1/groups", n, "groups"))
}

async fn get_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(StatusCode::OK, admin.get_group(&actor, &name).await?)
}

async fn set_group_members(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::OK,
        admin.set_group_members(&actor, &name, body(&raw)?).await?,
    )
}

async fn delete_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.delete_group(&actor, &name).await?;
    no_content()
}

async fn create_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let created = admin.create_project(&actor, body(&raw)?).await?;
    ok(StatusCode::CREATED, created)
}

async fn list_projects(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let n = limit(&query)?;
    let page = admin
        .list_projects(&actor, cursor(&query, "last"), n)
        .await?;
    Ok(page_response(page, "/api/v1/projects", n, "projects"))
}

async fn get_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(StatusCode::OK, admin.get_project(&actor, &project).await?)
}

async fn update_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let updated = admin.update_project(&actor, &project, body(&raw)?).await?;
    ok(StatusCode::OK, updated)
}

/// `POST /api/v1/projects/{p}/proxy/prefetch`: queues copies of images into a proxy
/// project's cache (air-gapped preparation).
async fn prefetch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let proxy = state
        .registry
        .proxy()
        .ok_or_else(|| RegistryError::Unsupported("proxy projects are not served here".into()))?;
    ok(
        StatusCode::ACCEPTED,
        proxy
            .prefetch(&admin, &actor, &project, body(&raw)?)
            .await?,
    )
}

async fn delete_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.delete_project(&actor, &project).await?;
    no_content()
}

async fn list_members(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let members = admin.list_members(&actor, &project).await?;
    ok(StatusCode::OK, json!({ "members": members }))
}

async fn set_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, principal)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::OK,
        admin
            .set_member(&actor, &project, &principal, body(&raw)?)
            .await?,
    )
}

async fn remove_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, principal)): Path<(String, String)>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.remove_member(&actor, &project, &principal).await?;
    no_content()
}

async fn create_robot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let mut res = (
        StatusCode::CREATED,
        Json(admin.create_robot(&actor, &project, body(&raw)?).await?),
    )
        .into_response();
    // The secret is shown once: no cache may keep it.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn list_robots(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let robots = admin.list_robots(&actor, &project).await?;
    ok(StatusCode::OK, json!({ "robots": robots }))
}

async fn delete_robot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, robot)): Path<(String, String)>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.delete_robot(&actor, &project, &robot).await?;
    no_content()
}

async fn list_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let n = limit(&query)?;
    let records = admin.list_audit(&actor, cursor(&query, "after"), n).await?;
    ok(StatusCode::OK, json!({ "records": records }))
}

// ---- webhooks ----

/// The webhook use-cases, where this deployment has them.
fn webhooks(state: &AppState) -> Result<&registry_core::webhooks::Webhooks, MgmtError> {
    state.webhooks.as_deref().ok_or_else(|| {
        RegistryError::Unsupported("webhooks are not configured on this server".into()).into()
    })
}

async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let hooks = webhooks(&state)?;
    ok(
        StatusCode::CREATED,
        hooks
            .create_policy(&admin, &actor, &project, body(&raw)?)
            .await?,
    )
}

async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let list = webhooks(&state)?
        .list_policies(&admin, &actor, &project)
        .await?;
    ok(StatusCode::OK, json!({ "webhooks": list }))
}

async fn get_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::OK,
        webhooks(&state)?
            .get_policy(&admin, &actor, &project, &id)
            .await?,
    )
}

async fn replace_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::OK,
        webhooks(&state)?
            .replace_policy(&admin, &actor, &project, &id, body(&raw)?)
            .await?,
    )
}

async fn delete_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    webhooks(&state)?
        .delete_policy(&admin, &actor, &project, &id)
        .await?;
    no_content()
}

async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    let n = limit(&query)?;
    let before = cursor(&query, "before");
    let list = webhooks(&state)?
        .list_deliveries(&admin, &actor, &project, &id, before.as_deref(), n)
        .await?;
    ok(StatusCode::OK, json!({ "deliveries": list }))
}

async fn redeliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((project, id, event)): Path<(String, String, String)>,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    ok(
        StatusCode::ACCEPTED,
        webhooks(&state)?
            .redeliver(&admin, &actor, &project, &id, &event)
            .await?,
    )
}

// ---- scanning ----

fn scanning(state: &AppState) -> Result<&crate::ScanningState, MgmtError> {
    state.scanning.as_ref().ok_or_else(|| {
        RegistryError::Unsupported("scanning is not configured on this server".into()).into()
    })
}

async fn vulndb_status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.me(&actor).await?;
    let current = scanning(&state)?.vulns.current_db().await?;
    ok(StatusCode::OK, json!({ "current": current }))
}

async fn vulndb_import(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    raw: Bytes,
) -> ApiResult {
    let (admin, actor) = caller(&state, &headers).await?;
    admin.require_system_admin_of(&actor, "importing a vulnerability database")?;
    let importer = scanning(&state)?.importer.clone().ok_or_else(|| {
        RegistryError::Unsupported(
            "this server cannot import uploads: use `registry vulndb import --direct`".into(),
        )
    })?;
    let source = query
        .get("source")
        .cloned()
        .unwrap_or_else(|| "api upload".into());
    let info = importer.import_zip(raw, &source).await?;
    admin
        .audit(&actor, "vulndb.import", &info.version, &source)
        .await?;
    ok(StatusCode::CREATED, info)
}

/// `GET /api/v1/scan-reports?repository=&digest=[&format=harbor]`: callers who may pull
/// the repository.
async fn scan_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let repo: registry_core::RepoName = query
        .get("repository")
        .ok_or_else(|| RegistryError::Unsupported("repository is required".into()))?
        .parse()?;
    let digest: registry_core::Digest = query
        .get("digest")
        .ok_or_else(|| RegistryError::Unsupported("digest is required".into()))?
        .parse()?;
    if let Some(auth) = &state.auth {
        let (_, actor) = caller(&state, &headers).await?;
        let Actor::Caller(c) = &actor else {
            return Err(RegistryError::Denied("scan reports".into()).into());
        };
        if auth.pullable(c, vec![repo.to_string()]).await?.is_empty() {
            return Err(RegistryError::Denied(format!("pulling {repo} is not allowed")).into());
        }
    }
    let report = scanning(&state)?
        .reports
        .get_report(&repo, &digest)
        .await?
        .ok_or_else(|| {
            RegistryError::ManifestUnknown(format!("no scan report for {repo}@{digest}"))
        })?;
    match query.get("format").map(String::as_str) {
        None | Some("registry") => ok(StatusCode::OK, report),
        Some("harbor") => {
            let media_type = state
                .registry
                .get_manifest(&repo, &registry_core::Reference::Digest(digest), &[])
                .await
                .map(|m| m.media_type)
                .unwrap_or_default();
            let mut res = Json(report.to_harbor(&media_type)).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/vnd.security.vulnerability.report; version=1.1",
                ),
            );
            Ok(res)
        }
        Some(other) => Err(RegistryError::Unsupported(format!(
            "format must be registry or harbor, not {other:?}"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_is_json_and_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "openapi version"
        );
        let paths = doc["paths"].as_object().expect("paths object");
        let table = route_table();
        for (path, methods, _) in &table {
            let item = paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not in openapi.json"));
            for method in *methods {
                assert!(
                    item.get(*method).is_some(),
                    "{method} {path} is not in openapi.json"
                );
            }
        }
        for path in paths.keys() {
            assert!(
                table.iter().any(|(p, _, _)| p == path),
                "{path} is documented but not served"
            );
        }
    }
}
