//! `BlobStore`: content-addressed blob bytes and in-progress upload data.
//!
//! The store keeps bytes only; it never decides what is visible. A blob becomes visible
//! in a repository when the metadata store links it, after the core has verified its
//! digest. Errors: `Storage` for any backend failure; `BlobUnknown` when a committed blob
//! or upload data is missing; `RangeInvalid` for a range past the end.
//!
//! Consistency: `commit_upload` is atomic — a reader sees either no blob or the whole
//! blob, never a part — and idempotent: committing bytes whose digest is already stored
//! keeps one copy. Writes to one upload are serialised by the caller (one chunk at a
//! time), and a write at `offset` discards any bytes past `offset` that an earlier,
//! failed write left behind, so a client may resend a failed chunk.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::digest::Digest;
use crate::error::Result;

/// A stream of body bytes; errors end the stream.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// An inclusive byte range of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never: an inclusive range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// How a blob read is answered.
pub enum BlobContent {
    /// The bytes themselves (embedded store); `length` is the length of `body`.
    Stream { body: ByteStream, length: u64 },
    /// A short-lived URL the client is redirected to (object stores).
    Redirect { url: String },
}

/// Where an upload stands in the blob store: the core keeps it in the upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCursor {
    pub upload_id: String,
    /// Bytes accepted so far.
    pub offset: u64,
    /// Backend-private state (for example multipart part numbers and ETags).
    pub store_state: String,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a committed blob, or `None` if it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Reads a committed blob, whole or a range already checked against its size.
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobContent>;

    /// Streams a committed blob's bytes into this process, never as a redirect: for
    /// workers (scans, proxy fills). `BlobUnknown` when absent.
    async fn read_stream(&self, digest: &Digest) -> Result<ByteStream>;

    /// Starts storage for a new upload; returns the initial `store_state`.
    async fn begin_upload(&self, upload_id: &str) -> Result<String>;

    /// Appends `body` at `cursor.offset`; returns the new `store_state`. The core counts
    /// and hashes the bytes as the store consumes them.
    async fn write_upload(&self, cursor: &UploadCursor, body: ByteStream) -> Result<String>;

    /// Streams back the `cursor.offset` bytes written so far (used to verify a digest
    /// of another algorithm than the running hash).
    async fn read_upload(&self, cursor: &UploadCursor) -> Result<ByteStream>;

    /// Makes the upload's bytes the blob `digest`, atomically, and releases the upload.
    async fn commit_upload(&self, cursor: &UploadCursor, digest: &Digest) -> Result<()>;

    /// Discards an upload's bytes; succeeds if they are already gone.
    async fn abort_upload(&self, cursor: &UploadCursor) -> Result<()>;

    /// Removes a committed blob's bytes; succeeds if already gone. Only garbage collection
    /// calls this, once no repository links the blob.
    async fn delete(&self, digest: &Digest) -> Result<()>;
}
