//! Harness of the HTTP integration tests: the router over the embedded adapters in a
//! temporary directory, driven in-process with `tower::ServiceExt::oneshot`, plus helpers
//! that build requests, blobs and manifests and check OCI error bodies.
//!
//! Every test module uses a part of it.
#![allow(dead_code)]

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use registry_core::auth::{AuthService, AuthSettings, KeySet, ThrottleConfig, TokenIssuer};
use registry_core::ports::Clock;
use registry_core::{Digest, DigestAlgorithm, Registry, RegistryConfig};
use registry_embedded::{EmbeddedMetadataStore, FileBlobStore, open_database};
use registry_http::AppState;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The error codes the distribution spec allows (`code-1` … `code-14`).
pub const SPEC_ERROR_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// A clock that only moves when a test moves it.
#[derive(Debug)]
pub struct TestClock(AtomicU64);

impl TestClock {
    pub const START_MS: u64 = 1_700_000_000_000;

    pub fn advance_secs(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A registry over embedded storage in its own temporary directory.
pub struct TestRegistry {
    app: Router,
    pub clock: Arc<TestClock>,
    pub config: RegistryConfig,
    /// The authentication, when on ([`TestRegistry::with_auth`]).
    pub auth: Option<Arc<AuthService>>,
    dir: TempDir,
}

/// The system admin of [`TestRegistry::with_auth`].
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password";

impl TestRegistry {
    pub fn new() -> Self {
        Self::with_config(RegistryConfig::default())
    }

    pub fn with_config(config: RegistryConfig) -> Self {
        Self::build(config, None)
    }

    /// A registry with authentication on: an `AuthService` over the embedded store with a
    /// generated signing key, and the system admin [`ADMIN_USER`] / [`ADMIN_PASSWORD`].
    pub async fn with_auth() -> Self {
        let settings = AuthSettings {
            realm: "http://registry.test/token".into(),
            service: "registry".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(3600),
            throttle: ThrottleConfig::default(),
        };
        let this = Self::build(RegistryConfig::default(), Some(settings));
        let auth = this.auth.clone().expect("auth on");
        assert!(
            auth.ensure_admin(ADMIN_USER, ADMIN_PASSWORD)
                .await
                .expect("create the admin")
        );
        this
    }

    fn build(config: RegistryConfig, auth: Option<AuthSettings>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = open_database(&dir.path().join("metadata.redb")).expect("open redb");
        let meta = Arc::new(EmbeddedMetadataStore::new(db).expect("metadata store"));
        let blobs = Arc::new(FileBlobStore::new(dir.path()).expect("blob store"));
        let clock = Arc::new(TestClock(AtomicU64::new(TestClock::START_MS)));
        let registry = Registry::new(blobs, meta.clone(), clock.clone(), config.clone());
        let auth = auth.map(|settings| {
            let keys = KeySet::generate().expect("signing key");
            Arc::new(AuthService::new(
                meta.clone(),
                TokenIssuer::new(keys, "registry", "registry"),
                clock.clone(),
                settings,
            ))
        });
        let app = registry_http::router(AppState {
            registry: Arc::new(registry),
            auth: auth.clone(),
            identities: Some(meta),
            webhooks: None,
            scanning: None,
        });
        TestRegistry {
            app,
            clock,
            config,
            auth,
            dir,
        }
    }

    pub fn req(&self, method: Method, uri: impl Into<String>) -> Call {
        Call {
            app: self.app.clone(),
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(&self, uri: impl Into<String>) -> Call {
        self.req(Method::GET, uri)
    }

    pub fn head(&self, uri: impl Into<String>) -> Call {
        self.req(Method::HEAD, uri)
    }

    pub fn put(&self, uri: impl Into<String>) -> Call {
        self.req(Method::PUT, uri)
    }

    pub fn post(&self, uri: impl Into<String>) -> Call {
        self.req(Method::POST, uri)
    }

    pub fn patch(&self, uri: impl Into<String>) -> Call {
        self.req(Method::PATCH, uri)
    }

    pub fn delete(&self, uri: impl Into<String>) -> Call {
        self.req(Method::DELETE, uri)
    }

    /// Files left in the blob store's upload folder (sessions not yet finished or purged).
    pub fn upload_files(&self) -> usize {
        count_files(&self.dir.path().join("uploads"))
    }

    /// Committed blob files in the blob store.
    pub fn blob_files(&self) -> usize {
        count_files(&self.dir.path().join("blobs"))
    }

    // ---- domain helpers ----

    /// Pushes `data` to `repo` with one monolithic `POST ?digest=`; returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        self.post(format!("/v2/{repo}/blobs/uploads/?digest={d}"))
            .bytes(data.to_vec())
            .send()
            .await
            .assert_status(201);
        d
    }

    /// Starts an upload session in `repo` and returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let res = self.post(format!("/v2/{repo}/blobs/uploads/")).send().await;
        res.assert_status(202);
        res.location()
    }

    /// Pushes the config and one layer of a small image (distinct per `seed`) to `repo`
    /// and returns an OCI image manifest referencing them.
    pub async fn image_manifest(&self, repo: &str, seed: u64) -> Value {
        let config = json!({"architecture": "amd64", "os": "linux", "seed": seed})
            .to_string()
            .into_bytes();
        let layer = pattern(512 + seed as usize, seed);
        self.push_blob(repo, &config).await;
        self.push_blob(repo, &layer).await;
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
        })
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type: media_type`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.put(format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .bytes(body.to_vec())
            .send()
            .await
    }

    /// Pushes an image (blobs and manifest) to `repo` under `reference`; returns the
    /// manifest's digest and bytes.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: u64) -> (String, Vec<u8>) {
        let body = to_bytes(&self.image_manifest(repo, seed).await);
        let res = self
            .put_manifest(repo, reference, OCI_MANIFEST, &body)
            .await;
        res.assert_status(201);
        (sha256(&body), body)
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

/// One request being built; owns a clone of the router so it can be sent from a task.
pub struct Call {
    app: Router,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Option<Body>,
}

impl Call {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// A body with its `Content-Length`, as ordinary clients send it.
    pub fn bytes(self, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let len = data.len();
        self.header("content-length", len.to_string())
            .raw_body(Body::from(data))
    }

    /// A body in several frames without `Content-Length` (chunked transfer encoding).
    pub fn stream(self, chunks: Vec<Vec<u8>>) -> Self {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        self.raw_body(Body::from_stream(futures_util::stream::iter(frames)))
    }

    /// A body that yields `chunks` and then fails, as a client connection that drops.
    pub fn failing_stream(self, chunks: Vec<Vec<u8>>) -> Self {
        let frames = chunks
            .into_iter()
            .map(|c| Ok(Bytes::from(c)))
            .chain(std::iter::once(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client went away (simulated)",
            ))));
        self.raw_body(Body::from_stream(futures_util::stream::iter(frames)))
    }

    /// `Authorization: Basic <user:password>`.
    pub fn basic(self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("authorization", format!("Basic {encoded}"))
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .bytes(serde_json::to_vec(value).expect("serialise JSON"))
    }

    /// A body with no `Content-Length` header added.
    pub fn raw_body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    pub async fn send(self) -> Resp {
        let what = format!("{} {}", self.method, self.uri);
        let mut builder = Request::builder().method(self.method).uri(&self.uri);
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let req = builder
            .body(self.body.unwrap_or_else(Body::empty))
            .unwrap_or_else(|e| panic!("building {what}: {e}"));
        let res = self.app.oneshot(req).await.unwrap_or_else(|e| match e {});
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading the response body of {what}: {e}"))
            .to_bytes();
        Resp {
            what,
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A response with its body read, and the request it answers (for failure messages).
pub struct Resp {
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(600)]);
        write!(
            f,
            "{} -> {}\n  headers: {:?}\n  body: {}",
            self.what, self.status, self.headers, body
        )
    }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("non-ASCII {name} header in {self:?}"))
        })
    }

    /// The header `name`, which must be present.
    pub fn expect_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    pub fn assert_header(&self, name: &str, value: &str) -> &Self {
        assert_eq!(self.header(name), Some(value), "header {name} of {self:?}");
        self
    }

    pub fn assert_no_header(&self, name: &str) -> &Self {
        assert_eq!(
            self.header(name),
            None,
            "unexpected {name} header in {self:?}"
        );
        self
    }

    /// `Location`, with any scheme and host removed so it can be requested in-process.
    pub fn location(&self) -> String {
        path_of(self.expect_header("location"))
    }

    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status: {self:?}");
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// The `code` of every entry of an OCI error body.
    pub fn error_codes(&self) -> Vec<String> {
        let body = self.json();
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no \"errors\" array in {self:?}"));
        assert!(!errors.is_empty(), "empty \"errors\" array in {self:?}");
        errors
            .iter()
            .map(|e| {
                e["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("error without a code in {self:?}"))
                    .to_owned()
            })
            .collect()
    }

    /// Asserts the status and a JSON error body whose one code is `code`.
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        let content_type = self.expect_header("content-type");
        assert!(
            content_type.starts_with("application/json"),
            "error body is not JSON: {self:?}"
        );
        assert_eq!(
            self.error_codes(),
            vec![code.to_owned()],
            "error code of {self:?}"
        );
        self
    }

    pub fn assert_body(&self, expected: &[u8]) -> &Self {
        assert!(
            self.body.as_ref() == expected,
            "body of {} differs: {} bytes, expected {} bytes",
            self.what,
            self.body.len(),
            expected.len()
        );
        self
    }
}

/// The path and query of a URL, relative or absolute.
pub fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None => location.to_owned(),
    }
}

/// `location` with a query parameter added (`?` or `&` as needed).
pub fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={value}")
}

/// `location?digest=<digest>`, the URL closing an upload.
pub fn with_digest(location: &str, digest: &str) -> String {
    with_query(location, "digest", digest)
}

/// The upload id: the last path segment of an upload `Location`.
pub fn upload_id(location: &str) -> String {
    let path = location.split('?').next().unwrap_or(location);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

pub fn sha256(data: &[u8]) -> String {
    Digest::of(DigestAlgorithm::Sha256, data).to_string()
}

pub fn sha512(data: &[u8]) -> String {
    Digest::of(DigestAlgorithm::Sha512, data).to_string()
}

/// `len` deterministic pseudo-random bytes; different seeds give different bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A descriptor of `data` with `media_type`.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// A manifest body: pretty-printed with a trailing newline, so a registry that
/// re-serialises the JSON instead of storing the bytes is caught.
pub fn to_bytes(manifest: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(manifest).expect("serialise manifest");
    out.push(b'\n');
    out
}
