//! Runs the shared port contracts of `registry-testkit` against the embedded adapters,
//! each test on its own temporary directory and redb file.

use std::sync::Arc;

use registry_core::ports::{BlobStore, JobQueue, MetadataStore};
use registry_embedded::{EmbeddedJobQueue, EmbeddedMetadataStore, FileBlobStore, open_database};
use registry_testkit::ManualClock;
use registry_testkit::job_queue_contract::MAX_RECEIVES;
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

async fn embedded_job_queue(clock: ManualClock) -> (Arc<dyn JobQueue>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_database(&dir.path().join("registry.redb")).expect("database");
    let queue = EmbeddedJobQueue::new(db, clock.shared(), MAX_RECEIVES).expect("job queue");
    (Arc::new(queue), dir)
}

mod blob_store {
    registry_testkit::blob_store_contract_tests!(super::file_blob_store);
}

mod metadata_store {
    registry_testkit::metadata_store_contract_tests!(super::embedded_metadata_store);
}

mod job_queue {
    registry_testkit::job_queue_contract_tests!(super::embedded_job_queue);
}
