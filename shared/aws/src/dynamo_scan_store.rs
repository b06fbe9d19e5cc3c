//! [`ScanStore`] and [`VulnerabilityStore`] for [`DynamoMetadataStore`]: scan reports, the
//! index of scanned images and the versioned vulnerability database in the metadata
//! table, laid out by the key schema of [`registry_core::keys`], with reports and
//! advisories too large for an item in S3.
//!
//! # Items
//!
//! Besides `pk`/`sk`, items carry (`v` is always a JSON string):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | scan report | `REPO#<name>` | `SCAN#<digest>` | `v`: the [`ScanReport`]; or, when large, `s3_key` (S) and `s3_digest` (S) |
//! | scanned image | `SCANS` | `<name>@<digest>` | `s3_key` (S) when the report is in S3 |
//! | advisory | `VULN#<version>#<key>` | `ADV#<id>` | `v`: the [`StoredAdvisory`]; or, when large, `s3_key` and `s3_digest` |
//! | key of a version | `VULNDB#<version>` | `KEY#<key>` | — |
//! | current version | `VULNDB` | `CURRENT` | `v`: the [`VulnDbInfo`]; `v_version` (S): its version, for the condition of `set_current_db` |
//!
//! `SCANS` is one partition written by every `put_report` (on AWS about 1,000 writes a
//! second, far above the scanner's rate), as `OUTBOX` is by pushes. Its sort keys are
//! `<name>@<digest>` in byte order, the order `scanned_images` lists them in (the embedded
//! store's too: `scan/a/b@…` sorts before `scan/a@…`, since `/` < `@`).
//!
//! # Large reports and advisories
//!
//! A report's or an advisory's JSON longer than the inline limit
//! (`DynamoSettings::inline_manifest_limit`, default 300 KiB, capped at what an item holds,
//! 400 KB with keys and names) goes to S3, in the manifest bucket under
//! [`DynamoSettings::scan_prefix`] (the deployment's `<prefix>`, beside
//! `<prefix>manifests/`), as manifests do; the item then holds `s3_key` and `s3_digest`
//! (`sha256:<hex>` of the object) instead of `v`. Objects are named by the SHA-256 of
//! their content, written (PutObject) before the item that points at them, and checked
//! against `s3_digest` when read:
//!
//! - report: `scan-reports/<name>@<digest>/<sha256 hex>`. A 3000-finding report is about
//!   1.5 MB; reports are replaced at every rescan (every new database), so `put_report`
//!   deletes the object of the report it replaces (found on the `SCANS` entry, see below)
//!   once the new one is committed. A report that shrinks below the limit leaves its last
//!   object behind, and so does a deleted image (the port has no delete); both lie under
//!   the image's folder `scan-reports/<name>@<digest>/` for a garbage collector, as do
//!   objects left when two puts of one image race.
//! - advisory: `vulndb/<version>/<sha256 hex>`. OSV advisories are mostly under 50 KB,
//!   but some (kernel notices listing every binary package) run to hundreds of KB. An
//!   advisory stored under several keys of one version is one object. Objects of a
//!   version are deleted by the last `delete_db_version` call, the one that finds no key
//!   left (so one that fails half-way is finished by the next call).
//!
//! # Calls per method
//!
//! All reads are strongly consistent (`ConsistentRead = true`). Single writes rejected by
//! a concurrent transaction (`TransactionConflictException`) are resent, and transactions
//! cancelled by one too, with jittered backoff, up to [`MAX_ATTEMPTS`] times (then
//! `Conflict`). BatchWriteItem resends unprocessed items with backoff, up to
//! [`MAX_ATTEMPTS`] times (then `Storage`).
//!
//! - `put_report`: one TransactWriteItems of two Puts, the report item and its `SCANS`
//!   entry. A large report first: GetItem of the `SCANS` entry (its `s3_key`: the object
//!   of the report being replaced) and PutObject; after the transaction, DeleteObject of
//!   the replaced object when it is another (best effort: a failure is logged).
//! - `get_report`: one GetItem (+ one S3 GetObject when the report is in S3; when the
//!   object is gone, a concurrent `put_report` replaced it: the GetItem is repeated, at
//!   most [`READ_ATTEMPTS`] times).
//! - `scanned_images`: Query of `SCANS` projected to `sk`, `ExclusiveStartKey` =
//!   `<name>@<digest>` of `after`, `Limit` = what is still wanted, over pages until
//!   `limit`.
//! - `put_advisories`: PutObject of each large advisory ([`CONCURRENCY`] at a time),
//!   then BatchWriteItem of the advisory items and the version's `KEY#<key>` entry, 25
//!   items per call, the calls one after the other, the entry in the first (so a failed
//!   put leaves nothing that `delete_db_version` cannot find, but for items of a call
//!   that the backend kept refusing). Advisories with the same id: the last one is
//!   stored.
//! - `advisories`: one Query of `VULN#<version>#<key>` (`begins_with(sk, "ADV#")`, over
//!   all pages) per distinct key, [`CONCURRENCY`] at a time, then one GetObject per
//!   distinct large advisory, [`CONCURRENCY`] at a time.
//! - `current_db`: one GetItem of `VULNDB` / `CURRENT`.
//! - `set_current_db`: one PutItem, condition `attribute_not_exists(pk)` when `expected`
//!   is `None`, else `v_version = :expected`; a failed condition is `Conflict` (the item
//!   stored is returned by the failure, so no read).
//! - `delete_db_version`: Query of `VULNDB#<version>` for up to `limit` `KEY#` entries;
//!   for each key ([`CONCURRENCY`] at a time) a Query of its advisories projected to `sk`
//!   and BatchWriteItem deletes, 25 per call; then BatchWriteItem deletes of the entries,
//!   25 per call. When no entry is left: ListObjectsV2 of `vulndb/<version>/` and
//!   DeleteObjects of what it lists (1,000 per call).
//!
//! # Errors
//!
//! `Storage` (naming the operation) for every DynamoDB or S3 failure, for items this
//! adapter cannot decode and for S3 objects that do not match their digest; `Conflict`
//! when `set_current_db`'s current version is not `expected`, or when contention outlasts
//! the retries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::{StreamExt, TryStreamExt};
use registry_core::events::Event;
use registry_core::keys;
use registry_core::ports::{ScanStore, StoredAdvisory, VulnDbInfo, VulnerabilityStore};
use registry_core::scan::ScanReport;
use registry_core::{Digest, DigestAlgorithm, RegistryError, RepoName, Result};

use crate::dynamo_metadata_store::{
    DynamoMetadataStore, Item, MAX_INLINE_RECORD, S3_KEY, SK, TxOutcome, V, Walk, backoff, corrupt,
    decode_json, encode_json, get_s, key, require_s, s, storage,
};

/// Queries (and S3 reads) that `advisories` and `delete_db_version` run at once.
pub const CONCURRENCY: usize = 16;
/// GetItems `get_report` makes when the report's object vanishes under it.
pub const READ_ATTEMPTS: u32 = 3;

/// Items one BatchWriteItem takes.
const BATCH_WRITE_ITEMS: usize = 25;
const S3_DIGEST: &str = "s3_digest";
const V_VERSION: &str = "v_version";

/// Where the JSON an item holds is.
enum Stored<'i> {
    Inline(&'i str),
    S3 { key: &'i str, digest: &'i str },
}

fn stored<'i>(op: &str, item: &'i Item) -> Result<Stored<'i>> {
    if let Some(json) = get_s(item, V) {
        return Ok(Stored::Inline(json));
    }
    Ok(Stored::S3 {
        key: require_s(op, item, S3_KEY)?,
        digest: require_s(op, item, S3_DIGEST)?,
    })
}

fn decode<T: serde::de::DeserializeOwned>(op: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| corrupt(op, e))
}

/// The image of a `SCANS` sort key `<name>@<digest>`.
fn parse_scans_sk(op: &str, sk: &str) -> Result<(RepoName, Digest)> {
    keys::parse_scans_sk(sk).ok_or_else(|| corrupt(op, format!("bad scan index entry {sk:?}")))
}

/// `items` in groups of at most one BatchWriteItem, in order.
fn batches(mut items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(BATCH_WRITE_ITEMS));
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(BATCH_WRITE_ITEMS));
        out.push(items);
        items = rest;
    }
    out
}

impl DynamoMetadataStore {
    /// The longest JSON kept inline in an item.
    fn inline_json_limit(&self) -> usize {
        self.settings.inline_manifest_limit.min(MAX_INLINE_RECORD)
    }

    fn reports_folder(&self, repo: &RepoName, digest: &Digest) -> String {
        format!(
            "{}scan-reports/{}/",
            self.settings.scan_prefix,
            keys::scans_sk(repo, digest)
        )
    }

    fn vulndb_folder(&self, version: &str) -> String {
        format!("{}vulndb/{version}/", self.settings.scan_prefix)
    }

    /// The attributes holding `json`: `v` when it fits the inline limit; otherwise
    /// `s3_key` and `s3_digest` of the object `folder<sha256 hex>`, written first
    /// (PutObject: idempotent, the name is the content's digest).
    async fn json_attributes(
        &self,
        op: &str,
        folder: &str,
        json: String,
    ) -> Result<Vec<(String, AttributeValue)>> {
        if json.len() <= self.inline_json_limit() {
            return Ok(vec![(V.to_owned(), s(json))]);
        }
        let digest = Digest::of(DigestAlgorithm::Sha256, json.as_bytes());
        let object = format!("{folder}{}", digest.hex());
        self.put_object(op, &object, "application/json", json.into_bytes())
            .await?;
        Ok(vec![
            (S3_KEY.to_owned(), s(object)),
            (S3_DIGEST.to_owned(), s(digest.to_string())),
        ])
    }

    /// The JSON of the object `object`, checked against `digest` (as an item holds it);
    /// `None` when there is no such object.
    async fn object_json(&self, op: &str, object: &str, digest: &str) -> Result<Option<String>> {
        let digest: Digest = digest.parse().map_err(|e| corrupt(op, e))?;
        self.get_verified_object(op, object, &digest).await
    }

    /// Deletes every object whose key starts with `folder` (in the manifest bucket).
    async fn delete_objects_under(&self, op: &str, folder: &str) -> Result<()> {
        crate::s3_blob_store::delete_prefix(&self.s3, &self.settings.manifest_bucket, folder)
            .await
            .map_err(|e| RegistryError::Storage(format!("{e} (for {op})")))
    }
}

#[async_trait]
impl ScanStore for DynamoMetadataStore {
    async fn put_report(&self, report: &ScanReport, events: &[Event]) -> Result<()> {
        const OP: &str = "DynamoDB TransactWriteItems (put_report)";
        const GET: &str = "DynamoDB GetItem (put_report)";
        let (repo, digest) = (&report.repository, &report.digest);
        let json = encode_json(OP, report)?;
        let mut index = key(keys::SCANS, keys::scans_sk(repo, digest));
        // A large report: the object of the report it replaces, to delete once it is in.
        let replaced = if json.len() > self.inline_json_limit() {
            let entry = self.get_item(GET, index.clone(), Some("#s3_key")).await?;
            entry.and_then(|e| get_s(&e, S3_KEY).map(str::to_owned))
        } else {
            None
        };
        let attributes = self
            .json_attributes(OP, &self.reports_folder(repo, digest), json)
            .await?;
        let mut item = key(keys::repo_pk(repo), keys::scan_sk(digest));
        item.extend(attributes);
        let object = get_s(&item, S3_KEY).map(str::to_owned);
        if let Some(object) = &object {
            index.insert(S3_KEY.to_owned(), s(object.as_str()));
        }
        let mut items = vec![self.put_item(OP, item)?, self.put_item(OP, index)?];
        items.extend(self.outbox_puts(OP, events)?.0);
        if let TxOutcome::ConditionFailed(codes) = self.transact(OP, items).await? {
            return Err(corrupt(
                OP,
                format!("unexpected condition failure: {codes:?}"),
            ));
        }
        if let Some(old) = replaced
            && object.as_deref() != Some(old.as_str())
        {
            let deleted = self
                .s3
                .delete_object()
                .bucket(&self.settings.manifest_bucket)
                .key(&old)
                .send()
                .await;
            if let Err(e) = deleted {
                let e = storage(&format!("S3 DeleteObject {old} (put_report)"), e);
                tracing::warn!(error = %e, "replaced scan report left in S3");
            }
        }
        Ok(())
    }

    async fn get_report(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanReport>> {
        const OP: &str = "DynamoDB GetItem (get_report)";
        let k = key(keys::repo_pk(repo), keys::scan_sk(digest));
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(item) = self
                .get_item(OP, k.clone(), Some("#v, #s3_key, #s3_digest"))
                .await?
            else {
                return Ok(None);
            };
            match stored(OP, &item)? {
                Stored::Inline(json) => return decode(OP, json).map(Some),
                Stored::S3 { key, digest } => {
                    if let Some(json) = self.object_json(OP, key, digest).await? {
                        return decode(OP, &json).map(Some);
                    }
                    // Replaced (and deleted) by a concurrent put: read the item again.
                }
            }
        }
        Err(corrupt(
            OP,
            format!("the S3 object of the report of {repo}@{digest} is missing"),
        ))
    }

    async fn scanned_images(
        &self,
        after: Option<&(RepoName, Digest)>,
        limit: usize,
    ) -> Result<Vec<(RepoName, Digest)>> {
        const OP: &str = "DynamoDB Query (scanned_images)";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = after.map(|(r, d)| keys::scans_sk(r, d));
        self.query(OP, keys::SCANS, "", after.as_deref(), limit, SK)
            .await?
            .iter()
            .map(|sk| parse_scans_sk(OP, sk))
            .collect()
    }
}

#[async_trait]
impl VulnerabilityStore for DynamoMetadataStore {
    async fn put_advisories(
        &self,
        version: &str,
        key_name: &str,
        advisories: &[StoredAdvisory],
    ) -> Result<()> {
        const OP: &str = "DynamoDB BatchWriteItem (put_advisories)";
        let pk = keys::advisory_pk(version, key_name);
        let folder = self.vulndb_folder(version);
        // One item per id, the last one given (a batch may not hold a key twice).
        let by_id: BTreeMap<&str, &StoredAdvisory> =
            advisories.iter().map(|a| (a.id.as_str(), a)).collect();
        // Owned stream items: a borrowed one makes the future not `Send` for async_trait.
        let advisory_items: Vec<Item> = futures_util::stream::iter(by_id.into_values().cloned())
            .map(|a| {
                let (pk, folder) = (pk.as_str(), folder.as_str());
                async move {
                    let json = encode_json(OP, &a)?;
                    let mut item = key(pk, keys::advisory_sk(&a.id));
                    item.extend(self.json_attributes(OP, folder, json).await?);
                    Ok::<_, RegistryError>(item)
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        // The version's entry for the key first, so `delete_db_version` finds what follows.
        let mut items = Vec::with_capacity(advisory_items.len() + 1);
        items.push(key(keys::db_version_pk(version), keys::db_key_sk(key_name)));
        items.extend(advisory_items);
        for batch in batches(items) {
            self.batch_put(OP, batch).await?;
        }
        Ok(())
    }

    async fn advisories(
        &self,
        version: &str,
        keys_wanted: &[String],
    ) -> Result<BTreeMap<String, Vec<StoredAdvisory>>> {
        const OP: &str = "DynamoDB Query (advisories)";
        let distinct: BTreeSet<String> = keys_wanted.iter().cloned().collect();
        // Owned stream items: a borrowed one makes the future not `Send` for async_trait.
        let found: Vec<(String, Vec<Item>)> = futures_util::stream::iter(distinct)
            .map(|k| async move {
                let items = self
                    .query_items(
                        OP,
                        &keys::advisory_pk(version, &k),
                        keys::ADVISORY_PREFIX,
                        Walk::Up { after: None },
                        usize::MAX,
                        &[V, S3_KEY, S3_DIGEST],
                    )
                    .await?;
                Ok::<_, RegistryError>((k, items))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;

        // Each large advisory once, however many keys it is stored under.
        let mut objects: BTreeMap<String, String> = BTreeMap::new();
        for (_, items) in &found {
            for item in items {
                if let Stored::S3 { key, digest } = stored(OP, item)? {
                    objects.insert(key.to_owned(), digest.to_owned());
                }
            }
        }
        let objects: HashMap<String, String> = futures_util::stream::iter(objects)
            .map(|(object, digest)| async move {
                let json = self
                    .object_json(OP, &object, &digest)
                    .await?
                    .ok_or_else(|| {
                        corrupt(
                            OP,
                            format!("S3 object {object} is missing (version {version} deleted?)"),
                        )
                    })?;
                Ok::<_, RegistryError>((object, json))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;

        let mut out = BTreeMap::new();
        for (k, items) in &found {
            if items.is_empty() {
                continue;
            }
            let advisories = items
                .iter()
                .map(|item| match stored(OP, item)? {
                    Stored::Inline(json) => decode(OP, json),
                    Stored::S3 { key, .. } => decode(OP, &objects[key]),
                })
                .collect::<Result<Vec<StoredAdvisory>>>()?;
            out.insert(k.clone(), advisories);
        }
        Ok(out)
    }

    async fn current_db(&self) -> Result<Option<VulnDbInfo>> {
        const OP: &str = "DynamoDB GetItem (current_db)";
        let item = self
            .get_item(OP, key(keys::VULNDB, keys::CURRENT), Some("#v"))
            .await?;
        item.map(|i| decode_json(OP, &i)).transpose()
    }

    async fn set_current_db(&self, info: &VulnDbInfo, expected: Option<&str>) -> Result<()> {
        const OP: &str = "DynamoDB PutItem (set_current_db)";
        let mut item = key(keys::VULNDB, keys::CURRENT);
        item.insert(V.to_owned(), s(encode_json(OP, info)?));
        item.insert(V_VERSION.to_owned(), s(info.version.as_str()));
        let (condition, values) = match expected {
            None => ("attribute_not_exists(#pk)", Vec::new()),
            Some(e) => ("#v_version = :expected", vec![(":expected", s(e))]),
        };
        let Some(now) = self
            .conditional_put(OP, item, condition, &values, "#v_version")
            .await?
        else {
            return Ok(());
        };
        let current = now.as_ref().and_then(|i| get_s(i, V_VERSION));
        Err(RegistryError::Conflict(format!(
            "the current vulnerability database is {current:?}, not {expected:?}"
        )))
    }

    async fn delete_db_version(&self, version: &str, limit: usize) -> Result<usize> {
        const OP: &str = "DynamoDB Query (delete_db_version)";
        const DELETE: &str = "DynamoDB BatchWriteItem (delete_db_version)";
        if limit == 0 {
            return Ok(0);
        }
        let index_pk = keys::db_version_pk(version);
        let entries = self
            .query(OP, &index_pk, keys::DB_KEY_PREFIX, None, limit, SK)
            .await?;
        if entries.is_empty() {
            // Every key is gone: the version's large advisories go too.
            self.delete_objects_under(OP, &self.vulndb_folder(version))
                .await?;
            return Ok(0);
        }
        futures_util::stream::iter(entries.clone())
            .map(|entry| async move {
                let pk = keys::advisory_pk(version, &entry[keys::DB_KEY_PREFIX.len()..]);
                let items = self
                    .query_items(
                        OP,
                        &pk,
                        keys::ADVISORY_PREFIX,
                        Walk::Up { after: None },
                        usize::MAX,
                        &[],
                    )
                    .await?;
                let item_keys = items
                    .iter()
                    .map(|i| Ok(key(pk.as_str(), require_s(OP, i, SK)?)))
                    .collect::<Result<Vec<_>>>()?;
                for batch in batches(item_keys) {
                    self.batch_delete(DELETE, batch).await?;
                }
                Ok::<_, RegistryError>(())
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        // The entries last, so a failure above leaves them for the next call.
        let entry_keys = entries
            .iter()
            .map(|sk| key(index_pk.as_str(), sk.as_str()))
            .collect();
        for batch in batches(entry_keys) {
            self.batch_delete(DELETE, batch).await?;
        }
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DynamoSettings;

    #[test]
    fn large_objects_go_under_the_scan_prefix() {
        let settings = DynamoSettings::new("t", "b");
        assert_eq!(settings.scan_prefix, "");
    }

    #[test]
    fn scans_entries_parse_back() {
        let repo: RepoName = "library/alpine".parse().unwrap();
        let digest = Digest::of(DigestAlgorithm::Sha256, b"x");
        let sk = keys::scans_sk(&repo, &digest);
        assert_eq!(parse_scans_sk("op", &sk).unwrap(), (repo, digest));
        assert!(parse_scans_sk("op", "no-at-sign").is_err());
    }

    #[test]
    fn batches_hold_at_most_25_items_in_order() {
        let items: Vec<Item> = (0..51).map(|i| key("p", format!("{i:03}"))).collect();
        let sizes: Vec<usize> = batches(items.clone()).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![25, 25, 1]);
        assert_eq!(batches(items.clone()).concat(), items);
        assert!(batches(Vec::new()).is_empty());
    }
}
