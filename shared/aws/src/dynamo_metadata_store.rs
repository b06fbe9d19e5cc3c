//! `DynamoMetadataStore`: the [`MetadataStore`] port on one DynamoDB table laid out by the
//! single-table key schema of [`registry_core::keys`], with manifests too large for an
//! item kept in S3.
//!
//! # Table and items
//!
//! The table has a string partition key `pk`, a string sort key `sk`, on-demand billing,
//! and TTL on `expires_at`. Items, with the attributes this adapter writes besides
//! `pk`/`sk` (`v` is always a JSON string):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | repository marker | `REPO#<name>` | `REPO` | — |
//! | catalog entry | `CATALOG` | `REPO#<name>` | — |
//! | manifest | `REPO#<name>` | `MANIFEST#<digest>` | record attributes (below), `rev` (S) |
//! | tag | `REPO#<name>` | `TAG#<tag>` | `digest` (S), and a copy of the record attributes |
//! | blob link | `REPO#<name>` | `BLOB#<digest>` | `size` (N) |
//! | reverse blob link | `BLOB#<digest>` | `REPO#<name>` | — |
//! | referrer | `REPO#<name>` | `REFERRER#<subject>#<digest>` | `v`: the referrer descriptor |
//! | upload session | `UPLOAD#<id>` | `UPLOAD` | `v`: the [`UploadSession`], `offset` (N), `expires_at_ms` (N), `expires_at` (N, TTL) |
//! | outbox event | `OUTBOX` | `EVENT#<event id>` | `v`: the [`Event`] |
//!
//! Identities, webhooks, scan reports and the vulnerability database live in the same
//! table: see the `IdentityStore`, `WebhookStore`, `ScanStore` and `VulnerabilityStore`
//! implementations (`dynamo_identity_store.rs`, `dynamo_webhook_store.rs`,
//! `dynamo_scan_store.rs`; the last also keeps large reports and advisories in S3, under
//! [`DynamoSettings::scan_prefix`]).
//!
//! The **record attributes** of a manifest are `v`, the JSON of the [`ManifestRecord`]
//! without its content (digest, mediaType, subject, artifactType, annotations), and
//! either `content` (S, the exact manifest bytes) or `s3_key` (S, a pointer to the
//! exact bytes at `<manifest_prefix><algorithm>/<hex>` in the manifest bucket). Content
//! goes to S3 when `record size > inline_manifest_limit` (default 300 KiB; an item holds
//! at most 400 KB) or when `record size × (tags + 1) > 3 MiB` (a transaction holds at
//! most 4 MB and every tag item carries a copy), where record size is the length of
//! `content` plus `v`. The object is written (PutObject, idempotent: the key is the
//! digest) before the transaction that points at it; objects are never deleted by this
//! adapter, since another repository may point at the same digest (garbage collection's
//! job). Reads check the object against its digest.
//!
//! Tag items carry the record so that a manifest GET by tag is one GetItem. `rev` is a
//! fresh random token written by every `put_manifest`; `delete_manifest` deletes the
//! manifest on condition that `rev` is the one it read before it looked for tags, so a
//! concurrent push that tags the manifest being deleted makes the delete retry rather
//! than leave a tag on a missing manifest. `expires_at` (epoch seconds) is the session's
//! expiry rounded up plus [`UPLOAD_TTL_GRACE_SECS`], so the registry's sweep (which also
//! discards the blob store's upload) sees an expired session before DynamoDB's TTL
//! removes it; TTL is the backstop. The exact expiry is `expires_at_ms`.
//!
//! Outbox events are one partition (`OUTBOX`), written by every change that records an
//! event; on AWS a partition takes about 1,000 writes a second, which bounds the pushes,
//! tag deletes and uploads a second that record events (not mounts: they record none).
//! Event ids are UUIDv7, so the partition's sort order is time order.
//!
//! # Calls per method
//!
//! All reads are strongly consistent (`ConsistentRead = true`).
//!
//! - `get_manifest`: one GetItem (+ one S3 GetObject when the content is in S3).
//! - `get_manifest_by_tag`: one GetItem of the tag item (+ one GetObject as above).
//! - `resolve_tag`, `blob_link`, `repository_exists`, `get_upload`: one GetItem.
//! - `put_manifest`: (PutObject when the content goes to S3, then) one
//!   TransactWriteItems of the manifest, each tag, the referrer entry (when the manifest
//!   has a subject), the repository marker, the catalog entry and a Put of each event
//!   into the outbox. At most [`MAX_TAGS_PER_PUT`] tags (a transaction holds 100 items);
//!   more is `TagInvalid`. When that many tags, a referrer entry and the events would
//!   not fit with the marker and the catalog entry, one BatchWriteItem writes those two
//!   first (idempotent, as `link_blob` writes them), and the transaction keeps the
//!   manifest, its tags, its referrer entry and the events; more than fit even then is
//!   `TagInvalid`.
//! - `delete_manifest`: GetItem of the manifest (`rev`, subject), Query of the
//!   repository's tags filtered on `digest`, then one TransactWriteItems deleting the
//!   manifest (condition `rev = :seen`), each tag found (condition `digest = :d`, so a
//!   tag moved meanwhile to another manifest stays), the referrer entry, and puts the
//!   events into the outbox. A cancelled condition starts over (bounded). When more than
//!   98 tags (minus one per event) point at the manifest (the final transaction's room
//!   besides the manifest, its referrer entry and the events), the surplus is deleted
//!   (on the same condition) in earlier transactions, so no tag ever points at a missing
//!   manifest; the events are only in the final transaction, the one that deletes the
//!   manifest. No manifest: `false` after the GetItem, nothing recorded.
//! - `delete_tag`: without events, one DeleteItem (condition `attribute_exists(pk)` tells
//!   whether it existed without returning the manifest copy). With events, one
//!   TransactWriteItems of that Delete (same condition) and a Put of each event into the
//!   outbox; a failed condition is `false`, with nothing recorded.
//! - `link_blob`: without events, one BatchWriteItem of the link, the reverse link, the
//!   repository marker and the catalog entry (unprocessed items are resent). With events
//!   (an upload, not a mount), one TransactWriteItems of the same four puts and a Put of
//!   each event into the outbox, since an event must commit with its change (twice the
//!   write units of the batch, and concurrent uploads to one repository contend on its
//!   marker: their cancellations are resent, see Consistency). The batch is not a
//!   transaction: the four
//!   puts are idempotent with fixed values (a digest has one size), the method succeeds
//!   only when all four are written, and the caller repeats a failed link (the client
//!   retries its upload or mount), so a failure can only leave some of them written
//!   for a while, e.g. a link before its repository appears in the catalog, never a
//!   wrong value. It halves the write units and does not contend with pushes on the
//!   repository marker as concurrent transactions would.
//! - `unlink_blob`: DeleteItem of the link (`ReturnValues = ALL_OLD`, to tell whether it
//!   existed), then DeleteItem of the reverse link.
//! - `repositories_linking`, `list_tags`, `list_repositories`, `list_referrers`: Query on
//!   the partition with `begins_with` on the sort key, projected to what is returned,
//!   paginated until enough items (`limit + 1` for listings, to know `more`).
//!   `after` becomes the `ExclusiveStartKey`. DynamoDB reads whole items before it
//!   projects, so listing tags consumes read units (and 1 MB pages) for the manifest
//!   copies the tag items carry: the price of one-read GETs by tag.
//! - `create_upload`: PutItem, condition `attribute_not_exists(pk)`.
//! - `update_upload`: PutItem, condition `attribute_exists(pk) AND offset = :expected`,
//!   returning the old item when the condition fails (so a moved offset is `Conflict`
//!   and a missing session `BlobUploadUnknown`, without recreating it).
//! - `delete_upload`: DeleteItem with `ReturnValues = ALL_OLD`.
//! - `expired_uploads`: a Scan filtered on `begins_with(pk, "UPLOAD#") AND
//!   expires_at_ms < :now`. A maintenance operation (the sweep), acceptable because the
//!   table holds few sessions besides small items and TTL removes old sessions on AWS;
//!   LocalStack never runs TTL, so expiry is always filtered on `expires_at_ms`.
//! - `outbox_events`: Query of `OUTBOX` with `begins_with(sk, "EVENT#")`, ascending
//!   (oldest first), `Limit` = what is still wanted, over pages until `limit`.
//! - `remove_outbox_event`: one DeleteItem (unconditional, so removing twice succeeds).
//!
//! # Consistency
//!
//! Manifest puts and deletes are transactions, so a tag never points at a missing
//! manifest and concurrent tag moves end on one of the pushed manifests (tag puts are
//! unconditional: last writer wins). Transactions cancelled by a conflict with another
//! transaction, and single writes rejected by one (`TransactionConflictException`),
//! are retried with jittered exponential backoff, up to [`MAX_ATTEMPTS`] times.
//! Reads are strongly consistent, so a read after a successful write sees it.
//! Outbox events are Puts inside the transaction of their change (for `link_blob` and
//! `delete_tag`, the transaction they then use), so an event exists if and only if its
//! change committed; a change retried after a conflict writes the same event item again.
//!
//! # Errors
//!
//! `Storage` (naming the operation) for every DynamoDB or S3 failure and for items this
//! adapter cannot decode; `Conflict` when `update_upload`'s offset does not match, when
//! `create_upload`'s id exists, or when contention outlasts the retries;
//! `BlobUploadUnknown` when `update_upload` finds no session; `TagInvalid` for more than
//! [`MAX_TAGS_PER_PUT`] tags in one put, or for as many copies of a manifest's metadata
//! as would not fit one transaction (events included); `ManifestInvalid` when a
//! manifest's metadata alone (annotations) does not fit an item; `Storage` for more
//! events than one transaction holds besides the change.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use registry_core::events::Event;
use registry_core::keys;
use registry_core::manifest::ReferrerDescriptor;
use registry_core::ports::{ManifestRecord, MetadataStore, Page, PageRequest};
use registry_core::upload::UploadSession;
use registry_core::{Digest, RegistryError, RepoName, Result, Tag};
use serde::{Deserialize, Serialize};

/// The default largest record (content plus metadata) kept inline in an item.
pub const DEFAULT_INLINE_MANIFEST_LIMIT: usize = 300 * 1024;
/// Most tags one `put_manifest` may set: a transaction holds 100 items, and the
/// manifest, its referrer entry, the repository marker and the catalog entry take four.
/// With outbox events, the marker and the catalog entry leave the transaction when they
/// would not fit (see `put_manifest` in the module doc), so one or two events still fit.
pub const MAX_TAGS_PER_PUT: usize = MAX_TRANSACTION_ITEMS - 4;
/// How long after its expiry DynamoDB's TTL may remove an upload session.
pub const UPLOAD_TTL_GRACE_SECS: u64 = 24 * 3600;
/// Attempts of a write that loses to concurrent transactions before `Conflict`.
pub const MAX_ATTEMPTS: u32 = 12;

pub(crate) const MAX_TRANSACTION_ITEMS: usize = 100;
/// Budget for the manifest and its tag copies in one transaction (the limit is 4 MB;
/// the rest is headroom for keys, the referrer descriptor and the markers).
const TRANSACTION_RECORD_BUDGET: usize = 3 * 1024 * 1024;
/// What a transaction may hold at all (4 MB, counted in decimal to be safe).
const TRANSACTION_LIMIT: usize = 4_000_000;
/// Keys and attribute names of an item, a generous estimate.
const ITEM_OVERHEAD: usize = 1024;
/// The largest record an item can hold (the limit is 400 KB, keys and names included).
pub(crate) const MAX_INLINE_RECORD: usize = 400_000 - ITEM_OVERHEAD;

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
pub(crate) const V: &str = "v";
const CONTENT: &str = "content";
pub(crate) const S3_KEY: &str = "s3_key";
const DIGEST: &str = "digest";
const REV: &str = "rev";
const SIZE: &str = "size";
const OFFSET: &str = "offset";
pub(crate) const EXPIRES_AT: &str = "expires_at";
const EXPIRES_AT_MS: &str = "expires_at_ms";

/// Where the metadata lives; filled by the composition root.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// The table (string `pk` HASH, string `sk` RANGE).
    pub table: String,
    /// The bucket of manifests too large for an item.
    pub manifest_bucket: String,
    /// Key prefix of those manifests in the bucket, e.g. `manifests/`.
    pub manifest_prefix: String,
    /// Key prefix, in the same bucket, of scan reports and advisories too large for an
    /// item: empty by default; the deployment puts them at `<prefix>`, beside
    /// `<prefix>manifests/`. Under it, `scan-reports/…` and `vulndb/…` (see
    /// `dynamo_scan_store.rs`).
    pub scan_prefix: String,
    /// The largest record (content plus metadata, in bytes) kept inline in an item; also
    /// the largest scan report or advisory JSON kept inline (capped at what an item holds).
    pub inline_manifest_limit: usize,
}

impl DynamoSettings {
    /// Settings with the `manifests/` prefix, large scan reports and advisories at the
    /// bucket's root (`scan-reports/…`, `vulndb/…`), and the default inline limit.
    pub fn new(table: impl Into<String>, manifest_bucket: impl Into<String>) -> Self {
        DynamoSettings {
            table: table.into(),
            manifest_bucket: manifest_bucket.into(),
            manifest_prefix: "manifests/".to_owned(),
            scan_prefix: String::new(),
            inline_manifest_limit: DEFAULT_INLINE_MANIFEST_LIMIT,
        }
    }
}

/// Metadata in DynamoDB (and large manifests in S3); cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoMetadataStore {
    pub(crate) ddb: aws_sdk_dynamodb::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) settings: Arc<DynamoSettings>,
}

pub(crate) type Item = HashMap<String, AttributeValue>;

/// A manifest record without its content: the `v` attribute of manifest and tag items.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestMeta {
    digest: Digest,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    subject: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    annotations: Option<BTreeMap<String, String>>,
    /// The annotations were too large to copy: read them from the manifest content.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    annotations_in_content: bool,
}

/// Annotations larger than this (as JSON) are not copied into items; they are read back
/// from the manifest itself, and left out of the referrers API's descriptor.
const MAX_COPIED_ANNOTATIONS: usize = 64 * 1024;

fn annotations_len(annotations: &Option<BTreeMap<String, String>>) -> usize {
    annotations
        .as_ref()
        .map_or(0, |a| a.iter().map(|(k, v)| k.len() + v.len() + 6).sum())
}

impl ManifestMeta {
    fn of(record: &ManifestRecord) -> Self {
        let large = annotations_len(&record.annotations) > MAX_COPIED_ANNOTATIONS;
        ManifestMeta {
            digest: record.digest.clone(),
            media_type: record.media_type.clone(),
            subject: record.subject.clone(),
            artifact_type: record.artifact_type.clone(),
            annotations: if large {
                None
            } else {
                record.annotations.clone()
            },
            annotations_in_content: large,
        }
    }

    fn with_content(self, content: String) -> ManifestRecord {
        let annotations = if self.annotations_in_content {
            serde_json::from_str::<serde_json::Value>(&content)
                .ok()
                .and_then(|v| serde_json::from_value(v["annotations"].clone()).ok())
        } else {
            self.annotations
        };
        ManifestRecord {
            digest: self.digest,
            media_type: self.media_type,
            content,
            subject: self.subject,
            artifact_type: self.artifact_type,
            annotations,
        }
    }
}

/// Where a stored record's content is.
enum Body {
    Inline(String),
    S3(String),
}

/// How a transaction ended.
pub(crate) enum TxOutcome {
    Committed,
    /// A condition failed; the reason code of each item, in order.
    ConditionFailed(Vec<String>),
}

/// The direction of a Query over sort keys, and its exclusive start (a whole sort key).
pub(crate) enum Walk {
    /// Ascending, strictly after `after` when given.
    Up { after: Option<String> },
    /// Descending, strictly before `before` when given.
    Down { before: Option<String> },
}

/// A failure of `op` as `Storage`: the service's error code and message when there is
/// one, otherwise the whole error chain.
pub(crate) fn storage<E: std::error::Error + ProvideErrorMetadata>(
    op: &str,
    err: E,
) -> RegistryError {
    match err.code() {
        Some(code) => RegistryError::Storage(format!(
            "{op}: {code}: {}",
            err.message().unwrap_or("no message")
        )),
        None => RegistryError::Storage(format!("{op}: {}", DisplayErrorContext(&err))),
    }
}

pub(crate) fn plain_error(op: &str, err: impl std::error::Error) -> RegistryError {
    RegistryError::Storage(format!("{op}: {}", DisplayErrorContext(&err)))
}

pub(crate) fn corrupt(op: &str, what: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("{op}: {what}"))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn names<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub(crate) fn get_s<'i>(item: &'i Item, name: &str) -> Option<&'i str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

pub(crate) fn require_s<'i>(op: &str, item: &'i Item, name: &str) -> Result<&'i str> {
    get_s(item, name).ok_or_else(|| corrupt(op, format!("item lacks string attribute {name}")))
}

pub(crate) fn require_n(op: &str, item: &Item, name: &str) -> Result<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(op, format!("attribute {name} is not a u64: {v}"))),
        _ => Err(corrupt(op, format!("item lacks number attribute {name}"))),
    }
}

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(op: &str, item: &Item) -> Result<T> {
    serde_json::from_str(require_s(op, item, V)?).map_err(|e| corrupt(op, e))
}

pub(crate) fn encode_json<T: Serialize>(op: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt(op, e))
}

pub(crate) fn build<T>(
    op: &str,
    r: std::result::Result<T, aws_sdk_dynamodb::error::BuildError>,
) -> Result<T> {
    r.map_err(|e| plain_error(op, e))
}

/// A random 64-bit number (std's per-instance SipHash keys), for jitter and tokens.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_nanos());
    h.finish()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Sleeps a random time up to 10 ms × 2^attempt (at most 640 ms): full jitter.
pub(crate) async fn backoff(attempt: u32) {
    let cap = 10u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(random_u64() % (cap + 1))).await;
}

fn is_transaction_conflict<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(
        e.code(),
        Some("TransactionConflictException" | "TransactionConflict")
    )
}

/// Sends a single-item write again while a transaction holds its item.
pub(crate) async fn retry_conflicts<T, E, F, Fut>(
    mut send: F,
) -> std::result::Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(e) if attempt + 1 < MAX_ATTEMPTS && is_transaction_conflict(&e) => {
                backoff(attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Why a transaction was cancelled, from its items' reason codes.
#[derive(Debug, PartialEq, Eq)]
enum Cancellation {
    /// A condition of ours failed: the caller decides.
    ConditionFailed,
    /// Only lost to concurrent writes (or throttled): send it again.
    Conflict,
    /// Anything else (validation, size): a storage failure.
    Other,
}

fn cancellation(codes: &[String]) -> Cancellation {
    if codes.iter().any(|c| c == "ConditionalCheckFailed") {
        Cancellation::ConditionFailed
    } else if codes.iter().all(|c| {
        matches!(
            c.as_str(),
            "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    }) {
        Cancellation::Conflict
    } else {
        Cancellation::Other
    }
}

/// Whether a record goes inline (`true`) or to S3, given the length of its metadata JSON
/// and content, how many tag items copy it, the size of the transaction's other items
/// (outbox events) and the inline limit; refuses a record whose metadata alone, or whose
/// transaction, cannot fit.
fn stores_inline(
    meta_len: usize,
    content_len: usize,
    tags: usize,
    others_len: usize,
    limit: usize,
) -> Result<bool> {
    if tags > MAX_TAGS_PER_PUT {
        return Err(RegistryError::TagInvalid(format!(
            "at most {MAX_TAGS_PER_PUT} tags per manifest push"
        )));
    }
    if meta_len > MAX_INLINE_RECORD {
        return Err(RegistryError::ManifestInvalid(
            "manifest annotations too large to store".into(),
        ));
    }
    let record_size = meta_len + content_len;
    let copies = tags + 1;
    let inline = record_size <= limit.min(MAX_INLINE_RECORD)
        && record_size.saturating_mul(copies) <= TRANSACTION_RECORD_BUDGET;
    let stored = if inline { record_size } else { meta_len };
    // The copies, the referrer descriptor (at most the metadata), the two markers and the
    // other items.
    let estimate = (stored + ITEM_OVERHEAD) * copies
        + (meta_len + ITEM_OVERHEAD)
        + 2 * ITEM_OVERHEAD
        + others_len;
    if estimate > TRANSACTION_LIMIT {
        return Err(RegistryError::TagInvalid(format!(
            "too many tags ({tags}) for a manifest with this much metadata"
        )));
    }
    Ok(inline)
}

/// Refuses a transaction of more items than DynamoDB takes (only reachable with an
/// unusual number of events for one change).
fn fits_one_transaction(op: &str, items: usize) -> Result<()> {
    if items > MAX_TRANSACTION_ITEMS {
        return Err(RegistryError::Storage(format!(
            "{op}: {items} items do not fit one transaction (at most {MAX_TRANSACTION_ITEMS})"
        )));
    }
    Ok(())
}

/// Epoch seconds at which TTL may remove a session expiring at `expires_at_ms`.
fn ttl_secs(expires_at_ms: u64) -> u64 {
    expires_at_ms
        .div_ceil(1000)
        .saturating_add(UPLOAD_TTL_GRACE_SECS)
}

impl DynamoMetadataStore {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        s3: aws_sdk_s3::Client,
        settings: DynamoSettings,
    ) -> Self {
        DynamoMetadataStore {
            ddb: dynamodb,
            s3,
            settings: Arc::new(settings),
        }
    }

    pub(crate) fn table(&self) -> &str {
        &self.settings.table
    }

    fn manifest_key(&self, digest: &Digest) -> String {
        format!(
            "{}{}/{}",
            self.settings.manifest_prefix,
            digest.algorithm().as_str(),
            digest.hex()
        )
    }

    /// One unconditional PutItem of `item` (the last write wins), resent while a
    /// transaction holds the item.
    pub(crate) async fn put_one(&self, op: &str, item: Item) -> Result<()> {
        retry_conflicts(|| {
            self.ddb
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .send()
        })
        .await
        .map_err(|e| storage(op, e))?;
        Ok(())
    }

    pub(crate) fn put_item(&self, op: &str, item: Item) -> Result<TransactWriteItem> {
        let put = build(
            op,
            Put::builder()
                .table_name(self.table())
                .set_item(Some(item))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Items marking `repo` as existing: its marker and its catalog entry.
    fn repo_items(repo: &RepoName) -> [Item; 2] {
        [
            key(keys::repo_pk(repo), keys::REPO_MARKER),
            key(keys::CATALOG, keys::catalog_sk(repo)),
        ]
    }

    /// The transaction items putting `events` in the outbox (`OUTBOX` / `EVENT#<id>`, `v`:
    /// the event JSON), and their size estimate in bytes.
    pub(crate) fn outbox_puts(
        &self,
        op: &str,
        events: &[Event],
    ) -> Result<(Vec<TransactWriteItem>, usize)> {
        let mut puts = Vec::with_capacity(events.len());
        let mut len = 0;
        for event in events {
            let json = encode_json(op, event)?;
            len += json.len() + ITEM_OVERHEAD;
            let mut item = key(keys::OUTBOX, keys::outbox_sk(&event.id));
            item.insert(V.to_owned(), s(json));
            puts.push(self.put_item(op, item)?);
        }
        Ok((puts, len))
    }

    /// One BatchWriteItem putting `items` (at most 25), resending unprocessed items with
    /// backoff until all are written.
    pub(crate) async fn batch_put(&self, op: &str, items: Vec<Item>) -> Result<()> {
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let put = build(op, PutRequest::builder().set_item(Some(item)).build())?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(op, requests).await
    }

    /// One BatchWriteItem deleting the items at `keys` (at most 25), resending unprocessed
    /// items with backoff until all are deleted.
    pub(crate) async fn batch_delete(&self, op: &str, keys: Vec<Item>) -> Result<()> {
        let mut requests = Vec::with_capacity(keys.len());
        for k in keys {
            let delete = build(op, DeleteRequest::builder().set_key(Some(k)).build())?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.batch_write(op, requests).await
    }

    /// One BatchWriteItem of `requests` (at most 25, no key twice), resending unprocessed
    /// items with backoff until all are done.
    async fn batch_write(&self, op: &str, mut pending: Vec<WriteRequest>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        for attempt in 0..MAX_ATTEMPTS {
            let resp = retry_conflicts(|| {
                self.ddb
                    .batch_write_item()
                    .request_items(self.table(), pending.clone())
                    .send()
            })
            .await
            .map_err(|e| storage(op, e))?;
            pending = resp
                .unprocessed_items
                .and_then(|mut m| m.remove(self.table()))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(RegistryError::Storage(format!(
            "{op}: {} items still unprocessed after {MAX_ATTEMPTS} attempts",
            pending.len()
        )))
    }

    pub(crate) async fn get_item(
        &self,
        op: &str,
        key: Item,
        projection: Option<&str>,
    ) -> Result<Option<Item>> {
        let mut req = self
            .ddb
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true);
        if let Some(p) = projection {
            req = req.projection_expression(p);
            for name in p.split(',').map(str::trim).filter(|n| n.starts_with('#')) {
                req = req.expression_attribute_names(name, &name[1..]);
            }
        }
        let out = req.send().await.map_err(|e| storage(op, e))?;
        Ok(out.item)
    }

    /// A PutItem of `item` under `condition` (attribute names `#name` are the attribute
    /// `name`). `Ok(None)`: written. `Ok(Some(now))`: the condition failed, and `now` is
    /// the item stored under the same key (projected to `projection`), taken from the
    /// failure when the backend returns it, read back otherwise.
    pub(crate) async fn conditional_put(
        &self,
        op: &str,
        item: Item,
        condition: &str,
        values: &[(&str, AttributeValue)],
        projection: &str,
    ) -> Result<Option<Option<Item>>> {
        let result = retry_conflicts(|| {
            let mut req = self
                .ddb
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            for name in condition
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '#'))
                .filter(|w| w.starts_with('#'))
            {
                req = req.expression_attribute_names(name, &name[1..]);
            }
            for (placeholder, value) in values {
                req = req.expression_attribute_values(*placeholder, value.clone());
            }
            req.send()
        })
        .await;
        let failed = match result {
            Ok(_) => return Ok(None),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(c) => c,
                other => return Err(storage(op, other)),
            },
        };
        match failed.item {
            Some(now) if !now.is_empty() => Ok(Some(Some(now))),
            // A backend that does not return the old item: read it.
            _ => {
                let key_of = |name: &str| item.get(name).cloned();
                let mut k = Item::new();
                for name in [PK, SK] {
                    if let Some(v) = key_of(name) {
                        k.insert(name.to_owned(), v);
                    }
                }
                Ok(Some(self.get_item(op, k, Some(projection)).await?))
            }
        }
    }

    /// Runs a transaction, retrying while it only loses to concurrent transactions.
    pub(crate) async fn transact(
        &self,
        op: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<TxOutcome> {
        let mut attempt = 0;
        loop {
            let result = self
                .ddb
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(TxOutcome::Committed),
                Err(e) => e,
            };
            let retryable = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let codes: Vec<String> = c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_owned())
                        .collect();
                    match cancellation(&codes) {
                        Cancellation::ConditionFailed => {
                            return Ok(TxOutcome::ConditionFailed(codes));
                        }
                        Cancellation::Conflict => true,
                        Cancellation::Other => false,
                    }
                }
                _ => is_transaction_conflict(&err),
            };
            if !retryable {
                return Err(storage(op, err));
            }
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(RegistryError::Conflict(format!(
                    "{op}: still conflicting with concurrent writes after {MAX_ATTEMPTS} attempts"
                )));
            }
            backoff(attempt).await;
        }
    }

    /// Sort keys (or `v` values) of partition `pk` starting with `prefix`, strictly after
    /// `prefix + after`, at most `want`, in order.
    pub(crate) async fn query(
        &self,
        op: &str,
        pk: &str,
        prefix: &str,
        after: Option<&str>,
        want: usize,
        attribute: &str,
    ) -> Result<Vec<String>> {
        let walk = Walk::Up {
            after: after.map(|a| format!("{prefix}{a}")),
        };
        let attributes: &[&str] = if attribute == SK { &[] } else { &[attribute] };
        self.query_items(op, pk, prefix, walk, want, attributes)
            .await?
            .iter()
            .map(|item| require_s(op, item, attribute).map(str::to_owned))
            .collect()
    }

    /// Items of partition `pk` whose sort key starts with `prefix` (any sort key when
    /// `prefix` is empty), walked as `walk` says, at most `want`, projected to `sk` and
    /// `attributes`; one Query per page, `Limit` = what is still wanted.
    pub(crate) async fn query_items(
        &self,
        op: &str,
        pk: &str,
        prefix: &str,
        walk: Walk,
        want: usize,
        attributes: &[&str],
    ) -> Result<Vec<Item>> {
        let (forward, start_sk) = match walk {
            Walk::Up { after } => (true, after),
            Walk::Down { before } => (false, before),
        };
        let mut projection = "#sk".to_owned();
        for i in 0..attributes.len() {
            projection.push_str(&format!(", #a{i}"));
        }
        // DynamoDB refuses an empty string as a key condition's operand.
        let condition = if prefix.is_empty() {
            "#pk = :pk"
        } else {
            "#pk = :pk AND begins_with(#sk, :prefix)"
        };
        let mut out = Vec::new();
        let mut start: Option<Item> = start_sk.map(|sk| key(pk, sk));
        while out.len() < want {
            let page_limit = i32::try_from(want - out.len()).unwrap_or(i32::MAX);
            let mut req = self
                .ddb
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .scan_index_forward(forward)
                .key_condition_expression(condition)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(pk))
                .projection_expression(&projection)
                .limit(page_limit)
                .set_exclusive_start_key(start.take());
            if !prefix.is_empty() {
                req = req.expression_attribute_values(":prefix", s(prefix));
            }
            for (i, name) in attributes.iter().enumerate() {
                req = req.expression_attribute_names(format!("#a{i}"), *name);
            }
            let resp = req.send().await.map_err(|e| storage(op, e))?;
            out.extend(resp.items.unwrap_or_default());
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(want);
        Ok(out)
    }

    /// A page of names: the sort keys after `prefix`, `more` when one more exists.
    pub(crate) async fn list_page(
        &self,
        op: &str,
        pk: &str,
        prefix: &str,
        page: &PageRequest,
    ) -> Result<Page> {
        if page.limit == 0 {
            return Ok(Page::default());
        }
        let mut sks = self
            .query(
                op,
                pk,
                prefix,
                page.after.as_deref(),
                page.limit.saturating_add(1),
                SK,
            )
            .await?;
        let more = sks.len() > page.limit;
        sks.truncate(page.limit);
        let items = sks
            .into_iter()
            .map(|sk| sk[prefix.len()..].to_owned())
            .collect();
        Ok(Page { items, more })
    }

    /// The record attributes of a manifest: `v` and `content` or `s3_key`.
    fn record_attributes(meta: &str, body: &Body) -> Vec<(String, AttributeValue)> {
        let mut attrs = vec![(V.to_owned(), s(meta))];
        match body {
            Body::Inline(content) => attrs.push((CONTENT.to_owned(), s(content.as_str()))),
            Body::S3(key) => attrs.push((S3_KEY.to_owned(), s(key.as_str()))),
        }
        attrs
    }

    /// Writes `bytes` to the object `key` of the manifest bucket (PutObject).
    pub(crate) async fn put_object(
        &self,
        op: &str,
        key: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        self.s3
            .put_object()
            .bucket(&self.settings.manifest_bucket)
            .key(key)
            .content_type(content_type)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| storage(&format!("S3 PutObject {key} (for {op})"), e))?;
        Ok(())
    }

    /// The content of the object `key` of the manifest bucket (GetObject), checked
    /// against `digest` and as UTF-8; `None` when there is no such object.
    pub(crate) async fn get_verified_object(
        &self,
        op: &str,
        key: &str,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let what = format!("S3 GetObject {key} (for {op})");
        let out = match self
            .s3
            .get_object()
            .bucket(&self.settings.manifest_bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(GetObjectError::is_no_such_key) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(storage(&what, e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| plain_error(&what, e))?
            .into_bytes();
        if Digest::of(digest.algorithm(), &bytes) != *digest {
            return Err(corrupt(
                op,
                format!("S3 object {key} does not match digest {digest}"),
            ));
        }
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| corrupt(op, format!("S3 object {key} is not UTF-8")))
    }

    /// The manifest record an item's record attributes describe, reading S3 if needed.
    async fn record_of(&self, op: &str, item: &Item) -> Result<ManifestRecord> {
        let meta: ManifestMeta = decode_json(op, item)?;
        if let Some(content) = get_s(item, CONTENT) {
            return Ok(meta.with_content(content.to_owned()));
        }
        let key = require_s(op, item, S3_KEY)?;
        let content = self
            .get_verified_object(op, key, &meta.digest)
            .await?
            .ok_or_else(|| corrupt(op, format!("S3 object {key} is missing")))?;
        Ok(meta.with_content(content))
    }

    /// The manifest record held by the item `sk` of `repo` (a manifest or a tag item):
    /// one GetItem, plus one S3 GetObject when the content lives in S3.
    async fn record_at(
        &self,
        op: &str,
        repo: &RepoName,
        sk: String,
    ) -> Result<Option<ManifestRecord>> {
        let item = self
            .get_item(
                op,
                key(keys::repo_pk(repo), sk),
                Some("#v, #content, #s3_key"),
            )
            .await?;
        match item {
            Some(item) => Ok(Some(self.record_of(op, &item).await?)),
            None => Ok(None),
        }
    }

    /// The tags of `repo` pointing at `digest`, as sort keys.
    async fn tags_pointing_at(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        const OP: &str = "DynamoDB Query (delete_manifest tags)";
        let pk = keys::repo_pk(repo);
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let resp = self
                .ddb
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .filter_expression("#digest = :d")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#digest", DIGEST)
                .expression_attribute_values(":pk", s(pk.as_str()))
                .expression_attribute_values(":prefix", s(keys::TAG_PREFIX))
                .expression_attribute_values(":d", s(digest.to_string()))
                .projection_expression("#sk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| storage(OP, e))?;
            for item in resp.items() {
                out.push(require_s(OP, item, SK)?.to_owned());
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    fn delete_tag_item(
        &self,
        op: &str,
        pk: &str,
        tag_sk: &str,
        digest: &Digest,
    ) -> Result<TransactWriteItem> {
        let delete = build(
            op,
            Delete::builder()
                .table_name(self.table())
                .set_key(Some(key(pk, tag_sk)))
                .condition_expression("#digest = :d")
                .expression_attribute_names("#digest", DIGEST)
                .expression_attribute_values(":d", s(digest.to_string()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

fn upload_item(op: &str, session: &UploadSession) -> Result<Item> {
    let mut item = key(keys::upload_pk(&session.id), keys::UPLOAD_SK);
    item.insert(V.to_owned(), s(encode_json(op, session)?));
    item.insert(OFFSET.to_owned(), n(session.offset));
    item.insert(EXPIRES_AT_MS.to_owned(), n(session.expires_at_ms));
    item.insert(EXPIRES_AT.to_owned(), n(ttl_secs(session.expires_at_ms)));
    Ok(item)
}

#[async_trait]
impl MetadataStore for DynamoMetadataStore {
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[Event],
    ) -> Result<()> {
        let mut link = key(keys::repo_pk(repo), keys::blob_sk(digest));
        link.insert(SIZE.to_owned(), n(size));
        let [marker, catalog] = Self::repo_items(repo);
        let reverse = key(keys::blob_pk(digest), keys::catalog_sk(repo));
        let items = vec![link, reverse, marker, catalog];
        if events.is_empty() {
            return self
                .batch_put("DynamoDB BatchWriteItem (link_blob)", items)
                .await;
        }
        const OP: &str = "DynamoDB TransactWriteItems (link_blob)";
        let (outbox, _) = self.outbox_puts(OP, events)?;
        let mut tx = items
            .into_iter()
            .map(|item| self.put_item(OP, item))
            .collect::<Result<Vec<_>>>()?;
        tx.extend(outbox);
        fits_one_transaction(OP, tx.len())?;
        match self.transact(OP, tx).await? {
            TxOutcome::Committed => Ok(()),
            TxOutcome::ConditionFailed(codes) => Err(corrupt(
                OP,
                format!("unexpected condition failure: {codes:?}"),
            )),
        }
    }

    async fn blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        const OP: &str = "DynamoDB GetItem (blob_link)";
        let item = self
            .get_item(
                OP,
                key(keys::repo_pk(repo), keys::blob_sk(digest)),
                Some("#size"),
            )
            .await?;
        item.map(|i| require_n(OP, &i, SIZE)).transpose()
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        const OP: &str = "DynamoDB DeleteItem (unlink_blob)";
        let resp = retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key(keys::repo_pk(repo), keys::blob_sk(digest))))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        let existed = resp.attributes.is_some_and(|a| !a.is_empty());
        retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key(keys::blob_pk(digest), keys::catalog_sk(repo))))
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        Ok(existed)
    }

    async fn repositories_linking(&self, digest: &Digest, limit: usize) -> Result<Vec<RepoName>> {
        const OP: &str = "DynamoDB Query (repositories_linking)";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sks = self
            .query(
                OP,
                &keys::blob_pk(digest),
                keys::REPO_PREFIX,
                None,
                limit,
                SK,
            )
            .await?;
        sks.into_iter()
            .map(|sk| {
                sk[keys::REPO_PREFIX.len()..]
                    .parse()
                    .map_err(|e| corrupt(OP, e))
            })
            .collect()
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
        events: &[Event],
    ) -> Result<()> {
        const OP: &str = "DynamoDB TransactWriteItems (put_manifest)";
        let meta = encode_json(OP, &ManifestMeta::of(record))?;
        let (outbox, outbox_len) = self.outbox_puts(OP, events)?;
        let inline = stores_inline(
            meta.len(),
            record.content.len(),
            tags.len(),
            outbox_len,
            self.settings.inline_manifest_limit,
        )?;
        // The manifest, its tags, its referrer entry and the outbox events must share the
        // transaction; the repository's marker and catalog entry need not (idempotent, as
        // `link_blob` writes them), so they go first when all would not fit.
        let referrers = usize::from(record.subject.is_some());
        let atomic = 1 + tags.len() + referrers + outbox.len();
        if atomic > MAX_TRANSACTION_ITEMS {
            return Err(RegistryError::TagInvalid(format!(
                "too many tags ({}) for one manifest push with {} events",
                tags.len(),
                outbox.len()
            )));
        }
        let markers_apart = atomic + 2 > MAX_TRANSACTION_ITEMS;
        let descriptor = match &record.subject {
            Some(_) => {
                let mut d = record.referrer_descriptor();
                if annotations_len(&d.annotations) > MAX_COPIED_ANNOTATIONS {
                    d.annotations = None;
                }
                Some(encode_json(OP, &d)?)
            }
            None => None,
        };
        let body = if inline {
            Body::Inline(record.content.clone())
        } else {
            let key = self.manifest_key(&record.digest);
            let bytes = record.content.clone().into_bytes();
            self.put_object(OP, &key, &record.media_type, bytes).await?;
            Body::S3(key)
        };
        let attributes = Self::record_attributes(&meta, &body);
        let pk = keys::repo_pk(repo);

        if markers_apart {
            self.batch_put(
                "DynamoDB BatchWriteItem (put_manifest markers)",
                Self::repo_items(repo).into(),
            )
            .await?;
        }

        let mut items = Vec::with_capacity(atomic + 2);
        let mut manifest = key(pk.as_str(), keys::manifest_sk(&record.digest));
        manifest.extend(attributes.iter().cloned());
        manifest.insert(
            REV.to_owned(),
            s(format!("{:016x}{:016x}", random_u64(), random_u64())),
        );
        items.push(self.put_item(OP, manifest)?);
        for tag in tags {
            let mut item = key(pk.as_str(), keys::tag_sk(tag));
            item.extend(attributes.iter().cloned());
            item.insert(DIGEST.to_owned(), s(record.digest.to_string()));
            items.push(self.put_item(OP, item)?);
        }
        if let (Some(subject), Some(descriptor)) = (&record.subject, descriptor) {
            let mut item = key(pk.as_str(), keys::referrer_sk(subject, &record.digest));
            item.insert(V.to_owned(), s(descriptor));
            items.push(self.put_item(OP, item)?);
        }
        if !markers_apart {
            for item in Self::repo_items(repo) {
                items.push(self.put_item(OP, item)?);
            }
        }
        items.extend(outbox);
        match self.transact(OP, items).await? {
            TxOutcome::Committed => Ok(()),
            TxOutcome::ConditionFailed(codes) => Err(corrupt(
                OP,
                format!("unexpected condition failure: {codes:?}"),
            )),
        }
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let sk = keys::manifest_sk(digest);
        self.record_at("DynamoDB GetItem (get_manifest)", repo, sk)
            .await
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        const OP: &str = "DynamoDB GetItem (resolve_tag)";
        let item = self
            .get_item(
                OP,
                key(keys::repo_pk(repo), keys::tag_sk(tag)),
                Some("#digest"),
            )
            .await?;
        item.map(|i| {
            require_s(OP, &i, DIGEST)?
                .parse()
                .map_err(|e| corrupt(OP, e))
        })
        .transpose()
    }

    async fn get_manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        let sk = keys::tag_sk(tag);
        self.record_at("DynamoDB GetItem (get_manifest_by_tag)", repo, sk)
            .await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[Event],
    ) -> Result<bool> {
        const OP: &str = "DynamoDB TransactWriteItems (delete_manifest)";
        const GET: &str = "DynamoDB GetItem (delete_manifest)";
        let pk = keys::repo_pk(repo);
        let manifest_sk = keys::manifest_sk(digest);
        let (outbox, _) = self.outbox_puts(OP, events)?;
        fits_one_transaction(OP, outbox.len() + 2)?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(item) = self
                .get_item(
                    GET,
                    key(pk.as_str(), manifest_sk.as_str()),
                    Some("#v, #rev"),
                )
                .await?
            else {
                return Ok(false);
            };
            let meta: ManifestMeta = decode_json(GET, &item)?;
            let rev = require_s(GET, &item, REV)?.to_owned();
            let mut tag_sks = self.tags_pointing_at(repo, digest).await?;

            // The last transaction holds the manifest, the referrer entry and the outbox
            // events; tags beyond what it holds go first, each still on condition that it
            // points here.
            let room = MAX_TRANSACTION_ITEMS - 2 - outbox.len();
            let mut restart = false;
            while tag_sks.len() > room {
                let surplus = (tag_sks.len() - room).min(MAX_TRANSACTION_ITEMS);
                let batch: Vec<String> = tag_sks.drain(..surplus).collect();
                let items = batch
                    .iter()
                    .map(|sk| self.delete_tag_item(OP, &pk, sk, digest))
                    .collect::<Result<Vec<_>>>()?;
                if let TxOutcome::ConditionFailed(_) = self.transact(OP, items).await? {
                    restart = true;
                    break;
                }
            }
            if restart {
                continue;
            }

            let mut items = Vec::with_capacity(tag_sks.len() + 2 + outbox.len());
            let delete = build(
                OP,
                Delete::builder()
                    .table_name(self.table())
                    .set_key(Some(key(pk.as_str(), manifest_sk.as_str())))
                    .condition_expression("#rev = :rev")
                    .expression_attribute_names("#rev", REV)
                    .expression_attribute_values(":rev", s(rev))
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().delete(delete).build());
            for sk in &tag_sks {
                items.push(self.delete_tag_item(OP, &pk, sk, digest)?);
            }
            if let Some(subject) = &meta.subject {
                let delete = build(
                    OP,
                    Delete::builder()
                        .table_name(self.table())
                        .set_key(Some(key(pk.as_str(), keys::referrer_sk(subject, digest))))
                        .build(),
                )?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
            items.extend(outbox.iter().cloned());
            match self.transact(OP, items).await? {
                TxOutcome::Committed => return Ok(true),
                // The manifest was pushed again, deleted, or a tag moved: look again.
                TxOutcome::ConditionFailed(_) => continue,
            }
        }
        Err(RegistryError::Conflict(format!(
            "{OP}: manifest {digest} kept changing during {MAX_ATTEMPTS} attempts to delete it"
        )))
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[Event]) -> Result<bool> {
        let tag_key = key(keys::repo_pk(repo), keys::tag_sk(tag));
        if !events.is_empty() {
            const OP: &str = "DynamoDB TransactWriteItems (delete_tag)";
            let (outbox, _) = self.outbox_puts(OP, events)?;
            fits_one_transaction(OP, outbox.len() + 1)?;
            let delete = build(
                OP,
                Delete::builder()
                    .table_name(self.table())
                    .set_key(Some(tag_key))
                    .condition_expression("attribute_exists(#pk)")
                    .expression_attribute_names("#pk", PK)
                    .build(),
            )?;
            let mut items = vec![TransactWriteItem::builder().delete(delete).build()];
            items.extend(outbox);
            return match self.transact(OP, items).await? {
                TxOutcome::Committed => Ok(true),
                // The tag was absent: nothing deleted, nothing recorded.
                TxOutcome::ConditionFailed(_) => Ok(false),
            };
        }
        const OP: &str = "DynamoDB DeleteItem (delete_tag)";
        let result = retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(tag_key.clone()))
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(storage(OP, e)),
        }
    }

    async fn list_tags(&self, repo: &RepoName, page: &PageRequest) -> Result<Page> {
        self.list_page(
            "DynamoDB Query (list_tags)",
            &keys::repo_pk(repo),
            keys::TAG_PREFIX,
            page,
        )
        .await
    }

    async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ReferrerDescriptor>> {
        const OP: &str = "DynamoDB Query (list_referrers)";
        let values = self
            .query(
                OP,
                &keys::repo_pk(repo),
                &keys::referrer_prefix(subject),
                None,
                usize::MAX,
                V,
            )
            .await?;
        values
            .iter()
            .map(|v| serde_json::from_str(v).map_err(|e| corrupt(OP, e)))
            .collect()
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        const OP: &str = "DynamoDB GetItem (repository_exists)";
        let item = self
            .get_item(OP, key(keys::repo_pk(repo), keys::REPO_MARKER), Some("#pk"))
            .await?;
        Ok(item.is_some())
    }

    async fn list_repositories(&self, page: &PageRequest) -> Result<Page> {
        self.list_page(
            "DynamoDB Query (list_repositories)",
            keys::CATALOG,
            keys::REPO_PREFIX,
            page,
        )
        .await
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        const OP: &str = "DynamoDB PutItem (create_upload)";
        let item = upload_item(OP, session)?;
        let result = retry_conflicts(|| {
            self.ddb
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(RegistryError::Conflict(format!(
                    "upload session {} already exists",
                    session.id
                )))
            }
            Err(e) => Err(storage(OP, e)),
        }
    }

    async fn get_upload(&self, upload_id: &str) -> Result<Option<UploadSession>> {
        const OP: &str = "DynamoDB GetItem (get_upload)";
        let item = self
            .get_item(
                OP,
                key(keys::upload_pk(upload_id), keys::UPLOAD_SK),
                Some("#v"),
            )
            .await?;
        item.map(|i| decode_json(OP, &i)).transpose()
    }

    async fn update_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<()> {
        const OP: &str = "DynamoDB PutItem (update_upload)";
        let item = upload_item(OP, session)?;
        let condition = "attribute_exists(#pk) AND #offset = :expected";
        let expected = [(":expected", n(expected_offset))];
        let Some(current) = self
            .conditional_put(OP, item, condition, &expected, "#offset")
            .await?
        else {
            return Ok(());
        };
        match current {
            Some(item) => Err(RegistryError::Conflict(format!(
                "upload is at offset {}, not {expected_offset}",
                require_n(OP, &item, OFFSET)?
            ))),
            None => Err(RegistryError::BlobUploadUnknown),
        }
    }

    async fn delete_upload(&self, upload_id: &str) -> Result<bool> {
        const OP: &str = "DynamoDB DeleteItem (delete_upload)";
        let resp = retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key(keys::upload_pk(upload_id), keys::UPLOAD_SK)))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        Ok(resp.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn expired_uploads(&self, now_ms: u64, limit: usize) -> Result<Vec<UploadSession>> {
        const OP: &str = "DynamoDB Scan (expired_uploads)";
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let resp = self
                .ddb
                .scan()
                .table_name(self.table())
                .consistent_read(true)
                .filter_expression("begins_with(#pk, :prefix) AND #exp < :now")
                .set_expression_attribute_names(Some(names([
                    ("#pk", PK),
                    ("#exp", EXPIRES_AT_MS),
                    ("#v", V),
                ])))
                .expression_attribute_values(":prefix", s(keys::UPLOAD_PREFIX))
                .expression_attribute_values(":now", n(now_ms))
                .projection_expression("#v")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| storage(OP, e))?;
            for item in resp.items() {
                out.push(decode_json(OP, item)?);
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn outbox_events(&self, limit: usize) -> Result<Vec<Event>> {
        const OP: &str = "DynamoDB Query (outbox_events)";
        self.query(OP, keys::OUTBOX, keys::EVENT_PREFIX, None, limit, V)
            .await?
            .iter()
            .map(|v| serde_json::from_str(v).map_err(|e| corrupt(OP, e)))
            .collect()
    }

    async fn remove_outbox_event(&self, event_id: &str) -> Result<()> {
        const OP: &str = "DynamoDB DeleteItem (remove_outbox_event)";
        retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key(keys::OUTBOX, keys::outbox_sk(event_id))))
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cancellations_are_classified() {
        assert_eq!(
            cancellation(&codes(&[
                "None",
                "ConditionalCheckFailed",
                "TransactionConflict"
            ])),
            Cancellation::ConditionFailed
        );
        assert_eq!(
            cancellation(&codes(&["None", "TransactionConflict", "None"])),
            Cancellation::Conflict
        );
        assert_eq!(
            cancellation(&codes(&["ValidationError", "None"])),
            Cancellation::Other
        );
    }

    #[test]
    fn small_records_stay_inline_and_large_ones_go_to_s3() {
        let limit = DEFAULT_INLINE_MANIFEST_LIMIT;
        assert!(stores_inline(200, 2_000, 1, 0, limit).unwrap());
        assert!(stores_inline(200, limit - 200, 0, 0, limit).unwrap());
        assert!(!stores_inline(200, limit - 199, 0, 0, limit).unwrap());
        assert!(!stores_inline(200, 4 * 1024 * 1024, 3, 0, limit).unwrap());
        // A limit above what an item holds is capped.
        assert!(!stores_inline(200, 500_000, 0, 0, 10 * 1024 * 1024).unwrap());
    }

    #[test]
    fn many_tag_copies_push_the_content_to_s3() {
        let limit = DEFAULT_INLINE_MANIFEST_LIMIT;
        // 100 KB × 31 copies is just under 3 MiB; × 32 is over.
        assert!(stores_inline(0, 100 * 1024, 29, 0, limit).unwrap());
        assert!(!stores_inline(0, 100 * 1024, 40, 0, limit).unwrap());
        assert!(stores_inline(300, 3_000, MAX_TAGS_PER_PUT, 0, limit).unwrap());
    }

    #[test]
    fn refuses_what_cannot_be_stored() {
        let limit = DEFAULT_INLINE_MANIFEST_LIMIT;
        assert!(matches!(
            stores_inline(10, 10, MAX_TAGS_PER_PUT + 1, 0, limit),
            Err(RegistryError::TagInvalid(_))
        ));
        assert!(matches!(
            stores_inline(MAX_INLINE_RECORD + 1, 10, 0, 0, limit),
            Err(RegistryError::ManifestInvalid(_))
        ));
        // 100 KB of annotations copied into 60 tag items is over 4 MB even with the
        // content in S3.
        assert!(matches!(
            stores_inline(100 * 1024, 10, 60, 0, limit),
            Err(RegistryError::TagInvalid(_))
        ));
        // Other items (outbox events) count towards the transaction's size.
        assert!(stores_inline(100 * 1024, 10, 30, 0, limit).is_ok());
        assert!(matches!(
            stores_inline(100 * 1024, 10, 30, 1_000_000, limit),
            Err(RegistryError::TagInvalid(_))
        ));
    }

    #[test]
    fn ttl_rounds_up_and_adds_the_grace() {
        assert_eq!(ttl_secs(1_000), 1 + UPLOAD_TTL_GRACE_SECS);
        assert_eq!(ttl_secs(1_001), 2 + UPLOAD_TTL_GRACE_SECS);
        assert_eq!(
            ttl_secs(u64::MAX),
            u64::MAX.div_ceil(1000) + UPLOAD_TTL_GRACE_SECS
        );
    }
}
