//! Runs the shared port contracts of `registry-testkit` against the embedded adapters,
//! each test on its own temporary directory and redb file.

use std::sync::Arc;

use registry_core::ports::{
    BlobStore, IdentityStore, JobQueue, MetadataStore, ProxyCacheStore, ScanStore,
    VulnerabilityStore, WebhookStore,
};
use registry_embedded::{EmbeddedJobQueue, EmbeddedMetadataStore, FileBlobStore, open_database};
use registry_testkit::job_queue_contract::MAX_RECEIVES;
use registry_testkit::{ManualClock, TestTime};
use tempfile::TempDir;

async fn file_blob_store() -> (Arc<dyn BlobStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileBlobStore::new(dir.path().join("blobs")).expect("file blob store");
    (Arc::new(store), dir)
}

async fn embedded_metadata_store() -> (Arc<dyn MetadataStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let store = EmbeddedMetadataStore::new(db).expect("metadata store");
    (Arc::new(store), dir)
}

/// The identity port of a fresh metadata store (same redb table as the metadata).
async fn embedded_identity_store() -> (Arc<dyn IdentityStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let store = EmbeddedMetadataStore::new(db).expect("metadata store");
    (Arc::new(store), dir)
}

/// The webhook port of a fresh metadata store (same redb table as the metadata).
async fn embedded_webhook_store() -> (Arc<dyn WebhookStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let store = EmbeddedMetadataStore::new(db).expect("metadata store");
    (Arc::new(store), dir)
}

/// A queue reading a fresh [`ManualClock`], which is also the checks' [`TestTime`].
async fn embedded_job_queue() -> (Arc<dyn JobQueue>, TempDir, Arc<dyn TestTime>) {
    let (queue, dir, clock) = embedded_job_queue_and_clock();
    (queue, dir, Arc::new(clock))
}

fn embedded_job_queue_and_clock() -> (Arc<dyn JobQueue>, TempDir, ManualClock) {
    let clock = ManualClock::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let queue = EmbeddedJobQueue::new(db, clock.shared(), MAX_RECEIVES).expect("job queue");
    (Arc::new(queue), dir, clock)
}

mod blob_store {
    registry_testkit::blob_store_contract_tests!(super::file_blob_store);
}

mod metadata_store {
    registry_testkit::metadata_store_contract_tests!(super::embedded_metadata_store);
}

mod identity_store {
    registry_testkit::identity_store_contract_tests!(super::embedded_identity_store);
}

/// A fresh metadata store as `P` (its scan and vulnerability ports share the table).
async fn embedded_store_as<P: ?Sized>(
    convert: fn(Arc<EmbeddedMetadataStore>) -> Arc<P>,
) -> (Arc<P>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let store = Arc::new(EmbeddedMetadataStore::new(db).expect("metadata store"));
    (convert(store), dir)
}

async fn embedded_scan_store() -> (Arc<dyn ScanStore>, TempDir) {
    embedded_store_as(|s| s as Arc<dyn ScanStore>).await
}

async fn embedded_vulnerability_store() -> (Arc<dyn VulnerabilityStore>, TempDir) {
    embedded_store_as(|s| s as Arc<dyn VulnerabilityStore>).await
}

mod scan_store {
    registry_testkit::scan_store_contract_tests!(super::embedded_scan_store);
}

mod vulnerability_store {
    registry_testkit::vulnerability_store_contract_tests!(super::embedded_vulnerability_store);
}

mod webhook_store {
    registry_testkit::webhook_store_contract_tests!(super::embedded_webhook_store);
}

async fn embedded_proxy_cache_store() -> (Arc<dyn ProxyCacheStore>, TempDir) {
    embedded_store_as(|s| s as Arc<dyn ProxyCacheStore>).await
}

mod proxy_cache_store {
    registry_testkit::proxy_cache_store_contract_tests!(super::embedded_proxy_cache_store);
}

/// Named queues in one database are independent.
#[tokio::test]
async fn named_queues_are_independent() {
    let clock = ManualClock::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let a = EmbeddedJobQueue::named(db.clone(), "webhook", clock.shared(), 3).unwrap();
    let b = EmbeddedJobQueue::named(db.clone(), "scan", clock.shared(), 3).unwrap();
    let job = registry_core::ports::Job {
        kind: "k".into(),
        payload: serde_json::json!({}),
    };
    a.enqueue(&job).await.unwrap();
    assert!(b.receive(10, 30).await.unwrap().is_empty());
    let got = a.receive(10, 30).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, job);
}

mod job_queue {
    registry_testkit::job_queue_contract_tests!(super::embedded_job_queue);

    /// Promises the port leaves to the adapter, which the embedded queue makes: a stale
    /// receipt does not delete a job received again since, and dead letters list oldest
    /// first.
    mod embedded_only {
        use std::time::Duration;

        use registry_core::ports::Job;
        use registry_testkit::job_queue_contract::{MAX_RECEIVES, VISIBILITY_SECS};
        use serde_json::json;

        fn job(n: u64) -> Job {
            Job {
                kind: "webhook".to_owned(),
                payload: json!({ "n": n }),
            }
        }

        const PAST_VISIBILITY: Duration = Duration::from_millis(VISIBILITY_SECS * 1000 + 1);

        #[tokio::test]
        async fn stale_receipt_does_not_ack() {
            let (queue, _dir, clock) = super::super::embedded_job_queue_and_clock();
            queue.enqueue(&job(1)).await.unwrap();
            let first = queue.receive(10, VISIBILITY_SECS).await.unwrap().remove(0);
            clock.advance(PAST_VISIBILITY);
            let second = queue.receive(10, VISIBILITY_SECS).await.unwrap().remove(0);
            queue.ack(&first.receipt).await.unwrap();
            clock.advance(PAST_VISIBILITY);
            let third = queue.receive(10, VISIBILITY_SECS).await.unwrap();
            assert_eq!(
                third.len(),
                1,
                "the stale ack must not have deleted the job"
            );
            assert_eq!(third[0].job, job(1));
            assert_eq!(third[0].receive_count, 3);
            queue.ack(&second.receipt).await.unwrap();
            clock.advance(PAST_VISIBILITY);
            let fourth = queue.receive(10, VISIBILITY_SECS).await.unwrap();
            assert_eq!(fourth.len(), 0, "dead-lettered after the third receive");
            assert_eq!(queue.dead_letters(10).await.unwrap(), vec![job(1)]);
        }

        #[tokio::test]
        async fn dead_letters_oldest_first() {
            let (queue, _dir, clock) = super::super::embedded_job_queue_and_clock();
            for n in 1..=3 {
                queue.enqueue(&job(n)).await.unwrap();
                for _ in 0..=MAX_RECEIVES {
                    queue.receive(10, VISIBILITY_SECS).await.unwrap();
                    clock.advance(PAST_VISIBILITY);
                }
            }
            assert_eq!(
                queue.dead_letters(10).await.unwrap(),
                vec![job(1), job(2), job(3)]
            );
            assert_eq!(queue.dead_letters(2).await.unwrap(), vec![job(1), job(2)]);
        }
    }
}

/// A poller waiting after an empty receive wakes when a job is enqueued, not after its
/// whole pause; an enqueue with no waiter leaves a permit, so the next wait returns at once.
#[tokio::test]
async fn waiting_pollers_wake_on_enqueue() {
    let (queue, _dir, _clock) = embedded_job_queue_and_clock();
    let job = registry_core::ports::Job {
        kind: "k".into(),
        payload: serde_json::json!({}),
    };
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            queue
                .wait_for_enqueue(std::time::Duration::from_secs(30))
                .await;
            started.elapsed()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    queue.enqueue(&job).await.unwrap();
    assert!(waiter.await.unwrap() < std::time::Duration::from_secs(10));
    queue.enqueue(&job).await.unwrap();
    let started = std::time::Instant::now();
    queue
        .wait_for_enqueue(std::time::Duration::from_secs(30))
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A report written with its scan event leaves the event in the outbox (one transaction).
#[tokio::test]
async fn scan_reports_record_their_events() {
    use registry_core::events::{Event, EventKind};
    use registry_core::scan::{ScanReport, ScanStatus, SeveritySummary};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let store = EmbeddedMetadataStore::new(db).expect("metadata store");
    let repo: registry_core::RepoName = "scan/outbox".parse().unwrap();
    let digest = registry_core::Digest::of(registry_core::DigestAlgorithm::Sha256, b"image");
    let report = ScanReport {
        repository: repo.clone(),
        digest: digest.clone(),
        status: ScanStatus::Completed,
        scanner: "s".into(),
        db_version: None,
        scanned_ms: 1,
        distro: None,
        packages: 0,
        summary: SeveritySummary::default(),
        findings: vec![],
        sbom: None,
        error: None,
    };
    let event = Event::new(EventKind::ScanCompleted, &repo, 1).with_digest(&digest);
    ScanStore::put_report(&store, &report, std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!(store.outbox_events(10).await.unwrap(), vec![event]);
}
