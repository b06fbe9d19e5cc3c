//! Runs the scan store and vulnerability store contracts of `registry-testkit` against
//! `DynamoMetadataStore` on LocalStack, each test on a fresh table and S3 prefix (see
//! `common::FreshTable`). Then checks what is DynamoDB's own: a report too large for an
//! item lives in S3 and a rescan replaces its object, `advisories` over 50 keys (and
//! advisories over one BatchWriteItem), large advisories in S3 until their version is
//! deleted, and the attribute `set_current_db`'s condition reads. Fails, never skips,
//! when LocalStack is not there.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{FreshTable, list_keys};
use registry_aws::DynamoMetadataStore;
use registry_core::keys;
use registry_core::ports::{ScanStore, StoredAdvisory, VulnDbInfo, VulnerabilityStore};
use registry_core::scan::{ReportFinding, ScanReport, ScanStatus, Severity, SeveritySummary};
use registry_core::{Digest, DigestAlgorithm, RepoName};

async fn dynamo_scan_store() -> (Arc<dyn ScanStore>, FreshTable) {
    let table = FreshTable::create("registry-scans").await;
    (Arc::new(table.store()), table)
}

async fn dynamo_vulnerability_store() -> (Arc<dyn VulnerabilityStore>, FreshTable) {
    let table = FreshTable::create("registry-vulndb").await;
    (Arc::new(table.store()), table)
}

mod scan_store {
    registry_testkit::scan_store_contract_tests!(super::dynamo_scan_store);
}

mod vulnerability_store {
    registry_testkit::vulnerability_store_contract_tests!(super::dynamo_vulnerability_store);
}

fn digest(seed: &str) -> Digest {
    Digest::of(DigestAlgorithm::Sha256, seed.as_bytes())
}

fn report(repo: &RepoName, d: &Digest, findings: usize, scanned_ms: u64) -> ScanReport {
    let mut summary = SeveritySummary::default();
    let findings = (0..findings)
        .map(|i| {
            summary.add(Severity::Medium);
            ReportFinding {
                id: format!("DEBIAN-CVE-2025-{i:05}"),
                aliases: vec![format!("CVE-2025-{i:05}")],
                ecosystem: "Debian".into(),
                package: format!("lib{i}"),
                installed_version: "1.0-1".into(),
                fixed_version: Some("1.0-2".into()),
                severity: Severity::Medium,
                score: Some(5.5),
                layer: Some(digest("layer")),
                summary: Some("a flaw described at some length ".repeat(4)),
            }
        })
        .collect();
    ScanReport {
        repository: repo.clone(),
        digest: d.clone(),
        status: ScanStatus::Completed,
        scanner: "registry-scanner 0.1.0".into(),
        db_version: Some("db1".into()),
        scanned_ms,
        distro: None,
        packages: 10,
        summary,
        findings,
        sbom: None,
        error: None,
    }
}

fn item_key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// The raw item at (`pk`, `sk`).
async fn raw_item(table: &FreshTable, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    table
        .clients
        .dynamodb
        .get_item()
        .table_name(&table.settings.table)
        .set_key(Some(item_key(pk, sk)))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .unwrap_or_else(|| panic!("no item {pk} / {sk}"))
}

fn string_attr<'i>(item: &'i HashMap<String, AttributeValue>, name: &str) -> Option<&'i str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

/// A report over an item's size goes to S3 under `scan-reports/<name>@<digest>/`, its
/// item and index entry point at it, and a rescan replaces the object (the old one is
/// deleted); a report small again is inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_report_lives_in_s3_and_a_rescan_replaces_its_object() {
    let table = FreshTable::create("registry-scans").await;
    let store = table.store();
    let s3 = &table.clients.s3;
    let bucket = &table.settings.manifest_bucket;
    let repo: RepoName = "scan/large".parse().unwrap();
    let d = digest("image");
    let folder = format!(
        "{}scan-reports/{}/",
        table.settings.scan_prefix,
        keys::scans_sk(&repo, &d)
    );
    let (pk, sk, index_sk) = (
        keys::repo_pk(&repo),
        keys::scan_sk(&d),
        keys::scans_sk(&repo, &d),
    );

    let first = report(&repo, &d, 3000, 1_000);
    assert!(serde_json::to_vec(&first).unwrap().len() > 400 * 1024);
    store.put_report(&first, &[]).await.expect("put_report");
    let objects = list_keys(s3, bucket, &folder).await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let item = raw_item(&table, &pk, &sk).await;
    assert_eq!(string_attr(&item, "s3_key"), Some(objects[0].as_str()));
    assert!(string_attr(&item, "s3_digest").is_some_and(|d| d.starts_with("sha256:")));
    assert!(!item.contains_key("v"), "the report is not also inline");
    let entry = raw_item(&table, keys::SCANS, &index_sk).await;
    assert_eq!(string_attr(&entry, "s3_key"), Some(objects[0].as_str()));
    assert_eq!(store.get_report(&repo, &d).await.unwrap(), Some(first));

    let second = report(&repo, &d, 3000, 2_000);
    store.put_report(&second, &[]).await.expect("put_report");
    let now = list_keys(s3, bucket, &folder).await;
    assert_eq!(now.len(), 1, "the replaced object is deleted: {now:?}");
    assert_ne!(now, objects);
    assert_eq!(store.get_report(&repo, &d).await.unwrap(), Some(second));

    let small = report(&repo, &d, 2, 3_000);
    store.put_report(&small, &[]).await.expect("put_report");
    let item = raw_item(&table, &pk, &sk).await;
    assert!(item.contains_key("v") && !item.contains_key("s3_key"));
    let entry = raw_item(&table, keys::SCANS, &index_sk).await;
    assert!(!entry.contains_key("s3_key"));
    assert_eq!(store.get_report(&repo, &d).await.unwrap(), Some(small));
    assert_eq!(
        store.scanned_images(None, 10).await.unwrap(),
        vec![(repo, d)]
    );
}

fn advisory(id: &str, text: &str) -> StoredAdvisory {
    StoredAdvisory {
        id: id.into(),
        document: format!(r#"{{"id":"{id}","details":"{text}"}}"#),
    }
}

/// One `advisories` call reads 50 keys (and leaves out the absent ones); a key with more
/// advisories than one BatchWriteItem takes keeps them all; repeated ids keep the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisories_of_fifty_keys_in_one_call() {
    let table = FreshTable::create("registry-vulndb").await;
    let store = table.store();
    let keys: Vec<String> = (0..50).map(|i| format!("npm||pkg-{i:02}")).collect();
    let mut want = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        let n = if i == 7 { 60 } else { i % 4 + 1 };
        let list: Vec<StoredAdvisory> = (0..n)
            .map(|j| advisory(&format!("GHSA-{i:02}-{j:03}"), &format!("{k} {j}")))
            .collect();
        store.put_advisories("v1", k, &list).await.unwrap();
        want.insert(k.clone(), list);
    }
    // The same id twice in one put: the last is kept.
    let twice = [
        advisory("GHSA-00-000", "old"),
        advisory("GHSA-00-000", "new"),
    ];
    store.put_advisories("v1", &keys[0], &twice).await.unwrap();
    want.get_mut(&keys[0]).unwrap()[0] = advisory("GHSA-00-000", "new");

    let mut asked = keys.clone();
    asked.extend(["npm||absent".to_owned(), keys[3].clone()]);
    let got = store.advisories("v1", &asked).await.unwrap();
    assert_eq!(got.len(), 50);
    assert_eq!(got, want);
    assert!(store.advisories("v2", &keys).await.unwrap().is_empty());
}

/// With a small inline limit, advisories over it live in S3 under `vulndb/<version>/`,
/// one object per document however many keys hold it; they read back, and deleting the
/// version removes them (with the last call) and leaves the other version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_advisories_live_in_s3_until_their_version_is_deleted() {
    let table = FreshTable::create("registry-vulndb").await;
    let mut settings = table.settings.clone();
    settings.inline_manifest_limit = 2048;
    let store = DynamoMetadataStore::new(
        table.clients.dynamodb.clone(),
        table.clients.s3.clone(),
        settings,
    );
    let s3 = &table.clients.s3;
    let bucket = &table.settings.manifest_bucket;
    let folder = |version: &str| format!("{}vulndb/{version}/", table.settings.scan_prefix);
    let big = advisory("USN-1", &"kernel ".repeat(2000));
    let small = advisory("USN-2", "short");
    let keys: Vec<String> = (0..3).map(|i| format!("Ubuntu|24.04|linux-{i}")).collect();
    for k in &keys {
        for version in ["old", "new"] {
            store
                .put_advisories(version, k, &[big.clone(), small.clone()])
                .await
                .unwrap();
        }
    }
    assert_eq!(list_keys(s3, bucket, &folder("old")).await.len(), 1);
    assert_eq!(list_keys(s3, bucket, &folder("new")).await.len(), 1);
    let got = store.advisories("old", &keys).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(
        got.values()
            .all(|list| list == &vec![big.clone(), small.clone()])
    );

    let mut calls = 0;
    while store.delete_db_version("old", 2).await.unwrap() > 0 {
        calls += 1;
    }
    assert_eq!(calls, 2);
    assert!(list_keys(s3, bucket, &folder("old")).await.is_empty());
    assert!(store.advisories("old", &keys).await.unwrap().is_empty());
    assert_eq!(list_keys(s3, bucket, &folder("new")).await.len(), 1);
    assert_eq!(store.advisories("new", &keys).await.unwrap().len(), 3);
}

/// The current database item keeps its version in `v_version`, the attribute the
/// condition of `set_current_db` reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_db_item_carries_its_version() {
    let table = FreshTable::create("registry-vulndb").await;
    let store = table.store();
    let info = VulnDbInfo {
        version: "20250101T000000Z".into(),
        imported_ms: 1,
        source: "osv.zip".into(),
        advisories: 10,
        keys: 4,
    };
    store.set_current_db(&info, None).await.unwrap();
    let item = raw_item(&table, keys::VULNDB, keys::CURRENT).await;
    assert_eq!(string_attr(&item, "v_version"), Some("20250101T000000Z"));
    assert_eq!(store.current_db().await.unwrap(), Some(info));
}

/// A report whose S3 object is gone (never expected: a replaced report's object is only
/// deleted after its item points elsewhere) is a `Storage` error naming it, after the
/// item was read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_object_vanished_is_a_storage_error() {
    let table = FreshTable::create("registry-scans").await;
    let store = table.store();
    let repo: RepoName = "scan/vanished".parse().unwrap();
    let d = digest("vanished");
    store
        .put_report(&report(&repo, &d, 3000, 1_000), &[])
        .await
        .expect("put_report");
    let item = raw_item(&table, &keys::repo_pk(&repo), &keys::scan_sk(&d)).await;
    let object = string_attr(&item, "s3_key").expect("in S3").to_owned();
    table
        .clients
        .s3
        .delete_object()
        .bucket(&table.settings.manifest_bucket)
        .key(&object)
        .send()
        .await
        .expect("DeleteObject");
    let err = store.get_report(&repo, &d).await.unwrap_err();
    assert!(
        matches!(&err, registry_core::RegistryError::Storage(m) if m.contains("missing")),
        "{err:?}"
    );
}
