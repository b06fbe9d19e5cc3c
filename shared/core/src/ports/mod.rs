//! The ports: traits every storage backend implements (embedded on disk, AWS), one file each.

pub mod blob_store;
pub mod clock;
pub mod identity_store;
pub mod job_queue;
pub mod metadata_store;
pub mod outbound_http;
pub mod proxy_store;
pub mod scan_store;
pub mod upstream;
pub mod vulnerability_store;
pub mod webhook_store;

pub use blob_store::{BlobContent, BlobStore, ByteRange, ByteStream, UploadCursor};
pub use clock::{Clock, SystemClock};
pub use identity_store::IdentityStore;
pub use job_queue::{Job, JobQueue, ReceivedJob};
pub use metadata_store::{ManifestRecord, MetadataStore, Page, PageRequest};
pub use outbound_http::{OutboundHttp, OutboundRequest, OutboundResponse};
pub use proxy_store::ProxyCacheStore;
pub use scan_store::ScanStore;
pub use upstream::{
    Upstream, UpstreamBlob, UpstreamCounts, UpstreamManifest, UpstreamManifestHead,
    UpstreamRegistry,
};
pub use vulnerability_store::{StoredAdvisory, VulnDbInfo, VulnerabilityStore};
pub use webhook_store::{
    AttemptOutcome, Delivery, DeliveryAttempt, PayloadFormat, WebhookPolicy, WebhookStore,
};
