//! The contract every [`BlobStore`] adapter must pass: upload round trips, range reads,
//! idempotent atomic commits, resending failed chunks, aborts, deletes and large
//! streamed uploads, as the port documents them.
//!
//! Each check takes a fresh, empty store. Run them all, one test each, with
//! [`blob_store_contract_tests!`](crate::blob_store_contract_tests). Digests are computed
//! here with [`Digest::of`], as the core does; the store never computes them.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use registry_core::ports::{BlobStore, ByteRange, ByteStream, UploadCursor};
use registry_core::upload::{hashing_stream, into_tally};
use registry_core::{Digest, DigestAlgorithm, DigestHasher, RegistryError};

use crate::support::{
    collect, content_bytes, failing_stream, open_content, pattern, run_suffix, stream_of,
};

const SHA256: DigestAlgorithm = DigestAlgorithm::Sha256;

/// A fresh upload id: alphanumeric (as the core generates them) and unique even when
/// several suites share one backend.
pub fn new_upload_id() -> String {
    format!("contract{}", run_suffix())
}

/// Starts an upload and returns its cursor at offset 0.
pub async fn begin(store: &dyn BlobStore) -> UploadCursor {
    let upload_id = new_upload_id();
    let store_state = store
        .begin_upload(&upload_id)
        .await
        .expect("begin_upload must succeed");
    UploadCursor {
        upload_id,
        offset: 0,
        store_state,
    }
}

/// Writes `body` (`len` bytes) at `cursor` and returns the cursor the core would save.
pub async fn write(
    store: &dyn BlobStore,
    cursor: &UploadCursor,
    body: ByteStream,
    len: usize,
) -> UploadCursor {
    let store_state = store
        .write_upload(cursor, body)
        .await
        .expect("write_upload must succeed");
    UploadCursor {
        upload_id: cursor.upload_id.clone(),
        offset: cursor.offset + len as u64,
        store_state,
    }
}

/// Writes `bytes` as one request body at `cursor`.
pub async fn write_bytes(
    store: &dyn BlobStore,
    cursor: &UploadCursor,
    bytes: &[u8],
) -> UploadCursor {
    write(store, cursor, stream_of([bytes.to_vec()]), bytes.len()).await
}

/// The bytes written to the upload so far, as `read_upload` streams them.
pub async fn read_upload_bytes(store: &dyn BlobStore, cursor: &UploadCursor) -> Vec<u8> {
    let stream = store
        .read_upload(cursor)
        .await
        .expect("read_upload must succeed");
    collect(stream).await.expect("read_upload stream failed")
}

/// Uploads `bytes` in one request and commits them as their sha256 digest.
async fn push(store: &dyn BlobStore, bytes: &[u8]) -> Digest {
    let digest = Digest::of(SHA256, bytes);
    let cursor = write_bytes(store, &begin(store).await, bytes).await;
    store
        .commit_upload(&cursor, &digest)
        .await
        .expect("commit_upload must succeed");
    digest
}

/// A committed blob's bytes (a redirect is followed, as a client would).
pub async fn read_all(store: &dyn BlobStore, digest: &Digest) -> Vec<u8> {
    let content = store
        .read(digest, None)
        .await
        .unwrap_or_else(|e| panic!("reading committed blob {digest} failed: {e}"));
    content_bytes(content, None).await
}

async fn read_range(store: &dyn BlobStore, digest: &Digest, start: u64, end: u64) -> Vec<u8> {
    let content = store
        .read(digest, Some(ByteRange { start, end }))
        .await
        .unwrap_or_else(|e| panic!("reading {digest} bytes {start}-{end} failed: {e}"));
    content_bytes(content, Some(ByteRange { start, end })).await
}

/// A blob read as its outcome: the store's error, or the error or bytes of the answer
/// (a redirect is followed, as a client would).
async fn read_outcome(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<ByteRange>,
) -> registry_core::Result<Vec<u8>> {
    let content = store.read(digest, range).await?;
    let (body, _) = open_content(content, range).await?;
    collect(body).await
}

/// Whether an upload's bytes can no longer be read (after commit or abort).
async fn upload_is_gone(store: &dyn BlobStore, cursor: &UploadCursor) -> bool {
    match store.read_upload(cursor).await {
        Err(_) => true,
        Ok(stream) => collect(stream).await.is_err(),
    }
}

fn assert_blob_unknown<T>(result: registry_core::Result<T>, what: &str) {
    match result {
        Err(RegistryError::BlobUnknown(_)) => {}
        Err(e) => panic!("{what}: expected BlobUnknown, got error {e:?}"),
        Ok(_) => panic!("{what}: expected BlobUnknown, got a blob"),
    }
}

/// One request body in several stream chunks: the bytes read back from the upload, then
/// from the committed blob, are the bytes written; nothing is visible before commit.
pub async fn upload_round_trip(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let data = pattern(100_000, 1);
    let digest = Digest::of(SHA256, &data);
    assert_eq!(store.stat(&digest).await.unwrap(), None);

    let cursor = begin(store).await;
    let (a, b) = data.split_at(40_000);
    let body = stream_of([a.to_vec(), b[..1].to_vec(), b[1..].to_vec()]);
    let cursor = write(store, &cursor, body, data.len()).await;
    assert_eq!(read_upload_bytes(store, &cursor).await, data);
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        None,
        "upload bytes must not be visible as a blob before commit_upload"
    );

    store.commit_upload(&cursor, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_all(store, &digest).await, data);
    assert!(
        upload_is_gone(store, &cursor).await,
        "commit_upload must release the upload"
    );
}

/// An upload sent as several requests (PATCH chunks) of uneven sizes, each continuing
/// at the offset and store state the previous one returned.
pub async fn chunked_upload(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let sizes = [1usize, 1000, 65_536, 7, 100_000, 3];
    let total: usize = sizes.iter().sum();
    let data = pattern(total, 2);
    let mut cursor = begin(store).await;
    let mut at = 0;
    for size in sizes {
        cursor = write_bytes(store, &cursor, &data[at..at + size]).await;
        at += size;
        assert_eq!(
            read_upload_bytes(store, &cursor).await,
            &data[..at],
            "read_upload after {at} bytes"
        );
    }
    let digest = Digest::of(SHA256, &data);
    store.commit_upload(&cursor, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(total as u64));
    assert_eq!(read_all(store, &digest).await, data);
}

/// A zero-length blob (pushed by real clients) commits and reads back empty.
pub async fn empty_blob(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let digest = Digest::of(SHA256, b"");
    let cursor = begin(store).await;
    assert_eq!(read_upload_bytes(store, &cursor).await, b"");
    let cursor = write(store, &cursor, stream_of(Vec::<Bytes>::new()), 0).await;
    store.commit_upload(&cursor, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(0));
    assert_eq!(read_all(store, &digest).await, b"");
}

/// Blobs are addressed by the whole digest, algorithm included: the same bytes under a
/// sha512 and a sha256 digest are two blobs.
pub async fn sha512_digests(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let data = pattern(5_000, 3);
    let d512 = Digest::of(DigestAlgorithm::Sha512, &data);
    let d256 = Digest::of(SHA256, &data);
    let cursor = write_bytes(store, &begin(store).await, &data).await;
    store.commit_upload(&cursor, &d512).await.unwrap();
    assert_eq!(store.stat(&d512).await.unwrap(), Some(5_000));
    assert_eq!(store.stat(&d256).await.unwrap(), None);
    assert_eq!(read_all(store, &d512).await, data);
    assert_eq!(push(store, &data).await, d256);
    store.delete(&d512).await.unwrap();
    assert_eq!(store.stat(&d512).await.unwrap(), None);
    assert_eq!(read_all(store, &d256).await, data);
}

/// Inclusive ranges return exactly their bytes; a range past the end is `RangeInvalid`.
pub async fn range_reads(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let data = pattern(10_000, 4);
    let digest = push(store, &data).await;
    for (start, end) in [
        (0, 0),
        (0, 9_999),
        (1_234, 5_677),
        (9_999, 9_999),
        (1, 9_998),
    ] {
        assert_eq!(
            read_range(store, &digest, start, end).await,
            &data[start as usize..=end as usize],
            "range {start}-{end}"
        );
    }
    for (start, end) in [(9_990, 10_000), (10_000, 10_000), (0, 20_000)] {
        match read_outcome(store, &digest, Some(ByteRange { start, end })).await {
            Err(RegistryError::RangeInvalid(_)) => {}
            Err(e) => {
                panic!("range {start}-{end} of 10000 bytes: expected RangeInvalid, got {e:?}")
            }
            Ok(_) => panic!("range {start}-{end} of 10000 bytes: expected RangeInvalid, got bytes"),
        }
    }
}

/// Committing bytes whose digest is already stored succeeds and keeps one intact copy,
/// whether the commits come one after the other or at the same time.
pub async fn commit_is_idempotent(store: Arc<dyn BlobStore>) {
    let data = pattern(70_000, 5);
    let digest = push(&*store, &data).await;

    let second = write_bytes(&*store, &begin(&*store).await, &data).await;
    store
        .commit_upload(&second, &digest)
        .await
        .expect("committing an already stored digest must succeed");
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_all(&*store, &digest).await, data);
    assert!(
        upload_is_gone(&*store, &second).await,
        "a commit of an already stored digest must still release the upload"
    );

    // Two pushes of the same layer racing to commit.
    let fresh = pattern(50_000, 6);
    let fresh_digest = Digest::of(SHA256, &fresh);
    let a = write_bytes(&*store, &begin(&*store).await, &fresh).await;
    let b = write_bytes(&*store, &begin(&*store).await, &fresh).await;
    let (ra, rb) = tokio::join!(
        store.commit_upload(&a, &fresh_digest),
        store.commit_upload(&b, &fresh_digest)
    );
    ra.expect("first of two racing commits");
    rb.expect("second of two racing commits");
    assert_eq!(store.stat(&fresh_digest).await.unwrap(), Some(50_000));
    assert_eq!(read_all(&*store, &fresh_digest).await, fresh);
    // The first blob is untouched by the second.
    assert_eq!(read_all(&*store, &digest).await, data);
}

/// A write at `offset` discards bytes an earlier write left past it: the core never
/// recorded a chunk the store received, and the client resends a different one.
pub async fn rewrite_discards_stale_bytes(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let head = pattern(1_000, 7);
    let lost = pattern(5_000, 8);
    let resent = pattern(300, 9);

    let start = begin(store).await;
    // A first chunk the core never accepted, then resent shorter at offset 0.
    let _ = write_bytes(store, &start, &lost).await;
    let accepted = write_bytes(store, &start, &head).await;
    assert_eq!(read_upload_bytes(store, &accepted).await, head);

    // A chunk stored but not recorded (the session update failed), longer than the resend.
    let _ = write_bytes(store, &accepted, &lost).await;
    let done = write_bytes(store, &accepted, &resent).await;
    let expected = [head.as_slice(), resent.as_slice()].concat();
    assert_eq!(read_upload_bytes(store, &done).await, expected);

    let digest = Digest::of(SHA256, &expected);
    store.commit_upload(&done, &digest).await.unwrap();
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        Some(expected.len() as u64),
        "the committed blob must hold exactly the accepted bytes"
    );
    assert_eq!(read_all(store, &digest).await, expected);
}

/// A write whose body fails part-way (the client went away) returns an error, and the
/// chunk can be resent at the same offset.
pub async fn failed_write_can_be_resent(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let first = pattern(2_000, 10);
    let second = pattern(3_000, 11);

    let start = begin(store).await;
    let failed = store
        .write_upload(
            &start,
            failing_stream(vec![Bytes::from(pattern(4_096, 12))]),
        )
        .await;
    assert!(failed.is_err(), "a write whose body fails must fail");
    let cursor = write_bytes(store, &start, &first).await;

    let failed = store
        .write_upload(
            &cursor,
            failing_stream(vec![
                Bytes::from(second[..1_500].to_vec()),
                Bytes::from(pattern(9_000, 13)),
            ]),
        )
        .await;
    assert!(failed.is_err(), "a write whose body fails must fail");
    let cursor = write_bytes(store, &cursor, &second).await;

    let expected = [first.as_slice(), second.as_slice()].concat();
    assert_eq!(read_upload_bytes(store, &cursor).await, expected);
    let digest = Digest::of(SHA256, &expected);
    store.commit_upload(&cursor, &digest).await.unwrap();
    assert_eq!(read_all(store, &digest).await, expected);
}

/// `read_upload` streams exactly `cursor.offset` bytes: none at the start, and none of
/// the bytes a write left past the accepted offset.
pub async fn read_upload_returns_offset_bytes(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let start = begin(store).await;
    assert_eq!(read_upload_bytes(store, &start).await, b"");

    let data = pattern(10_000, 14);
    let cursor = write_bytes(store, &start, &data).await;
    assert_eq!(read_upload_bytes(store, &cursor).await, data);

    // Bytes written after the accepted offset but never recorded by the core.
    let _ = write_bytes(store, &cursor, &pattern(5_000, 15)).await;
    let read = read_upload_bytes(store, &cursor).await;
    assert_eq!(
        read.len(),
        10_000,
        "read_upload must return exactly `offset` bytes"
    );
    assert_eq!(read, data);
}

/// Aborting discards the upload's bytes, a commit afterwards fails without creating a
/// blob, and aborting again (or aborting an unknown upload) succeeds.
pub async fn abort_removes_upload(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let data = pattern(20_000, 16);
    let digest = Digest::of(SHA256, &data);
    let cursor = write_bytes(store, &begin(store).await, &data).await;

    store.abort_upload(&cursor).await.unwrap();
    assert!(
        upload_is_gone(store, &cursor).await,
        "abort must discard the upload"
    );
    store
        .abort_upload(&cursor)
        .await
        .expect("aborting twice must succeed");
    assert!(
        store.commit_upload(&cursor, &digest).await.is_err(),
        "committing an aborted upload must fail"
    );
    assert_eq!(store.stat(&digest).await.unwrap(), None);

    let empty = begin(store).await;
    store
        .abort_upload(&empty)
        .await
        .expect("aborting an upload with no bytes must succeed");
    let never = UploadCursor {
        upload_id: new_upload_id(),
        offset: 0,
        store_state: String::new(),
    };
    store
        .abort_upload(&never)
        .await
        .expect("aborting an unknown upload must succeed");
}

/// A blob never committed: `stat` is `None`, reads are `BlobUnknown`, delete succeeds.
pub async fn unknown_blob(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let digest = Digest::of(SHA256, b"never stored by the contract suite");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_blob_unknown(
        read_outcome(store, &digest, None).await,
        "read of an unknown blob",
    );
    assert_blob_unknown(
        read_outcome(store, &digest, Some(ByteRange { start: 0, end: 0 })).await,
        "range read of an unknown blob",
    );
    store
        .delete(&digest)
        .await
        .expect("deleting an unknown blob must succeed");
}

/// Deleting a blob removes it and only it; deleting again succeeds; the same bytes can
/// be pushed again afterwards.
pub async fn delete_removes_blob(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let doomed = pattern(3_000, 17);
    let kept = pattern(3_000, 18);
    let doomed_digest = push(store, &doomed).await;
    let kept_digest = push(store, &kept).await;

    store.delete(&doomed_digest).await.unwrap();
    assert_eq!(store.stat(&doomed_digest).await.unwrap(), None);
    assert_blob_unknown(
        read_outcome(store, &doomed_digest, None).await,
        "read after delete",
    );
    store
        .delete(&doomed_digest)
        .await
        .expect("deleting twice must succeed");
    assert_eq!(read_all(store, &kept_digest).await, kept);

    assert_eq!(push(store, &doomed).await, doomed_digest);
    assert_eq!(store.stat(&doomed_digest).await.unwrap(), Some(3_000));
    assert_eq!(read_all(store, &doomed_digest).await, doomed);
}

/// Two uploads in flight at once keep their bytes apart.
pub async fn concurrent_uploads_are_independent(store: Arc<dyn BlobStore>) {
    let one = pattern(40_000, 19);
    let two = pattern(30_000, 20);
    let (a, b) = tokio::join!(begin(&*store), begin(&*store));
    assert_ne!(a.upload_id, b.upload_id);
    let (a, b) = tokio::join!(
        write_bytes(&*store, &a, &one[..20_000]),
        write_bytes(&*store, &b, &two[..10_000])
    );
    let (a, b) = tokio::join!(
        write_bytes(&*store, &a, &one[20_000..]),
        write_bytes(&*store, &b, &two[10_000..])
    );
    let (d1, d2) = (Digest::of(SHA256, &one), Digest::of(SHA256, &two));
    let (r1, r2) = tokio::join!(store.commit_upload(&a, &d1), store.commit_upload(&b, &d2));
    r1.unwrap();
    r2.unwrap();
    assert_eq!(read_all(&*store, &d1).await, one);
    assert_eq!(read_all(&*store, &d2).await, two);
}

/// Size of the large upload and of the chunks its body is generated in.
const LARGE_SIZE: usize = 20 * 1024 * 1024;
const LARGE_CHUNK: usize = 64 * 1024;

fn large_chunk(index: usize) -> Bytes {
    Bytes::from(pattern(LARGE_CHUNK, 1_000 + index as u64))
}

/// Chunks `range` of the large blob, generated as the store pulls them.
fn large_body(range: std::ops::Range<usize>) -> ByteStream {
    Box::pin(futures_util::stream::iter(range).map(|i| Ok(large_chunk(i))))
}

/// A 20 MiB blob sent as two requests whose bodies are streamed in 64 KiB chunks, hashed
/// on the way in as the core does, round trips byte for byte (read back streamed).
pub async fn large_streamed_upload(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let chunks = LARGE_SIZE / LARGE_CHUNK;
    let split = chunks * 3 / 5;
    let mut expected = DigestHasher::new(SHA256);
    for i in 0..chunks {
        expected.update(&large_chunk(i));
    }
    let digest = expected.finish();

    let mut cursor = begin(store).await;
    let mut hasher = DigestHasher::new(SHA256);
    for range in [0..split, split..chunks] {
        let len = range.len() * LARGE_CHUNK;
        let (body, tally) = hashing_stream(large_body(range), hasher, None);
        cursor = write(store, &cursor, body, len).await;
        let tally = into_tally(tally);
        assert_eq!(
            tally.length, len as u64,
            "the store must consume the whole request body"
        );
        hasher = tally.hasher;
    }
    assert_eq!(hasher.finish(), digest);
    assert_eq!(cursor.offset, LARGE_SIZE as u64);

    store.commit_upload(&cursor, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(LARGE_SIZE as u64));

    // Streamed (a redirect is followed), hashed chunk by chunk: never held whole.
    let (mut body, length) = open_content(store.read(&digest, None).await.unwrap(), None)
        .await
        .expect("opening the large blob read");
    assert_eq!(length, LARGE_SIZE as u64);
    let mut read = DigestHasher::new(SHA256);
    let mut read_len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("reading the large blob");
        read_len += chunk.len() as u64;
        read.update(&chunk);
    }
    assert_eq!(read_len, LARGE_SIZE as u64);
    assert_eq!(read.finish(), digest, "the large blob read back differs");

    let last = large_chunk(chunks - 1);
    let end = LARGE_SIZE as u64 - 1;
    assert_eq!(
        read_range(store, &digest, end - 99, end).await,
        &last[LARGE_CHUNK - 100..],
        "a range at the end of the large blob"
    );
}

/// `read_stream` hands a committed blob's bytes to this process (never a redirect); an
/// absent blob is `BlobUnknown`.
pub async fn read_stream_returns_the_bytes(store: Arc<dyn BlobStore>) {
    let store = &*store;
    let bytes = pattern(300_000, 21);
    let digest = push(store, &bytes).await;
    let stream = store.read_stream(&digest).await.expect("read_stream");
    assert_eq!(collect(stream).await.expect("stream"), bytes);
    let missing = Digest::of(SHA256, b"never stored");
    assert!(matches!(
        store.read_stream(&missing).await,
        Err(registry_core::RegistryError::BlobUnknown(_))
    ));
}
