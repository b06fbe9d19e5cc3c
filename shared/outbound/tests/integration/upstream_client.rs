//! `GuardedUpstreamClient` against real upstreams: Debian's reference registry
//! (`/usr/bin/docker-registry`, Distribution 2.8) anonymous and behind htpasswd, and a
//! small axum server for the Bearer token flow, 429/503, redirects and bad manifests;
//! plus the guard's refusals.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine;
use futures_util::StreamExt;
use registry_core::digest::{Digest, DigestAlgorithm};
use registry_core::error::RegistryError;
use registry_core::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST};
use registry_core::outbound::OutboundGuard;
use registry_core::ports::{Upstream, UpstreamBlob, UpstreamCounts, UpstreamRegistry};
use registry_outbound::{GuardedUpstreamClient, UpstreamConfig};
use serde_json::json;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(DigestAlgorithm::Sha256, bytes)
}

/// Deterministic bytes that differ per `seed`.
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) as u8 ^ seed)
        .collect()
}

fn loopback_config() -> UpstreamConfig {
    UpstreamConfig {
        guard: OutboundGuard::new(OutboundGuard::parse_allowed("127.0.0.0/8,::1").unwrap()),
        ..UpstreamConfig::default()
    }
}

fn client_with(config: UpstreamConfig) -> GuardedUpstreamClient {
    GuardedUpstreamClient::new(config).unwrap()
}

fn loopback_client() -> GuardedUpstreamClient {
    client_with(loopback_config())
}

fn anonymous(url: &str) -> Upstream {
    Upstream {
        url: url.to_owned(),
        username: None,
        password: None,
    }
}

fn with_credentials(url: &str, username: &str, password: &str) -> Upstream {
    Upstream {
        url: url.to_owned(),
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
    }
}

fn counts(heads: u64, gets: u64, blobs: u64, tokens: u64) -> UpstreamCounts {
    UpstreamCounts {
        manifest_heads: heads,
        manifest_gets: gets,
        blob_heads: 0,
        blob_gets: blobs,
        tokens,
    }
}

async fn collect(blob: UpstreamBlob) -> Vec<u8> {
    let mut body = blob.body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn upstream_error<T: std::fmt::Debug>(result: Result<T, RegistryError>, what: &str) -> String {
    match result {
        Err(RegistryError::Upstream(message)) => message,
        other => panic!("{what}: expected Upstream, got {other:?}"),
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, RegistryError>, what: &str) {
    assert!(
        matches!(result, Err(RegistryError::OutboundRefused(_))),
        "{what}: expected OutboundRefused, got {result:?}"
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn plain_http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

// ---------------------------------------------------------------------------------
// The reference registry
// ---------------------------------------------------------------------------------

/// `docker-registry serve` on 127.0.0.1 with its own config and storage; killed on drop.
struct RefRegistry {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    /// Credentials for seeding when it has htpasswd auth.
    seed_auth: Option<(String, String)>,
}

impl Drop for RefRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bcrypt htpasswd line: with `htpasswd` (apache2-utils) when installed, else with
/// Python's `crypt` (Blowfish through the system libcrypt).
fn htpasswd_line(user: &str, password: &str) -> String {
    let has_htpasswd = Command::new("sh")
        .args(["-c", "command -v htpasswd"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let output = if has_htpasswd {
        Command::new("htpasswd")
            .args(["-nbB", "-C", "4", user, password])
            .output()
            .unwrap()
    } else {
        let script = "import crypt, sys; \
                      print(sys.argv[1] + ':' + crypt.crypt(sys.argv[2], \
                      crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))";
        Command::new("python3")
            .args(["-W", "ignore", "-c", script, user, password])
            .output()
            .expect("neither htpasswd (apache2-utils) nor python3 to make a bcrypt hash")
    };
    let line = String::from_utf8(output.stdout).unwrap();
    let line = line.trim();
    assert!(
        output.status.success() && line.starts_with(&format!("{user}:$2")),
        "cannot make a bcrypt htpasswd line (install apache2-utils, or a python3 with \
         crypt): {line:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    line.to_owned()
}

impl RefRegistry {
    /// Starts the registry; with `htpasswd`, behind Basic auth for that one user.
    async fn start(htpasswd: Option<(&str, &str)>) -> RefRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry package"
        );
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{}\n", htpasswd_line(user, password))).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            // Distribution reads REGISTRY_* variables as configuration: none of ours.
            .env_clear()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = RefRegistry {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            seed_auth: htpasswd.map(|(u, p)| (u.to_owned(), p.to_owned())),
        };
        registry.wait_ready().await;
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let http = plain_http();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            if let Ok(r) = http.get(format!("{}/v2/", self.url)).send().await
                && (r.status() == 200 || r.status() == 401)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.seed_auth {
            Some((u, p)) => request.basic_auth(u, Some(p)),
            None => request,
        }
    }

    /// Uploads a blob (POST, then PUT with the digest); returns its digest.
    async fn push_blob(&self, repository: &str, content: &[u8]) -> Digest {
        let http = plain_http();
        let digest = sha256(content);
        let start = self
            .authorized(http.post(format!("{}/v2/{repository}/blobs/uploads/", self.url)))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 202, "start upload: {}", self.log());
        let location = start.headers()["location"].to_str().unwrap();
        let mut put = url::Url::parse(&self.url).unwrap().join(location).unwrap();
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let done = self
            .authorized(http.put(put))
            .header("content-type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201, "finish upload: {}", self.log());
        digest
    }

    async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) {
        let response = self
            .authorized(plain_http().put(format!(
                "{}/v2/{repository}/manifests/{reference}",
                self.url
            )))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            201,
            "push manifest {reference}: {text} {}",
            self.log()
        );
    }
}

/// What was pushed to the reference registry.
struct Seeded {
    manifest: Vec<u8>,
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
    index: Vec<u8>,
    children: Vec<Vec<u8>>,
}

fn descriptor(media_type: &str, content: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": sha256(content).to_string(), "size": content.len()})
}

/// Pushes an image manifest with its config and `layers`; returns the manifest bytes.
async fn push_image(
    registry: &RefRegistry,
    repository: &str,
    reference: Option<&str>,
    config: &[u8],
    layers: &[Vec<u8>],
) -> Vec<u8> {
    registry.push_blob(repository, config).await;
    for layer in layers {
        registry.push_blob(repository, layer).await;
    }
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = sha256(&manifest).to_string();
    let reference = reference.unwrap_or(&digest);
    registry
        .push_manifest(repository, reference, OCI_MANIFEST, &manifest)
        .await;
    manifest
}

/// An image `team/app:1.0` (a config and two layers, one of 300 KB) and an index
/// `team/app:multi` of two platform images.
async fn seed(registry: &RefRegistry) -> Seeded {
    let repository = "team/app";
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap();
    let layers = vec![bytes(1, 300 * 1024), bytes(2, 1000)];
    let manifest = push_image(registry, repository, Some("1.0"), &config, &layers).await;

    let mut children = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let child_config =
            serde_json::to_vec(&json!({"architecture": arch, "os": "linux"})).unwrap();
        let layer = vec![bytes(arch.len() as u8 + 10, 512)];
        let child = push_image(registry, repository, None, &child_config, &layer).await;
        let mut entry = descriptor(OCI_MANIFEST, &child);
        entry["platform"] = json!({"architecture": arch, "os": "linux"});
        entries.push(entry);
        children.push(child);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries
    }))
    .unwrap();
    registry
        .push_manifest(repository, "multi", OCI_INDEX, &index)
        .await;
    Seeded {
        manifest,
        layers,
        config,
        index,
        children,
    }
}

// ---------------------------------------------------------------------------------
// 1. The reference registry, anonymous
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn reference_registry_serves_manifests_and_blobs_by_tag_and_digest() {
    let registry = RefRegistry::start(None).await;
    let seeded = seed(&registry).await;
    let client = loopback_client();
    let upstream = anonymous(&registry.url);
    let repo = "team/app";
    let digest = sha256(&seeded.manifest);

    let head = client
        .head_manifest(&upstream, repo, "1.0", &[])
        .await
        .unwrap()
        .expect("the tag exists");
    assert_eq!(head.digest, digest);
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert_eq!(head.size, seeded.manifest.len() as u64);

    let by_digest = client
        .head_manifest(&upstream, repo, &digest.to_string(), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_digest, head);
    assert_eq!(client.counts(), counts(2, 0, 0, 0));

    for reference in ["1.0".to_owned(), digest.to_string()] {
        let manifest = client
            .get_manifest(&upstream, repo, &reference, &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(manifest.content, seeded.manifest, "bytes of {reference}");
        assert_eq!(manifest.digest, digest);
        assert_eq!(manifest.media_type, OCI_MANIFEST);
    }
    // A narrow Accept list that admits the manifest.
    let narrow = client
        .get_manifest(&upstream, repo, "1.0", &[OCI_MANIFEST.to_owned()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(narrow.content, seeded.manifest);
    assert_eq!(client.counts(), counts(2, 3, 0, 0));

    // The index and one of its children.
    let index = client
        .get_manifest(&upstream, repo, "multi", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index.content, seeded.index);
    assert_eq!(index.media_type, OCI_INDEX);
    assert_eq!(index.digest, sha256(&seeded.index));
    let child_digest = sha256(&seeded.children[1]);
    let child = client
        .get_manifest(&upstream, repo, &child_digest.to_string(), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.content, seeded.children[1]);
    assert_eq!(child.digest, child_digest);
    let index_head = client
        .head_manifest(&upstream, repo, "multi", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index_head.media_type, OCI_INDEX);
    assert_eq!(index_head.digest, sha256(&seeded.index));
    assert_eq!(client.counts(), counts(3, 5, 0, 0));

    // Blobs, streamed: the 300 KB layer, the small one and the config.
    for content in seeded.layers.iter().chain([&seeded.config]) {
        let blob = client
            .get_blob(&upstream, repo, &sha256(content))
            .await
            .unwrap()
            .expect("the blob exists");
        assert_eq!(blob.length, content.len() as u64);
        assert_eq!(&collect(blob).await, content);
    }
    assert_eq!(client.counts(), counts(3, 5, 3, 0));

    // This upstream serves blob bytes itself: no location to hand out.
    let location = client
        .blob_location(&upstream, repo, &sha256(&seeded.layers[0]))
        .await
        .unwrap();
    assert_eq!(location, None);

    // What does not exist is `Ok(None)`.
    let missing = sha256(b"nothing like this was pushed");
    assert!(
        client
            .head_manifest(&upstream, repo, "2.0", &[])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_manifest(&upstream, repo, "2.0", &[])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_manifest(&upstream, repo, &missing.to_string(), &[])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_manifest(&upstream, "team/nothing", "1.0", &[])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_blob(&upstream, repo, &missing)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .blob_location(&upstream, repo, &missing)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(client.counts(), counts(4, 8, 6, 0));

    // A HEAD of a blob says its size, and nothing of a missing one.
    let layer = &seeded.layers[0];
    assert_eq!(
        client
            .head_blob(&upstream, repo, &sha256(layer))
            .await
            .unwrap(),
        Some(layer.len() as u64)
    );
    assert_eq!(
        client.head_blob(&upstream, repo, &missing).await.unwrap(),
        None
    );
    assert_eq!(
        client.counts(),
        UpstreamCounts {
            blob_heads: 2,
            ..counts(4, 8, 6, 0)
        }
    );
}

// ---------------------------------------------------------------------------------
// 2. The reference registry behind htpasswd (Basic)
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn htpasswd_registry_needs_the_right_credentials() {
    let (user, password) = ("puller", "s3cret-Passw0rd");
    let registry = RefRegistry::start(Some((user, password))).await;
    let seeded = seed(&registry).await;
    let repo = "team/app";
    let digest = sha256(&seeded.manifest);

    // Right credentials: one 401 round trip, then Basic up front.
    let client = loopback_client();
    let upstream = with_credentials(&registry.url, user, password);
    let head = client
        .head_manifest(&upstream, repo, "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.digest, digest);
    assert_eq!(client.counts(), counts(2, 0, 0, 0), "anonymous, then Basic");
    let manifest = client
        .get_manifest(&upstream, repo, "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.content, seeded.manifest);
    let blob = client
        .get_blob(&upstream, repo, &sha256(&seeded.layers[0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collect(blob).await, seeded.layers[0]);
    assert!(
        client
            .get_manifest(&upstream, repo, "2.0", &[])
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        client.counts(),
        counts(2, 2, 1, 0),
        "credentials sent up front"
    );

    // The same client, the scheme known, a wrong password: refused at once.
    let wrong = with_credentials(&registry.url, user, "not-the-Passw0rd");
    let message = upstream_error(
        client.get_manifest(&wrong, repo, "1.0", &[]).await,
        "wrong password, scheme known",
    );
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(
        !message.contains("Passw0rd"),
        "secret in message: {message}"
    );
    assert_eq!(client.counts(), counts(2, 3, 1, 0));

    // No credentials.
    let message = upstream_error(
        loopback_client()
            .get_manifest(&anonymous(&registry.url), repo, "1.0", &[])
            .await,
        "no credentials",
    );
    assert!(message.contains("needs credentials"), "{message}");

    // A new client with a wrong password: anonymous, 401, Basic, 401.
    let fresh = loopback_client();
    let message = upstream_error(
        fresh
            .get_blob(&wrong, repo, &sha256(&seeded.layers[0]))
            .await
            .map(|_| ()),
        "wrong password",
    );
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("127.0.0.1"), "names the host: {message}");
    assert!(
        !message.contains("Passw0rd"),
        "secret in message: {message}"
    );
    assert_eq!(fresh.counts(), counts(0, 0, 2, 0));
}

// ---------------------------------------------------------------------------------
// An axum upstream: Bearer tokens, 429/503, redirects, bad manifests
// ---------------------------------------------------------------------------------

/// The Bearer side of the test upstream.
#[derive(Clone)]
struct BearerOptions {
    /// Credentials the token endpoint requires (anonymous tokens otherwise).
    credentials: Option<(String, String)>,
    expires_in: u64,
    /// Whether the challenge names the scope.
    challenge_scope: bool,
    /// Overrides the realm's host:port (default: the server itself).
    realm_authority: Option<String>,
}

impl Default for BearerOptions {
    fn default() -> Self {
        BearerOptions {
            credentials: None,
            expires_in: 300,
            challenge_scope: true,
            realm_authority: None,
        }
    }
}

#[derive(Clone, Default)]
struct ServerOptions {
    bearer: Option<BearerOptions>,
    /// Blob GETs answer 307 to `<this base>/storage/<digest>?sig=abc`; `Some("")` means
    /// this server.
    redirect_base: Option<String>,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    authorization: Option<String>,
    user_agent: Option<String>,
    status: u16,
}

struct ServerState {
    options: ServerOptions,
    addr: SocketAddr,
    manifest: Vec<u8>,
    blob: Vec<u8>,
    /// Tokens issued and when they expire.
    tokens: Mutex<Vec<(String, Instant)>>,
    issued: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

struct TestServer {
    state: Arc<ServerState>,
}

impl TestServer {
    async fn start(options: ServerOptions) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(CONFIG_TYPE, b"{}"),
            "layers": [descriptor(LAYER_TYPE, &bytes(9, 70_000))],
        }))
        .unwrap();
        let state = Arc::new(ServerState {
            options,
            addr,
            manifest,
            blob: bytes(9, 70_000),
            tokens: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer { state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    fn authority(&self) -> String {
        self.state.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn seen_under(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path_and_query.starts_with(prefix))
            .collect()
    }

    fn revoke_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    fn manifest_digest(&self) -> Digest {
        sha256(&self.state.manifest)
    }

    fn blob_digest(&self) -> Digest {
        sha256(&self.state.blob)
    }
}

fn respond(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Body::from(body)).unwrap()
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let response = route(&state, &method, &uri, authorization.as_deref());
    state.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorization,
        user_agent: headers
            .get("user-agent")
            .map(|v| v.to_str().unwrap().to_owned()),
        status: response.status().as_u16(),
    });
    response
}

fn route(state: &ServerState, method: &Method, uri: &Uri, authorization: Option<&str>) -> Response {
    let path = uri.path();
    if path == "/token" {
        return token(state, authorization);
    }
    if let Some(digest) = path.strip_prefix("/storage/") {
        assert_eq!(digest, sha256(&state.blob).to_string());
        return respond(200, &[], state.blob.clone());
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(404, &[], vec![]);
    };
    if let Some(bearer) = &state.options.bearer {
        let now = Instant::now();
        let valid = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| {
                let tokens = state.tokens.lock().unwrap();
                tokens
                    .iter()
                    .any(|(token, until)| token == t && now < *until)
            });
        if !valid {
            let realm_authority = bearer
                .realm_authority
                .clone()
                .unwrap_or_else(|| state.addr.to_string());
            let mut challenge =
                format!(r#"Bearer realm="http://{realm_authority}/token",service="test""#);
            if bearer.challenge_scope {
                challenge.push_str(r#",scope="repository:team/app:pull""#);
            }
            return respond(401, &[("www-authenticate", challenge)], b"{}".to_vec());
        }
    }
    let (repository, kind, reference) = if let Some((repo, r)) = rest.split_once("/manifests/") {
        (repo, "manifests", r)
    } else if let Some((repo, r)) = rest.split_once("/blobs/") {
        (repo, "blobs", r)
    } else {
        return respond(404, &[], vec![]);
    };
    let manifest_headers = |digest: Option<String>| {
        let mut h = vec![("content-type", OCI_MANIFEST.to_owned())];
        if let Some(d) = digest {
            h.push(("docker-content-digest", d));
        }
        h
    };
    let manifest_digest = sha256(&state.manifest).to_string();
    match (repository, kind) {
        ("limited", _) => respond(429, &[("retry-after", "17".to_owned())], vec![]),
        ("broken", _) => respond(503, &[], b"down for maintenance".to_vec()),
        // No Docker-Content-Digest; Content-Type only on GET (as some servers do).
        ("nodigest", "manifests") => {
            let headers = if method == Method::HEAD {
                vec![]
            } else {
                vec![("content-type", OCI_MANIFEST.to_owned())]
            };
            respond(200, &headers, state.manifest.clone())
        }
        // A digest header that does not match the bytes.
        ("baddigest", "manifests") => respond(
            200,
            &manifest_headers(Some(sha256(b"other").to_string())),
            state.manifest.clone(),
        ),
        // Any digest asked for answers the same bytes, without a digest header.
        ("liar", "manifests") => respond(200, &manifest_headers(None), state.manifest.clone()),
        ("huge", "manifests") => respond(
            200,
            &manifest_headers(None),
            vec![b' '; MAX_MANIFEST_SIZE + 1],
        ),
        // No Content-Type: the body's mediaType tells.
        ("notype", "manifests") => respond(
            200,
            &[("docker-content-digest", manifest_digest.clone())],
            state.manifest.clone(),
        ),
        ("team/app", "manifests") if reference == "1.0" || reference == manifest_digest => respond(
            200,
            &manifest_headers(Some(manifest_digest)),
            state.manifest.clone(),
        ),
        ("team/app", "blobs") if reference == sha256(&state.blob).to_string() => {
            match &state.options.redirect_base {
                Some(base) => {
                    let base = if base.is_empty() {
                        format!("http://{}", state.addr)
                    } else {
                        base.clone()
                    };
                    respond(
                        307,
                        &[("location", format!("{base}/storage/{reference}?sig=abc"))],
                        vec![],
                    )
                }
                None => respond(200, &[], state.blob.clone()),
            }
        }
        _ => respond(404, &[], b"{\"errors\":[]}".to_vec()),
    }
}

fn token(state: &ServerState, authorization: Option<&str>) -> Response {
    let Some(bearer) = &state.options.bearer else {
        return respond(404, &[], vec![]);
    };
    if let Some((user, password)) = &bearer.credentials {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if authorization != Some(expected.as_str()) {
            return respond(401, &[], b"{\"details\":\"bad credentials\"}".to_vec());
        }
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("tok-{n}-secret");
    state.tokens.lock().unwrap().push((
        token.clone(),
        Instant::now() + Duration::from_secs(bearer.expires_in),
    ));
    let body = json!({"token": token, "expires_in": bearer.expires_in});
    respond(
        200,
        &[("content-type", "application/json".to_owned())],
        serde_json::to_vec(&body).unwrap(),
    )
}

fn bearer_server(options: BearerOptions) -> ServerOptions {
    ServerOptions {
        bearer: Some(options),
        ..ServerOptions::default()
    }
}

// ---------------------------------------------------------------------------------
// 3. The Bearer token flow
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_anonymous_token_is_fetched_once_and_sent_up_front() {
    let server = TestServer::start(bearer_server(BearerOptions::default())).await;
    let client = loopback_client();
    let upstream = anonymous(&server.url());
    let digest = server.manifest_digest();

    let head = client
        .head_manifest(&upstream, "team/app", "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.digest, digest);
    assert_eq!(head.size, server.state.manifest.len() as u64);
    for reference in ["1.0".to_owned(), digest.to_string()] {
        let manifest = client
            .get_manifest(&upstream, "team/app", &reference, &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(manifest.content, server.state.manifest);
    }
    let blob = client
        .get_blob(&upstream, "team/app", &server.blob_digest())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collect(blob).await, server.state.blob);
    assert_eq!(
        client.counts(),
        counts(2, 2, 1, 1),
        "one 401 round trip, one token"
    );

    let tokens = server.seen_under("/token");
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].path_and_query,
        "/token?service=test&scope=repository%3Ateam%2Fapp%3Apull"
    );
    assert_eq!(tokens[0].authorization, None, "anonymous token request");
    assert_eq!(tokens[0].user_agent.as_deref(), Some("registry-proxy/1"));
    let v2 = server.seen_under("/v2/");
    assert_eq!(v2.len(), 5);
    assert_eq!((v2[0].status, v2[0].authorization.as_deref()), (401, None));
    let methods: Vec<&str> = v2.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["HEAD", "HEAD", "GET", "GET", "GET"]);
    for seen in &v2[1..] {
        assert_eq!(seen.status, 200, "{seen:?}");
        assert_eq!(seen.authorization.as_deref(), Some("Bearer tok-1-secret"));
        assert_eq!(seen.user_agent.as_deref(), Some("registry-proxy/1"));
    }
}

#[tokio::test]
async fn a_token_is_fetched_with_the_credentials_and_wrong_ones_fail() {
    let (user, password) = ("robot", "hunter2-Pw");
    let server = TestServer::start(bearer_server(BearerOptions {
        credentials: Some((user.to_owned(), password.to_owned())),
        ..BearerOptions::default()
    }))
    .await;

    let client = loopback_client();
    let upstream = with_credentials(&server.url(), user, password);
    let manifest = client
        .get_manifest(&upstream, "team/app", "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.content, server.state.manifest);
    assert!(
        client
            .head_manifest(&upstream, "team/app", "1.0", &[])
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(client.counts(), counts(1, 2, 0, 1));
    let tokens = server.seen_under("/token");
    assert_eq!(tokens.len(), 1);
    assert!(
        tokens[0]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "{tokens:?}"
    );

    // Wrong password: the realm refuses, on a new client and on the one that knows the
    // scheme (whose cached token belongs to another user).
    let wrong = with_credentials(&server.url(), user, "wrong-Pw");
    for (name, c) in [("new client", loopback_client()), ("same client", client)] {
        let message = upstream_error(c.get_manifest(&wrong, "team/app", "1.0", &[]).await, name);
        assert!(message.contains("refused the credentials"), "{message}");
        assert!(!message.contains("Pw"), "secret in message: {message}");
        assert!(!message.contains("tok-"), "token in message: {message}");
    }

    // No credentials at all: the realm refuses anonymous access.
    let message = upstream_error(
        loopback_client()
            .get_manifest(&anonymous(&server.url()), "team/app", "1.0", &[])
            .await,
        "anonymous",
    );
    assert!(message.contains("anonymous"), "{message}");
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_before_it_is_used() {
    let server = TestServer::start(bearer_server(BearerOptions {
        expires_in: 1,
        ..BearerOptions::default()
    }))
    .await;
    let client = loopback_client();
    let upstream = anonymous(&server.url());
    assert!(
        client
            .get_manifest(&upstream, "team/app", "1.0", &[])
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(client.counts(), counts(0, 2, 0, 1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        client
            .get_manifest(&upstream, "team/app", "1.0", &[])
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        client.counts(),
        counts(0, 3, 0, 2),
        "new token, sent up front"
    );
    let v2 = server.seen_under("/v2/");
    assert_eq!(
        v2.iter().filter(|s| s.status == 401).count(),
        1,
        "only the first request met a challenge: {v2:?}"
    );
    assert_eq!(v2[2].authorization.as_deref(), Some("Bearer tok-2-secret"));
}

#[tokio::test]
async fn a_refused_cached_token_is_fetched_again_once() {
    let server = TestServer::start(bearer_server(BearerOptions::default())).await;
    let client = loopback_client();
    let upstream = anonymous(&server.url());
    client
        .get_manifest(&upstream, "team/app", "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client.counts(), counts(0, 2, 0, 1));
    server.revoke_tokens();
    client
        .get_manifest(&upstream, "team/app", "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        client.counts(),
        counts(0, 4, 0, 2),
        "cached token, 401, new token"
    );
    let v2 = server.seen_under("/v2/");
    assert_eq!(v2[2].authorization.as_deref(), Some("Bearer tok-1-secret"));
    assert_eq!(v2[2].status, 401);
    assert_eq!(v2[3].authorization.as_deref(), Some("Bearer tok-2-secret"));
    assert_eq!(v2[3].status, 200);
}

#[tokio::test]
async fn a_challenge_without_scope_gets_a_repository_pull_token() {
    let server = TestServer::start(bearer_server(BearerOptions {
        challenge_scope: false,
        ..BearerOptions::default()
    }))
    .await;
    let client = loopback_client();
    assert!(
        client
            .get_blob(&anonymous(&server.url()), "team/app", &server.blob_digest())
            .await
            .unwrap()
            .is_some()
    );
    let tokens = server.seen_under("/token");
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].path_and_query,
        "/token?service=test&scope=repository%3Ateam%2Fapp%3Apull"
    );
}

// ---------------------------------------------------------------------------------
// 4. 429, 5xx, redirects, bad manifests
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limits_and_server_errors_are_mapped() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = loopback_client();
    let upstream = anonymous(&server.url());
    let digest = server.blob_digest();

    for result in [
        client
            .head_manifest(&upstream, "limited", "1.0", &[])
            .await
            .map(|_| ()),
        client
            .get_manifest(&upstream, "limited", "1.0", &[])
            .await
            .map(|_| ()),
        client
            .get_blob(&upstream, "limited", &digest)
            .await
            .map(|_| ()),
        client
            .blob_location(&upstream, "limited", &digest)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(RegistryError::TooManyRequests {
                retry_after_secs,
                message,
            }) => {
                assert_eq!(retry_after_secs, 17);
                assert!(message.contains(&server.authority()), "{message}");
            }
            other => panic!("expected TooManyRequests, got {other:?}"),
        }
    }

    let message = upstream_error(
        client.get_manifest(&upstream, "broken", "1.0", &[]).await,
        "503 manifest",
    );
    assert!(
        message.contains(&server.authority()) && message.contains("503"),
        "{message}"
    );
    let message = upstream_error(
        client
            .get_blob(&upstream, "broken", &digest)
            .await
            .map(|_| ()),
        "503 blob",
    );
    assert!(message.contains("503"), "{message}");
    assert_eq!(client.counts(), counts(1, 2, 3, 0));

    // Nothing listens: a connection error, named.
    let closed = anonymous(&format!("http://127.0.0.1:{}", free_port()));
    let message = upstream_error(
        client.head_manifest(&closed, "team/app", "1.0", &[]).await,
        "closed port",
    );
    assert!(message.contains("127.0.0.1"), "{message}");
}

#[tokio::test]
async fn a_blob_redirect_is_followed_without_authorization_and_reported() {
    let server = TestServer::start(ServerOptions {
        bearer: Some(BearerOptions::default()),
        redirect_base: Some(String::new()),
    })
    .await;
    let client = loopback_client();
    let upstream = anonymous(&server.url());
    let digest = server.blob_digest();

    let blob = client
        .get_blob(&upstream, "team/app", &digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blob.length, server.state.blob.len() as u64);
    assert_eq!(collect(blob).await, server.state.blob);
    let storage = server.seen_under("/storage/");
    assert_eq!(storage.len(), 1);
    assert_eq!(
        storage[0].authorization, None,
        "no Authorization to storage"
    );
    assert_eq!(
        storage[0].path_and_query,
        format!("/storage/{digest}?sig=abc")
    );
    let blobs = server.seen_under("/v2/team/app/blobs/");
    assert_eq!(blobs.last().unwrap().status, 307);
    assert_eq!(
        blobs.last().unwrap().authorization.as_deref(),
        Some("Bearer tok-1-secret")
    );

    let location = client
        .blob_location(&upstream, "team/app", &digest)
        .await
        .unwrap();
    assert_eq!(
        location,
        Some(format!("{}/storage/{digest}?sig=abc", server.url()))
    );
    assert_eq!(server.seen_under("/storage/").len(), 1, "not followed");
    assert_eq!(client.counts(), counts(0, 0, 3, 1));

    // A HEAD that is redirected reads the size from the storage's ranged answer.
    assert_eq!(
        client
            .head_blob(&upstream, "team/app", &digest)
            .await
            .unwrap(),
        Some(server.state.blob.len() as u64)
    );
    let storage = server.seen_under("/storage/");
    assert_eq!(storage.len(), 2);
    assert_eq!(
        storage[1].authorization, None,
        "no Authorization to storage"
    );
    assert_eq!(client.counts().blob_heads, 1);
}

#[tokio::test]
async fn manifests_are_checked_against_their_digests_and_the_size_limit() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = loopback_client();
    let upstream = anonymous(&server.url());
    let expected = server.manifest_digest();

    // No digest header on HEAD: a GET computes it.
    let head = client
        .head_manifest(&upstream, "nodigest", "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.digest, expected);
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert_eq!(head.size, server.state.manifest.len() as u64);
    assert_eq!(client.counts(), counts(1, 1, 0, 0));

    // No Content-Type: the body's mediaType.
    let manifest = client
        .get_manifest(&upstream, "notype", "1.0", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.media_type, OCI_MANIFEST);
    assert_eq!(manifest.digest, expected);

    // The announced digest does not match the bytes.
    let message = upstream_error(
        client
            .get_manifest(&upstream, "baddigest", "1.0", &[])
            .await,
        "bad digest header",
    );
    assert!(message.contains(&expected.to_string()), "{message}");

    // The bytes do not match the digest asked for.
    let asked = sha256(b"something else");
    upstream_error(
        client
            .get_manifest(&upstream, "liar", &asked.to_string(), &[])
            .await,
        "bytes not matching the reference",
    );
    // ... and do when they match.
    assert!(
        client
            .get_manifest(&upstream, "liar", &expected.to_string(), &[])
            .await
            .unwrap()
            .is_some()
    );

    let message = upstream_error(
        client.get_manifest(&upstream, "huge", "1.0", &[]).await,
        "huge manifest",
    );
    assert!(message.contains("limit"), "{message}");
}

// ---------------------------------------------------------------------------------
// 5. The guard
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn loopback_upstreams_are_refused_unless_allowed() {
    let server = TestServer::start(ServerOptions::default()).await;
    let client = client_with(UpstreamConfig::default());
    let digest = server.blob_digest();
    let port = server.state.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let upstream = anonymous(&url);
        assert_refused(
            client
                .head_manifest(&upstream, "team/app", "1.0", &[])
                .await,
            &url,
        );
        assert_refused(
            client.get_manifest(&upstream, "team/app", "1.0", &[]).await,
            &url,
        );
        assert_refused(
            client
                .get_blob(&upstream, "team/app", &digest)
                .await
                .map(|_| ()),
            &url,
        );
        assert_refused(
            client.blob_location(&upstream, "team/app", &digest).await,
            &url,
        );
    }
    assert_refused(
        client
            .get_manifest(&anonymous("ftp://example.com"), "team/app", "1.0", &[])
            .await,
        "ftp",
    );
    assert!(server.seen().is_empty(), "the server must not be contacted");
    assert_eq!(client.counts(), counts(0, 0, 0, 0));

    // Allowed, the same server answers.
    assert!(
        loopback_client()
            .get_manifest(&anonymous(&server.url()), "team/app", "1.0", &[])
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn the_guard_also_checks_the_token_realm_and_the_redirect_target() {
    // Only 127.0.0.1 is allowed; the realm and the storage are on 127.0.0.2.
    let only_one = UpstreamConfig {
        guard: OutboundGuard::new(OutboundGuard::parse_allowed("127.0.0.1/32").unwrap()),
        ..UpstreamConfig::default()
    };
    let server = TestServer::start(bearer_server(BearerOptions {
        realm_authority: Some("127.0.0.2:9".to_owned()),
        ..BearerOptions::default()
    }))
    .await;
    let client = client_with(only_one.clone());
    assert_refused(
        client
            .get_manifest(&anonymous(&server.url()), "team/app", "1.0", &[])
            .await,
        "realm on 127.0.0.2",
    );
    assert_eq!(client.counts(), counts(0, 1, 0, 0), "no token request sent");

    let server = TestServer::start(ServerOptions {
        bearer: None,
        redirect_base: Some("http://127.0.0.2:9".to_owned()),
    })
    .await;
    let client = client_with(only_one);
    let upstream = anonymous(&server.url());
    assert_refused(
        client
            .get_blob(&upstream, "team/app", &server.blob_digest())
            .await
            .map(|_| ()),
        "redirect to 127.0.0.2",
    );
    // Reporting the location is not connecting to it.
    assert_eq!(
        client
            .blob_location(&upstream, "team/app", &server.blob_digest())
            .await
            .unwrap(),
        Some(format!(
            "http://127.0.0.2:9/storage/{}?sig=abc",
            server.blob_digest()
        ))
    );
}

#[test]
fn the_default_config_is_as_documented() {
    let config = UpstreamConfig::default();
    assert_eq!(config.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.read_timeout, Duration::from_secs(60));
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.user_agent, "registry-proxy/1");
    assert_eq!(config.guard, OutboundGuard::default());
}
