//! Embedded adapters for one local process: blobs as content-addressed files, metadata
//! and the job queue in one redb database file (transactional, crash-safe).

mod db;
pub mod file_blob_store;
pub mod identity_store;
pub mod job_queue;
pub mod metadata_store;
pub mod proxy_store;
pub mod scan_store;
pub mod webhook_store;

pub use db::open_database;
pub use file_blob_store::FileBlobStore;
pub use job_queue::EmbeddedJobQueue;
pub use metadata_store::EmbeddedMetadataStore;
