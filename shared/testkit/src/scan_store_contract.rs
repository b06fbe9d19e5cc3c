//! The contracts every [`ScanStore`] and [`VulnerabilityStore`] adapter must pass:
//! reports per image and the index of scanned images; advisories per database version
//! and key, the conditional switch of the current version, and the deletion of an old one.
//!
//! Each check takes a fresh, empty store. Run them with
//! [`scan_store_contract_tests!`](crate::scan_store_contract_tests) and
//! [`vulnerability_store_contract_tests!`](crate::vulnerability_store_contract_tests).

use std::sync::Arc;

use registry_core::ports::{ScanStore, StoredAdvisory, VulnDbInfo, VulnerabilityStore};
use registry_core::scan::{ReportFinding, ScanReport, ScanStatus, Severity, SeveritySummary};
use registry_core::{Digest, DigestAlgorithm, RegistryError, RepoName};

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

fn digest(seed: &str) -> Digest {
    Digest::of(DigestAlgorithm::Sha256, seed.as_bytes())
}

fn report(r: &RepoName, d: &Digest, findings: usize) -> ScanReport {
    let mut summary = SeveritySummary::default();
    let findings: Vec<ReportFinding> = (0..findings)
        .map(|i| {
            let severity = if i % 2 == 0 {
                Severity::High
            } else {
                Severity::Low
            };
            summary.add(severity);
            ReportFinding {
                id: format!("DEBIAN-CVE-2024-{i:04}"),
                aliases: vec![format!("CVE-2024-{i:04}")],
                ecosystem: "Debian".into(),
                package: "libssl3".into(),
                installed_version: "3.0.11-1~deb12u2".into(),
                fixed_version: Some("3.0.13-1~deb12u1".into()),
                severity,
                score: Some(7.5),
                layer: Some(digest("layer")),
                summary: Some("a flaw with a long description ".repeat(4)),
            }
        })
        .collect();
    ScanReport {
        repository: r.clone(),
        digest: d.clone(),
        status: ScanStatus::Completed,
        scanner: "registry-scanner 0.1.0".into(),
        db_version: Some("db1".into()),
        scanned_ms: 1_000,
        distro: Some("Debian GNU/Linux 12 (bookworm)".into()),
        packages: 120,
        summary,
        findings,
        sbom: Some(digest("sbom")),
        error: None,
    }
}

/// Reports round-trip per image; a put replaces; other images are unaffected.
pub async fn reports_round_trip(store: Arc<dyn ScanStore>) {
    let (a, b) = (repo("scan/a"), repo("scan/b"));
    let (d1, d2) = (digest("one"), digest("two"));
    assert_eq!(store.get_report(&a, &d1).await.unwrap(), None);
    let first = report(&a, &d1, 3);
    store.put_report(&first, &[]).await.unwrap();
    store.put_report(&report(&b, &d1, 1), &[]).await.unwrap();
    assert_eq!(store.get_report(&a, &d1).await.unwrap(), Some(first));
    assert_eq!(store.get_report(&a, &d2).await.unwrap(), None);
    let failed = ScanReport {
        status: ScanStatus::Failed,
        error: Some("layer unreadable".into()),
        findings: vec![],
        summary: SeveritySummary::default(),
        ..report(&a, &d1, 0)
    };
    store.put_report(&failed, &[]).await.unwrap();
    assert_eq!(store.get_report(&a, &d1).await.unwrap(), Some(failed));
    assert_eq!(
        store
            .get_report(&b, &d1)
            .await
            .unwrap()
            .unwrap()
            .findings
            .len(),
        1
    );
}

/// A report with many findings (hundreds of KiB) round-trips.
pub async fn large_reports_round_trip(store: Arc<dyn ScanStore>) {
    let r = repo("scan/large");
    let d = digest("large");
    let big = report(&r, &d, 3000);
    assert!(
        serde_json::to_vec(&big).unwrap().len() > 400 * 1024,
        "over a DynamoDB item"
    );
    store.put_report(&big, &[]).await.unwrap();
    assert_eq!(store.get_report(&r, &d).await.unwrap(), Some(big));
}

/// Scanned images list once each, in (repository, digest) order, paged by `after`.
pub async fn scanned_images_list_in_order(store: Arc<dyn ScanStore>) {
    let mut all = Vec::new();
    for (r, s) in [
        ("scan/z", "1"),
        ("scan/a", "2"),
        ("scan/a", "1"),
        ("scan/m", "3"),
    ] {
        let (r, d) = (repo(r), digest(s));
        store.put_report(&report(&r, &d, 0), &[]).await.unwrap();
        store.put_report(&report(&r, &d, 1), &[]).await.unwrap();
        all.push((r, d));
    }
    all.sort_by(|x, y| (x.0.as_str(), x.1.to_string()).cmp(&(y.0.as_str(), y.1.to_string())));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.scanned_images(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, all);
}

fn advisory(id: &str, text: &str) -> StoredAdvisory {
    StoredAdvisory {
        id: id.into(),
        document: format!(r#"{{"id":"{id}","summary":"{text}"}}"#),
    }
}

fn info(version: &str) -> VulnDbInfo {
    VulnDbInfo {
        version: version.into(),
        imported_ms: 5,
        source: "osv.zip".into(),
        advisories: 3,
        keys: 2,
    }
}

/// Advisories are read back per key and version; a put of the same id replaces it.
pub async fn advisories_by_version_and_key(store: Arc<dyn VulnerabilityStore>) {
    let k1 = "Debian|12|openssl".to_owned();
    let k2 = "PyPI||jinja2".to_owned();
    store
        .put_advisories("v1", &k1, &[advisory("A-1", "x"), advisory("A-2", "y")])
        .await
        .unwrap();
    store
        .put_advisories("v1", &k2, &[advisory("A-1", "x")])
        .await
        .unwrap();
    store
        .put_advisories("v2", &k1, &[advisory("B-1", "z")])
        .await
        .unwrap();
    store
        .put_advisories("v1", &k1, &[advisory("A-2", "y2")])
        .await
        .unwrap();
    let got = store
        .advisories("v1", &[k1.clone(), k2.clone(), "npm||nothing".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "keys without advisories are absent: {got:?}");
    assert_eq!(got[&k1], vec![advisory("A-1", "x"), advisory("A-2", "y2")]);
    assert_eq!(got[&k2], vec![advisory("A-1", "x")]);
    assert_eq!(
        store
            .advisories("v2", std::slice::from_ref(&k1))
            .await
            .unwrap()[&k1],
        vec![advisory("B-1", "z")]
    );
}

/// The current version switches only from the expected one.
pub async fn current_db_switches_conditionally(store: Arc<dyn VulnerabilityStore>) {
    assert_eq!(store.current_db().await.unwrap(), None);
    let err = store
        .set_current_db(&info("v1"), Some("v0"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)), "{err:?}");
    store.set_current_db(&info("v1"), None).await.unwrap();
    assert_eq!(store.current_db().await.unwrap(), Some(info("v1")));
    let err = store.set_current_db(&info("v2"), None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)), "{err:?}");
    store.set_current_db(&info("v2"), Some("v1")).await.unwrap();
    assert_eq!(store.current_db().await.unwrap(), Some(info("v2")));
}

/// Deleting a version removes its advisories in pages and leaves other versions alone.
pub async fn delete_db_version_in_pages(store: Arc<dyn VulnerabilityStore>) {
    let keys: Vec<String> = (0..5).map(|i| format!("npm||pkg{i}")).collect();
    for k in &keys {
        store
            .put_advisories("old", k, &[advisory("X-1", "a"), advisory("X-2", "b")])
            .await
            .unwrap();
        store
            .put_advisories("new", k, &[advisory("Y-1", "c")])
            .await
            .unwrap();
    }
    let mut deleted = 0;
    loop {
        let n = store.delete_db_version("old", 2).await.unwrap();
        assert!(n <= 2);
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, 5);
    assert!(store.advisories("old", &keys).await.unwrap().is_empty());
    assert_eq!(store.advisories("new", &keys).await.unwrap().len(), 5);
}
