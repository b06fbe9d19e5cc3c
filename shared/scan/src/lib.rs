//! The scanning use-cases over the ports: scan an image when it is pushed (its
//! inventory from the layers, a CycloneDX SBOM pushed as an artifact referring to the
//! image, findings from the current vulnerability database, a report, a
//! `scan.completed` or `scan.failed` event), import an OSV database ([`import`]), and
//! rescan every scanned image after an import.
//!
//! Jobs on the scan queue (stable kinds, ids only, idempotent):
//! - `scan.image` `{repository, digest}`: from each `manifest.pushed` event (routed by
//!   the [`EventRelay`]) and from rescans. An index is not scanned itself: its child
//!   manifests are queued. Manifests that are not images (SBOMs, signatures, charts) are
//!   skipped. A rescan with the same packages pushes the same SBOM (same digest).
//! - `scan.rescan` `{after}`: queues `scan.image` for a page of scanned images, then the
//!   next page as another `scan.rescan` (so no job runs long).

pub mod import;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use registry_core::events::{Event, EventKind, EventRelay};
use registry_core::manifest::OCI_MANIFEST;
use registry_core::ports::{
    BlobStore, Clock, Job, JobQueue, ManifestRecord, MetadataStore, ScanStore, VulnerabilityStore,
};
use registry_core::registry::{StartUpload, UploadStart};
use registry_core::scan::{ReportFinding, ScanReport, ScanStatus, SeveritySummary};
use registry_core::worker::{Attempt, JobHandler, JobOutcome};
use registry_core::{
    Digest, DigestAlgorithm, Reference, Registry, RegistryError, RepoName, Result,
};
use registry_scanner::layers::{LayerInput, scan_layers_with_warnings};
use registry_scanner::matcher::{AdvisoryIndex, package_keys};
use registry_scanner::sbom::{CYCLONEDX_MEDIA_TYPE, ImageRef, cyclonedx};
use registry_scanner::{Inventory, ScanError};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The job kind that scans one image.
pub const SCAN_IMAGE_JOB: &str = "scan.image";
/// The job kind that queues the rescan of a page of scanned images.
pub const RESCAN_JOB: &str = "scan.rescan";
/// Scanned images one `scan.rescan` job queues.
pub const RESCAN_PAGE: usize = 100;
/// Package keys read from the vulnerability store per call.
const KEYS_PER_READ: usize = 100;
/// The author of the SBOM artifacts' events.
pub const SCANNER_ACTOR: &str = "registry-scanner";
/// The scanner's name and version, written into reports and SBOMs.
pub const SCANNER: &str = concat!("registry-scanner ", env!("CARGO_PKG_VERSION"));

const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// `scan.image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanImageJob {
    pub repository: RepoName,
    pub digest: Digest,
}

impl ScanImageJob {
    pub fn to_job(&self) -> Job {
        Job {
            kind: SCAN_IMAGE_JOB.into(),
            payload: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// `scan.rescan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RescanJob {
    /// The last image of the previous page.
    #[serde(default)]
    pub after: Option<(RepoName, Digest)>,
}

impl RescanJob {
    pub fn to_job(&self) -> Job {
        Job {
            kind: RESCAN_JOB.into(),
            payload: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// The scan job of a `manifest.pushed` event (the relay's route to the scan queue).
pub fn scan_job_of(event: &Event) -> Job {
    match &event.digest {
        Some(digest) => ScanImageJob {
            repository: event.repository.clone(),
            digest: digest.clone(),
        }
        .to_job(),
        None => Job {
            kind: "scan.none".into(),
            payload: json!({}),
        },
    }
}

/// The event kinds the scan queue wants.
pub const SCANNED_EVENTS: [EventKind; 1] = [EventKind::ManifestPushed];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: Digest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The scanning use-cases and the scan queue's handler.
pub struct Scanner {
    registry: Arc<Registry>,
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    scans: Arc<dyn ScanStore>,
    vulns: Arc<dyn VulnerabilityStore>,
    /// The scan queue (children of indexes, rescans).
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
}

/// A failure worth retrying (storage) or not (the image itself is unreadable).
enum Failure {
    Image(String),
    Transient(RegistryError),
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Storage(_)
            | RegistryError::Upstream(_)
            | RegistryError::TooManyRequests { .. } => Failure::Transient(e),
            other => Failure::Image(other.to_string()),
        }
    }
}

impl Scanner {
    pub fn new(
        registry: Arc<Registry>,
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        scans: Arc<dyn ScanStore>,
        vulns: Arc<dyn VulnerabilityStore>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Scanner {
            registry,
            meta,
            blobs,
            scans,
            vulns,
            queue,
            clock,
        }
    }

    fn relay(&self) -> Option<&Arc<EventRelay>> {
        self.registry.events()
    }

    /// Scans `digest` in `repo`: `Ok(None)` when there is nothing to scan (gone, an
    /// index — its children are queued —, or not an image). An unreadable image gives a
    /// `failed` report (and `scan.failed`); storage failures are errors (retried).
    pub async fn scan_image(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanReport>> {
        let Some(record) = self.meta.get_manifest(repo, digest).await? else {
            return Ok(None);
        };
        let doc: ManifestDoc = match serde_json::from_str(&record.content) {
            Ok(doc) => doc,
            Err(_) => return Ok(None),
        };
        if !doc.manifests.is_empty() {
            for child in &doc.manifests {
                let job = ScanImageJob {
                    repository: repo.clone(),
                    digest: child.digest.clone(),
                };
                self.queue.enqueue(&job.to_job()).await?;
            }
            return Ok(None);
        }
        if !registry_core::scan::is_image(&record.content) {
            return Ok(None);
        }
        let layers: Vec<(Digest, String)> = doc
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.media_type.clone().unwrap_or_default()))
            .collect();
        // A proxy project's layers come on demand: bring this image's into the cache.
        if self.registry.proxy_settings(repo).await?.is_some() {
            for (layer, _) in &layers {
                if let Err(e) = self.registry.ensure_blob(repo, layer).await {
                    match Failure::from(e) {
                        Failure::Transient(e) => return Err(e),
                        Failure::Image(why) => {
                            let report = self.failed_report(repo, digest, why);
                            self.save(&report).await?;
                            return Ok(Some(report));
                        }
                    }
                }
            }
        }
        let report = match self.findings(repo, &record, &layers).await {
            Ok(report) => report,
            Err(Failure::Transient(e)) => return Err(e),
            Err(Failure::Image(why)) => self.failed_report(repo, digest, why),
        };
        self.save(&report).await?;
        Ok(Some(report))
    }

    fn failed_report(&self, repo: &RepoName, digest: &Digest, why: String) -> ScanReport {
        ScanReport {
            repository: repo.clone(),
            digest: digest.clone(),
            status: ScanStatus::Failed,
            scanner: SCANNER.into(),
            db_version: None,
            scanned_ms: self.clock.now_millis(),
            distro: None,
            packages: 0,
            summary: SeveritySummary::default(),
            findings: Vec::new(),
            sbom: None,
            error: Some(why),
        }
    }

    /// The inventory of the layers, read as streams on a blocking thread.
    async fn inventory(&self, layers: &[(Digest, String)]) -> Result<Inventory, Failure> {
        let handle = tokio::runtime::Handle::current();
        let blobs = self.blobs.clone();
        let layers = layers.to_vec();
        let scan = tokio::task::spawn_blocking(move || {
            // Each layer is opened when the scanner reaches it (one stream at a time).
            let mut opened: Option<RegistryError> = None;
            let inputs = layers.iter().map_while(|(digest, media_type)| {
                match handle.block_on(blobs.read_stream(digest)) {
                    Ok(stream) => {
                        let reader = tokio_util::io::StreamReader::new(
                            stream.map_err(std::io::Error::other),
                        );
                        Some(LayerInput {
                            media_type: media_type.clone(),
                            reader: tokio_util::io::SyncIoBridge::new_with_handle(
                                reader,
                                handle.clone(),
                            ),
                        })
                    }
                    Err(e) => {
                        opened = Some(e);
                        None
                    }
                }
            });
            let scan = scan_layers_with_warnings(inputs);
            (scan, opened)
        })
        .await
        .map_err(|e| Failure::Transient(RegistryError::storage(e)))?;
        match scan {
            (_, Some(e)) => Err(Failure::from(e)),
            (Ok(scan), None) => {
                for w in &scan.warnings {
                    tracing::warn!(warning = %w, "scan warning");
                }
                Ok(scan.inventory)
            }
            (Err(ScanError::Layer { layer, message }), None) => {
                Err(Failure::Image(format!("layer {layer}: {message}")))
            }
            (Err(e), None) => Err(Failure::Image(e.to_string())),
        }
    }

    async fn findings(
        &self,
        repo: &RepoName,
        image: &ManifestRecord,
        layers: &[(Digest, String)],
    ) -> Result<ScanReport, Failure> {
        let digest = &image.digest;
        let inventory = self.inventory(layers).await?;
        let sbom = self.push_sbom(repo, image, &inventory).await?;
        let db = self.vulns.current_db().await?;
        let mut index = AdvisoryIndex::new();
        // An advisory is stored under each package key it can match: parse it once.
        let mut seen: HashSet<String> = HashSet::new();
        if let Some(db) = &db {
            let mut keys: Vec<String> = inventory
                .packages
                .iter()
                .flat_map(|p| package_keys(inventory.distro.as_ref(), p))
                .collect();
            keys.sort();
            keys.dedup();
            for chunk in keys.chunks(KEYS_PER_READ) {
                for (_, stored) in self.vulns.advisories(&db.version, chunk).await? {
                    for a in stored {
                        if !seen.insert(a.id.clone()) {
                            continue;
                        }
                        match registry_scanner::osv::parse_advisory(a.document.as_bytes()) {
                            Ok(advisory) => {
                                index.insert(advisory);
                            }
                            Err(e) => {
                                tracing::warn!(id = %a.id, error = %e, "stored advisory unreadable")
                            }
                        }
                    }
                }
            }
        }
        let mut summary = SeveritySummary::default();
        let findings: Vec<ReportFinding> = index
            .match_inventory(&inventory)
            .into_iter()
            .map(|f| {
                summary.add(f.severity);
                ReportFinding {
                    id: f.id,
                    aliases: f.aliases,
                    ecosystem: f.ecosystem.osv_name().to_owned(),
                    package: f.package,
                    installed_version: f.installed_version,
                    fixed_version: f.fixed_version,
                    severity: f.severity,
                    score: f.score,
                    layer: layers.get(f.layer).map(|(d, _)| d.clone()),
                    summary: f.summary,
                }
            })
            .collect();
        Ok(ScanReport {
            repository: repo.clone(),
            digest: digest.clone(),
            status: ScanStatus::Completed,
            scanner: SCANNER.into(),
            db_version: db.map(|d| d.version),
            scanned_ms: self.clock.now_millis(),
            distro: inventory
                .distro
                .as_ref()
                .map(|d| d.pretty_name.clone().unwrap_or_else(|| d.id.clone())),
            packages: inventory.packages.len() as u64,
            summary,
            findings,
            sbom: Some(sbom),
            error: None,
        })
    }

    /// Pushes the SBOM as an artifact whose subject is the image; returns its digest.
    async fn push_sbom(
        &self,
        repo: &RepoName,
        image: &ManifestRecord,
        inventory: &Inventory,
    ) -> Result<Digest, Failure> {
        let digest = &image.digest;
        let digest_text = digest.to_string();
        let document = cyclonedx(
            inventory,
            &ImageRef {
                repository: repo.as_str(),
                digest: &digest_text,
                timestamp: None,
                tool_version: env!("CARGO_PKG_VERSION"),
            },
        );
        let sbom = serde_json::to_vec(&document).map_err(|e| Failure::Image(e.to_string()))?;
        let sbom_len = sbom.len();
        let sbom_digest = self.push_blob(repo, sbom).await?;
        let empty_digest = self.push_blob(repo, b"{}".to_vec()).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": CYCLONEDX_MEDIA_TYPE,
            "config": {"mediaType": OCI_EMPTY, "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": CYCLONEDX_MEDIA_TYPE, "digest": sbom_digest, "size": sbom_len,
                        "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"}}],
            "subject": {"mediaType": image.media_type, "digest": digest, "size": image.size()},
            "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z",
                            "dev.registry.sbom.generator": SCANNER},
        });
        let body = serde_json::to_vec(&manifest).map_err(|e| Failure::Image(e.to_string()))?;
        let manifest_digest = Digest::of(DigestAlgorithm::Sha256, &body);
        // The same SBOM is stored already (a rescan that found the same packages): a
        // second put would record another `manifest.pushed` (a scan job, webhooks).
        if self
            .meta
            .get_manifest(repo, &manifest_digest)
            .await?
            .is_some()
        {
            return Ok(manifest_digest);
        }
        // Its events name the scanner as the author, so consumers can tell them apart.
        // (Into a proxy project too, which clients cannot write to.)
        registry_core::events::with_actor(
            Some(SCANNER_ACTOR.into()),
            registry_core::proxy::as_internal_writer(self.registry.put_manifest(
                repo,
                &Reference::Digest(manifest_digest.clone()),
                &[],
                Some(OCI_MANIFEST),
                body,
            )),
        )
        .await?;
        Ok(manifest_digest)
    }

    async fn push_blob(&self, repo: &RepoName, bytes: Vec<u8>) -> Result<Digest, Failure> {
        let digest = Digest::of(DigestAlgorithm::Sha256, &bytes);
        // The link itself: a proxy project's stat would ask its upstream.
        if self.meta.blob_link(repo, &digest).await?.is_some() {
            return Ok(digest);
        }
        let body = Box::pin(futures_util::stream::once(async move {
            Ok::<_, RegistryError>(bytes::Bytes::from(bytes))
        }));
        let upload = registry_core::events::with_actor(
            Some(SCANNER_ACTOR.into()),
            registry_core::proxy::as_internal_writer(self.registry.start_upload(
                repo,
                StartUpload {
                    digest: Some(digest.clone()),
                    body: Some(body),
                    ..StartUpload::default()
                },
            )),
        );
        match upload.await? {
            UploadStart::Created(d) => Ok(d),
            UploadStart::Session(_) => Err(Failure::Transient(RegistryError::Storage(
                "a monolithic upload left a session".into(),
            ))),
        }
    }

    /// Writes `report` with its `scan.completed` or `scan.failed` event in the outbox, then
    /// publishes the event.
    async fn save(&self, report: &ScanReport) -> Result<()> {
        let events: Vec<Event> = self
            .relay()
            .map(|_| self.scan_event(report))
            .into_iter()
            .collect();
        self.scans.put_report(report, &events).await?;
        if let Some(relay) = self.relay() {
            relay.publish_committed(&events).await;
        }
        Ok(())
    }

    /// `scan.completed` or `scan.failed`, with the summary.
    fn scan_event(&self, report: &ScanReport) -> Event {
        let kind = match report.status {
            ScanStatus::Completed => EventKind::ScanCompleted,
            ScanStatus::Failed => EventKind::ScanFailed,
        };
        Event::new(kind, &report.repository, self.clock.now_millis())
            .with_digest(&report.digest)
            .with_detail(json!({
                "summary": report.summary,
                "dbVersion": report.db_version,
                "sbom": report.sbom,
                "packages": report.packages,
                "error": report.error,
            }))
    }

    /// Queues the rescan of every scanned image (after a database import).
    pub async fn request_rescan_all(&self) -> Result<()> {
        self.queue.enqueue(&RescanJob::default().to_job()).await
    }

    async fn rescan_page(&self, job: &RescanJob) -> Result<()> {
        let page = self
            .scans
            .scanned_images(job.after.as_ref(), RESCAN_PAGE)
            .await?;
        for (repository, digest) in &page {
            let job = ScanImageJob {
                repository: repository.clone(),
                digest: digest.clone(),
            };
            self.queue.enqueue(&job.to_job()).await?;
        }
        if page.len() == RESCAN_PAGE {
            let next = RescanJob {
                after: page.last().cloned(),
            };
            self.queue.enqueue(&next.to_job()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl JobHandler for Scanner {
    async fn handle(&self, job: &Job, attempt: Attempt) -> JobOutcome {
        let outcome = match job.kind.as_str() {
            SCAN_IMAGE_JOB => match serde_json::from_value::<ScanImageJob>(job.payload.clone()) {
                Ok(j) => match self.scan_image(&j.repository, &j.digest).await {
                    Ok(_) => Ok(()),
                    Err(e) if attempt.last => {
                        // Out of tries: say so in a report and an event.
                        let report = self.failed_report(&j.repository, &j.digest, e.to_string());
                        let _ = self.save(&report).await;
                        Err(e)
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(RegistryError::Storage(format!("bad scan job: {e}"))),
            },
            RESCAN_JOB => match serde_json::from_value::<RescanJob>(job.payload.clone()) {
                Ok(j) => self.rescan_page(&j).await,
                Err(e) => Err(RegistryError::Storage(format!("bad rescan job: {e}"))),
            },
            other => {
                tracing::debug!(kind = other, "not a scan job: dropped");
                Ok(())
            }
        };
        match outcome {
            Ok(()) => JobOutcome::Done,
            Err(e) => JobOutcome::Retry(e.to_string()),
        }
    }
}
