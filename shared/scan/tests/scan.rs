//! The scanning use-cases on the embedded adapters: an image pushed through the
//! registry is scanned by its `scan.image` job (routed from `manifest.pushed`), with an
//! SBOM artifact referring to it, findings from an imported OSV database, a report and a
//! `scan.completed` event; an import of a new database rescans and changes the report;
//! indexes queue their children; artifacts are skipped; an unreadable layer gives a
//! failed report; a malformed advisory fails the import with nothing stored.

use std::sync::Arc;

use registry_core::events::{EVENT_PUBLISHED_JOB, EventRelay, EventsConfig};
use registry_core::ports::{Clock, JobQueue, ReceivedJob, ScanStore, VulnerabilityStore};
use registry_core::registry::StartUpload;
use registry_core::scan::{ScanStatus, Severity};
use registry_core::worker::{Attempt, JobHandler, JobOutcome};
use registry_core::{Digest, DigestAlgorithm, Reference, Registry, RegistryConfig, RepoName};
use registry_embedded::{EmbeddedJobQueue, EmbeddedMetadataStore, FileBlobStore, open_database};
use registry_scan::import::group;
use registry_scan::{SCAN_IMAGE_JOB, Scanner, scan_job_of};
use registry_scanner::osv::parse_advisory;
use registry_testkit::ManualClock;
use registry_testkit::support::tar_layer;
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

struct Env {
    registry: Arc<Registry>,
    scanner: Scanner,
    scan_queue: Arc<dyn JobQueue>,
    webhook_queue: Arc<dyn JobQueue>,
    scans: Arc<dyn ScanStore>,
    vulns: Arc<dyn VulnerabilityStore>,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(&dir.path().join("meta.redb")).unwrap();
    let meta = Arc::new(EmbeddedMetadataStore::new(db.clone()).unwrap());
    let blobs = Arc::new(FileBlobStore::new(dir.path()).unwrap());
    let clock: Arc<dyn Clock> = ManualClock::at(1_764_331_200_000).shared();
    let webhook_queue: Arc<dyn JobQueue> =
        Arc::new(EmbeddedJobQueue::named(db.clone(), "webhook", clock.clone(), 3).unwrap());
    let scan_queue: Arc<dyn JobQueue> =
        Arc::new(EmbeddedJobQueue::named(db, "scan", clock.clone(), 3).unwrap());
    let relay = EventRelay::new(
        meta.clone(),
        webhook_queue.clone(),
        clock.clone(),
        EventsConfig::default(),
    )
    .with_route(
        scan_queue.clone(),
        &registry_scan::SCANNED_EVENTS,
        scan_job_of,
    );
    let registry = Arc::new(
        Registry::new(
            blobs.clone(),
            meta.clone(),
            clock.clone(),
            RegistryConfig::default(),
        )
        .with_events(Arc::new(relay)),
    );
    let scanner = Scanner::new(
        registry.clone(),
        meta.clone(),
        blobs,
        meta.clone(),
        meta.clone(),
        scan_queue.clone(),
        clock,
    );
    Env {
        registry,
        scanner,
        scan_queue,
        webhook_queue,
        scans: meta.clone(),
        vulns: meta,
        _dir: dir,
    }
}

const OS_RELEASE: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

fn dpkg_status(perl_version: &str) -> Vec<u8> {
    format!(
        "Package: perl-base\nStatus: install ok installed\nVersion: {perl_version}\nSource: perl\n\n\
         Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\n\n"
    )
    .into_bytes()
}

/// A Debian advisory for source package `perl`, fixed in `fixed` on Debian 12.
fn perl_advisory(id: &str, fixed: &str, vector: &str) -> String {
    json!({
        "id": id, "modified": "2024-01-01T00:00:00Z", "aliases": [id.trim_start_matches("DEBIAN-")],
        "summary": "perl flaw", "details": "long text",
        "severity": [{"type": "CVSS_V3", "score": vector}],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "perl"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
    })
    .to_string()
}

impl Env {
    async fn push_blob(&self, repo: &RepoName, bytes: Vec<u8>) -> Digest {
        let digest = Digest::of(DigestAlgorithm::Sha256, &bytes);
        let body = Box::pin(futures_util::stream::once(async move {
            Ok::<_, registry_core::RegistryError>(bytes::Bytes::from(bytes))
        }));
        self.registry
            .start_upload(
                repo,
                StartUpload {
                    digest: Some(digest.clone()),
                    body: Some(body),
                    ..StartUpload::default()
                },
            )
            .await
            .unwrap();
        digest
    }

    async fn push_manifest(
        &self,
        repo: &RepoName,
        tag: &str,
        media_type: &str,
        doc: serde_json::Value,
    ) -> Digest {
        let body = serde_json::to_vec(&doc).unwrap();
        self.registry
            .put_manifest(
                repo,
                &Reference::Tag(tag.parse().unwrap()),
                &[],
                Some(media_type),
                body,
            )
            .await
            .unwrap()
            .digest
    }

    async fn push_image(&self, repo: &RepoName, tag: &str, layers: Vec<(Vec<u8>, &str)>) -> Digest {
        let config = self
            .push_blob(
                repo,
                b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec(),
            )
            .await;
        let mut descriptors = Vec::new();
        for (bytes, media_type) in layers {
            let size = bytes.len();
            let digest = self.push_blob(repo, bytes).await;
            descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
        }
        self.push_manifest(
            repo,
            tag,
            OCI_MANIFEST,
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
                   "layers": descriptors}),
        )
        .await
    }

    async fn import(&self, advisories: &[String]) {
        let parsed = advisories.iter().map(|a| parse_advisory(a.as_bytes()));
        let groups = group(parsed, |_| {}).unwrap();
        self.scanner
            .import_database("test.zip", groups, |_, _| {})
            .await
            .unwrap();
    }

    /// Runs the scan queue's jobs until it is empty; returns the kinds handled.
    async fn drain_scans(&self) -> Vec<String> {
        let mut kinds = Vec::new();
        loop {
            let jobs: Vec<ReceivedJob> = self.scan_queue.receive(10, 60).await.unwrap();
            if jobs.is_empty() {
                return kinds;
            }
            for j in jobs {
                let attempt = Attempt {
                    receive_count: j.receive_count,
                    last: false,
                };
                assert_eq!(
                    self.scanner.handle(&j.job, attempt).await,
                    JobOutcome::Done,
                    "{:?}",
                    j.job
                );
                kinds.push(j.job.kind.clone());
                self.scan_queue.ack(&j.receipt).await.unwrap();
            }
        }
    }

    /// The types of the events published to the webhook queue so far.
    async fn events(&self) -> Vec<(String, serde_json::Value)> {
        let jobs: Vec<ReceivedJob> = self.webhook_queue.receive(100, 60).await.unwrap();
        jobs.into_iter()
            .filter(|j| j.job.kind == EVENT_PUBLISHED_JOB)
            .map(|j| {
                (
                    j.job.payload["type"].as_str().unwrap().to_owned(),
                    j.job.payload,
                )
            })
            .collect()
    }
}

fn debian_image() -> Vec<(Vec<u8>, &'static str)> {
    let base = tar_layer(&[
        ("usr/lib/os-release", OS_RELEASE),
        ("var/lib/dpkg/status", &dpkg_status("5.36.0-7")),
    ]);
    let gz = gzip(&base);
    // The upgrade layer rewrites the status: perl-base is now 5.36.0-7+deb12u1.
    let upgrade = tar_layer(&[("var/lib/dpkg/status", &dpkg_status("5.36.0-7+deb12u1"))]);
    vec![(gz, GZIP_LAYER), (upgrade, TAR_LAYER)]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_image_is_scanned_with_an_sbom_report_and_event() {
    let env = env();
    env.import(&[
        perl_advisory(
            "DEBIAN-CVE-2023-47038",
            "5.36.0-7+deb12u2",
            "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
        ),
        perl_advisory(
            "DEBIAN-CVE-2020-0001",
            "5.30.0-1",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ),
    ])
    .await;
    let repo: RepoName = "team/debian".parse().unwrap();
    let digest = env.push_image(&repo, "12", debian_image()).await;
    let handled = env.drain_scans().await;
    assert!(handled.contains(&SCAN_IMAGE_JOB.to_owned()), "{handled:?}");

    let report = env
        .scans
        .get_report(&repo, &digest)
        .await
        .unwrap()
        .expect("a report");
    assert_eq!(report.status, ScanStatus::Completed);
    assert_eq!(
        report.distro.as_deref(),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(report.packages, 2);
    assert_eq!(
        report.db_version,
        env.vulns.current_db().await.unwrap().map(|d| d.version)
    );
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(f.id, "DEBIAN-CVE-2023-47038");
    assert_eq!(f.package, "perl-base");
    assert_eq!(f.installed_version, "5.36.0-7+deb12u1");
    assert_eq!(f.fixed_version.as_deref(), Some("5.36.0-7+deb12u2"));
    assert_eq!(f.severity, Severity::High);
    assert_eq!(report.summary.high, 1);
    // The package's file was last written by the upgrade layer (index 1).
    let manifest = env
        .registry
        .get_manifest(&repo, &Reference::Digest(digest.clone()), &[])
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&manifest.content).unwrap();
    assert_eq!(
        f.layer.as_ref().unwrap().to_string(),
        doc["layers"][1]["digest"].as_str().unwrap()
    );

    // The SBOM is an artifact referring to the image.
    let sbom = report.sbom.clone().expect("an SBOM");
    let referrers = env
        .registry
        .list_referrers(&repo, &digest, None)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, sbom);
    assert_eq!(
        referrers[0].artifact_type.as_deref(),
        Some("application/vnd.cyclonedx+json")
    );

    let events = env.events().await;
    let completed: Vec<_> = events
        .iter()
        .filter(|(k, _)| k == "scan.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{events:?}");
    assert_eq!(completed[0].1["detail"]["summary"]["high"], 1);
    assert_eq!(completed[0].1["digest"], digest.to_string());

    // A rescan with the same packages pushes the same SBOM: still one referrer.
    env.scanner.scan_image(&repo, &digest).await.unwrap();
    assert_eq!(
        env.registry
            .list_referrers(&repo, &digest, None)
            .await
            .unwrap()
            .len(),
        1
    );
    // ... and pushes nothing: no second manifest.pushed, so no webhook and no scan job.
    let after = env.events().await;
    assert!(
        after.iter().all(|(kind, _)| kind != "manifest.pushed"),
        "{after:?}"
    );
    assert_eq!(env.drain_scans().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_a_new_database_rescans_and_changes_the_report() {
    let env = env();
    let repo: RepoName = "team/rescan".parse().unwrap();
    let digest = env.push_image(&repo, "12", debian_image()).await;
    env.drain_scans().await;
    let before = env.scans.get_report(&repo, &digest).await.unwrap().unwrap();
    assert_eq!(before.db_version, None, "no database yet");
    assert!(before.findings.is_empty());

    env.import(&[perl_advisory(
        "DEBIAN-CVE-2024-56406",
        "5.36.0-7+deb12u2",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    )])
    .await;
    let handled = env.drain_scans().await;
    assert!(handled.contains(&"scan.rescan".to_owned()), "{handled:?}");
    let after = env.scans.get_report(&repo, &digest).await.unwrap().unwrap();
    assert_eq!(after.findings.len(), 1);
    assert_eq!(after.findings[0].severity, Severity::Critical);
    let first_version = after.db_version.clone().unwrap();

    // A newer database where the advisory is fixed below the installed version.
    env.import(&[perl_advisory(
        "DEBIAN-CVE-2024-56406",
        "5.36.0-7",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    )])
    .await;
    env.drain_scans().await;
    let again = env.scans.get_report(&repo, &digest).await.unwrap().unwrap();
    assert!(again.findings.is_empty(), "{:?}", again.findings);
    assert_ne!(again.db_version.unwrap(), first_version);
    // The previous version's advisories are gone.
    let old = env
        .vulns
        .advisories(&first_version, &["Debian|12|perl".into()])
        .await
        .unwrap();
    assert!(old.is_empty(), "{old:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_queue_children_artifacts_are_skipped_bad_layers_fail() {
    let env = env();
    let repo: RepoName = "team/multi".parse().unwrap();
    let child = env.push_image(&repo, "amd64", debian_image()).await;
    env.drain_scans().await;
    let index = env
        .push_manifest(
            &repo,
            "multi",
            OCI_INDEX,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 1,
                                  "platform": {"architecture": "amd64", "os": "linux"}}]}),
        )
        .await;
    // The push itself queued the index's scan job: take it off, then scan by hand.
    let pushed = env.scan_queue.receive(10, 60).await.unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].job.payload["digest"], index.to_string());
    env.scan_queue.ack(&pushed[0].receipt).await.unwrap();
    assert_eq!(env.scanner.scan_image(&repo, &index).await.unwrap(), None);
    let queued = env.scan_queue.receive(10, 60).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].job.payload["digest"], child.to_string());
    env.scan_queue.ack(&queued[0].receipt).await.unwrap();

    // A helm-chart-like artifact is not scanned.
    let config = env.push_blob(&repo, b"{}".to_vec()).await;
    let chart = env
        .push_manifest(
            &repo,
            "chart",
            OCI_MANIFEST,
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": config, "size": 2},
                   "layers": []}),
        )
        .await;
    assert_eq!(env.scanner.scan_image(&repo, &chart).await.unwrap(), None);
    assert_eq!(env.scans.get_report(&repo, &chart).await.unwrap(), None);

    // A layer that is not a tar archive: a failed report and a scan.failed event.
    let bad = env
        .push_image(
            &repo,
            "bad",
            vec![(b"not a tar archive at all".repeat(40), GZIP_LAYER)],
        )
        .await;
    let report = env.scanner.scan_image(&repo, &bad).await.unwrap().unwrap();
    assert_eq!(report.status, ScanStatus::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("layer 0"),
        "{:?}",
        report.error
    );
    let events = env.events().await;
    assert!(
        events
            .iter()
            .any(|(k, e)| k == "scan.failed" && e["digest"] == bad.to_string()),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_advisory_fails_the_import_and_stores_nothing() {
    let env = env();
    let parsed = vec![
        parse_advisory(
            perl_advisory(
                "DEBIAN-CVE-1",
                "1",
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            )
            .as_bytes(),
        ),
        parse_advisory(b"{\"not\": \"osv\""),
    ];
    let err = group(parsed, |_| {}).unwrap_err();
    assert!(
        matches!(err, registry_core::RegistryError::Unsupported(_)),
        "{err:?}"
    );
    assert_eq!(env.vulns.current_db().await.unwrap(), None);
}
