//! Builds the `Registry`, the authentication, the event machinery (outbox relay,
//! webhooks, the webhook queue's worker), the scanner and the proxy projects' machinery
//! over the configured backend: the one place adapters are chosen and the auth rules of
//! start-up are applied.

use std::sync::Arc;
use std::time::Duration;

use registry_aws::dynamo_metadata_store::{DynamoMetadataStore, DynamoSettings};
use registry_aws::s3_blob_store::{S3BlobStore, S3BlobStoreSettings};
use registry_aws::sqs_job_queue::{SqsJobQueue, SqsQueueSettings};
use registry_aws::{AwsClients, AwsSettings};
use registry_core::auth::{AuthService, AuthSettings, KeySet, ThrottleConfig, TokenIssuer};
use registry_core::events::{EventRelay, EventsConfig};
use registry_core::identity::ProjectCache;
use registry_core::outbound::OutboundGuard;
use registry_core::ports::{
    BlobStore, Clock, IdentityStore, JobQueue, MetadataStore, ProxyCacheStore, ScanStore,
    SystemClock, VulnerabilityStore, WebhookStore,
};
use registry_core::proxy::{BlobFetchMode, CredentialBox, ProxyCache, ProxyFiller};
use registry_core::webhooks::Webhooks;
use registry_core::worker::{RetryPolicy, Worker};
use registry_core::{Registry, RegistryConfig, RegistryError, Result};
use registry_embedded::{EmbeddedJobQueue, EmbeddedMetadataStore, FileBlobStore, open_database};
use registry_http::AppState;
use registry_outbound::{GuardedHttpClient, GuardedUpstreamClient, OutboundConfig, UpstreamConfig};
use registry_scan::Scanner;

use crate::config::{AwsConfig, Backend, ServerConfig};

/// The token service name (the audience of bearer tokens).
pub const TOKEN_SERVICE: &str = "registry";

/// The use-case settings that come from configuration.
pub fn registry_config(config: &ServerConfig) -> RegistryConfig {
    RegistryConfig {
        upload_ttl_secs: config.upload_ttl_secs,
        max_request_body: config.max_request_body,
        upload_endpoint_url: config
            .upload_endpoint_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        upload_token_secret: config
            .upload_token_secret
            .as_ref()
            .map(|s| s.as_bytes().to_vec()),
        require_upload_token: config.require_upload_token,
        ..RegistryConfig::default()
    }
}

/// The AWS clients of `aws`, loaded once per process.
pub async fn aws_clients(aws: &AwsConfig) -> AwsClients {
    AwsClients::load(&AwsSettings {
        endpoint_url: aws.endpoint_url.clone(),
        region: aws.region.clone(),
    })
    .await
}

/// The storage adapters of the configured backend.
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetadataStore>,
    pub identities: Arc<dyn IdentityStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    /// The webhook queue; `None` (AWS without `REGISTRY_WEBHOOK_QUEUE_URL`): no events.
    pub webhook_queue: Option<Arc<dyn JobQueue>>,
    pub scans: Arc<dyn ScanStore>,
    pub vulns: Arc<dyn VulnerabilityStore>,
    /// The scan queue; `None` (AWS without `REGISTRY_SCAN_QUEUE_URL`): no scanning.
    pub scan_queue: Option<Arc<dyn JobQueue>>,
    /// Proxy projects' tag checks and cache sizes.
    pub proxy: Arc<dyn ProxyCacheStore>,
    /// The proxy-fill queue; `None` (AWS without `REGISTRY_PROXY_FILL_QUEUE_URL`): no
    /// prefetch, and no background fills.
    pub proxy_fill_queue: Option<Arc<dyn JobQueue>>,
}

/// The SQS queue at `url` with its dead-letter queue (`dlq`, or `<url>-dlq`).
fn sqs_queue(clients: &AwsClients, url: &str, dlq: Option<&String>) -> Arc<dyn JobQueue> {
    Arc::new(SqsJobQueue::new(
        clients.sqs.clone(),
        SqsQueueSettings {
            queue_url: url.to_owned(),
            dead_letter_queue_url: dlq.cloned().unwrap_or_else(|| format!("{url}-dlq")),
        },
    ))
}

/// The storage adapters of the configured backend.
pub async fn stores(config: &ServerConfig) -> Result<Stores> {
    match config.backend {
        Backend::Embedded => {
            let db = open_database(&config.data_dir.join("metadata.redb"))?;
            let meta = Arc::new(EmbeddedMetadataStore::new(db.clone())?);
            let queue = EmbeddedJobQueue::named(
                db.clone(),
                "webhook",
                Arc::new(SystemClock),
                config.events.webhook_max_receives,
            )?;
            let scan_queue = EmbeddedJobQueue::named(
                db.clone(),
                "scan",
                Arc::new(SystemClock),
                config.events.scan_max_receives,
            )?;
            let proxy_fill_queue = EmbeddedJobQueue::named(
                db,
                "proxy-fill",
                Arc::new(SystemClock),
                config.events.proxy_fill_max_receives,
            )?;
            Ok(Stores {
                blobs: Arc::new(FileBlobStore::new(&config.data_dir)?),
                meta: meta.clone(),
                identities: meta.clone(),
                webhooks: meta.clone(),
                webhook_queue: Some(Arc::new(queue)),
                scans: meta.clone(),
                vulns: meta.clone(),
                scan_queue: Some(Arc::new(scan_queue)),
                proxy: meta,
                proxy_fill_queue: Some(Arc::new(proxy_fill_queue)),
            })
        }
        Backend::Aws => {
            let aws = &config.aws;
            let clients = aws_clients(aws).await;
            let blobs = S3BlobStore::new(
                clients.s3.clone(),
                S3BlobStoreSettings {
                    prefix: aws.prefix.clone(),
                    presign_expiry_secs: aws.presign_expiry_secs,
                    public_base_url: aws.blob_public_base_url.clone(),
                    ..S3BlobStoreSettings::new(&aws.bucket)
                },
            )?;
            let meta = Arc::new(DynamoMetadataStore::new(
                clients.dynamodb.clone(),
                clients.s3.clone(),
                DynamoSettings {
                    manifest_prefix: format!("{}manifests/", aws.prefix),
                    scan_prefix: aws.prefix.clone(),
                    ..DynamoSettings::new(&aws.table, &aws.bucket)
                },
            ));
            Ok(Stores {
                blobs: Arc::new(blobs),
                meta: meta.clone(),
                identities: meta.clone(),
                webhooks: meta.clone(),
                webhook_queue: aws
                    .webhook_queue_url
                    .as_ref()
                    .map(|url| sqs_queue(&clients, url, aws.webhook_dlq_url.as_ref())),
                scans: meta.clone(),
                vulns: meta.clone(),
                scan_queue: aws
                    .scan_queue_url
                    .as_ref()
                    .map(|url| sqs_queue(&clients, url, aws.scan_dlq_url.as_ref())),
                proxy: meta,
                proxy_fill_queue: aws
                    .proxy_fill_queue_url
                    .as_ref()
                    .map(|url| sqs_queue(&clients, url, aws.proxy_fill_dlq_url.as_ref())),
            })
        }
    }
}

/// The registry over the configured backend.
pub async fn build_registry(config: &ServerConfig) -> Result<Arc<Registry>> {
    Ok(build_state(config, true).await?.registry)
}

/// The signing keys: from configuration, or (embedded) a key file generated on first start.
/// The token signing key's PEM: configured, or (embedded) the key file, generated on
/// first start; `None` on AWS without one.
fn signing_key_pem(config: &ServerConfig) -> Result<Option<String>> {
    Ok(Some(match (&config.token_signing_key, config.backend) {
        (Some(configured), _) => registry_core::auth::token::private_key_pem(configured)?,
        (None, Backend::Embedded) => {
            let path = config.data_dir.join("token-signing-key.pem");
            match std::fs::read_to_string(&path) {
                Ok(pem) => pem,
                Err(_) => {
                    let (_, pem) = KeySet::generate_pem()?;
                    std::fs::create_dir_all(&config.data_dir).map_err(RegistryError::storage)?;
                    write_private(&path, &pem)?;
                    pem
                }
            }
        }
        (None, Backend::Aws) => return Ok(None),
    }))
}

fn signing_keys(config: &ServerConfig) -> Result<KeySet> {
    let Some(pem) = signing_key_pem(config)? else {
        return Err(RegistryError::Storage(
            "REGISTRY_TOKEN_SIGNING_KEY is required with authentication on the AWS backend".into(),
        ));
    };
    let kid = registry_core::auth::token::key_id(&pem)?;
    // Rotation: the previous keys keep verifying the tokens they signed.
    let previous: Vec<(String, String)> = config
        .token_previous_keys
        .as_deref()
        .map(registry_core::auth::token::split_pems)
        .unwrap_or_default()
        .into_iter()
        .map(|p| Ok((registry_core::auth::token::key_id_of_any(&p)?, p)))
        .collect::<Result<_>>()?;
    let previous = previous.iter().filter(|(k, _)| *k != kid);
    KeySet::from_pems(
        (&kid, &pem),
        previous.map(|(k, p)| (k.as_str(), p.as_str())),
    )
}

fn write_private(path: &std::path::Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(RegistryError::storage)?;
    f.write_all(contents.as_bytes())
        .map_err(RegistryError::storage)
}

/// Whether authentication is on, by the start-up rules: on with an admin password; off
/// with `--no-auth`; off (with a warning) on a loopback address when `open_on_loopback`;
/// otherwise the process refuses to start.
pub fn auth_enabled(config: &ServerConfig, open_on_loopback: bool) -> Result<bool> {
    if config.admin_password.is_some() {
        return Ok(true);
    }
    if config.no_auth {
        tracing::warn!(
            "authentication is off (--no-auth): anyone who reaches this registry can do anything"
        );
        return Ok(false);
    }
    if open_on_loopback && config.addr.ip().is_loopback() {
        tracing::warn!(
            addr = %config.addr,
            "authentication is off: no REGISTRY_ADMIN_PASSWORD, and the registry listens on loopback only"
        );
        return Ok(false);
    }
    Err(RegistryError::Storage(format!(
        "refusing to start on {} without authentication: set REGISTRY_ADMIN_PASSWORD, or pass --no-auth",
        config.addr
    )))
}

/// The registry's public base URL: configured, or `http://<addr>`.
pub fn public_url(config: &ServerConfig) -> String {
    config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.addr))
        .trim_end_matches('/')
        .to_owned()
}

/// The event machinery, where a webhook queue exists.
#[derive(Clone)]
pub struct EventsRuntime {
    /// Publishes outbox events (fast path and sweep).
    pub relay: Arc<EventRelay>,
    /// Webhook policies and deliveries, and the webhook queue's handler.
    pub webhooks: Arc<Webhooks>,
    /// The webhook queue's consumer.
    pub worker: Arc<Worker>,
    /// The webhook queue.
    pub queue: Arc<dyn JobQueue>,
}

/// The event machinery over `stores`, or `None` without a webhook queue.
pub fn events_runtime(
    config: &ServerConfig,
    stores: &Stores,
    clock: Arc<dyn Clock>,
) -> Result<Option<EventsRuntime>> {
    let Some(queue) = stores.webhook_queue.clone() else {
        return Ok(None);
    };
    let e = &config.events;
    let mut relay = EventRelay::new(
        stores.meta.clone(),
        queue.clone(),
        clock.clone(),
        EventsConfig {
            pull_events: e.pull_events,
            sweep_grace_ms: e.outbox_grace_secs * 1000,
            fault_abort_before_publish: e
                .fault_abort_before_publish
                .as_deref()
                .map(str::parse)
                .transpose()?,
        },
    );
    if let Some(scan_queue) = stores.scan_queue.as_ref().filter(|_| e.scan_on_push) {
        relay = relay.with_route(
            scan_queue.clone(),
            &registry_scan::SCANNED_EVENTS,
            registry_scan::scan_job_of,
        );
    }
    let relay = Arc::new(relay);
    let outbound = GuardedHttpClient::new(OutboundConfig {
        guard: OutboundGuard::new(OutboundGuard::parse_allowed(&e.outbound_allow)?),
        timeout: Duration::from_secs(e.webhook_timeout_secs.max(1)),
        ..OutboundConfig::default()
    })?;
    let webhooks = Arc::new(Webhooks::new(
        stores.webhooks.clone(),
        queue.clone(),
        Arc::new(outbound),
        clock,
        public_url(config),
    ));
    let worker = Arc::new(Worker::new(
        "webhook",
        queue.clone(),
        webhooks.clone(),
        RetryPolicy {
            base_delay_secs: e.webhook_retry_base_secs,
            max_delay_secs: e.webhook_retry_max_secs,
            max_receives: e.webhook_max_receives,
        },
    ));
    Ok(Some(EventsRuntime {
        relay,
        webhooks,
        worker,
        queue,
    }))
}

/// What a worker function runs: the event machinery and the scanner, each where its
/// queue is configured (no HTTP state, no authentication).
pub struct Workers {
    pub events: Option<EventsRuntime>,
    pub scanning: Option<ScanRuntime>,
    /// The proxy-fill queue's consumer, where that queue exists.
    pub proxy_fill: Option<Arc<Worker>>,
}

/// The workers over the configured backend.
pub async fn build_workers(config: &ServerConfig) -> Result<Workers> {
    let stores = stores(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let events = events_runtime(config, &stores, clock.clone())?;
    let registry = registry_over(config, &stores, events.as_ref(), clock.clone())?;
    let scanning = scan_runtime(config, &stores, registry.clone(), clock);
    let proxy_fill = proxy_fill_worker(config, &stores, registry);
    Ok(Workers {
        events,
        scanning,
        proxy_fill,
    })
}

/// The proxy-fill queue's consumer over `registry`, where that queue exists.
pub fn proxy_fill_worker(
    config: &ServerConfig,
    stores: &Stores,
    registry: Arc<Registry>,
) -> Option<Arc<Worker>> {
    let queue = stores.proxy_fill_queue.clone()?;
    Some(Arc::new(Worker::new(
        "proxy-fill",
        queue,
        Arc::new(ProxyFiller::new(registry)),
        RetryPolicy {
            base_delay_secs: config.events.proxy_fill_retry_base_secs,
            max_delay_secs: 3600,
            max_receives: config.events.proxy_fill_max_receives,
        },
    )))
}

/// The proxy-fill worker alone, for the proxy-fill function; its queue must be set.
pub async fn build_proxy_fill(config: &ServerConfig) -> Result<Arc<Worker>> {
    build_workers(config).await?.proxy_fill.ok_or_else(|| {
        RegistryError::Storage(
            "REGISTRY_PROXY_FILL_QUEUE_URL is required by the proxy-fill worker".into(),
        )
    })
}

/// Proxy projects' machinery over `stores`: the guarded upstream client, the credential
/// key (from the token signing key), the blob mode and the proxy-fill queue.
pub fn proxy_cache(
    config: &ServerConfig,
    stores: &Stores,
    projects: Arc<ProjectCache>,
) -> Result<Arc<ProxyCache>> {
    let upstream = GuardedUpstreamClient::new(UpstreamConfig {
        guard: OutboundGuard::new(OutboundGuard::parse_allowed(&config.events.outbound_allow)?),
        ..UpstreamConfig::default()
    })?;
    // Keyed by the signing key; the previous signing keys still open what they sealed.
    let previous = config
        .token_previous_keys
        .as_deref()
        .map(registry_core::auth::token::split_pems)
        .unwrap_or_default();
    // The key's base64 body alone, so PEM layout (line breaks, a trailing newline) and
    // the one-line form name the same key.
    let body = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(str::split_whitespace)
            .collect()
    };
    let previous: Vec<String> = previous.iter().map(|p| body(p)).collect();
    let credentials = signing_key_pem(config)?.map(|pem| {
        Arc::new(
            CredentialBox::from_secret(body(&pem).as_bytes())
                .with_previous(previous.iter().map(|p| p.as_bytes())),
        )
    });
    let mode = if config.events.proxy_redirect_blobs {
        BlobFetchMode::RedirectAndFill
    } else {
        BlobFetchMode::StreamAndStore
    };
    let mut proxy = ProxyCache::new(
        projects,
        stores.proxy.clone(),
        Arc::new(upstream),
        credentials,
        mode,
    );
    if let Some(queue) = &stores.proxy_fill_queue {
        proxy = proxy.with_fill_queue(queue.clone());
    }
    Ok(Arc::new(proxy))
}

/// The registry over `stores`, publishing through `events`, with the pull gate and the
/// proxy projects.
fn registry_over(
    config: &ServerConfig,
    stores: &Stores,
    events: Option<&EventsRuntime>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Registry>> {
    // One cache of projects for the pull gate and the proxy: a pull reads its project once.
    let projects = Arc::new(ProjectCache::new(stores.identities.clone()));
    let mut registry = Registry::new(
        stores.blobs.clone(),
        stores.meta.clone(),
        clock,
        registry_config(config),
    )
    .with_proxy(proxy_cache(config, stores, projects.clone())?);
    if let Some(events) = events {
        registry = registry.with_events(events.relay.clone());
    }
    let allowlist = config
        .events
        .cve_allowlist
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Arc::new(registry.with_pull_gate(Arc::new(
        registry_core::scan::PullGate::new(projects, stores.scans.clone(), allowlist),
    ))))
}

/// The event machinery alone, for the webhook function; the webhook queue must be set.
pub async fn build_events(config: &ServerConfig) -> Result<EventsRuntime> {
    build_workers(config).await?.events.ok_or_else(|| {
        RegistryError::Storage(
            "REGISTRY_WEBHOOK_QUEUE_URL is required by the webhook worker".into(),
        )
    })
}

/// The scanner alone, for the scan function; the scan queue must be set.
pub async fn build_scanning(config: &ServerConfig) -> Result<ScanRuntime> {
    build_workers(config).await?.scanning.ok_or_else(|| {
        RegistryError::Storage("REGISTRY_SCAN_QUEUE_URL is required by the scan worker".into())
    })
}

/// The scanner and the scan queue's consumer, where a scan queue exists.
#[derive(Clone)]
pub struct ScanRuntime {
    pub scanner: Arc<Scanner>,
    pub worker: Arc<Worker>,
}

/// The scanning machinery over `stores` for `registry`, or `None` without a scan queue.
pub fn scan_runtime(
    config: &ServerConfig,
    stores: &Stores,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
) -> Option<ScanRuntime> {
    let queue = stores.scan_queue.clone()?;
    let scanner = Arc::new(Scanner::new(
        registry,
        stores.meta.clone(),
        stores.blobs.clone(),
        stores.scans.clone(),
        stores.vulns.clone(),
        queue.clone(),
        clock,
    ));
    let worker = Arc::new(Worker::new(
        "scan",
        queue,
        scanner.clone(),
        RetryPolicy {
            base_delay_secs: config.events.scan_retry_base_secs,
            max_delay_secs: 3600,
            max_receives: config.events.scan_max_receives,
        },
    ));
    Some(ScanRuntime { scanner, worker })
}

/// Everything a server process runs: the HTTP state and, when events are on, their
/// machinery.
pub struct Composed {
    pub state: AppState,
    pub events: Option<EventsRuntime>,
    pub scanning: Option<ScanRuntime>,
    /// The proxy-fill queue's consumer, where that queue exists.
    pub proxy_fill: Option<Arc<Worker>>,
}

/// The application state: the registry and, when on, the authentication.
pub async fn build_state(config: &ServerConfig, open_on_loopback: bool) -> Result<AppState> {
    Ok(build(config, open_on_loopback).await?.state)
}

/// The application state and the event machinery.
pub async fn build(config: &ServerConfig, open_on_loopback: bool) -> Result<Composed> {
    let stores = stores(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let events = events_runtime(config, &stores, clock.clone())?;
    let registry = registry_over(config, &stores, events.as_ref(), clock.clone())?;
    let scanning = scan_runtime(config, &stores, registry.clone(), clock.clone());
    let auth = if auth_enabled(config, open_on_loopback)? {
        let public = public_url(config);
        let issuer = TokenIssuer::new(signing_keys(config)?, TOKEN_SERVICE, TOKEN_SERVICE);
        let auth = Arc::new(AuthService::new(
            stores.identities.clone(),
            issuer,
            clock,
            AuthSettings {
                realm: format!("{}/token", public.trim_end_matches('/')),
                service: TOKEN_SERVICE.to_owned(),
                token_ttl: Duration::from_secs(config.token_ttl_secs),
                refresh_ttl: Duration::from_secs(7 * 24 * 3600),
                throttle: ThrottleConfig::default(),
            },
        ));
        if let Some(password) = &config.admin_password
            && auth.ensure_admin(&config.admin_user, password).await?
        {
            tracing::info!(user = %config.admin_user, "created the initial system admin");
        }
        Some(auth)
    } else {
        None
    };
    let proxy_fill = proxy_fill_worker(config, &stores, registry.clone());
    Ok(Composed {
        state: AppState {
            registry,
            auth,
            identities: Some(stores.identities),
            webhooks: events.as_ref().map(|e| e.webhooks.clone()),
            scanning: Some(registry_http::ScanningState {
                reports: stores.scans.clone(),
                vulns: stores.vulns.clone(),
                importer: scanning
                    .as_ref()
                    .map(|s| s.scanner.clone() as Arc<dyn registry_core::scan::DatabaseImporter>),
            }),
        },
        events,
        scanning,
        proxy_fill,
    })
}
