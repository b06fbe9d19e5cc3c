//! Authorization matrix through the real router (`registry_http::router` over `build_state`),
//! on the embedded backend and on the AWS backend against LocalStack: every route kind ×
//! every caller × Basic credentials or a bearer token from `/token`, each answer checked
//! against the policy (allow: the route's success status; deny: 401 challenge, 401
//! `insufficient_scope` or 403 `DENIED`). Also forged and stale tokens, the token
//! endpoint's grants, refresh tokens, login throttling and the audit of failed logins.
//!
//! The AWS tests need `source localstack/env` and fail (never skip) without it. Every run
//! uses its own names (projects, users, robots, S3 prefix), so runs share LocalStack's
//! table safely.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use registry_app::compose::build_state;
use registry_app::config::ServerConfig;
use registry_core::auth::{AuthService, KeySet, Scope, TokenIssuer, hash_password};
use registry_core::identity::{Action, Group, Principal, Project, Robot, Role, User};
use registry_core::{Digest, DigestAlgorithm, RepoName};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";
const ADMIN_PASSWORD: &str = "admin-secret-pw";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Cases run at once (each Basic login is one argon2 verification).
const PARALLEL: usize = 12;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn sha256(data: &[u8]) -> String {
    Digest::of(DigestAlgorithm::Sha256, data).to_string()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A name unique to this run (lowercase, valid in repository names).

// ---------------------------------------------------------------------------------------
// The registry under test.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proj {
    Team,
    Pub,
    Other,
}

/// What was pushed into `<project>/app` at set-up.
#[derive(Debug, Clone)]
struct Seed {
    config: (String, usize),
    layer: (String, usize),
    manifest: String,
}

struct Env {
    backend: &'static str,
    app: Router,
    auth: Arc<AuthService>,
    sfx: String,
    pem: String,
    admin: String,
    /// `Bearer …` for the system admin: a token signed with the registry's key, so the
    /// fixtures cost no password check.
    admin_auth: String,
    /// The argon2 hash of [`PASSWORD`].
    hash: String,
    /// Tokens from `/token` by caller and scope (many routes share a scope).
    tokens: tokio::sync::Mutex<BTreeMap<(String, String), String>>,
    seeds: BTreeMap<Proj, Seed>,
    _dir: Option<tempfile::TempDir>,
}

/// A response, body read.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn error_code(&self) -> Option<String> {
        self.json()["errors"][0]["code"].as_str().map(str::to_owned)
    }
}

/// A request that can be sent more than once.
#[derive(Clone, Debug)]
struct Req {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn new(method: Method, uri: impl Into<String>) -> Req {
        Req {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Req {
        self.headers.push((k.to_owned(), v.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    fn auth(self, value: Option<&str>) -> Req {
        match value {
            Some(v) => self.header("authorization", v),
            None => self,
        }
    }
}

impl Env {
    fn name(&self, p: Proj) -> String {
        let base = match p {
            Proj::Team => "team",
            Proj::Pub => "pub",
            Proj::Other => "other",
        };
        format!("az{}-{base}", self.sfx)
    }

    fn repo(&self, p: Proj) -> String {
        format!("{}/app", self.name(p))
    }

    fn user(&self, base: &str) -> String {
        format!("{base}-{}", self.sfx)
    }

    fn robot(&self, base: &str) -> String {
        format!("robot${}+{base}", self.name(Proj::Team))
    }

    fn seed(&self, p: Proj) -> &Seed {
        &self.seeds[&p]
    }

    async fn send(&self, req: Req) -> Resp {
        let mut builder = Request::builder().method(req.method).uri(&req.uri);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let res = self
            .app
            .clone()
            .oneshot(builder.body(Body::from(req.body)).expect("request"))
            .await
            .expect("infallible router");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn admin_basic(&self) -> String {
        self.admin_auth.clone()
    }

    /// Pushes `data` into `repo` as the system admin; returns its digest.
    async fn admin_push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let res = self
            .send(
                Req::new(
                    Method::POST,
                    format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                )
                .auth(Some(&self.admin_basic()))
                .header("content-type", "application/octet-stream")
                .body(data.to_vec()),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "admin blob push to {repo}");
        d
    }

    fn manifest_body(&self, p: Proj, note: &str) -> Vec<u8> {
        let s = self.seed(p);
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": s.config.0, "size": s.config.1},
            "layers": [{"mediaType": OCI_LAYER, "digest": s.layer.0, "size": s.layer.1}],
            "annotations": {"note": note},
        }))
        .expect("json")
    }

    /// Pushes a manifest into `repo` as the system admin; returns its digest.
    async fn admin_push_manifest(&self, repo: &str, reference: &str, body: Vec<u8>) -> String {
        let res = self
            .send(
                Req::new(Method::PUT, format!("/v2/{repo}/manifests/{reference}"))
                    .auth(Some(&self.admin_basic()))
                    .header("content-type", OCI_MANIFEST)
                    .body(body),
            )
            .await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "admin manifest push: {}",
            String::from_utf8_lossy(&res.body)
        );
        res.header("docker-content-digest")
            .expect("digest header")
            .to_owned()
    }

    /// Starts an upload session in `repo` as the system admin; returns its location.
    async fn admin_start_upload(&self, repo: &str) -> String {
        let res = self
            .send(
                Req::new(Method::POST, format!("/v2/{repo}/blobs/uploads/"))
                    .auth(Some(&self.admin_basic())),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "admin upload start");
        res.header("location").expect("location").to_owned()
    }
}

/// Builds the registry from `args`, then the identities and content of the matrix.
async fn setup(
    backend: &'static str,
    args: Vec<String>,
    sfx: String,
    dir: Option<tempfile::TempDir>,
) -> Env {
    let config = ServerConfig::parse_from_args(args);
    let state = build_state(&config, false).await.expect("build state");
    let auth = state.auth.clone().expect("authentication is on");
    let pem = match &config.token_signing_key {
        Some(pem) => pem.clone(),
        None => std::fs::read_to_string(config.data_dir.join("token-signing-key.pem"))
            .expect("generated signing key file"),
    };
    let mut env = Env {
        backend,
        app: registry_http::router(state),
        auth,
        sfx,
        pem,
        admin: config.admin_user.clone(),
        admin_auth: String::new(),
        hash: hash_password(PASSWORD).expect("hash"),
        tokens: tokio::sync::Mutex::new(BTreeMap::new()),
        seeds: BTreeMap::new(),
        _dir: dir,
    };
    let kid = registry_core::auth::token::key_id(&env.pem).expect("kid");
    let everything: Vec<Scope> = [Proj::Team, Proj::Pub, Proj::Other]
        .into_iter()
        .map(|p| {
            Scope::repository(
                env.repo(p).parse::<RepoName>().expect("repo"),
                [Action::Pull, Action::Push, Action::Delete],
            )
        })
        .collect();
    let (token, _) = issuer_with(&env.pem, &kid, "registry")
        .issue(
            &format!("user:{}", env.admin),
            everything,
            now_ms(),
            Duration::from_secs(900),
        )
        .expect("admin token");
    env.admin_auth = format!("Bearer {token}");
    // The admin's password works too.
    let res = env
        .send(Req::new(Method::GET, "/v2/").auth(Some(&basic(&env.admin, ADMIN_PASSWORD))))
        .await;
    assert_eq!(res.status, StatusCode::OK, "system admin login");
    seed_identities(&env).await;
    for p in [Proj::Team, Proj::Pub, Proj::Other] {
        let repo = env.repo(p);
        let config_blob = format!("{{\"config-of\":\"{repo}\"}}").into_bytes();
        let layer_blob = format!("layer of {repo}").into_bytes();
        let config = env.admin_push_blob(&repo, &config_blob).await;
        let layer = env.admin_push_blob(&repo, &layer_blob).await;
        env.seeds.insert(
            p,
            Seed {
                config: (config, config_blob.len()),
                layer: (layer, layer_blob.len()),
                manifest: String::new(),
            },
        );
        let body = env.manifest_body(p, "seed");
        let digest = env.admin_push_manifest(&repo, "v1", body).await;
        env.seeds.get_mut(&p).expect("seed").manifest = digest;
    }
    env
}

async fn seed_identities(env: &Env) {
    let store = env.auth.store();
    let now = now_ms();
    let hash = env.hash.clone();
    for (p, public) in [(Proj::Team, false), (Proj::Pub, true), (Proj::Other, false)] {
        store
            .create_project(&Project {
                name: env.name(p),
                public,
                created_at_ms: now,
                vulnerability_policy: Default::default(),
                proxy: None,
            })
            .await
            .expect("project");
    }
    for u in [
        "guest",
        "developer",
        "maintainer",
        "padmin",
        "outsider",
        "grpuser",
        "throttled",
    ] {
        store
            .create_user(&User {
                name: env.user(u),
                password_hash: hash.clone(),
                system_admin: false,
                disabled: false,
                created_at_ms: now,
            })
            .await
            .expect("user");
    }
    let team = env.name(Proj::Team);
    for (u, role) in [
        ("guest", Role::Guest),
        ("developer", Role::Developer),
        ("maintainer", Role::Maintainer),
        ("padmin", Role::Admin),
    ] {
        store
            .set_member(&team, &Principal::User(env.user(u)), role)
            .await
            .expect("member");
    }
    store
        .set_member(
            &env.name(Proj::Other),
            &Principal::User(env.user("outsider")),
            Role::Developer,
        )
        .await
        .expect("member");
    let devs = env.user("devs");
    store
        .put_group(&Group {
            name: devs.clone(),
            members: BTreeSet::from([env.user("grpuser")]),
            created_at_ms: now,
        })
        .await
        .expect("group");
    store
        .set_member(&team, &Principal::Group(devs), Role::Developer)
        .await
        .expect("group member");
    for (name, actions, expires) in [
        ("ci", vec![Action::Pull, Action::Push], None),
        ("ro", vec![Action::Pull], None),
    ] {
        store
            .create_robot(&Robot {
                name: env.robot(name),
                secret_hash: hash.clone(),
                grants: BTreeMap::from([(team.clone(), actions.into_iter().collect())]),
                expires_at_ms: expires,
                created_by: format!("user:{}", env.admin),
                created_at_ms: now,
            })
            .await
            .expect("robot");
    }
}

async fn embedded_env() -> Env {
    embedded_env_with(&[]).await
}

async fn embedded_env_with(extra: &[&str]) -> Env {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sfx = registry_testkit::support::run_suffix();
    let mut args = vec![
        "registry".to_owned(),
        "--backend".into(),
        "embedded".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--admin-user".into(),
        format!("root-{sfx}"),
        "--admin-password".into(),
        ADMIN_PASSWORD.into(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    setup("embedded", args, sfx, Some(dir)).await
}

async fn aws_env() -> Env {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is unset: run `source localstack/env` (LocalStack on 4566) first"
    );
    let sfx = registry_testkit::support::run_suffix();
    let (_, pem) = KeySet::generate_pem().expect("signing key");
    let args = vec![
        "registry".to_owned(),
        "--backend".into(),
        "aws".into(),
        "--s3-prefix".into(),
        format!("authz-{sfx}/"),
        // `=` form: the PEM starts with dashes.
        format!("--token-signing-key={pem}"),
        "--admin-user".into(),
        format!("root-{sfx}"),
        "--admin-password".into(),
        ADMIN_PASSWORD.into(),
    ];
    setup("aws", args, sfx, None).await
}

// ---------------------------------------------------------------------------------------
// Callers and the policy they should meet.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A user name nobody has (a fresh one per case, so throttling never kicks in).
    BadCredentials,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    Outsider,
    GroupDeveloper,
    SystemAdmin,
    RobotCi,
    RobotRo,
    RobotExpired,
}

const CALLERS: [Who; 12] = [
    Who::Anonymous,
    Who::BadCredentials,
    Who::Guest,
    Who::Developer,
    Who::Maintainer,
    Who::ProjectAdmin,
    Who::Outsider,
    Who::GroupDeveloper,
    Who::SystemAdmin,
    Who::RobotCi,
    Who::RobotRo,
    Who::RobotExpired,
];

impl Who {
    /// Whether the caller's credentials are accepted at all.
    fn authenticates(self) -> bool {
        !matches!(self, Who::BadCredentials | Who::RobotExpired)
    }

    /// The policy: may this caller take `action` in project `p`?
    fn may(self, p: Proj, action: &str) -> bool {
        use Who::*;
        if self == SystemAdmin {
            return true;
        }
        if !self.authenticates() {
            return false;
        }
        if p == Proj::Pub && action == "pull" {
            return true;
        }
        let held: &[&str] = match (self, p) {
            (Guest | RobotRo, Proj::Team) => &["pull"],
            (Developer | GroupDeveloper | RobotCi, Proj::Team) => &["pull", "push"],
            (Maintainer, Proj::Team) => &["pull", "push", "delete"],
            (ProjectAdmin, Proj::Team) => &["pull", "push", "delete", "admin"],
            (Outsider, Proj::Other) => &["pull", "push"],
            _ => &[],
        };
        held.contains(&action)
    }

    /// `(username, password)` for Basic credentials; `None` for the anonymous caller.
    fn login(self, env: &Env, case: usize) -> Option<(String, String)> {
        use Who::*;
        let name = match self {
            Anonymous => return None,
            BadCredentials => return Some((env.user(&format!("nobody{case}")), "x".into())),
            SystemAdmin => return Some((env.admin.clone(), ADMIN_PASSWORD.into())),
            Guest => env.user("guest"),
            Developer => env.user("developer"),
            Maintainer => env.user("maintainer"),
            ProjectAdmin => env.user("padmin"),
            Outsider => env.user("outsider"),
            GroupDeveloper => env.user("grpuser"),
            RobotCi => env.robot("ci"),
            RobotRo => env.robot("ro"),
            // One expired robot per case: its failed logins must not throttle the others.
            RobotExpired => env.robot(&format!("old{case}")),
        };
        Some((name, PASSWORD.into()))
    }
}

// ---------------------------------------------------------------------------------------
// Routes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(Proj),
    ManifestGet(Proj),
    ManifestHead(Proj),
    ManifestPut(Proj),
    ManifestDelete(Proj),
    BlobGet(Proj),
    BlobHead(Proj),
    BlobDelete(Proj),
    UploadPost(Proj),
    UploadPatch(Proj),
    UploadPut(Proj),
    /// Into `team/app` from the given project's repository.
    Mount(Proj),
    Referrers(Proj),
}

const ROUTES: [Route; 24] = [
    Route::Base,
    Route::Catalog,
    Route::Tags(Proj::Team),
    Route::Tags(Proj::Pub),
    Route::ManifestGet(Proj::Team),
    Route::ManifestGet(Proj::Pub),
    Route::ManifestHead(Proj::Team),
    Route::ManifestHead(Proj::Pub),
    Route::ManifestPut(Proj::Team),
    Route::ManifestPut(Proj::Pub),
    Route::ManifestDelete(Proj::Team),
    Route::BlobGet(Proj::Team),
    Route::BlobGet(Proj::Pub),
    Route::BlobHead(Proj::Team),
    Route::BlobHead(Proj::Pub),
    Route::BlobDelete(Proj::Team),
    Route::UploadPost(Proj::Team),
    Route::UploadPost(Proj::Pub),
    Route::UploadPatch(Proj::Team),
    Route::UploadPut(Proj::Team),
    Route::Mount(Proj::Pub),
    Route::Mount(Proj::Other),
    Route::Referrers(Proj::Team),
    Route::Referrers(Proj::Pub),
];

impl Route {
    /// `(project, actions)` the route needs; the catalog needs `registry:catalog:*`.
    fn needs(self) -> Vec<(Proj, &'static [&'static str])> {
        use Route::*;
        const READ: &[&str] = &["pull"];
        const WRITE: &[&str] = &["pull", "push"];
        const DELETE: &[&str] = &["delete"];
        match self {
            Base | Catalog => Vec::new(),
            Tags(p) | ManifestGet(p) | ManifestHead(p) | BlobGet(p) | BlobHead(p)
            | Referrers(p) => vec![(p, READ)],
            ManifestPut(p) | UploadPost(p) | UploadPatch(p) | UploadPut(p) => vec![(p, WRITE)],
            ManifestDelete(p) | BlobDelete(p) => vec![(p, DELETE)],
            Mount(src) => vec![(Proj::Team, WRITE), (src, READ)],
        }
    }

    /// The `scope` of the challenge (empty for `/v2/`).
    fn scope(self, env: &Env) -> String {
        if self == Route::Catalog {
            return "registry:catalog:*".into();
        }
        self.needs()
            .iter()
            .map(|(p, a)| format!("repository:{}:{}", env.repo(*p), a.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn is_head(self) -> bool {
        matches!(self, Route::ManifestHead(_) | Route::BlobHead(_))
    }

    fn allowed(self, who: Who) -> bool {
        if !who.authenticates() {
            return false;
        }
        match self {
            Route::Base => true,
            Route::Catalog => who != Who::Anonymous,
            _ => self
                .needs()
                .iter()
                .all(|(p, actions)| actions.iter().all(|a| who.may(*p, a))),
        }
    }

    fn success(self) -> &'static [StatusCode] {
        use Route::*;
        match self {
            Base | Catalog | Tags(_) | ManifestGet(_) | ManifestHead(_) | BlobHead(_)
            | Referrers(_) => &[StatusCode::OK],
            // Embedded streams the blob; S3 answers with a presigned redirect.
            BlobGet(_) => &[StatusCode::OK, StatusCode::TEMPORARY_REDIRECT],
            ManifestPut(_) | UploadPut(_) | Mount(_) => &[StatusCode::CREATED],
            ManifestDelete(_) | BlobDelete(_) | UploadPost(_) | UploadPatch(_) => {
                &[StatusCode::ACCEPTED]
            }
        }
    }

    /// The request for case `case`, with its fixtures created as the system admin.
    async fn prepare(self, env: &Env, case: usize) -> Req {
        use Route::*;
        let tag = format!("c{case}");
        match self {
            Base => Req::new(Method::GET, "/v2/"),
            Catalog => Req::new(
                Method::GET,
                format!("/v2/_catalog?n=20&last=az{}-", env.sfx),
            ),
            Tags(p) => Req::new(Method::GET, format!("/v2/{}/tags/list", env.repo(p))),
            ManifestGet(p) => Req::new(Method::GET, format!("/v2/{}/manifests/v1", env.repo(p)))
                .header("accept", OCI_MANIFEST),
            ManifestHead(p) => Req::new(
                Method::HEAD,
                format!("/v2/{}/manifests/{}", env.repo(p), env.seed(p).manifest),
            ),
            ManifestPut(p) => Req::new(Method::PUT, format!("/v2/{}/manifests/{tag}", env.repo(p)))
                .header("content-type", OCI_MANIFEST)
                .body(env.manifest_body(p, &tag)),
            ManifestDelete(p) => {
                let repo = env.repo(p);
                let d = env
                    .admin_push_manifest(&repo, &tag, env.manifest_body(p, &format!("del{tag}")))
                    .await;
                Req::new(Method::DELETE, format!("/v2/{repo}/manifests/{d}"))
            }
            BlobGet(p) => Req::new(
                Method::GET,
                format!("/v2/{}/blobs/{}", env.repo(p), env.seed(p).layer.0),
            ),
            BlobHead(p) => Req::new(
                Method::HEAD,
                format!("/v2/{}/blobs/{}", env.repo(p), env.seed(p).layer.0),
            ),
            BlobDelete(p) => {
                let repo = env.repo(p);
                let d = env
                    .admin_push_blob(&repo, format!("doomed blob {case}").as_bytes())
                    .await;
                Req::new(Method::DELETE, format!("/v2/{repo}/blobs/{d}"))
            }
            UploadPost(p) => Req::new(Method::POST, format!("/v2/{}/blobs/uploads/", env.repo(p))),
            UploadPatch(p) => {
                let location = env.admin_start_upload(&env.repo(p)).await;
                Req::new(Method::PATCH, location)
                    .header("content-type", "application/octet-stream")
                    .body(format!("chunk {case}").into_bytes())
            }
            UploadPut(p) => {
                let location = env.admin_start_upload(&env.repo(p)).await;
                let data = format!("monolithic {case}").into_bytes();
                let sep = if location.contains('?') { '&' } else { '?' };
                Req::new(
                    Method::PUT,
                    format!("{location}{sep}digest={}", sha256(&data)),
                )
                .header("content-type", "application/octet-stream")
                .body(data)
            }
            Mount(src) => Req::new(
                Method::POST,
                format!(
                    "/v2/{}/blobs/uploads/?mount={}&from={}",
                    env.repo(Proj::Team),
                    env.seed(src).layer.0,
                    env.repo(src)
                ),
            ),
            Referrers(p) => Req::new(
                Method::GET,
                format!("/v2/{}/referrers/{}", env.repo(p), env.seed(p).manifest),
            ),
        }
    }

    /// Checks the body of an allowed answer.
    fn check_success(self, env: &Env, who: Who, res: &Resp) -> Result<(), String> {
        match self {
            Route::Catalog => {
                let prefix = format!("az{}-", env.sfx);
                let got: BTreeSet<String> = res.json()["repositories"]
                    .as_array()
                    .ok_or("catalog without repositories")?
                    .iter()
                    .filter_map(|r| r.as_str())
                    .filter(|r| r.starts_with(&prefix))
                    .map(str::to_owned)
                    .collect();
                let want: BTreeSet<String> = [Proj::Team, Proj::Pub, Proj::Other]
                    .into_iter()
                    .filter(|p| who.may(*p, "pull"))
                    .map(|p| env.repo(p))
                    .collect();
                if got != want {
                    return Err(format!("catalog {got:?}, expected {want:?}"));
                }
            }
            Route::Tags(_) => {
                let tags = res.json()["tags"].clone();
                if !tags.as_array().is_some_and(|t| t.iter().any(|t| t == "v1")) {
                    return Err(format!("tags {tags} lack v1"));
                }
            }
            Route::ManifestGet(p) | Route::ManifestHead(p)
                if res.header("docker-content-digest") != Some(env.seed(p).manifest.as_str()) =>
            {
                return Err("wrong manifest digest".into());
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// One case.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Basic credentials on the request itself (none for the anonymous caller).
    Basic,
    /// A bearer token from `GET /token` for the challenge's scope (anonymous: no
    /// credentials at the token endpoint).
    Token,
}

fn expected_challenge(env: &Env, route: Route, insufficient: bool) -> String {
    let s = env.auth.settings();
    let mut c = format!("Bearer realm=\"{}\",service=\"registry\"", s.realm);
    let scope = route.scope(env);
    if !scope.is_empty() {
        c.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient {
        c.push_str(",error=\"insufficient_scope\"");
    }
    c
}

fn check_challenge(env: &Env, route: Route, res: &Resp, insufficient: bool) -> Result<(), String> {
    if res.status != StatusCode::UNAUTHORIZED {
        return Err(format!("status {} where 401 was expected", res.status));
    }
    let want = expected_challenge(env, route, insufficient);
    match res.header("www-authenticate") {
        Some(got) if got == want => Ok(()),
        other => Err(format!("WWW-Authenticate {other:?}, expected {want:?}")),
    }
}

fn check_allowed(env: &Env, route: Route, who: Who, res: &Resp) -> Result<(), String> {
    if !route.success().contains(&res.status) {
        return Err(format!(
            "status {} where {:?} was expected: {}",
            res.status,
            route.success(),
            String::from_utf8_lossy(&res.body)
        ));
    }
    route.check_success(env, who, res)
}

async fn run_case(
    env: &Env,
    case: usize,
    route: Route,
    who: Who,
    kind: Kind,
) -> Result<(), String> {
    let req = route.prepare(env, case).await;
    let login = who.login(env, case);
    let allowed = route.allowed(who);
    if who == Who::RobotExpired {
        let now = now_ms();
        let team = env.name(Proj::Team);
        env.auth
            .store()
            .create_robot(&Robot {
                name: login.clone().expect("robot login").0,
                secret_hash: env.hash.clone(),
                grants: BTreeMap::from([(team, BTreeSet::from([Action::Pull, Action::Push]))]),
                expires_at_ms: Some(now - 60_000),
                created_by: format!("user:{}", env.admin),
                created_at_ms: now - 120_000,
            })
            .await
            .map_err(|e| format!("expired robot: {e}"))?;
    }
    match kind {
        Kind::Basic => {
            let cred = login.as_ref().map(|(u, p)| basic(u, p));
            let res = env.send(req.auth(cred.as_deref())).await;
            // Without credentials every route challenges, even where an anonymous token
            // would do (the client then fetches one: the Token kind).
            if allowed && who != Who::Anonymous {
                check_allowed(env, route, who, &res)
            } else if who == Who::Anonymous || !who.authenticates() {
                check_challenge(env, route, &res, false)
            } else if res.status == StatusCode::FORBIDDEN
                && (res.error_code().as_deref() == Some("DENIED")
                    || (route.is_head() && res.body.is_empty()))
            {
                Ok(())
            } else {
                Err(format!(
                    "status {} {:?} where 403 DENIED was expected",
                    res.status,
                    res.error_code()
                ))
            }
        }
        Kind::Token => {
            // As a client does: ask without credentials, read the challenge, get a token.
            let probe = env.send(req.clone()).await;
            check_challenge(env, route, &probe, false).map_err(|e| format!("probe: {e}"))?;
            let challenge = probe.header("www-authenticate").unwrap_or_default();
            let scopes: Vec<&str> = challenge
                .split_once("scope=\"")
                .map(|(_, rest)| rest.split('"').next().unwrap_or(""))
                .unwrap_or("")
                .split(' ')
                .filter(|s| !s.is_empty())
                .collect();
            let mut uri = "/token?service=registry".to_owned();
            for s in scopes {
                uri.push_str("&scope=");
                uri.push_str(s);
            }
            let key = (format!("{who:?}"), uri.clone());
            let cached = env.tokens.lock().await.get(&key).cloned();
            if let Some(token) = cached {
                return check_bearer(env, route, who, req, &token, allowed).await;
            }
            let cred = login.as_ref().map(|(u, p)| basic(u, p));
            let got = env
                .send(Req::new(Method::GET, uri).auth(cred.as_deref()))
                .await;
            if !who.authenticates() {
                return if got.status == StatusCode::UNAUTHORIZED {
                    Ok(())
                } else {
                    Err(format!("token endpoint answered {}, not 401", got.status))
                };
            }
            if got.status != StatusCode::OK {
                return Err(format!("token endpoint answered {}", got.status));
            }
            let token = got.json()["token"].as_str().unwrap_or_default().to_owned();
            env.tokens.lock().await.insert(key, token.clone());
            check_bearer(env, route, who, req, &token, allowed).await
        }
    }
}

async fn check_bearer(
    env: &Env,
    route: Route,
    who: Who,
    req: Req,
    token: &str,
    allowed: bool,
) -> Result<(), String> {
    let res = env.send(req.auth(Some(&format!("Bearer {token}")))).await;
    if allowed {
        check_allowed(env, route, who, &res)
    } else {
        check_challenge(env, route, &res, true)
    }
}

async fn run_matrix(env: Env) {
    let env = Arc::new(env);
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut set = JoinSet::new();
    let mut case = 0usize;
    for route in ROUTES {
        for who in CALLERS {
            for kind in [Kind::Basic, Kind::Token] {
                case += 1;
                let (env, limit) = (env.clone(), limit.clone());
                set.spawn(async move {
                    let _permit = limit.acquire_owned().await.expect("semaphore");
                    let outcome = run_case(&env, case, route, who, kind).await;
                    let allowed =
                        route.allowed(who) && !(who == Who::Anonymous && kind == Kind::Basic);
                    (route, who, kind, allowed, outcome)
                });
            }
        }
    }
    let mut failures = Vec::new();
    let (mut allows, mut denies) = (0, 0);
    while let Some(done) = set.join_next().await {
        let (route, who, kind, allowed, outcome) = done.expect("case task");
        if allowed {
            allows += 1;
        } else {
            denies += 1;
        }
        if let Err(e) = outcome {
            failures.push(format!(
                "{route:?} × {who:?} × {kind:?} (expected {}): {e}",
                if allowed { "allow" } else { "deny" }
            ));
        }
    }
    println!(
        "[{}] authorization matrix: {case} cases ({} routes × {} callers × 2 credential kinds; \
         {allows} allow, {denies} deny) in {:.1?}",
        env.backend,
        ROUTES.len(),
        CALLERS.len(),
        started.elapsed()
    );
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {case} cases failed on {}:\n{}",
        failures.len(),
        env.backend,
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Tokens: forged, stale, narrowed; the token endpoint; throttling and audit.

fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

fn issuer_with(pem: &str, kid: &str, service: &str) -> TokenIssuer {
    let keys = KeySet::from_pems((kid, pem), std::iter::empty()).expect("key set");
    TokenIssuer::new(keys, "registry", service)
}

async fn run_tokens(env: Env) {
    let team = env.repo(Proj::Team);
    let pull_uri = format!("/v2/{team}/manifests/v1");
    let get_with = |token: String| {
        Req::new(Method::GET, pull_uri.clone())
            .header("accept", OCI_MANIFEST)
            .header("authorization", format!("Bearer {token}"))
    };
    let kid = registry_core::auth::token::key_id(&env.pem).expect("kid");
    let subject = format!("user:{}", env.admin);
    let scope = vec![Scope::repository(
        team.parse::<RepoName>().expect("repo"),
        [Action::Pull, Action::Push],
    )];
    let ttl = Duration::from_secs(60);
    let now = now_ms();
    let mut checked = 0;
    let mut expect = |label: &str, res: &Resp, want: StatusCode| {
        checked += 1;
        assert_eq!(res.status, want, "{}: {label}", env.backend);
    };

    // Control: a token crafted with the registry's own key and audience works.
    let good = issuer_with(&env.pem, &kid, "registry");
    let (token, _) = good
        .issue(&subject, scope.clone(), now, ttl)
        .expect("issue");
    expect(
        "own-key token",
        &env.send(get_with(token)).await,
        StatusCode::OK,
    );

    // Expired (issued an hour ago for a minute, well past the leeway).
    let (token, _) = good
        .issue(&subject, scope.clone(), now - 3_600_000, ttl)
        .expect("issue");
    let res = env.send(get_with(token)).await;
    expect("expired token", &res, StatusCode::UNAUTHORIZED);
    assert!(
        res.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=") && !c.contains("insufficient")),
        "expired token challenge"
    );

    // Signed by another key under the registry's key id.
    let (_, other_pem) = KeySet::generate_pem().expect("key");
    let (token, _) = issuer_with(&other_pem, &kid, "registry")
        .issue(&subject, scope.clone(), now, ttl)
        .expect("issue");
    expect(
        "foreign signature",
        &env.send(get_with(token)).await,
        StatusCode::UNAUTHORIZED,
    );

    // Right key, wrong audience.
    let (token, _) = issuer_with(&env.pem, &kid, "another-service")
        .issue(&subject, scope.clone(), now, ttl)
        .expect("issue");
    expect(
        "wrong audience",
        &env.send(get_with(token)).await,
        StatusCode::UNAUTHORIZED,
    );

    // A guest's pull token, its payload widened to push by hand.
    let guest = basic(&env.user("guest"), PASSWORD);
    let res = env
        .send(
            Req::new(
                Method::GET,
                format!("/token?service=registry&scope=repository:{team}:pull,push"),
            )
            .auth(Some(&guest)),
        )
        .await;
    expect("guest token", &res, StatusCode::OK);
    let token = res.json()["token"].as_str().expect("token").to_owned();
    let claims = jwt_payload(&token);
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": team, "actions": ["pull"]}]),
        "{}: a guest asking for push gets pull only",
        env.backend
    );
    let put = |token: &str| {
        Req::new(Method::PUT, format!("/v2/{team}/manifests/forged"))
            .header("content-type", OCI_MANIFEST)
            .header("authorization", format!("Bearer {token}"))
            .body(env.manifest_body(Proj::Team, "forged"))
    };
    let res = env.send(put(&token)).await;
    expect("guest token on push", &res, StatusCode::UNAUTHORIZED);
    assert!(
        res.header("www-authenticate")
            .is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
        "{}: insufficient_scope challenge",
        env.backend
    );
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut widened = claims.clone();
    widened["access"][0]["actions"] = json!(["pull", "push"]);
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&widened).expect("json"));
    let forged = parts.join(".");
    let res = env.send(put(&forged)).await;
    expect("widened token", &res, StatusCode::UNAUTHORIZED);
    assert!(
        res.header("www-authenticate")
            .is_some_and(|c| !c.contains("insufficient_scope")),
        "{}: a forged token is no token",
        env.backend
    );
    expect(
        "guest token on pull",
        &env.send(get_with(token)).await,
        StatusCode::OK,
    );
    println!(
        "[{}] forged and stale tokens: {checked} checks",
        env.backend
    );
}

async fn run_token_endpoint(env: Env) {
    let team = env.repo(Proj::Team);
    let dev = env.user("developer");
    let form = |body: String| {
        Req::new(Method::POST, "/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };

    // Password grant with a refresh token, then the refresh grant.
    let res = env
        .send(form(format!(
            "grant_type=password&service=registry&username={dev}&password={}\
             &access_type=offline&scope=repository:{team}:pull,push",
            PASSWORD.replace(' ', "+")
        )))
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}: password grant",
        env.backend
    );
    let refresh = res.json()["refresh_token"]
        .as_str()
        .expect("refresh_token with access_type=offline")
        .to_owned();
    assert_eq!(
        jwt_payload(res.json()["token"].as_str().expect("token"))["access"][0]["actions"],
        json!(["pull", "push"])
    );
    let res = env
        .send(form(format!(
            "grant_type=refresh_token&service=registry&refresh_token={refresh}\
             &scope=repository:{team}:pull"
        )))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}: refresh grant", env.backend);
    let token = res.json()["token"].as_str().expect("token").to_owned();
    assert_eq!(jwt_payload(&token)["sub"], json!(format!("user:{dev}")));
    let pulled = env
        .send(
            Req::new(Method::GET, format!("/v2/{team}/tags/list"))
                .header("authorization", format!("Bearer {token}")),
        )
        .await;
    assert_eq!(pulled.status, StatusCode::OK, "refreshed token pulls");
    // The refresh token itself is no access token.
    let res = env
        .send(
            Req::new(Method::GET, format!("/v2/{team}/tags/list"))
                .header("authorization", format!("Bearer {refresh}")),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "refresh token as access"
    );
    // Without access_type=offline, no refresh token.
    let res = env
        .send(form(format!(
            "grant_type=password&service=registry&username={dev}&password={}",
            PASSWORD.replace(' ', "+")
        )))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.json().get("refresh_token").is_none());

    // Wrong passwords: 401 on both forms of the endpoint, audited, then throttled.
    let victim = env.user("throttled");
    let started_ms = now_ms();
    let wrong = basic(&victim, "wrong");
    let res = env
        .send(Req::new(Method::GET, "/token?service=registry").auth(Some(&wrong)))
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "GET /token wrong password"
    );
    assert_eq!(res.error_code().as_deref(), Some("UNAUTHORIZED"));
    let res = env
        .send(form(format!(
            "grant_type=password&username={victim}&password=wrong"
        )))
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "POST /token wrong password"
    );
    for _ in 0..4 {
        let res = env
            .send(Req::new(Method::GET, "/token?service=registry").auth(Some(&wrong)))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    // Six failures: the next attempt waits (1 s by default) even with the right password.
    let t = Instant::now();
    let res = env
        .send(Req::new(Method::GET, "/token?service=registry").auth(Some(&wrong)))
        .await;
    let delayed = t.elapsed();
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        delayed >= Duration::from_millis(950),
        "{}: the 7th attempt after 6 failures took {delayed:?}, expected ≥ 1 s",
        env.backend
    );
    // 20 failures in the window (the rest counted directly): refused, right password or not.
    let store = env.auth.store();
    let window = env.auth.settings().throttle.window.as_millis() as u64;
    let now = now_ms();
    let start = now - now % window;
    let mut count = store.login_failures(&victim, start).await.expect("count");
    assert!(count >= 7, "{}: {count} failures counted", env.backend);
    while count < 20 {
        count = store
            .record_login_failure(&victim, start)
            .await
            .expect("record");
    }
    let t = Instant::now();
    let res = env
        .send(
            Req::new(Method::GET, "/token?service=registry").auth(Some(&basic(&victim, PASSWORD))),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}: refused after 20 failures",
        env.backend
    );
    assert_eq!(res.error_code().as_deref(), Some("TOOMANYREQUESTS"));
    let retry_after: u64 = res
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a 429 says when to retry (Retry-After)");
    assert!(retry_after >= 1);
    assert!(t.elapsed() < Duration::from_secs(5), "refusal is immediate");
    let res = env
        .send(
            Req::new(Method::GET, format!("/v2/{team}/tags/list"))
                .auth(Some(&basic(&victim, PASSWORD))),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::TOO_MANY_REQUESTS,
        "Basic on /v2 refused too"
    );

    // The failed logins are audited.
    let after = format!("{:015}", started_ms.saturating_sub(1));
    let records = store.list_audit(Some(&after), 10_000).await.expect("audit");
    let target = format!("account:{victim}");
    let failed = records
        .iter()
        .filter(|r| r.action == "login.failed" && r.target == target)
        .count();
    assert!(
        failed >= 7,
        "{}: {failed} login.failed audit records for {target}",
        env.backend
    );
    println!(
        "[{}] token endpoint: refresh grant ok, 7th failure delayed {delayed:?}, 429 after 20, \
         {failed} audit records",
        env.backend
    );
}

/// The same tests on each backend.
macro_rules! on_backend {
    ($name:ident, $env:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
            async fn authorization_matrix() {
                super::run_matrix(super::$env().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn forged_and_stale_tokens() {
                super::run_tokens(super::$env().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn token_endpoint_throttling_and_audit() {
                super::run_token_endpoint(super::$env().await).await;
            }
        }
    };
}

on_backend!(embedded, embedded_env);
on_backend!(aws, aws_env);

/// On the upload endpoint (`--require-upload-token`), a signed `_state` stands in for
/// credentials on upload-session routes only: on any other route it must not skip
/// authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_session_tokens_open_upload_routes_only() {
    let env = embedded_env_with(&[
        "--require-upload-token",
        "--upload-token-secret=an-upload-secret",
    ])
    .await;
    let team = env.repo(Proj::Team);
    // The session token opens its own upload (no credentials needed)…
    let location = env.admin_start_upload(&team).await;
    assert!(location.contains("_state="), "signed location {location}");
    let res = env
        .send(
            Req::new(Method::PATCH, location)
                .header("content-type", "application/octet-stream")
                .body(b"chunk".to_vec()),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::ACCEPTED,
        "upload with its session token"
    );
    // …and nothing else.
    for (method, uri) in [
        (Method::GET, format!("/v2/{team}/manifests/v1?_state=x")),
        (Method::GET, format!("/v2/{team}/tags/list?_state=x")),
        (
            Method::DELETE,
            format!(
                "/v2/{team}/manifests/{}?_state=x",
                env.seed(Proj::Team).manifest
            ),
        ),
        (Method::GET, "/v2/_catalog?_state=x".to_owned()),
    ] {
        let res = env.send(Req::new(method.clone(), uri.clone())).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without credentials"
        );
    }
}
