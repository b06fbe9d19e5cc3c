//! The OCI Distribution API routes: `/v2/<name>/{manifests,blobs,tags,referrers}/…`.
//!
//! Repository names contain slashes, so one handler splits the path from the right and
//! dispatches on the method; each arm decodes, calls one use-case and encodes.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use registry_core::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX};
use registry_core::ports::{BlobContent, ByteStream, Page};
use registry_core::registry::{Chunk, RangeRequest, StartUpload, UploadStart};
use registry_core::upload::UploadSession;
use registry_core::{Digest, DigestAlgorithm, Reference, Registry, RegistryError, RepoName, Tag};
use serde_json::json;

use crate::AppState;
use crate::auth::AuthContext;
use crate::errors::ApiError;

type ApiResult = Result<Response, ApiError>;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";

/// `GET /v2/`: the API is here.
pub async fn api_root() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}

/// A `/v2/…` path split into repository and endpoint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

impl Route<'_> {
    /// The methods each endpoint serves (the `Allow` header of a 405).
    fn allowed_methods(&self) -> &'static str {
        match self {
            Route::Tags(_) | Route::Referrers(..) => "GET, HEAD",
            Route::Manifest(..) => "GET, HEAD, PUT, DELETE",
            Route::Blob(..) => "GET, HEAD, DELETE",
            Route::UploadStart(_) => "POST",
            Route::Upload(..) => "GET, PATCH, PUT, DELETE",
        }
    }
}

pub(crate) fn parse_route(rest: &str) -> Option<Route<'_>> {
    let rest = rest
        .strip_suffix('/')
        .filter(|r| r.ends_with("/blobs/uploads"))
        .unwrap_or(rest);
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Route::UploadStart(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            Some(Route::Upload(name, last))
        }
        _ => None,
    }
}

fn repo(name: &str) -> Result<RepoName, ApiError> {
    Ok(name.parse()?)
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    Ok(s.parse()?)
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map_err(|e| RegistryError::BlobUploadInvalid(format!("request body: {e}"))),
    )
}

/// Parses `Content-Range: <start>-<end>` (also `bytes <start>-<end>[/<total>]`).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let spec = raw
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let spec = spec.split('/').next().unwrap_or("");
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some(r) => Ok(Some(r)),
        None => Err(ApiError(RegistryError::UploadOutOfOrder { offset: 0 })),
    }
}

/// Parses `Range: bytes=…` for blob reads; anything else is ignored (RFC 9110).
fn range_request(headers: &HeaderMap) -> Result<Option<RangeRequest>, ApiError> {
    let Some(raw) = header_str(headers, header::RANGE) else {
        return Ok(None);
    };
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // A malformed or multi-part range is ignored and the whole blob served (RFC 9110 14.2).
    let Some((a, b)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = if a.is_empty() {
        b.parse().ok().map(RangeRequest::Suffix)
    } else {
        match (a.parse().ok(), b) {
            (Some(start), "") => Some(RangeRequest::From { start, end: None }),
            (Some(start), b) => b.parse().ok().map(|end| RangeRequest::From {
                start,
                end: Some(end),
            }),
            (None, _) => None,
        }
    };
    Ok(parsed)
}

fn set(res: &mut Response, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        res.headers_mut().insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response {
    let mut res = status.into_response();
    set(&mut res, "content-length", "0");
    res
}

fn upload_response(
    status: StatusCode,
    registry: &Registry,
    repo: &RepoName,
    session: &UploadSession,
) -> Response {
    let mut res = empty(status);
    set(
        &mut res,
        "location",
        registry.upload_location(repo, session),
    );
    set(&mut res, "range", format!("0-{}", session.range_end()));
    set(&mut res, UPLOAD_UUID_HEADER, &session.id);
    res
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut res = empty(StatusCode::CREATED);
    set(&mut res, "location", format!("/v2/{repo}/blobs/{digest}"));
    set(&mut res, DIGEST_HEADER, digest.to_string());
    res
}

fn page_limit(query: &HashMap<String, String>) -> Result<Option<usize>, ApiError> {
    match query.get("n") {
        None => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| {
            ApiError(RegistryError::PaginationInvalid(format!(
                "n must be a non-negative number, not {n:?}"
            )))
        }),
    }
}

/// A paginated JSON list with the `Link` header when more entries remain.
fn page_response(
    page: Page,
    path: &str,
    n: Option<usize>,
    body: impl FnOnce(Vec<String>) -> serde_json::Value,
) -> Response {
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
    let mut res = Json(body(page.items)).into_response();
    if let Some(link) = next {
        set(&mut res, "link", link);
    }
    res
}

/// `GET /v2/_catalog?n=&last=`: only the repositories the caller may pull.
pub async fn catalog(
    State(state): State<AppState>,
    Extension(ctx): Extension<AuthContext>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let n = page_limit(&query)?;
    let mut page = state
        .registry
        .catalog(n, query.get("last").cloned())
        .await?;
    if let Some(auth) = &state.auth {
        let caller = auth.caller_of_subject(&ctx.subject).await?;
        page.items = auth.pullable(&caller, page.items).await?;
    }
    Ok(page_response(
        page,
        "/v2/_catalog",
        n,
        |repos| json!({ "repositories": repos }),
    ))
}

/// Every `/v2/<name>/…` request.
pub async fn dispatch(
    State(state): State<AppState>,
    Query(query_pairs): Query<Vec<(String, String)>>,
    request: Request,
) -> ApiResult {
    let query: HashMap<String, String> = query_pairs.iter().cloned().collect();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let Some(route) = parse_route(rest) else {
        return Err(ApiError(RegistryError::NoSuchEndpoint(path)));
    };
    let h = &parts.headers;
    let reg = &state.registry;
    let token = query.get("_state").map(String::as_str);
    let method = parts.method.clone();
    match (route, method) {
        (Route::Manifest(name, reference), m) if m == Method::GET || m == Method::HEAD => {
            let repo = repo(name)?;
            let reference: Reference = reference.parse()?;
            let accept: Vec<String> = h
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            let pull = if m == Method::HEAD {
                reg.fetch_manifest(&repo, &reference, &accept).await?
            } else {
                reg.pull_manifest(&repo, &reference, &accept).await?
            };
            let record = pull.record;
            let size = record.size();
            let body = if m == Method::HEAD {
                Body::empty()
            } else {
                Body::from(record.content)
            };
            let mut res = Response::new(body);
            set(&mut res, "content-type", &record.media_type);
            set(&mut res, "content-length", size.to_string());
            set(&mut res, DIGEST_HEADER, record.digest.to_string());
            set(&mut res, "etag", format!("\"{}\"", record.digest));
            if let Some(why) = pull.stale {
                // A proxy project's cached copy, served while its upstream cannot be asked.
                set(&mut res, registry_core::proxy::STALE_HEADER, "true");
                set(&mut res, "warning", "110 - \"Response is Stale\"");
                tracing::warn!(repository = %repo, reason = %why, "served a stale proxied manifest");
            }
            Ok(res)
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            let repo = repo(name)?;
            let reference: Reference = reference.parse()?;
            let extra_tags = query_pairs
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.parse::<Tag>())
                .collect::<Result<Vec<_>, _>>()?;
            let content_type = header_str(h, header::CONTENT_TYPE).map(str::to_owned);
            let bytes = axum::body::to_bytes(body, MAX_MANIFEST_SIZE)
                .await
                .map_err(|_| RegistryError::ManifestTooLarge {
                    limit: MAX_MANIFEST_SIZE,
                })?;
            let pushed = reg
                .put_manifest(
                    &repo,
                    &reference,
                    &extra_tags,
                    content_type.as_deref(),
                    bytes.to_vec(),
                )
                .await?;
            let mut res = empty(StatusCode::CREATED);
            set(
                &mut res,
                "location",
                format!("/v2/{repo}/manifests/{}", pushed.digest),
            );
            set(&mut res, DIGEST_HEADER, pushed.digest.to_string());
            if let Some(subject) = pushed.subject {
                set(&mut res, "oci-subject", subject.to_string());
            }
            if !extra_tags.is_empty() {
                let tags: Vec<&str> = pushed.tags.iter().map(Tag::as_str).collect();
                set(&mut res, "oci-tag", tags.join(", "));
            }
            Ok(res)
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            let repo = repo(name)?;
            let reference: Reference = reference.parse()?;
            reg.delete_manifest(&repo, &reference).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (Route::Blob(name, d), m) if m == Method::GET || m == Method::HEAD => {
            let repo = repo(name)?;
            let d = digest(d)?;
            if m == Method::HEAD {
                let size = reg.stat_blob(&repo, &d).await?;
                let mut res = empty(StatusCode::OK);
                set(&mut res, "content-length", size.to_string());
                set(&mut res, "content-type", "application/octet-stream");
                set(&mut res, "accept-ranges", "bytes");
                set(&mut res, DIGEST_HEADER, d.to_string());
                return Ok(res);
            }
            let read = reg.get_blob(&repo, &d, range_request(h)?).await?;
            let mut res = match read.content {
                BlobContent::Redirect { url } => {
                    let mut res = empty(StatusCode::TEMPORARY_REDIRECT);
                    set(&mut res, "location", url);
                    res
                }
                BlobContent::Stream { body, length } => {
                    let mut res = Response::new(Body::from_stream(body));
                    set(&mut res, "content-length", length.to_string());
                    set(&mut res, "content-type", "application/octet-stream");
                    set(&mut res, "accept-ranges", "bytes");
                    if let Some(r) = read.range {
                        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                        set(
                            &mut res,
                            "content-range",
                            format!("bytes {}-{}/{}", r.start, r.end, read.size),
                        );
                    }
                    res
                }
            };
            set(&mut res, DIGEST_HEADER, d.to_string());
            Ok(res)
        }
        (Route::Blob(name, d), Method::DELETE) => {
            let repo = repo(name)?;
            reg.delete_blob(&repo, &digest(d)?).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (Route::UploadStart(name), Method::POST) => {
            let repo = repo(name)?;
            let digest_param = query.get("digest").map(|d| digest(d)).transpose()?;
            let mount = query.get("mount").and_then(|d| d.parse().ok());
            // An unusable `from` falls back to a plain upload, as the spec asks;
            // no `from` at all asks for an automatic mount.
            let (mount, from) = match query.get("from").map(|f| f.parse::<RepoName>()) {
                Some(Ok(from)) => (mount, Some(from)),
                Some(Err(_)) => (None, None),
                None => (mount, None),
            };
            let algorithm = query
                .get("digest-algorithm")
                .map(|a| DigestAlgorithm::parse(a))
                .transpose()?;
            let req = StartUpload {
                algorithm,
                body: digest_param.as_ref().map(|_| body_stream(body)),
                digest: digest_param,
                mount,
                from,
            };
            match reg.start_upload(&repo, req).await? {
                UploadStart::Created(d) => Ok(blob_created(&repo, &d)),
                UploadStart::Session(session) => {
                    let mut res = upload_response(StatusCode::ACCEPTED, reg, &repo, &session);
                    set(
                        &mut res,
                        "oci-chunk-min-length",
                        reg.config().chunk_min_length.to_string(),
                    );
                    if let Some(max) = reg.config().max_request_body {
                        set(&mut res, "oci-chunk-max-length", max.to_string());
                    }
                    Ok(res)
                }
            }
        }
        (Route::Upload(name, id), Method::PATCH) => {
            let repo = repo(name)?;
            let chunk = Chunk {
                range: content_range(h)?,
                content_length: content_length(h),
                body: body_stream(body),
            };
            let session = reg.write_chunk(&repo, id, token, chunk).await?;
            Ok(upload_response(StatusCode::ACCEPTED, reg, &repo, &session))
        }
        (Route::Upload(name, id), Method::PUT) => {
            let repo = repo(name)?;
            let d = query
                .get("digest")
                .ok_or_else(|| RegistryError::DigestInvalid("missing ?digest=".into()))
                .and_then(|d| d.parse::<Digest>())?;
            let length = content_length(h);
            let chunk = if length == Some(0) {
                None
            } else {
                Some(Chunk {
                    range: content_range(h)?,
                    content_length: length,
                    body: body_stream(body),
                })
            };
            let d = reg.finish_upload(&repo, id, token, &d, chunk).await?;
            Ok(blob_created(&repo, &d))
        }
        (Route::Upload(name, id), Method::GET) => {
            let repo = repo(name)?;
            let session = reg.upload_status(&repo, id, token).await?;
            Ok(upload_response(
                StatusCode::NO_CONTENT,
                reg,
                &repo,
                &session,
            ))
        }
        (Route::Upload(name, id), Method::DELETE) => {
            let repo = repo(name)?;
            reg.cancel_upload(&repo, id, token).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Route::Tags(name), Method::GET) => {
            let repo = repo(name)?;
            let n = page_limit(&query)?;
            let page = reg.list_tags(&repo, n, query.get("last").cloned()).await?;
            let path = format!("/v2/{repo}/tags/list");
            Ok(page_response(
                page,
                &path,
                n,
                |tags| json!({ "name": repo.as_str(), "tags": tags }),
            ))
        }
        (Route::Referrers(name, d), Method::GET) => {
            let repo = repo(name)?;
            let subject = digest(d)?;
            let filter = query.get("artifactType").map(String::as_str);
            let referrers = reg.list_referrers(&repo, &subject, filter).await?;
            let body = json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": referrers,
            });
            let mut res = Json(body).into_response();
            set(&mut res, "content-type", OCI_INDEX);
            if filter.is_some() {
                set(&mut res, "oci-filters-applied", "artifactType");
            }
            Ok(res)
        }
        (route, m) => Err(ApiError(RegistryError::MethodNotAllowed {
            message: format!("{m} is not allowed on {path}"),
            allow: route.allowed_methods(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_from_the_right() {
        assert_eq!(parse_route("a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            parse_route("a/manifests/latest"),
            Some(Route::Manifest("a", "latest"))
        );
        assert_eq!(
            parse_route("x/blobs/blobs/sha256:1"),
            Some(Route::Blob("x/blobs", "sha256:1"))
        );
        assert_eq!(
            parse_route("x/blobs/uploads/"),
            Some(Route::UploadStart("x"))
        );
        assert_eq!(
            parse_route("x/blobs/uploads"),
            Some(Route::UploadStart("x"))
        );
        assert_eq!(
            parse_route("x/y/blobs/uploads/abc"),
            Some(Route::Upload("x/y", "abc"))
        );
        assert_eq!(
            parse_route("r/referrers/sha256:1"),
            Some(Route::Referrers("r", "sha256:1"))
        );
        assert_eq!(parse_route("nothing"), None);
        assert_eq!(parse_route("a/unknown/b"), None);
    }
}
