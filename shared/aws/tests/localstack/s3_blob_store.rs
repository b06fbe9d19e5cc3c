//! `S3BlobStore` against LocalStack: the shared blob store contract (reads follow the
//! presigned redirect over HTTP), plus the S3-specific behaviour — reads cost no S3 call,
//! large and tiny-chunk uploads in constant memory, sealing and reopening, multipart
//! copies, S3-side checksum verification, and clean-up of everything an upload stored.
//!
//! Needs a running LocalStack: `localstack/start && source localstack/env`. Without it
//! every test fails (never skips). Each test works under its own random key prefix in
//! `$REGISTRY_S3_BUCKET`, removed when the test ends.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{PrefixCleaner, list_keys};
use futures_util::StreamExt;
use registry_aws::s3_blob_store::UploadState;
use registry_aws::{AwsClients, AwsSettings, S3BlobStore, S3BlobStoreSettings};
use registry_core::metrics::{CallCounts, scoped};
use registry_core::ports::{BlobContent, BlobStore, ByteRange, ByteStream, UploadCursor};
use registry_core::upload::{hashing_stream, into_tally};
use registry_core::{Digest, DigestAlgorithm, DigestHasher, RegistryError};
use registry_testkit::blob_store_contract::{
    begin, read_all, read_upload_bytes, write, write_bytes,
};
use registry_testkit::support::{content_bytes, open_content, pattern};

const MIB: usize = 1024 * 1024;

/// `$REGISTRY_S3_BUCKET`, checked reachable once per test.
async fn checked_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = common::env("REGISTRY_S3_BUCKET");
    let reachable = tokio::time::timeout(
        Duration::from_secs(10),
        s3.head_bucket().bucket(&bucket).send(),
    )
    .await;
    match reachable {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "LocalStack bucket {bucket} is not reachable ({}): {}",
            aws_sdk_s3::error::DisplayErrorContext(&e),
            common::HOW_TO_START
        ),
        Err(_) => panic!(
            "LocalStack did not answer in 10 s: {}",
            common::HOW_TO_START
        ),
    }
    bucket
}

async fn multipart_uploads(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    s3.list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListMultipartUploads")
        .uploads()
        .len()
}

/// A store under a fresh random prefix, its clients, and the guard removing the prefix.
struct Fixture {
    store: S3BlobStore,
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    _cleaner: PrefixCleaner,
}

async fn fixture_with(tune: impl FnOnce(&mut S3BlobStoreSettings)) -> Fixture {
    let s3 = common::clients().await.s3;
    let bucket = checked_bucket(&s3).await;
    let prefix = format!("{}/", common::unique("test-s3-blob-store"));
    let mut settings = S3BlobStoreSettings::new(&bucket);
    settings.prefix = prefix.clone();
    tune(&mut settings);
    let store = S3BlobStore::new(s3.clone(), settings).expect("store settings");
    Fixture {
        store,
        s3: s3.clone(),
        bucket: bucket.clone(),
        prefix: prefix.clone(),
        _cleaner: PrefixCleaner { s3, bucket, prefix },
    }
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn contract_store() -> (Arc<dyn BlobStore>, PrefixCleaner) {
    let f = fixture().await;
    (Arc::new(f.store), f._cleaner)
}

mod contract {
    registry_testkit::blob_store_contract_tests!(super::contract_store);
}

// ---- S3-specific behaviour ----

fn state(cursor: &UploadCursor) -> UploadState {
    UploadState::parse(&cursor.store_state, cursor.offset).expect("a valid upload state")
}

/// Hashes a blob read back through its redirect, chunk by chunk; returns (length, digest).
async fn hash_blob(store: &S3BlobStore, digest: &Digest) -> (u64, Digest) {
    let content = store.read(digest, None).await.expect("read");
    let (mut body, length) = open_content(content, None).await.expect("follow redirect");
    let mut hasher = DigestHasher::new(digest.algorithm());
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("blob body");
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(read, length, "the redirect announced {length} bytes");
    (read, hasher.finish())
}

fn calls(counts: &CallCounts, op: &str) -> u64 {
    counts.get(&format!("S3.{op}")).copied().unwrap_or(0)
}

/// A blob GET costs no S3 call: the redirect is presigned offline (a store whose
/// endpoint refuses connections still answers, at once), for whole and range reads
/// alike, and LocalStack (which checks signatures) serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_is_an_offline_presign() {
    let f = fixture().await;
    let data = pattern(10_000, 1);
    let digest = Digest::of(DigestAlgorithm::Sha256, &data);
    let cursor = write_bytes(&f.store, &begin(&f.store).await, &data).await;
    f.store.commit_upload(&cursor, &digest).await.unwrap();

    // Nothing listens on port 9 (discard): any request would fail.
    let offline = AwsClients::load(&AwsSettings {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        region: Some("us-east-1".into()),
    })
    .await;
    let unreachable = S3BlobStore::new(offline.s3, f.store.settings().clone()).unwrap();
    let started = std::time::Instant::now();
    let Ok(BlobContent::Redirect { url: offline_url }) = unreachable.read(&digest, None).await
    else {
        panic!("a read must presign without reaching S3");
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        offline_url.starts_with("http://127.0.0.1:9/"),
        "{offline_url}"
    );

    let range = ByteRange {
        start: 100,
        end: 199,
    };
    let whole = f.store.read(&digest, None).await.unwrap();
    let ranged = f.store.read(&digest, Some(range)).await.unwrap();
    let (BlobContent::Redirect { url }, BlobContent::Redirect { url: ranged_url }) =
        (whole, ranged)
    else {
        panic!("S3 reads must answer with a redirect");
    };
    let endpoint = common::env("AWS_ENDPOINT_URL");
    assert!(
        url.starts_with(&format!(
            "{endpoint}/{}/{}",
            f.bucket,
            f.store.blob_key(&digest)
        )),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=900"), "{url}");
    assert!(
        !ranged_url.to_ascii_lowercase().contains("range"),
        "the range is not signed: {ranged_url}"
    );
    assert_eq!(
        url.split('?').next(),
        ranged_url.split('?').next(),
        "one URL serves every range"
    );
    let redirect = |url: &String| BlobContent::Redirect { url: url.clone() };
    assert_eq!(content_bytes(redirect(&url), None).await, data);
    assert_eq!(
        content_bytes(redirect(&ranged_url), Some(range)).await,
        &data[100..200]
    );

    // The signature is checked: a tampered URL is refused.
    let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let refused = open_content(BlobContent::Redirect { url: tampered }, None).await;
    assert!(matches!(refused, Err(RegistryError::Storage(m)) if m.contains("403")));
}

/// A 64 MiB body streamed in one write (64 KiB chunks generated as the store pulls them):
/// every byte goes straight into a part (8 parts, no pending object), and the committed
/// blob reads back with the same digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_single_write_round_trips() {
    let f = fixture().await;
    const SIZE: usize = 64 * MIB;
    const CHUNK: usize = 64 * 1024;
    let chunk = |i: usize| Bytes::from(pattern(CHUNK, 5_000 + i as u64));
    let body: ByteStream =
        Box::pin(futures_util::stream::iter(0..SIZE / CHUNK).map(move |i| Ok(chunk(i))));
    let (body, tally) = hashing_stream(body, DigestHasher::new(DigestAlgorithm::Sha256), None);

    let start = begin(&f.store).await;
    let (cursor, counts) = scoped(write(&f.store, &start, body, SIZE)).await;
    let tally = into_tally(tally);
    assert_eq!(tally.length, SIZE as u64);
    let digest = tally.hasher.finish();
    assert_eq!(calls(&counts, "UploadPart"), 8, "{counts:?}");
    assert_eq!(calls(&counts, "CreateMultipartUpload"), 1, "{counts:?}");
    assert_eq!(
        calls(&counts, "PutObject") + calls(&counts, "GetObject"),
        0,
        "{counts:?}"
    );
    let st = state(&cursor);
    assert_eq!(
        (st.parts, st.parts_bytes, st.pending.len()),
        (8, SIZE as u64, 0)
    );
    assert!(
        cursor.store_state.len() < 300,
        "state: {}",
        cursor.store_state
    );

    let ((), counts) =
        scoped(async { f.store.commit_upload(&cursor, &digest).await.unwrap() }).await;
    assert_eq!(calls(&counts, "CopyObject"), 1, "{counts:?}");
    assert_eq!(f.store.stat(&digest).await.unwrap(), Some(SIZE as u64));
    assert_eq!(hash_blob(&f.store, &digest).await, (SIZE as u64, digest));
    let upload_folder = f.store.upload_folder(&cursor.upload_id).unwrap();
    assert!(list_keys(&f.s3, &f.bucket, &upload_folder).await.is_empty());
    assert_eq!(multipart_uploads(&f.s3, &f.bucket, &f.prefix).await, 0);
}

/// 64 KiB PATCHes, one per request, 160 of them (10 MiB): they accumulate as pending
/// objects, become one part when 8 MiB are pending, the rest stays pending; the state
/// stays small. `read_upload` (a sha512 re-hash at finalisation) seals the upload, and
/// the commit afterwards finds it sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_writes_round_trip() {
    let f = fixture().await;
    const CHUNK: usize = 64 * 1024;
    const COUNT: usize = 160;
    let data = pattern(CHUNK * COUNT, 6);
    let mut cursor = begin(&f.store).await;
    let mut parts_written = 0;
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let (next, counts) = scoped(write_bytes(&f.store, &cursor, chunk)).await;
        cursor = next;
        parts_written += calls(&counts, "UploadPart");
        let st = state(&cursor);
        let pending_bytes: u64 = st.pending.iter().map(|p| p.size).sum();
        assert!(
            pending_bytes < 8 * MIB as u64,
            "after write {i}: {pending_bytes} pending bytes"
        );
        assert!(
            cursor.store_state.len() < 16 * 1024,
            "after write {i}: state of {} bytes",
            cursor.store_state.len()
        );
    }
    assert_eq!(parts_written, 1);
    let st = state(&cursor);
    assert_eq!((st.parts, st.pending.len()), (1, 32));

    let digest = Digest::of(DigestAlgorithm::Sha512, &data);
    let (read, counts) = scoped(read_upload_bytes(&f.store, &cursor)).await;
    assert!(read == data, "read_upload returned other bytes");
    assert_eq!(calls(&counts, "CompleteMultipartUpload"), 1, "{counts:?}");
    let ((), counts) =
        scoped(async { f.store.commit_upload(&cursor, &digest).await.unwrap() }).await;
    assert_eq!(
        calls(&counts, "CompleteMultipartUpload"),
        0,
        "sealing is done once: {counts:?}"
    );
    assert_eq!(
        hash_blob(&f.store, &digest).await,
        (data.len() as u64, digest)
    );
}

/// Writes after `read_upload` sealed the upload continue it: the next part reopens the
/// upload from the sealed object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_read_upload_continue_the_upload() {
    let f = fixture().await;
    let first = pattern(12 * MIB, 7);
    let second = pattern(MIB, 8);
    let third = pattern(9 * MIB, 9);
    let mut cursor = write_bytes(&f.store, &begin(&f.store).await, &first).await;
    assert!(read_upload_bytes(&f.store, &cursor).await == first);
    cursor = write_bytes(&f.store, &cursor, &second).await;
    let expected = [first.as_slice(), second.as_slice()].concat();
    assert!(
        read_upload_bytes(&f.store, &cursor).await == expected,
        "after a pending-only write"
    );
    cursor = write_bytes(&f.store, &cursor, &third).await;
    let expected = [expected.as_slice(), third.as_slice()].concat();
    assert!(
        read_upload_bytes(&f.store, &cursor).await == expected,
        "after a write that reopened"
    );

    let digest = Digest::of(DigestAlgorithm::Sha256, &expected);
    f.store.commit_upload(&cursor, &digest).await.unwrap();
    assert_eq!(
        hash_blob(&f.store, &digest).await,
        (expected.len() as u64, digest)
    );
    assert_eq!(multipart_uploads(&f.s3, &f.bucket, &f.prefix).await, 0);
}

/// Blobs above `copy_part_size` are committed by parallel `UploadPartCopy` parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_commits_copy_in_parts() {
    let f = fixture_with(|s| {
        s.part_size = 5 * MIB as u64;
        s.copy_part_size = 5 * MIB as u64;
    })
    .await;
    let data = pattern(12 * MIB + 3, 10);
    let digest = Digest::of(DigestAlgorithm::Sha256, &data);
    let cursor = write_bytes(&f.store, &begin(&f.store).await, &data).await;
    let ((), counts) =
        scoped(async { f.store.commit_upload(&cursor, &digest).await.unwrap() }).await;
    assert_eq!(calls(&counts, "CopyObject"), 0, "{counts:?}");
    assert_eq!(calls(&counts, "UploadPartCopy"), 2, "{counts:?}");
    assert!(read_all(&f.store, &digest).await == data);
    assert_eq!(multipart_uploads(&f.s3, &f.bucket, &f.prefix).await, 0);
}

/// A write that fails after it started a multipart upload aborts it, leaves the recorded
/// state valid, and the resent chunk commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_large_write_leaves_nothing_behind() {
    let f = fixture().await;
    let head = pattern(MIB, 11);
    let cursor = write_bytes(&f.store, &begin(&f.store).await, &head).await;
    let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from(pattern(9 * MIB, 12))),
        Err(RegistryError::Storage(
            "client went away (simulated)".into(),
        )),
    ]));
    assert!(f.store.write_upload(&cursor, broken).await.is_err());
    assert_eq!(
        multipart_uploads(&f.s3, &f.bucket, &f.prefix).await,
        0,
        "the failed write's multipart upload must be aborted"
    );

    let rest = pattern(9 * MIB, 13);
    let cursor = write_bytes(&f.store, &cursor, &rest).await;
    let expected = [head.as_slice(), rest.as_slice()].concat();
    let digest = Digest::of(DigestAlgorithm::Sha256, &expected);
    f.store.commit_upload(&cursor, &digest).await.unwrap();
    assert!(read_all(&f.store, &digest).await == expected);
}

/// Two writes from the same recorded state (which the core's locks prevent) write the
/// same part number; committing the state whose part was replaced fails instead of
/// committing the other write's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_parts_are_detected() {
    let f = fixture().await;
    let start = write_bytes(&f.store, &begin(&f.store).await, &pattern(9 * MIB, 14)).await;
    let mine = write_bytes(&f.store, &start, &pattern(8 * MIB, 15)).await;
    let _theirs = write_bytes(&f.store, &start, &pattern(8 * MIB, 16)).await;
    let digest = Digest::of(DigestAlgorithm::Sha256, b"whatever");
    match f.store.commit_upload(&mine, &digest).await {
        Err(RegistryError::Storage(m)) => assert!(m.contains("concurrent"), "{m}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert_eq!(f.store.stat(&digest).await.unwrap(), None);
}

/// S3 itself checks a small blob's bytes against its sha256 digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_commits_are_verified_by_s3() {
    let f = fixture().await;
    let cursor = write_bytes(&f.store, &begin(&f.store).await, b"some bytes").await;
    let wrong = Digest::of(DigestAlgorithm::Sha256, b"other bytes");
    match f.store.commit_upload(&cursor, &wrong).await {
        Err(RegistryError::Storage(m)) => assert!(m.contains("do not have digest"), "{m}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert_eq!(f.store.stat(&wrong).await.unwrap(), None);
}

/// Aborting removes the multipart upload and every object of the upload, and is
/// idempotent; the upload then reads as unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_removes_parts_and_pending_objects() {
    let f = fixture().await;
    let cursor = write_bytes(&f.store, &begin(&f.store).await, &pattern(9 * MIB, 17)).await;
    let st = state(&cursor);
    assert_eq!((st.parts, st.pending.len()), (1, 1));
    let folder = f.store.upload_folder(&cursor.upload_id).unwrap();
    assert_eq!(list_keys(&f.s3, &f.bucket, &folder).await.len(), 1);
    assert_eq!(multipart_uploads(&f.s3, &f.bucket, &folder).await, 1);

    f.store.abort_upload(&cursor).await.unwrap();
    assert!(list_keys(&f.s3, &f.bucket, &folder).await.is_empty());
    assert_eq!(multipart_uploads(&f.s3, &f.bucket, &folder).await, 0);
    f.store.abort_upload(&cursor).await.unwrap();
    assert!(matches!(
        f.store.read_upload(&cursor).await,
        Err(RegistryError::BlobUploadUnknown)
    ));
}
