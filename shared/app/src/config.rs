//! Configuration of every registry process (local binary, Lambda function, upload
//! endpoint), from flags or environment variables — read here and nowhere else.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};

/// Where the registry keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Files and an embedded database under `--data-dir` (the default).
    Embedded,
    /// S3, DynamoDB and SQS (or LocalStack: `source localstack/env`).
    Aws,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `registry`: an OCI registry; one process with embedded storage by default.
#[derive(Debug, Clone, Parser)]
#[command(name = "registry", version, about)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,

    /// Storage backend.
    #[arg(long, env = "REGISTRY_BACKEND", value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,

    /// Folder for blobs and the metadata database (embedded backend).
    #[arg(long, env = "REGISTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `registry_http=debug`).
    #[arg(long, env = "REGISTRY_LOG", default_value = "info")]
    pub log: String,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "REGISTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds an idle upload session lives before it is discarded.
    #[arg(long, env = "REGISTRY_UPLOAD_TTL_SECS", default_value_t = 24 * 3600)]
    pub upload_ttl_secs: u64,

    /// Seconds between sweeps of expired upload sessions.
    #[arg(long, env = "REGISTRY_SWEEP_INTERVAL_SECS", default_value_t = 600)]
    pub sweep_interval_secs: u64,

    /// Largest request body accepted, in bytes (the API function sets the Lambda limit).
    #[arg(long, env = "REGISTRY_MAX_REQUEST_BODY")]
    pub max_request_body: Option<u64>,

    /// Public base URL of the upload endpoint; upload `Location`s point there.
    #[arg(long, env = "REGISTRY_UPLOAD_ENDPOINT_URL")]
    pub upload_endpoint_url: Option<String>,

    /// Secret that signs upload-session tokens (shared by the API function and the
    /// upload endpoint). Never logged.
    #[arg(long, env = "REGISTRY_UPLOAD_TOKEN_SECRET", hide_env_values = true)]
    pub upload_token_secret: Option<String>,

    /// Serve as the upload endpoint: refuse upload requests without a valid token.
    #[arg(long, env = "REGISTRY_REQUIRE_UPLOAD_TOKEN", default_value_t = false)]
    pub require_upload_token: bool,

    /// Password of the initial system admin, created on first start. Turns
    /// authentication on. Never logged.
    #[arg(long, env = "REGISTRY_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Name of the initial system admin.
    #[arg(long, env = "REGISTRY_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,

    /// Run without authentication even on a non-loopback address.
    #[arg(long, env = "REGISTRY_NO_AUTH", default_value_t = false)]
    pub no_auth: bool,

    /// The registry's public base URL (the token realm is `<url>/token`); defaults to
    /// `http://<addr>`.
    #[arg(long, env = "REGISTRY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The token signing key (PKCS#8 PEM, or the base64 of its DER on one line); embedded default: a key file generated under
    /// the data dir. Never logged.
    #[arg(long, env = "REGISTRY_TOKEN_SIGNING_KEY", hide_env_values = true)]
    pub token_signing_key: Option<String>,

    /// Earlier signing keys (concatenated PEM blocks, public or private) that still
    /// verify tokens after a rotation, until they are removed.
    #[arg(long, env = "REGISTRY_TOKEN_PREVIOUS_KEYS", hide_env_values = true)]
    pub token_previous_keys: Option<String>,

    /// Lifetime of bearer tokens, in seconds.
    #[arg(long, env = "REGISTRY_TOKEN_TTL_SECS", default_value_t = 300)]
    pub token_ttl_secs: u64,

    #[command(flatten)]
    pub events: EventsSettings,

    #[command(flatten)]
    pub aws: AwsConfig,
}

/// Events, webhooks and the queue workers.
#[derive(Debug, Clone, Args)]
pub struct EventsSettings {
    /// Record an `image.pulled` event on each manifest GET (off: pulls are frequent).
    #[arg(long, env = "REGISTRY_PULL_EVENTS", default_value_t = false)]
    pub pull_events: bool,

    /// Internal networks (comma-separated CIDRs, e.g. `10.0.0.0/8,127.0.0.1`) that
    /// webhook targets and proxy upstreams may resolve to; loopback, link-local and
    /// private addresses are refused otherwise.
    #[arg(long, env = "REGISTRY_OUTBOUND_ALLOW", default_value = "")]
    pub outbound_allow: String,

    /// Run the queue workers (webhook delivery) and the outbox sweep in this process
    /// (the local binary; the Lambda deployment runs them as functions).
    #[arg(long, env = "REGISTRY_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub workers: bool,

    /// Seconds before the first retry of a failed webhook delivery (then doubling).
    #[arg(long, env = "REGISTRY_WEBHOOK_RETRY_BASE_SECS", default_value_t = 10)]
    pub webhook_retry_base_secs: u64,

    /// Longest wait between two tries of a webhook delivery, in seconds.
    #[arg(long, env = "REGISTRY_WEBHOOK_RETRY_MAX_SECS", default_value_t = 3600)]
    pub webhook_retry_max_secs: u64,

    /// Tries of a webhook job before it goes to the dead-letter queue; on AWS it must
    /// equal the webhook queue's redrive `maxReceiveCount`.
    #[arg(long, env = "REGISTRY_WEBHOOK_MAX_RECEIVES", default_value_t = 5)]
    pub webhook_max_receives: u32,

    /// Seconds a webhook POST may take, connection included.
    #[arg(long, env = "REGISTRY_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,

    /// Seconds between two sweeps of the event outbox.
    #[arg(long, env = "REGISTRY_OUTBOX_SWEEP_SECS", default_value_t = 5)]
    pub outbox_sweep_secs: u64,

    /// Age in seconds after which the sweep publishes an outbox event the request that
    /// recorded it did not (its process died after the commit).
    #[arg(long, env = "REGISTRY_OUTBOX_GRACE_SECS", default_value_t = 10)]
    pub outbox_grace_secs: u64,

    /// Scan every pushed image (the scan queue's worker also rescans after imports).
    #[arg(long, env = "REGISTRY_SCAN_ON_PUSH", default_value_t = true, action = clap::ArgAction::Set)]
    pub scan_on_push: bool,

    /// Advisory ids or aliases (comma-separated, e.g. `CVE-2023-47038`) that never block
    /// a pull, in any project.
    #[arg(long, env = "REGISTRY_CVE_ALLOWLIST", default_value = "")]
    pub cve_allowlist: String,

    /// Tries of a scan job before it goes to the dead-letter queue; on AWS it must equal
    /// the scan queue's redrive `maxReceiveCount`.
    #[arg(long, env = "REGISTRY_SCAN_MAX_RECEIVES", default_value_t = 5)]
    pub scan_max_receives: u32,

    /// Seconds before the first retry of a failed scan (then doubling).
    #[arg(long, env = "REGISTRY_SCAN_RETRY_BASE_SECS", default_value_t = 30)]
    pub scan_retry_base_secs: u64,

    /// Tries of a proxy-fill job before it goes to the dead-letter queue; on AWS it must
    /// equal the proxy-fill queue's redrive `maxReceiveCount`.
    #[arg(long, env = "REGISTRY_PROXY_FILL_MAX_RECEIVES", default_value_t = 5)]
    pub proxy_fill_max_receives: u32,

    /// Seconds before the first retry of a failed proxy fill (then doubling).
    #[arg(
        long,
        env = "REGISTRY_PROXY_FILL_RETRY_BASE_SECS",
        default_value_t = 30
    )]
    pub proxy_fill_retry_base_secs: u64,

    /// Answer a proxy project's uncached blob with the upstream's own download URL when
    /// it has one, and queue a proxy-fill job to cache it (the Lambda API function, which
    /// cannot stream large bodies); otherwise blobs are streamed while they are stored.
    #[arg(long, env = "REGISTRY_PROXY_REDIRECT_BLOBS", default_value_t = false)]
    pub proxy_redirect_blobs: bool,

    /// Fault injection for crash tests: abort right after committing a change that
    /// records an event of this type (e.g. `manifest.pushed`), before publishing it.
    #[arg(long, env = "REGISTRY_FAULT_ABORT_BEFORE_PUBLISH", hide = true)]
    pub fault_abort_before_publish: Option<String>,
}

/// Settings of the AWS backend.
#[derive(Debug, Clone, Args)]
pub struct AwsConfig {
    /// Endpoint override (LocalStack); unset for AWS itself.
    #[arg(long = "aws-endpoint-url", env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// Region override; unset reads the usual AWS sources.
    #[arg(long = "aws-region", env = "AWS_REGION")]
    pub region: Option<String>,

    /// Bucket of blobs (and manifests too large for a DynamoDB item).
    #[arg(
        long = "s3-bucket",
        env = "REGISTRY_S3_BUCKET",
        default_value = "registry-blobs-000000000000-us-east-1"
    )]
    pub bucket: String,

    /// Key prefix inside the bucket.
    #[arg(long = "s3-prefix", env = "REGISTRY_S3_PREFIX", default_value = "")]
    pub prefix: String,

    /// DynamoDB table of metadata.
    #[arg(
        long = "dynamodb-table",
        env = "REGISTRY_DYNAMODB_TABLE",
        default_value = "registry"
    )]
    pub table: String,

    /// Lifetime of presigned blob URLs, in seconds.
    #[arg(long, env = "REGISTRY_PRESIGN_EXPIRY_SECS", default_value_t = 900)]
    pub presign_expiry_secs: u64,

    /// Base URL that replaces the S3 endpoint in blob redirects (CloudFront, custom domain).
    #[arg(long, env = "REGISTRY_BLOB_PUBLIC_BASE_URL")]
    pub blob_public_base_url: Option<String>,

    /// The webhook queue (events and deliveries); unset: no events are recorded.
    #[arg(long, env = "REGISTRY_WEBHOOK_QUEUE_URL")]
    pub webhook_queue_url: Option<String>,

    /// The webhook queue's dead-letter queue.
    #[arg(long, env = "REGISTRY_WEBHOOK_DLQ_URL")]
    pub webhook_dlq_url: Option<String>,

    /// The scan queue (scan on push, rescans); unset: no scanning.
    #[arg(long, env = "REGISTRY_SCAN_QUEUE_URL")]
    pub scan_queue_url: Option<String>,

    /// The scan queue's dead-letter queue.
    #[arg(long, env = "REGISTRY_SCAN_DLQ_URL")]
    pub scan_dlq_url: Option<String>,

    /// The proxy-fill queue (copies of proxy projects' blobs and images into the cache,
    /// prefetch); unset: no prefetch, and uncached proxy blobs are stored before serving.
    #[arg(long, env = "REGISTRY_PROXY_FILL_QUEUE_URL")]
    pub proxy_fill_queue_url: Option<String>,

    /// The proxy-fill queue's dead-letter queue.
    #[arg(long, env = "REGISTRY_PROXY_FILL_DLQ_URL")]
    pub proxy_fill_dlq_url: Option<String>,
}

impl ServerConfig {
    /// The configuration from the environment alone (Lambda functions have no flags).
    pub fn from_env() -> Self {
        ServerConfig::parse_from(["registry"])
    }

    /// The configuration from `args` (the program name first) and the environment.
    pub fn parse_from_args<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        ServerConfig::parse_from(args)
    }
}
