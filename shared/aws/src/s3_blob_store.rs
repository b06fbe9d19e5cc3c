//! `S3BlobStore`: the [`BlobStore`] port on S3. Committed blobs are objects named by
//! digest and served by redirect to an offline presigned GET; uploads are S3 multipart
//! uploads fed with constant memory, whatever the chunk sizes.
//!
//! # Layout
//!
//! ```text
//! <prefix>blobs/<algorithm>/<hex>           committed blob, content-addressed
//! <prefix>uploads/<upload id>/data          the upload's multipart upload (sealed: its object)
//! <prefix>uploads/<upload id>/p<offset>-<n> a pending object: bytes after the last part
//! ```
//!
//! # Upload state
//!
//! The opaque `store_state` the core keeps in the upload session is JSON
//! ([`UploadState`]): the multipart upload id, the number and total size of its parts, a
//! chained SHA-256 of their ETags, and the pending objects (bytes after the last part,
//! fewer than `part_size` in total). It stays small and of constant size however large
//! the upload grows (a few hundred bytes plus one entry per pending object), so session
//! writes stay cheap; parts are listed (`ListParts`) only when the upload is sealed, and
//! checked against the chain there.
//!
//! # AWS calls per method
//!
//! - `stat`: `HeadObject`.
//! - `read`: none — an offline presigned `GetObject` URL, returned as
//!   [`BlobContent::Redirect`]. The URL does not depend on the range: as with any `307`,
//!   the client re-sends its own `Range` header to the new location. So a read neither
//!   knows nor checks that the blob exists or that the range fits (the core checks the
//!   range against the size in the blob link before it reads); a missing blob answers 404
//!   and a range past the end 416 (or a clamped 206) from S3 itself.
//! - `begin_upload`: none.
//! - `write_upload`: per `part_size` bytes one `UploadPart` (the first one preceded by
//!   `CreateMultipartUpload`, and by one `GetObject` per pending object), and at the end
//!   one `PutObject` of the leftover bytes as a new pending object. Each byte is stored at
//!   most twice (pending, then in a part) unless a client sends more than
//!   [`MAX_PENDING_OBJECTS`] chunks within one part, when the pending objects are merged.
//!   Memory: O(`part_size`) — the part being filled (at most about two while one is
//!   sent) plus one incoming chunk.
//! - `read_upload`: without a multipart upload, one `GetObject` per pending object,
//!   streamed in order; with one, the upload is first *sealed* — `HeadObject` of `data`
//!   (already sealed at this size: done), `ListParts`, the pending bytes uploaded as the
//!   last part, `CompleteMultipartUpload` — then one streamed `GetObject` of `data`.
//! - `commit_upload`: `HeadObject` of the blob key (present: only clean up). Small uploads
//!   (no multipart upload): the pending objects are read (`GetObject` each, under
//!   `part_size` in total) and written with one `PutObject` to the blob key, carrying
//!   `x-amz-checksum-sha256` for sha256 digests so S3 verifies the bytes. Large: seal,
//!   then `CopyObject` to the blob key, or `CreateMultipartUpload` + `UploadPartCopy` per
//!   `copy_part_size` + `CompleteMultipartUpload` above `copy_part_size`. Then clean up:
//!   `AbortMultipartUpload`, `ListMultipartUploads` (left-overs of failed writes),
//!   `ListObjectsV2` + `DeleteObjects` of everything under the upload's folder.
//! - `abort_upload`: the same clean-up. `delete`: `DeleteObject`.
//!
//! # Consistency
//!
//! A blob appears at its key only through one complete `PutObject`, `CopyObject` or
//! `CompleteMultipartUpload`, so it is never visible in part. Committing an existing
//! digest keeps the stored copy. A state the core did not record (a failed write) never
//! invalidates the recorded one: new pending objects get fresh unique names, new parts
//! take numbers after the recorded ones (a failed write's parts are left out at sealing,
//! or overwritten by the resent chunk), and a multipart upload that a failed write
//! created is aborted. Parts overwritten by a *concurrent* write from the same state
//! (which the core's locks and conditional session update should prevent) are detected
//! at sealing by the ETag chain and fail the seal instead of committing foreign bytes.
//! After a seal, further writes still work: the next part reopens the upload as a new
//! multipart upload whose first parts are server-side copies of the sealed object.
//!
//! # Errors
//!
//! Any S3 failure is `Storage` naming the operation and the key; a missing upload object
//! (after an abort or a commit) is `BlobUploadUnknown`; an upload past S3's 10 000 parts
//! is `PayloadTooLarge`; invalid settings are `Storage` from [`S3BlobStore::new`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use registry_core::ports::{BlobContent, BlobStore, ByteRange, ByteStream, UploadCursor};
use registry_core::{Digest, DigestAlgorithm, RegistryError, Result};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// S3's smallest part (all parts but the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part, and largest `CopyObject` source.
const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's most parts per multipart upload; one is kept for the pending bytes at sealing.
const MAX_PARTS: u32 = 10_000;
/// Longest validity of a presigned URL (SigV4).
const MAX_PRESIGN_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Pending objects an upload may reference before a write merges them into one.
pub const MAX_PENDING_OBJECTS: usize = 256;
/// Objects fetched or copied at the same time.
const CONCURRENCY: usize = 8;

/// How the store uses its bucket; filled by the composition root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3BlobStoreSettings {
    pub bucket: String,
    /// Prefix of every key, used as is (`""`, or for example `"registry/"`).
    pub prefix: String,
    /// Validity of the presigned URLs blob reads redirect to (at most 7 days).
    pub presign_expiry_secs: u64,
    /// A base URL (CloudFront or another proxy in front of the bucket) that replaces the
    /// scheme and host of the presigned URLs, its path prefixed to theirs. URLs are
    /// presigned against the real endpoint, so the proxy must forward the query string
    /// and sign or send the request as for the bucket's host.
    pub public_base_url: Option<String>,
    /// Size of each multipart part, and the memory an upload write holds (at least 5 MiB).
    pub part_size: u64,
    /// Blobs larger than this are committed by parallel `UploadPartCopy` parts of this
    /// size instead of one `CopyObject` (between 5 MiB and 5 GiB − 5 MiB).
    pub copy_part_size: u64,
}

impl S3BlobStoreSettings {
    /// Settings for `bucket` with the defaults: no prefix, 15-minute URLs, 8 MiB parts,
    /// 1 GiB copy parts.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3BlobStoreSettings {
            bucket: bucket.into(),
            prefix: String::new(),
            presign_expiry_secs: 900,
            public_base_url: None,
            part_size: 8 * MIB,
            copy_part_size: GIB,
        }
    }
}

/// Blobs and uploads in one S3 bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    s3: aws_sdk_s3::Client,
    settings: S3BlobStoreSettings,
    /// `public_base_url` without its trailing slash.
    public_base: Option<String>,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn invalid_settings(why: impl fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("invalid S3 blob store settings: {why}"))
}

/// Where an upload stands in S3; serialised as the session's `store_state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadState {
    /// The multipart upload of `uploads/<id>/data`, once a part was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpu: Option<String>,
    /// Parts `1..=parts` hold the first `parts_bytes` bytes.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub parts: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub parts_bytes: u64,
    /// Chained SHA-256 of the parts' ETags ([`chain_etag`]), checked at sealing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parts_chain: String,
    /// Objects under the upload's folder holding the bytes after the parts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingObject>,
}

/// One pending object: its name under the upload's folder and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingObject {
    pub name: String,
    pub size: u64,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl UploadState {
    /// Parses a `store_state` (`""` is the empty state) and checks it accounts for
    /// exactly `offset` bytes.
    pub fn parse(store_state: &str, offset: u64) -> Result<Self> {
        let state: UploadState = if store_state.trim().is_empty() {
            UploadState::default()
        } else {
            serde_json::from_str(store_state).map_err(|e| {
                RegistryError::Storage(format!("corrupt S3 upload state {store_state:?}: {e}"))
            })?
        };
        if let Some(bad) = state.pending.iter().find(|p| !valid_name(&p.name)) {
            return Err(RegistryError::Storage(format!(
                "corrupt S3 upload state: pending object name {:?}",
                bad.name
            )));
        }
        if state.mpu.is_none() && state.parts != 0 {
            return Err(RegistryError::Storage(
                "corrupt S3 upload state: parts without a multipart upload".into(),
            ));
        }
        let recorded = state.parts_bytes + state.pending_bytes();
        if recorded != offset {
            return Err(RegistryError::Storage(format!(
                "S3 upload state records {recorded} bytes but the upload is at offset {offset}"
            )));
        }
        Ok(state)
    }

    fn pending_bytes(&self) -> u64 {
        self.pending.iter().map(|p| p.size).sum()
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).expect("an upload state always serialises")
    }
}

/// The chain value after a part with `etag` (quotes ignored) follows `previous`.
pub fn chain_etag(previous: &str, etag: &str) -> String {
    let link = format!("{previous}/{}", etag.trim_matches('"'));
    Digest::of(DigestAlgorithm::Sha256, link.as_bytes())
        .hex()
        .to_owned()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Byte ranges (`start`, inclusive `end`) that copy `size` bytes in parts of `part_size`,
/// every part at least 5 MiB when `size` is (a short tail joins the part before it).
pub fn copy_ranges(size: u64, part_size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < size {
        let mut end = (start + part_size).min(size);
        if size - end < MIN_PART_SIZE {
            end = size;
        }
        ranges.push((start, end - 1));
        start = end;
    }
    ranges
}

/// Percent-encodes a `CopySource` (`bucket/key`), keeping `/` and unreserved characters.
fn encode_copy_source(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for b in source.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Whether an error says the key is not there (not the bucket, not the upload).
fn is_missing_key<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err.code() {
        Some("NoSuchKey" | "NotFound") => true,
        Some("NoSuchBucket" | "NoSuchUpload") => false,
        _ => status(err) == Some(404),
    }
}

fn is_missing_upload<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.code() == Some("NoSuchUpload")
}

/// A new pending object's name: its offset and a random number, so it never replaces an
/// object a recorded state references.
fn pending_name(offset: u64) -> String {
    format!("p{offset}-{:016x}", rand::random::<u64>())
}

impl S3BlobStore {
    /// A store on `settings.bucket` through `s3` (from [`crate::AwsClients`]); checks the
    /// settings (no AWS call).
    pub fn new(s3: aws_sdk_s3::Client, settings: S3BlobStoreSettings) -> Result<Self> {
        if settings.bucket.is_empty() {
            return Err(invalid_settings("the bucket is empty"));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.part_size) {
            return Err(invalid_settings(format!(
                "part_size {} is not between 5 MiB and 5 GiB",
                settings.part_size
            )));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE - MIN_PART_SIZE).contains(&settings.copy_part_size) {
            return Err(invalid_settings(format!(
                "copy_part_size {} is not between 5 MiB and 5 GiB - 5 MiB",
                settings.copy_part_size
            )));
        }
        if !(1..=MAX_PRESIGN_EXPIRY_SECS).contains(&settings.presign_expiry_secs) {
            return Err(invalid_settings(format!(
                "presign_expiry_secs {} is not between 1 and {MAX_PRESIGN_EXPIRY_SECS}",
                settings.presign_expiry_secs
            )));
        }
        let public_base = match &settings.public_base_url {
            None => None,
            Some(base) => {
                let url = url::Url::parse(base)
                    .map_err(|e| invalid_settings(format!("public_base_url {base:?}: {e}")))?;
                if !matches!(url.scheme(), "http" | "https")
                    || url.host_str().is_none()
                    || url.query().is_some()
                    || url.fragment().is_some()
                {
                    return Err(invalid_settings(format!(
                        "public_base_url {base:?} must be an http(s) URL without query or fragment"
                    )));
                }
                Some(url.as_str().trim_end_matches('/').to_owned())
            }
        };
        Ok(S3BlobStore {
            s3,
            settings,
            public_base,
        })
    }

    pub fn settings(&self) -> &S3BlobStoreSettings {
        &self.settings
    }

    /// The key of a committed blob.
    pub fn blob_key(&self, digest: &Digest) -> String {
        format!(
            "{}blobs/{}/{}",
            self.settings.prefix,
            digest.algorithm().as_str(),
            digest.hex()
        )
    }

    /// The folder of an upload's objects (ends with `/`).
    pub fn upload_folder(&self, upload_id: &str) -> Result<String> {
        // Ids are generated by the core; refuse anything that could reach other keys.
        if !valid_name(upload_id) {
            return Err(RegistryError::BlobUploadUnknown);
        }
        Ok(format!("{}uploads/{upload_id}/", self.settings.prefix))
    }

    fn storage<E, R>(&self, op: &str, key: &str, err: SdkError<E, R>) -> RegistryError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: fmt::Debug,
    {
        RegistryError::Storage(format!(
            "S3 {op} s3://{}/{key}: {}",
            self.settings.bucket,
            DisplayErrorContext(&err)
        ))
    }

    /// Replaces scheme and host of a presigned URL by the public base, if one is set.
    fn public_url(&self, presigned: &str) -> Result<String> {
        let Some(base) = &self.public_base else {
            return Ok(presigned.to_owned());
        };
        let url = url::Url::parse(presigned)
            .map_err(|e| RegistryError::Storage(format!("presigned URL {presigned:?}: {e}")))?;
        Ok(match url.query() {
            Some(q) => format!("{base}{}?{q}", url.path()),
            None => format!("{base}{}", url.path()),
        })
    }

    /// The size of the object at `key`, or `None`.
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        match self
            .s3
            .head_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    RegistryError::Storage(format!("S3 HeadObject {key}: no Content-Length"))
                }),
            Err(e) if is_missing_key(&e) => Ok(None),
            Err(e) => Err(self.storage("HeadObject", key, e)),
        }
    }

    /// Opens `key`, checking it holds `size` bytes; a missing key is `missing`.
    async fn open(&self, key: &str, size: u64, missing: RegistryError) -> Result<S3Body> {
        let out = match self
            .s3
            .get_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing_key(&e) => return Err(missing),
            Err(e) => return Err(self.storage("GetObject", key, e)),
        };
        let length = out.content_length().and_then(|n| u64::try_from(n).ok());
        if length != Some(size) {
            return Err(RegistryError::Storage(format!(
                "S3 GetObject {key}: {length:?} bytes where the upload recorded {size}"
            )));
        }
        Ok(out.body)
    }

    /// The whole content of `key`, which must hold `size` bytes.
    async fn get_bytes(&self, key: &str, size: u64) -> Result<Bytes> {
        let body = self
            .open(key, size, RegistryError::BlobUploadUnknown)
            .await?;
        let bytes = body
            .collect()
            .await
            .map_err(|e| RegistryError::Storage(format!("S3 GetObject {key}: {e}")))?
            .into_bytes();
        if bytes.len() as u64 != size {
            return Err(RegistryError::Storage(format!(
                "S3 GetObject {key}: read {} bytes, expected {size}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The pending objects' bytes, concatenated (fewer than `part_size` in a valid state).
    async fn read_pending(&self, folder: &str, pending: &[PendingObject]) -> Result<BytesMut> {
        let total: u64 = pending.iter().map(|p| p.size).sum();
        let mut out = BytesMut::with_capacity(total as usize);
        let objects: Vec<(String, u64)> = pending
            .iter()
            .map(|p| (format!("{folder}{}", p.name), p.size))
            .collect();
        let mut parts = futures_util::stream::iter(objects)
            .map(|(key, size)| async move { self.get_bytes(&key, size).await })
            .buffered(CONCURRENCY);
        while let Some(bytes) = parts.next().await {
            out.extend_from_slice(&bytes?);
        }
        Ok(out)
    }

    async fn put(&self, key: &str, body: Bytes, sha256: Option<&Digest>) -> Result<()> {
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .content_length(body.len() as i64)
            .body(S3Body::from(body));
        if let Some(digest) = sha256 {
            let raw = hex::decode(digest.hex()).map_err(RegistryError::storage)?;
            req = req.checksum_sha256(B64.encode(raw));
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BadDigest" | "InvalidDigest")) => {
                Err(RegistryError::Storage(format!(
                    "S3 PutObject {key}: the upload's stored bytes do not have digest {}: {}",
                    sha256.map(ToString::to_string).unwrap_or_default(),
                    DisplayErrorContext(&e)
                )))
            }
            Err(e) => Err(self.storage("PutObject", key, e)),
        }
    }

    async fn create_mpu(&self, key: &str) -> Result<String> {
        let out = self
            .s3
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.storage("CreateMultipartUpload", key, e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            RegistryError::Storage(format!("S3 CreateMultipartUpload {key}: no upload id"))
        })
    }

    /// Aborts a multipart upload; one already gone (completed or aborted) is fine.
    async fn abort_mpu(&self, key: &str, mpu: &str) -> Result<()> {
        match self
            .s3
            .abort_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(key)
            .upload_id(mpu)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing_upload(&e) || status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.storage("AbortMultipartUpload", key, e)),
        }
    }

    /// Best-effort abort on an error path: the error being returned matters more.
    async fn abort_mpu_quietly(&self, key: &str, mpu: &str) {
        if let Err(e) = self.abort_mpu(key, mpu).await {
            tracing::warn!(key, mpu, error = %e, "could not abort a multipart upload");
        }
    }

    async fn complete_mpu(&self, key: &str, mpu: &str, parts: Vec<CompletedPart>) -> Result<()> {
        self.s3
            .complete_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(key)
            .upload_id(mpu)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.storage("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    /// Uploads part `number` of `mpu`; returns its ETag, or `Ok(None)` if the multipart
    /// upload is gone.
    async fn upload_part(
        &self,
        key: &str,
        mpu: &str,
        number: u32,
        body: Bytes,
    ) -> Result<Option<String>> {
        let len = body.len() as i64;
        match self
            .s3
            .upload_part()
            .bucket(&self.settings.bucket)
            .key(key)
            .upload_id(mpu)
            .part_number(number as i32)
            .content_length(len)
            .body(S3Body::from(body))
            .send()
            .await
        {
            Ok(out) => out.e_tag().map(|t| Some(t.to_owned())).ok_or_else(|| {
                RegistryError::Storage(format!("S3 UploadPart {key} #{number}: no ETag"))
            }),
            Err(e) if is_missing_upload(&e) => Ok(None),
            Err(e) => Err(self.storage("UploadPart", key, e)),
        }
    }

    /// Copies `range` of `source` as part `number` of `mpu` at `key`; returns its ETag.
    async fn upload_part_copy(
        &self,
        source: &str,
        key: &str,
        mpu: &str,
        number: u32,
        (start, end): (u64, u64),
    ) -> Result<String> {
        let out = self
            .s3
            .upload_part_copy()
            .bucket(&self.settings.bucket)
            .key(key)
            .upload_id(mpu)
            .part_number(number as i32)
            .copy_source(encode_copy_source(&format!(
                "{}/{source}",
                self.settings.bucket
            )))
            .copy_source_range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(|e| self.storage("UploadPartCopy", key, e))?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned)
            .ok_or_else(|| {
                RegistryError::Storage(format!("S3 UploadPartCopy {key} #{number}: no ETag"))
            })
    }

    /// Copies the first `size` bytes of `source` into parts `1..` of `mpu` at `key`, in
    /// parallel; returns the parts' ETags in order.
    async fn copy_into_parts(
        &self,
        source: &str,
        key: &str,
        mpu: &str,
        size: u64,
    ) -> Result<Vec<String>> {
        let ranges = copy_ranges(size, self.settings.copy_part_size);
        futures_util::stream::iter(ranges.into_iter().enumerate())
            .map(|(i, range)| self.upload_part_copy(source, key, mpu, i as u32 + 1, range))
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// Makes the object at `key` a copy of the `size`-byte object at `source`, atomically.
    async fn copy(&self, source: &str, key: &str, size: u64) -> Result<()> {
        if size <= self.settings.copy_part_size {
            self.s3
                .copy_object()
                .bucket(&self.settings.bucket)
                .key(key)
                .copy_source(encode_copy_source(&format!(
                    "{}/{source}",
                    self.settings.bucket
                )))
                .send()
                .await
                .map_err(|e| self.storage("CopyObject", key, e))?;
            return Ok(());
        }
        let mpu = self.create_mpu(key).await?;
        let done = async {
            let etags = self.copy_into_parts(source, key, &mpu, size).await?;
            self.complete_mpu(key, &mpu, completed_parts(&etags, 1))
                .await
        }
        .await;
        if done.is_err() {
            self.abort_mpu_quietly(key, &mpu).await;
        }
        done
    }

    /// Adds `body` as the next part of the upload, creating or reopening its multipart
    /// upload as needed, and records it in `state`.
    async fn add_part(&self, folder: &str, state: &mut UploadState, body: Bytes) -> Result<()> {
        let data = format!("{folder}data");
        if state.parts + 1 >= MAX_PARTS {
            return Err(RegistryError::PayloadTooLarge(format!(
                "the upload reached S3's {MAX_PARTS} parts of {} bytes; the store's \
                 part_size must grow for larger blobs",
                self.settings.part_size
            )));
        }
        let len = body.len() as u64;
        let mut reopened = false;
        loop {
            let mpu = match &state.mpu {
                Some(mpu) => mpu.clone(),
                None => {
                    let mpu = self.create_mpu(&data).await?;
                    state.mpu = Some(mpu.clone());
                    mpu
                }
            };
            let number = state.parts + 1;
            match self.upload_part(&data, &mpu, number, body.clone()).await? {
                Some(etag) => {
                    state.parts = number;
                    state.parts_bytes += len;
                    state.parts_chain = chain_etag(&state.parts_chain, &etag);
                    return Ok(());
                }
                // Sealed by `read_upload` (or gone): reopen once, then retry.
                None if !reopened => {
                    self.reopen(folder, state).await?;
                    reopened = true;
                }
                None => return Err(RegistryError::BlobUploadUnknown),
            }
        }
    }

    /// Replaces a sealed (completed) multipart upload by a new one whose parts are copies
    /// of the sealed object's first `parts_bytes` bytes; `BlobUploadUnknown` if there is
    /// no sealed object to reopen.
    async fn reopen(&self, folder: &str, state: &mut UploadState) -> Result<()> {
        let data = format!("{folder}data");
        match self.head(&data).await? {
            Some(size) if size >= state.parts_bytes => {}
            _ => return Err(RegistryError::BlobUploadUnknown),
        }
        let mpu = self.create_mpu(&data).await?;
        // Recorded before the copies, so the caller aborts it if they fail.
        state.mpu = Some(mpu.clone());
        let etags = self
            .copy_into_parts(&data, &data, &mpu, state.parts_bytes)
            .await?;
        state.parts = etags.len() as u32;
        state.parts_chain = etags
            .iter()
            .fold(String::new(), |chain, etag| chain_etag(&chain, etag));
        Ok(())
    }

    /// Streams `body` into the upload; updates `state` as parts and pending objects are
    /// stored.
    async fn write_body(
        &self,
        folder: &str,
        offset: u64,
        state: &mut UploadState,
        mut body: ByteStream,
    ) -> Result<()> {
        let part_size = self.settings.part_size as usize;
        let mut pending = state.pending_bytes() as usize;
        // Bytes not yet stored; they start at `buf_start` and follow the pending objects.
        let mut buf = BytesMut::new();
        let mut buf_start = offset;
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
            if pending + buf.len() < part_size {
                continue;
            }
            if !state.pending.is_empty() {
                let mut joined = self.read_pending(folder, &state.pending).await?;
                joined.extend_from_slice(&buf);
                buf = joined;
                buf_start = state.parts_bytes;
                state.pending.clear();
                pending = 0;
            }
            while buf.len() >= part_size {
                let part = buf.split_to(part_size).freeze();
                self.add_part(folder, state, part).await?;
                buf_start += part_size as u64;
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        if state.pending.len() >= MAX_PENDING_OBJECTS {
            // A client sending tiny chunks: merge the pending objects into one.
            let mut joined = self.read_pending(folder, &state.pending).await?;
            joined.extend_from_slice(&buf);
            buf = joined;
            buf_start = state.parts_bytes;
            state.pending.clear();
        }
        let name = pending_name(buf_start);
        let size = buf.len() as u64;
        self.put(&format!("{folder}{name}"), buf.freeze(), None)
            .await?;
        state.pending.push(PendingObject { name, size });
        Ok(())
    }

    /// Completes the upload's multipart upload into its `data` object of `offset` bytes
    /// (the pending bytes as the last part); done already if `data` has that size.
    async fn seal(&self, folder: &str, offset: u64, recorded: &UploadState) -> Result<()> {
        let data = format!("{folder}data");
        let sealed = self.head(&data).await?;
        if sealed == Some(offset) {
            return Ok(());
        }
        let mut state = recorded.clone();
        let result = self.seal_parts(folder, &data, &mut state).await;
        if result.is_err()
            && let Some(mpu) = &state.mpu
            && state.mpu != recorded.mpu
        {
            self.abort_mpu_quietly(&data, mpu).await;
        }
        result
    }

    async fn seal_parts(&self, folder: &str, data: &str, state: &mut UploadState) -> Result<()> {
        let mpu = state
            .mpu
            .clone()
            .ok_or_else(|| RegistryError::Storage("sealing an upload without parts".into()))?;
        let mut parts = match self.list_parts(data, &mpu, state.parts).await? {
            Some(parts) => parts,
            None => {
                // Sealed before at a smaller offset: reopen from the sealed object.
                self.reopen(folder, state).await?;
                let reopened = state.mpu.clone().unwrap_or_default();
                self.list_parts(data, &reopened, state.parts)
                    .await?
                    .ok_or(RegistryError::BlobUploadUnknown)?
            }
        };
        let chain = parts.iter().fold(String::new(), |chain, (_, etag, _)| {
            chain_etag(&chain, etag)
        });
        let listed_bytes: u64 = parts.iter().map(|(_, _, size)| size).sum();
        if parts.len() != state.parts as usize
            || chain != state.parts_chain
            || listed_bytes != state.parts_bytes
        {
            return Err(RegistryError::Storage(format!(
                "S3 upload {data}: its parts are not the ones the upload recorded ({} parts, \
                 {listed_bytes} bytes listed; {} parts, {} bytes recorded): a concurrent \
                 write replaced them",
                parts.len(),
                state.parts,
                state.parts_bytes
            )));
        }
        let mpu = state.mpu.clone().unwrap_or_default();
        if !state.pending.is_empty() {
            let last = self.read_pending(folder, &state.pending).await?;
            let number = state.parts + 1;
            let etag = self
                .upload_part(data, &mpu, number, last.freeze())
                .await?
                .ok_or(RegistryError::BlobUploadUnknown)?;
            parts.push((number, etag, 0));
        }
        let etags: Vec<String> = parts.into_iter().map(|(_, etag, _)| etag).collect();
        self.complete_mpu(data, &mpu, completed_parts(&etags, 1))
            .await
    }

    /// Parts `1..=count` of `mpu` as (number, ETag, size), or `None` if the upload is gone.
    async fn list_parts(
        &self,
        key: &str,
        mpu: &str,
        count: u32,
    ) -> Result<Option<Vec<(u32, String, u64)>>> {
        let mut parts = Vec::with_capacity(count as usize);
        let mut marker: Option<String> = None;
        loop {
            let out = match self
                .s3
                .list_parts()
                .bucket(&self.settings.bucket)
                .key(key)
                .upload_id(mpu)
                .set_part_number_marker(marker.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if is_missing_upload(&e) || status(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(self.storage("ListParts", key, e)),
            };
            for part in out.parts() {
                let number = part.part_number().unwrap_or(0);
                if number < 1 || number as u32 > count {
                    continue; // a part of a failed write, never recorded
                }
                let etag = part.e_tag().unwrap_or_default().to_owned();
                let size = part.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                parts.push((number as u32, etag, size));
            }
            let last_listed = out.parts().last().and_then(|p| p.part_number());
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) if last_listed.is_some_and(|n| (n as u32) < count) => {
                    marker = Some(next.to_owned());
                }
                _ => break,
            }
        }
        parts.sort_by_key(|(n, _, _)| *n);
        Ok(Some(parts))
    }

    /// Removes everything an upload stored: its multipart uploads and its objects.
    async fn clean_up(&self, folder: &str, state: Option<&UploadState>) -> Result<()> {
        let data = format!("{folder}data");
        if let Some(mpu) = state.and_then(|s| s.mpu.as_deref()) {
            self.abort_mpu(&data, mpu).await?;
        }
        // Multipart uploads that failed writes created and could not abort.
        let listed = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.settings.bucket)
            .prefix(folder)
            .send()
            .await
            .map_err(|e| self.storage("ListMultipartUploads", folder, e))?;
        for upload in listed.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                self.abort_mpu(key, id).await?;
            }
        }
        self.delete_folder(folder).await
    }

    /// Deletes every object whose key starts with `folder`.
    async fn delete_folder(&self, folder: &str) -> Result<()> {
        delete_prefix(&self.s3, &self.settings.bucket, folder).await
    }
}

/// Deletes every object of `bucket` whose key starts with `prefix`: ListObjectsV2 pages
/// and one DeleteObjects per page (shared by the blob store and the scan store).
pub(crate) async fn delete_prefix(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<()> {
    let failed = |op: &str, e: &dyn fmt::Display| {
        RegistryError::Storage(format!("S3 {op} s3://{bucket}/{prefix}: {e}"))
    };
    let mut token: Option<String> = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| failed("ListObjectsV2", &DisplayErrorContext(&e)))?;
        let ids: Vec<ObjectIdentifier> = out
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<_, _>>()
            .map_err(RegistryError::storage)?;
        if !ids.is_empty() {
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(RegistryError::storage)?;
            let res = s3
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| failed("DeleteObjects", &DisplayErrorContext(&e)))?;
            if let Some(err) = res.errors().first() {
                return Err(RegistryError::Storage(format!(
                    "S3 DeleteObjects {}: {} {}",
                    err.key().unwrap_or(prefix),
                    err.code().unwrap_or_default(),
                    err.message().unwrap_or_default()
                )));
            }
        }
        match out.next_continuation_token() {
            Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => return Ok(()),
        }
    }
}

fn completed_parts(etags: &[String], first: u32) -> Vec<CompletedPart> {
    etags
        .iter()
        .enumerate()
        .map(|(i, etag)| {
            CompletedPart::builder()
                .part_number((first as usize + i) as i32)
                .e_tag(etag)
                .build()
        })
        .collect()
}

/// Streams an S3 body, naming `key` in errors.
fn body_stream(body: S3Body, key: String) -> ByteStream {
    Box::pin(futures_util::stream::try_unfold(
        (body, key),
        |(mut body, key)| async move {
            match body.next().await {
                Some(Ok(chunk)) => Ok(Some((chunk, (body, key)))),
                Some(Err(e)) => Err(RegistryError::Storage(format!(
                    "S3 GetObject {key}: reading the body: {e}"
                ))),
                None => Ok(None),
            }
        },
    ))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.head(&self.blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, _range: Option<ByteRange>) -> Result<BlobContent> {
        // The range travels in the client's own `Range` header: one URL serves every range.
        let key = self.blob_key(digest);
        let config =
            PresigningConfig::expires_in(Duration::from_secs(self.settings.presign_expiry_secs))
                .map_err(|e| RegistryError::Storage(format!("presigning {key}: {e}")))?;
        let presigned = self
            .s3
            .get_object()
            .bucket(&self.settings.bucket)
            .key(&key)
            .presigned(config)
            .await
            .map_err(|e| self.storage("presign GetObject", &key, e))?;
        Ok(BlobContent::Redirect {
            url: self.public_url(presigned.uri())?,
        })
    }

    async fn begin_upload(&self, upload_id: &str) -> Result<String> {
        self.upload_folder(upload_id)?;
        Ok(UploadState::default().encode())
    }

    async fn write_upload(&self, cursor: &UploadCursor, body: ByteStream) -> Result<String> {
        let folder = self.upload_folder(&cursor.upload_id)?;
        let recorded = UploadState::parse(&cursor.store_state, cursor.offset)?;
        let mut state = recorded.clone();
        match self
            .write_body(&folder, cursor.offset, &mut state, body)
            .await
        {
            Ok(()) => Ok(state.encode()),
            Err(e) => {
                // A multipart upload this write created is referenced by no recorded state.
                if let Some(mpu) = &state.mpu
                    && state.mpu != recorded.mpu
                {
                    self.abort_mpu_quietly(&format!("{folder}data"), mpu).await;
                }
                Err(e)
            }
        }
    }

    async fn read_stream(&self, digest: &Digest) -> Result<ByteStream> {
        let key = self.blob_key(digest);
        match self
            .s3
            .get_object()
            .bucket(&self.settings.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => Ok(body_stream(out.body, key)),
            Err(e) if is_missing_key(&e) => Err(RegistryError::BlobUnknown(digest.to_string())),
            Err(e) => Err(self.storage("GetObject", &key, e)),
        }
    }

    async fn read_upload(&self, cursor: &UploadCursor) -> Result<ByteStream> {
        let folder = self.upload_folder(&cursor.upload_id)?;
        let state = UploadState::parse(&cursor.store_state, cursor.offset)?;
        if state.mpu.is_none() {
            let store = self.clone();
            let objects = state
                .pending
                .into_iter()
                .map(move |p| (format!("{folder}{}", p.name), p.size));
            let stream = futures_util::stream::iter(objects)
                .then(move |(key, size)| {
                    let store = store.clone();
                    async move {
                        let body = store
                            .open(&key, size, RegistryError::BlobUploadUnknown)
                            .await?;
                        Ok::<_, RegistryError>(body_stream(body, key))
                    }
                })
                .try_flatten();
            return Ok(Box::pin(stream));
        }
        self.seal(&folder, cursor.offset, &state).await?;
        let data = format!("{folder}data");
        let body = self
            .open(&data, cursor.offset, RegistryError::BlobUploadUnknown)
            .await?;
        Ok(body_stream(body, data))
    }

    async fn commit_upload(&self, cursor: &UploadCursor, digest: &Digest) -> Result<()> {
        let folder = self.upload_folder(&cursor.upload_id)?;
        let state = UploadState::parse(&cursor.store_state, cursor.offset)?;
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            if state.mpu.is_none() {
                let bytes = self.read_pending(&folder, &state.pending).await?;
                let sha256 = (digest.algorithm() == DigestAlgorithm::Sha256).then_some(digest);
                self.put(&key, bytes.freeze(), sha256).await?;
            } else {
                self.seal(&folder, cursor.offset, &state).await?;
                self.copy(&format!("{folder}data"), &key, cursor.offset)
                    .await?;
            }
        }
        self.clean_up(&folder, Some(&state)).await
    }

    async fn abort_upload(&self, cursor: &UploadCursor) -> Result<()> {
        let Ok(folder) = self.upload_folder(&cursor.upload_id) else {
            return Ok(()); // no upload can have such an id
        };
        let state = UploadState::parse(&cursor.store_state, cursor.offset).ok();
        self.clean_up(&folder, state.as_ref()).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let key = self.blob_key(digest);
        match self
            .s3
            .delete_object()
            .bucket(&self.settings.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing_key(&e) => Ok(()),
            Err(e) => Err(self.storage("DeleteObject", &key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_client() -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn digest() -> Digest {
        Digest::of(DigestAlgorithm::Sha256, b"blob")
    }

    #[tokio::test]
    async fn presigned_urls_are_rewritten_to_the_public_base() {
        let mut settings = S3BlobStoreSettings::new("bucket");
        settings.prefix = "reg/".into();
        settings.public_base_url = Some("https://cdn.example.com/edge/".into());
        let store = S3BlobStore::new(offline_client(), settings).unwrap();
        let BlobContent::Redirect { url } = store.read(&digest(), None).await.unwrap() else {
            panic!("an S3 read must redirect");
        };
        let path = format!("/reg/blobs/sha256/{}?", digest().hex());
        assert!(
            url.starts_with(&format!("https://cdn.example.com/edge{path}")),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("X-Amz-Expires=900"), "{url}");
        // The same URL serves every range: the client sends its own Range header.
        let Ok(BlobContent::Redirect { url: ranged }) = store
            .read(&digest(), Some(ByteRange { start: 1, end: 2 }))
            .await
        else {
            panic!("an S3 range read must redirect");
        };
        assert!(ranged.starts_with(&format!("https://cdn.example.com/edge{path}")));
    }

    #[tokio::test]
    async fn presigned_urls_point_at_the_bucket_without_a_public_base() {
        let store = S3BlobStore::new(offline_client(), S3BlobStoreSettings::new("bucket")).unwrap();
        let BlobContent::Redirect { url } = store.read(&digest(), None).await.unwrap() else {
            panic!("an S3 read must redirect");
        };
        assert!(
            url.starts_with(&format!(
                "https://bucket.s3.us-east-1.amazonaws.com/blobs/sha256/{}?",
                digest().hex()
            )),
            "{url}"
        );
    }

    #[test]
    fn settings_are_checked() {
        let ok = S3BlobStoreSettings::new("bucket");
        assert!(S3BlobStore::new(offline_client(), ok.clone()).is_ok());
        let cases: Vec<fn(&mut S3BlobStoreSettings)> = vec![
            |s| s.bucket.clear(),
            |s| s.part_size = 5 * MIB - 1,
            |s| s.part_size = 5 * GIB + 1,
            |s| s.copy_part_size = MIB,
            |s| s.copy_part_size = 5 * GIB,
            |s| s.presign_expiry_secs = 0,
            |s| s.presign_expiry_secs = 8 * 24 * 3600,
            |s| s.public_base_url = Some("not a url".into()),
            |s| s.public_base_url = Some("ftp://cdn.example.com".into()),
            |s| s.public_base_url = Some("https://cdn.example.com/?a=b".into()),
        ];
        for (i, spoil) in cases.iter().enumerate() {
            let mut bad = ok.clone();
            spoil(&mut bad);
            match S3BlobStore::new(offline_client(), bad) {
                Err(RegistryError::Storage(m)) => assert!(m.contains("settings"), "{m}"),
                other => panic!("case {i}: expected a settings error, got {other:?}"),
            }
        }
    }

    #[test]
    fn upload_ids_cannot_leave_the_uploads_folder() {
        let store = S3BlobStore::new(offline_client(), S3BlobStoreSettings::new("b")).unwrap();
        assert_eq!(store.upload_folder("abc123").unwrap(), "uploads/abc123/");
        for bad in ["", "../x", "a/b", "a.b"] {
            assert!(matches!(
                store.upload_folder(bad),
                Err(RegistryError::BlobUploadUnknown)
            ));
        }
    }

    #[test]
    fn states_round_trip_and_must_match_the_offset() {
        assert_eq!(UploadState::parse("", 0).unwrap(), UploadState::default());
        assert_eq!(UploadState::default().encode(), "{}");
        let state = UploadState {
            mpu: Some("m".into()),
            parts: 2,
            parts_bytes: 16 * MIB,
            parts_chain: chain_etag(&chain_etag("", "\"a\""), "b"),
            pending: vec![PendingObject {
                name: "p1-ff".into(),
                size: 10,
            }],
        };
        assert_eq!(
            UploadState::parse(&state.encode(), 16 * MIB + 10).unwrap(),
            state
        );
        assert!(UploadState::parse(&state.encode(), 16 * MIB).is_err());
        assert!(UploadState::parse("{\"pending\":[{\"name\":\"../x\",\"size\":1}]}", 1).is_err());
        assert!(UploadState::parse("{\"parts\":1,\"partsBytes\":1}", 1).is_err());
        assert!(UploadState::parse("not json", 0).is_err());
        // Quotes around ETags do not matter; order does.
        assert_eq!(chain_etag("", "\"a\""), chain_etag("", "a"));
        assert_ne!(
            chain_etag(&chain_etag("", "a"), "b"),
            chain_etag(&chain_etag("", "b"), "a")
        );
    }

    #[test]
    fn copy_ranges_cover_the_object_with_parts_of_at_least_5_mib() {
        assert_eq!(copy_ranges(0, 5 * MIB), vec![]);
        assert_eq!(copy_ranges(10, 5 * MIB), vec![(0, 9)]);
        assert_eq!(
            copy_ranges(12 * MIB, 5 * MIB),
            vec![(0, 5 * MIB - 1), (5 * MIB, 12 * MIB - 1)]
        );
        assert_eq!(
            copy_ranges(15 * MIB, 5 * MIB),
            vec![
                (0, 5 * MIB - 1),
                (5 * MIB, 10 * MIB - 1),
                (10 * MIB, 15 * MIB - 1)
            ]
        );
        for (size, part) in [
            (3 * GIB + 7, GIB),
            (40 * MIB + 1, 8 * MIB),
            (6 * MIB, 5 * MIB),
        ] {
            let ranges = copy_ranges(size, part);
            assert_eq!(ranges.first().unwrap().0, 0);
            assert_eq!(ranges.last().unwrap().1, size - 1);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0);
            }
            for &(s, e) in &ranges {
                assert!(e - s + 1 >= MIN_PART_SIZE && e - s < part + MIN_PART_SIZE);
            }
        }
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(encode_copy_source("b/a b/c+d"), "b/a%20b/c%2Bd");
        assert_eq!(
            encode_copy_source("b/x/uploads/1/data"),
            "b/x/uploads/1/data"
        );
    }
}
