//! Proxy projects over real registries on 127.0.0.1: the upstream is this registry (embedded,
//! with or without authentication, so the Docker token flow is the real one) behind a
//! switch that can make it answer 429 or 503; the proxy is the local registry. Checked:
//! freshness and HEAD-only checks, a tag moved upstream, stale copies with their header
//! when the upstream fails, clear errors for never-cached content, sealed credentials,
//! one upstream fetch for concurrent pulls, index children and blobs on demand, the size
//! cap, and that clients cannot write into a proxy project.

// The shared router helpers; this file uses `send` only.
#[allow(dead_code)]
use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use common::send;
use registry_app::ServerConfig;
use registry_app::compose::{Composed, build};
use registry_core::admin::{Actor, Admin, NewProject};
use registry_core::ports::{SystemClock, UpstreamCounts};
use registry_core::proxy::{ProxyRequest, STALE_HEADER};
use registry_core::registry::StartUpload;
use registry_core::{Digest, DigestAlgorithm, Reference, Registry, RegistryError, RepoName};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const UPSTREAM_ADMIN_PASSWORD: &str = "upstream-admin-pw-1";

/// What the switch in front of the upstream does.
const FORWARD: u8 = 0;
const RATE_LIMIT: u8 = 1;
const FAIL: u8 = 2;

struct Upstream {
    url: String,
    registry: Arc<Registry>,
    mode: Arc<AtomicU8>,
    _dir: tempfile::TempDir,
}

/// This registry as an upstream (with authentication when `auth`), behind the switch.
async fn upstream(auth: bool) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut args = vec![
        "registry".to_owned(),
        // Embedded, whatever `source localstack/env` says.
        "--backend".into(),
        "embedded".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--public-url".into(),
        url.clone(),
        "--scan-on-push".into(),
        "false".into(),
    ];
    if auth {
        args.extend(["--admin-password".into(), UPSTREAM_ADMIN_PASSWORD.into()]);
    }
    let composed = build(&ServerConfig::parse_from_args(args), true)
        .await
        .unwrap();
    let registry = composed.state.registry.clone();
    let app = registry_http::router(composed.state);
    let mode = Arc::new(AtomicU8::new(FORWARD));
    let switch = mode.clone();
    let front = axum::Router::new().fallback(move |req: Request| {
        let app = app.clone();
        let mode = switch.load(Ordering::SeqCst);
        async move {
            match mode {
                RATE_LIMIT => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "30")],
                    "slow down",
                )
                    .into_response(),
                FAIL => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
                _ => app.oneshot(req).await.unwrap_or_else(|e| match e {}),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, front).await });
    Upstream {
        url,
        registry,
        mode,
        _dir: dir,
    }
}

/// Pushes blobs into the upstream directly; returns their digests.
async fn push_blobs(registry: &Registry, repo: &RepoName, blobs: &[Vec<u8>]) -> Vec<Digest> {
    let mut out = Vec::new();
    for bytes in blobs {
        let digest = Digest::of(DigestAlgorithm::Sha256, bytes);
        let body = bytes.clone();
        registry
            .start_upload(
                repo,
                StartUpload {
                    digest: Some(digest.clone()),
                    body: Some(Box::pin(futures_util::stream::once(async move {
                        Ok::<_, RegistryError>(bytes::Bytes::from(body))
                    }))),
                    ..StartUpload::default()
                },
            )
            .await
            .unwrap();
        out.push(digest);
    }
    out
}

/// An image of a config and `layers` pushed as `repo:tag`; returns (manifest digest, blob digests).
async fn push_image(
    registry: &Registry,
    repo: &RepoName,
    tag: &str,
    arch: &str,
    layers: &[Vec<u8>],
) -> (Digest, Vec<Digest>) {
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
    .into_bytes();
    let mut blobs = vec![config];
    blobs.extend_from_slice(layers);
    let digests = push_blobs(registry, repo, &blobs).await;
    let layer_descriptors: Vec<_> = digests[1..]
        .iter()
        .zip(&blobs[1..])
        .map(|(d, b)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": b.len()}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0], "size": blobs[0].len()},
        "layers": layer_descriptors,
    });
    let pushed = registry
        .put_manifest(
            repo,
            &Reference::Tag(tag.parse().unwrap()),
            &[],
            Some(OCI_MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();
    (pushed.digest, digests)
}

struct Proxy {
    composed: Composed,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn registry(&self) -> &Arc<Registry> {
        &self.composed.state.registry
    }

    fn counts(&self) -> UpstreamCounts {
        self.registry().proxy().unwrap().upstream().counts()
    }

    fn admin(&self) -> Admin {
        Admin::new(
            self.composed.state.identities.clone().unwrap(),
            Arc::new(SystemClock),
        )
        .with_proxy(self.registry().proxy().cloned())
        .with_project_cache(self.registry().project_cache().cloned())
    }

    async fn project(&self, name: &str, proxy: ProxyRequest) -> Result<(), RegistryError> {
        self.admin()
            .create_project(
                &Actor::System,
                NewProject {
                    name: name.into(),
                    public: false,
                    vulnerability_policy: None,
                    proxy: Some(proxy),
                },
            )
            .await
            .map(|_| ())
    }

    async fn pull(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<registry_core::proxy::ManifestPull, RegistryError> {
        self.registry()
            .pull_manifest(&repo.parse().unwrap(), &reference.parse().unwrap(), &[])
            .await
    }

    /// A blob's bytes as a client gets them (the stream, or the file behind it).
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let read = self
            .registry()
            .get_blob(&repo.parse().unwrap(), digest, None)
            .await?;
        Ok(registry_testkit::support::content_bytes(read.content, None).await)
    }
}

/// The local registry (embedded, open on loopback) serving proxy projects of upstreams on
/// 127.0.0.1.
async fn proxy() -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::parse_from_args([
        "registry",
        "--backend",
        "embedded",
        "--data-dir",
        &dir.path().display().to_string(),
        "--outbound-allow",
        "127.0.0.0/8",
        "--scan-on-push",
        "false",
    ]);
    let composed = build(&config, true).await.unwrap();
    let app = registry_http::router(composed.state.clone());
    Proxy {
        composed,
        app,
        _dir: dir,
    }
}

/// A request without credentials or body through `app`.
async fn bare(
    app: &axum::Router,
    method: Method,
    uri: &str,
) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
    send(app, method, uri, None, "", Vec::new()).await
}

fn upstream_of(url: &str, freshness_secs: u64) -> ProxyRequest {
    ProxyRequest {
        upstream_url: url.to_owned(),
        username: None,
        password: None,
        freshness_secs: Some(freshness_secs),
        max_cache_bytes: None,
    }
}

fn layer(seed: u64, len: usize) -> Vec<u8> {
    registry_testkit::support::pattern(len, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_tags_make_no_requests_stale_ones_a_head_and_moved_ones_a_get() {
    let up = upstream(false).await;
    let repo: RepoName = "team/app".parse().unwrap();
    let (first, _) = push_image(&up.registry, &repo, "v1", "amd64", &[layer(1, 1000)]).await;
    let p = proxy().await;
    p.project("fresh", upstream_of(&up.url, 300)).await.unwrap();
    p.project("always", upstream_of(&up.url, 0)).await.unwrap();

    let pulled = p.pull("fresh/team/app", "v1").await.unwrap();
    assert_eq!(pulled.record.digest, first);
    let after_first = p.counts();
    assert_eq!(
        (after_first.manifest_heads, after_first.manifest_gets),
        (1, 1)
    );
    p.pull("fresh/team/app", "v1").await.unwrap();
    assert_eq!(
        p.counts(),
        after_first,
        "a fresh tag is served without asking upstream"
    );

    // Freshness 0: every pull checks with a HEAD; an unchanged digest needs no GET.
    p.pull("always/team/app", "v1").await.unwrap();
    p.pull("always/team/app", "v1").await.unwrap();
    let c = p.counts();
    assert_eq!((c.manifest_heads, c.manifest_gets), (3, 2));

    // The tag moves upstream: the next check sees the new digest and fetches it.
    let (second, _) = push_image(&up.registry, &repo, "v1", "amd64", &[layer(2, 1000)]).await;
    assert_ne!(first, second);
    let moved = p.pull("always/team/app", "v1").await.unwrap();
    assert_eq!(moved.record.digest, second);
    let c = p.counts();
    assert_eq!((c.manifest_heads, c.manifest_gets), (4, 3));
    // The old image stays pullable by digest, from the cache.
    let old = p.pull("always/team/app", &first.to_string()).await.unwrap();
    assert_eq!(old.record.digest, first);
    assert_eq!(p.counts(), c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_proxy_project_stops_asking_its_upstream_at_once() {
    let up = upstream(false).await;
    let repo: RepoName = "team/app".parse().unwrap();
    push_image(&up.registry, &repo, "v1", "amd64", &[layer(3, 1000)]).await;
    push_image(&up.registry, &repo, "v2", "amd64", &[layer(4, 1000)]).await;
    let p = proxy().await;
    // Freshness 0: while it is a proxy project, every pull asks upstream.
    p.project("gone", upstream_of(&up.url, 0)).await.unwrap();
    p.pull("gone/team/app", "v1").await.unwrap();
    assert_eq!(p.counts().manifest_heads, 1);

    p.admin()
        .delete_project(&Actor::System, "gone")
        .await
        .unwrap();
    let before = p.counts();
    let never_cached = p.pull("gone/team/app", "v2").await.unwrap_err();
    assert!(
        matches!(never_cached, RegistryError::ManifestUnknown(_)),
        "{never_cached:?}"
    );
    assert_eq!(
        p.counts(),
        before,
        "this process forgot the project's proxy settings when it was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_copies_are_served_stale_when_the_upstream_limits_or_fails() {
    let up = upstream(false).await;
    let repo: RepoName = "team/app".parse().unwrap();
    let (digest, blobs) = push_image(&up.registry, &repo, "v1", "amd64", &[layer(3, 500)]).await;
    let p = proxy().await;
    p.project("hub", upstream_of(&up.url, 0)).await.unwrap();
    p.pull("hub/team/app", "v1").await.unwrap();
    p.blob("hub/team/app", &blobs[1]).await.unwrap();

    for (mode, why) in [(RATE_LIMIT, "429"), (FAIL, "503")] {
        up.mode.store(mode, Ordering::SeqCst);
        let (status, headers, body) =
            bare(&p.app, Method::GET, "/v2/hub/team/app/manifests/v1").await;
        assert_eq!(status, StatusCode::OK, "{why}: {body:?}");
        assert_eq!(headers[STALE_HEADER], "true", "{why}");
        assert!(headers["warning"].to_str().unwrap().starts_with("110 "));
        assert_eq!(
            headers["docker-content-digest"],
            digest.to_string().as_str()
        );
        // Cached blobs need no upstream at all.
        assert_eq!(
            p.blob("hub/team/app", &blobs[1]).await.unwrap(),
            layer(3, 500)
        );
        // Never cached: a clear error.
        let (status, _, body) = bare(&p.app, Method::GET, "/v2/hub/team/other/manifests/v1").await;
        let body = String::from_utf8_lossy(&body).to_string();
        let (want_status, want_code) = if mode == RATE_LIMIT {
            (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
        } else {
            (StatusCode::BAD_GATEWAY, "UNKNOWN")
        };
        assert_eq!(status, want_status, "{why}: {body}");
        assert!(body.contains(want_code), "{body}");
        assert!(body.contains("hub/team/other:v1 is not cached"), "{body}");
    }
    up.mode.store(FORWARD, Ordering::SeqCst);
    let (_, headers, _) = bare(&p.app, Method::GET, "/v2/hub/team/app/manifests/v1").await;
    assert!(
        headers.get(STALE_HEADER).is_none(),
        "fresh again once the upstream answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_through_the_token_flow_and_are_stored_sealed() {
    let up = upstream(true).await;
    let repo: RepoName = "private/app".parse().unwrap();
    let (digest, blobs) = push_image(&up.registry, &repo, "v1", "amd64", &[layer(4, 700)]).await;
    let p = proxy().await;
    let with = |password: Option<&str>| ProxyRequest {
        username: password.map(|_| "admin".to_owned()),
        password: password.map(str::to_owned),
        ..upstream_of(&up.url, 300)
    };
    p.project("mirror", with(Some(UPSTREAM_ADMIN_PASSWORD)))
        .await
        .unwrap();
    p.project("wrong", with(Some("not-the-password")))
        .await
        .unwrap();
    p.project("anon", with(None)).await.unwrap();

    assert_eq!(
        p.pull("mirror/private/app", "v1")
            .await
            .unwrap()
            .record
            .digest,
        digest
    );
    assert_eq!(
        p.blob("mirror/private/app", &blobs[1]).await.unwrap(),
        layer(4, 700)
    );
    assert!(
        p.counts().tokens >= 1,
        "a bearer token from the upstream's realm"
    );

    // Stored sealed; shown only as `hasPassword`.
    let stored = p
        .composed
        .state
        .identities
        .as_ref()
        .unwrap()
        .get_project("mirror")
        .await
        .unwrap()
        .unwrap()
        .proxy
        .unwrap();
    let sealed = stored.sealed_password.clone().unwrap();
    assert!(!sealed.contains(UPSTREAM_ADMIN_PASSWORD));
    let view = p
        .admin()
        .get_project(&Actor::System, "mirror")
        .await
        .unwrap();
    let json = serde_json::to_string(&view).unwrap();
    assert!(json.contains(r#""hasPassword":true"#), "{json}");
    assert!(
        !json.contains(UPSTREAM_ADMIN_PASSWORD) && !json.contains(&sealed),
        "{json}"
    );

    for project in ["wrong", "anon"] {
        let err = p
            .pull(&format!("{project}/private/app"), "v1")
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Upstream(_)),
            "{project}: {err:?}"
        );
        assert!(err.to_string().contains("is not cached"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_an_uncached_blob_share_one_upstream_fetch() {
    let up = upstream(false).await;
    let repo: RepoName = "team/big".parse().unwrap();
    let big = layer(5, 8 * 1024 * 1024 + 3);
    let (_, blobs) = push_image(
        &up.registry,
        &repo,
        "v1",
        "amd64",
        std::slice::from_ref(&big),
    )
    .await;
    let p = Arc::new(proxy().await);
    p.project("hub", upstream_of(&up.url, 300)).await.unwrap();
    p.pull("hub/team/big", "v1").await.unwrap();
    // A HEAD of the uncached blob asks upstream with a HEAD: its size, no bytes moved.
    let (status, headers, _) = send(
        &p.app,
        Method::HEAD,
        &format!("/v2/hub/team/big/blobs/{}", blobs[1]),
        None,
        "",
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    assert_eq!((p.counts().blob_heads, p.counts().blob_gets), (1, 0));
    let before = p.counts().blob_gets;
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            let digest = blobs[1].clone();
            tokio::spawn(async move { p.blob("hub/team/big", &digest).await })
        })
        .collect();
    for pull in pulls {
        let bytes = pull.await.unwrap().unwrap();
        assert!(bytes == big, "every client gets the exact bytes");
    }
    assert_eq!(
        p.counts().blob_gets - before,
        1,
        "one upstream GET for eight pulls"
    );
    // Cached now: a ninth pull needs no upstream.
    assert!(p.blob("hub/team/big", &blobs[1]).await.unwrap() == big);
    assert_eq!(p.counts().blob_gets - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_children_and_their_blobs_are_fetched_only_when_asked_for() {
    let up = upstream(false).await;
    let repo: RepoName = "team/multi".parse().unwrap();
    let (amd, amd_blobs) = push_image(&up.registry, &repo, "amd", "amd64", &[layer(6, 900)]).await;
    let (arm, arm_blobs) = push_image(
        &up.registry,
        &repo,
        "arm",
        "arm64",
        &[layer(7, 900), layer(8, 400)],
    )
    .await;
    let mut children = Vec::new();
    for (d, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        let size = up
            .registry
            .get_manifest(&repo, &Reference::Digest(d.clone()), &[])
            .await
            .unwrap()
            .size();
        children.push(
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                                         "platform": {"os": "linux", "architecture": arch}}),
        );
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                   "manifests": children});
    up.registry
        .put_manifest(
            &repo,
            &Reference::Tag("v1".parse().unwrap()),
            &[],
            Some(OCI_INDEX),
            serde_json::to_vec(&index).unwrap(),
        )
        .await
        .unwrap();
    let p = proxy().await;
    p.project("hub", upstream_of(&up.url, 300)).await.unwrap();

    let pulled = p.pull("hub/team/multi", "v1").await.unwrap();
    assert_eq!(pulled.record.media_type, OCI_INDEX);
    assert_eq!(p.counts().manifest_gets, 1, "the index alone");
    // A client that needs arm64 reads that child and its blobs only.
    let child = p.pull("hub/team/multi", &arm.to_string()).await.unwrap();
    assert_eq!(child.record.digest, arm);
    for d in &arm_blobs {
        p.blob("hub/team/multi", d).await.unwrap();
    }
    let c = p.counts();
    assert_eq!((c.manifest_gets, c.blob_gets), (2, arm_blobs.len() as u64));
    // The platforms share no blob: the counts above include none of amd64's.
    assert!(amd_blobs.iter().all(|d| !arm_blobs.contains(d)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_write_into_a_proxy_project_and_a_full_cache_passes_blobs_through() {
    let up = upstream(false).await;
    let repo: RepoName = "team/app".parse().unwrap();
    let (_, blobs) = push_image(&up.registry, &repo, "v1", "amd64", &[layer(9, 5000)]).await;
    let p = proxy().await;
    p.project(
        "small",
        ProxyRequest {
            max_cache_bytes: Some(100),
            ..upstream_of(&up.url, 300)
        },
    )
    .await
    .unwrap();

    // An upstream the guard refuses is refused when the project is made, not at a pull.
    for internal in [
        "http://169.254.169.254",
        "http://10.1.2.3:5000",
        "http://[::1]:5000",
    ] {
        let refused = p.project("internal", upstream_of(internal, 0)).await;
        assert!(
            matches!(refused, Err(RegistryError::OutboundRefused(_))),
            "{internal}: {refused:?}"
        );
    }
    let not_http = p.project("internal", upstream_of("file:///etc", 0)).await;
    assert!(
        matches!(not_http, Err(RegistryError::Unsupported(_))),
        "{not_http:?}"
    );

    // Pushes and deletes are refused with DENIED.
    let (status, _, body) = send(
        &p.app,
        Method::POST,
        "/v2/small/team/app/blobs/uploads/",
        None,
        "application/octet-stream",
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("DENIED"));
    let (status, _, _) = bare(&p.app, Method::DELETE, "/v2/small/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Over the cap: the client gets the blob each time, the cache keeps nothing.
    p.pull("small/team/app", "v1").await.unwrap();
    let before = p.counts().blob_gets;
    for _ in 0..2 {
        let (status, _, body) = send(
            &p.app,
            Method::GET,
            &format!("/v2/small/team/app/blobs/{}", blobs[1]),
            None,
            "",
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.to_vec() == layer(9, 5000));
    }
    assert_eq!(
        p.counts().blob_gets - before,
        2,
        "not cached: fetched each time"
    );
    let cached = p
        .composed
        .state
        .registry
        .proxy()
        .unwrap()
        .store()
        .cached_bytes("small")
        .await
        .unwrap();
    assert!(cached <= 100, "{cached}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_images_are_scanned_and_their_project_policy_applies() {
    let up = upstream(false).await;
    let repo: RepoName = "team/debian".parse().unwrap();
    let layer = registry_testkit::support::tar_layer(&[
        (
            "etc/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        ),
        (
            "var/lib/dpkg/status",
            b"Package: perl-base\nStatus: install ok installed\nVersion: 5.36.0-7+deb12u1\nSource: perl\n\n",
        ),
    ]);
    let (digest, _) = push_image(&up.registry, &repo, "12", "amd64", &[layer]).await;

    // The proxy with scanning on and its scan worker running.
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::parse_from_args([
        "registry",
        "--backend",
        "embedded",
        "--data-dir",
        &dir.path().display().to_string(),
        "--outbound-allow",
        "127.0.0.0/8",
    ]);
    let composed = build(&config, true).await.unwrap();
    let scan_worker = composed.scanning.clone().expect("scanning").worker;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poll = registry_core::worker::PollConfig {
        idle: std::time::Duration::from_millis(20),
        ..registry_core::worker::PollConfig::default()
    };
    tokio::spawn(async move { scan_worker.run(poll, stopped).await });
    let p = Proxy {
        app: registry_http::router(composed.state.clone()),
        composed,
        _dir: dir,
    };
    p.admin()
        .create_project(
            &Actor::System,
            NewProject {
                name: "hub".into(),
                public: false,
                vulnerability_policy: Some(registry_core::scan::VulnerabilityPolicy {
                    block_unscanned: true,
                    ..Default::default()
                }),
                proxy: Some(upstream_of(&up.url, 300)),
            },
        )
        .await
        .unwrap();

    // The first pull caches the manifest, whose scan is not done yet: refused, as a
    // pushed image would be under this policy.
    let first = p.pull("hub/team/debian", "12").await.unwrap_err();
    assert!(matches!(first, RegistryError::Denied(_)), "{first:?}");
    // The scan brings the layers through the proxy and reports the packages.
    let reports = p.composed.state.scanning.clone().unwrap().reports;
    let proxied: RepoName = "hub/team/debian".parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let report = loop {
        if let Some(r) = reports.get_report(&proxied, &digest).await.unwrap() {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scan report of the cached image"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        report.status,
        registry_core::scan::ScanStatus::Completed,
        "{report:?}"
    );
    assert_eq!(report.packages, 1);
    assert!(
        report.sbom.is_some(),
        "the SBOM is stored in the read-only project"
    );
    assert_eq!(
        p.pull("hub/team/debian", "12").await.unwrap().record.digest,
        digest
    );
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_passwords_survive_a_signing_key_rotation() {
    let up = upstream(true).await;
    let repo: RepoName = "private/app".parse().unwrap();
    let (digest, _) = push_image(&up.registry, &repo, "v1", "amd64", &[layer(10, 300)]).await;
    let (_, old_key) = registry_core::auth::KeySet::generate_pem().unwrap();
    let (_, new_key) = registry_core::auth::KeySet::generate_pem().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy_with = |keys: &[&str]| {
        let mut args = vec![
            "registry".to_owned(),
            "--backend".into(),
            "embedded".into(),
            "--data-dir".into(),
            dir.path().display().to_string(),
            "--outbound-allow".into(),
            "127.0.0.0/8".into(),
            "--scan-on-push".into(),
            "false".into(),
            // `=`: a PEM starts with dashes.
            format!("--token-signing-key={}", keys[0]),
        ];
        if let Some(previous) = keys.get(1) {
            args.push(format!("--token-previous-keys={previous}"));
        }
        ServerConfig::parse_from_args(args)
    };
    let before = build(&proxy_with(&[&old_key]), true).await.unwrap();
    let p = Proxy {
        app: registry_http::router(before.state.clone()),
        composed: before,
        _dir: tempfile::tempdir().unwrap(),
    };
    p.project(
        "mirror",
        ProxyRequest {
            username: Some("admin".into()),
            password: Some(UPSTREAM_ADMIN_PASSWORD.into()),
            ..upstream_of(&up.url, 0)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        p.pull("mirror/private/app", "v1")
            .await
            .unwrap()
            .record
            .digest,
        digest
    );
    drop(p);

    // The new key with the old one kept for verification: the sealed password still opens.
    let rotated = build(&proxy_with(&[&new_key, &old_key]), true)
        .await
        .unwrap();
    let pulled = rotated
        .state
        .registry
        .pull_manifest(
            &"mirror/private/app".parse().unwrap(),
            &"v1".parse().unwrap(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(pulled.record.digest, digest);
    assert!(
        pulled.stale.is_none(),
        "checked upstream with the opened password"
    );
    drop(rotated);

    // The old key dropped: the password cannot be opened, and the error says why.
    let dropped = build(&proxy_with(&[&new_key]), true).await.unwrap();
    let err = dropped
        .state
        .registry
        .pull_manifest(
            &"mirror/private/app".parse().unwrap(),
            &"v1".parse().unwrap(),
            &[],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be opened"), "{err}");
}
