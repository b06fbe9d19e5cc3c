//! `ScanStore` and `VulnerabilityStore` for the embedded metadata store: scan reports and
//! the vulnerability database in the same redb table, by the key schema of
//! `registry_core::keys`; each method one transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use registry_core::events::Event;
use registry_core::keys;
use registry_core::ports::{ScanStore, StoredAdvisory, VulnDbInfo, VulnerabilityStore};
use registry_core::scan::ScanReport;
use registry_core::{Digest, RegistryError, RepoName, Result};

use crate::metadata_store::{
    EMPTY, EmbeddedMetadataStore, decode, encode, get_item, query, record_events,
};

#[async_trait]
impl ScanStore for EmbeddedMetadataStore {
    async fn put_report(&self, report: &ScanReport, events: &[Event]) -> Result<()> {
        let (report, events) = (report.clone(), events.to_vec());
        self.write(move |t| {
            record_events(t, &events)?;
            let (pk, sk) = (
                keys::repo_pk(&report.repository),
                keys::scan_sk(&report.digest),
            );
            t.insert((pk.as_str(), sk.as_str()), encode(&report)?.as_slice())
                .map_err(RegistryError::storage)?;
            let index = keys::scans_sk(&report.repository, &report.digest);
            t.insert((keys::SCANS, index.as_str()), EMPTY)
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn get_report(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanReport>> {
        let (pk, sk) = (keys::repo_pk(repo), keys::scan_sk(digest));
        self.read(move |t| get_item(t, &pk, &sk)).await
    }

    async fn scanned_images(
        &self,
        after: Option<&(RepoName, Digest)>,
        limit: usize,
    ) -> Result<Vec<(RepoName, Digest)>> {
        let after = after.map(|(r, d)| keys::scans_sk(r, d));
        self.read(move |t| {
            query(t, keys::SCANS, "", after.as_deref(), limit)?
                .into_iter()
                .map(|(sk, _)| parse_scans_sk(&sk))
                .collect()
        })
        .await
    }
}

fn parse_scans_sk(sk: &str) -> Result<(RepoName, Digest)> {
    keys::parse_scans_sk(sk)
        .ok_or_else(|| RegistryError::Storage(format!("bad scan index entry {sk:?}")))
}

#[async_trait]
impl VulnerabilityStore for EmbeddedMetadataStore {
    async fn put_advisories(
        &self,
        version: &str,
        key: &str,
        advisories: &[StoredAdvisory],
    ) -> Result<()> {
        let (pk, index_pk, index_sk) = (
            keys::advisory_pk(version, key),
            keys::db_version_pk(version),
            keys::db_key_sk(key),
        );
        let advisories = advisories.to_vec();
        self.write(move |t| {
            for a in &advisories {
                let sk = keys::advisory_sk(&a.id);
                t.insert((pk.as_str(), sk.as_str()), encode(a)?.as_slice())
                    .map_err(RegistryError::storage)?;
            }
            t.insert((index_pk.as_str(), index_sk.as_str()), EMPTY)
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn advisories(
        &self,
        version: &str,
        keys_wanted: &[String],
    ) -> Result<BTreeMap<String, Vec<StoredAdvisory>>> {
        let version = version.to_owned();
        let wanted = keys_wanted.to_vec();
        self.read(move |t| {
            let mut out = BTreeMap::new();
            for key in wanted {
                let pk = keys::advisory_pk(&version, &key);
                let found: Vec<StoredAdvisory> =
                    query(t, &pk, keys::ADVISORY_PREFIX, None, usize::MAX)?
                        .into_iter()
                        .map(|(_, v)| decode(&v))
                        .collect::<Result<_>>()?;
                if !found.is_empty() {
                    out.insert(key, found);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn current_db(&self) -> Result<Option<VulnDbInfo>> {
        self.read(|t| get_item(t, keys::VULNDB, keys::CURRENT))
            .await
    }

    async fn set_current_db(&self, info: &VulnDbInfo, expected: Option<&str>) -> Result<()> {
        let info = info.clone();
        let expected = expected.map(str::to_owned);
        self.write(move |t| {
            let current: Option<VulnDbInfo> = get_item(t, keys::VULNDB, keys::CURRENT)?;
            let current = current.map(|c| c.version);
            if current != expected {
                return Err(RegistryError::Conflict(format!(
                    "the current vulnerability database is {current:?}, not {expected:?}"
                )));
            }
            t.insert((keys::VULNDB, keys::CURRENT), encode(&info)?.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn delete_db_version(&self, version: &str, limit: usize) -> Result<usize> {
        let version = version.to_owned();
        self.write(move |t| {
            let index_pk = keys::db_version_pk(&version);
            let entries = query(t, &index_pk, keys::DB_KEY_PREFIX, None, limit)?;
            for (sk, _) in &entries {
                let key = &sk[keys::DB_KEY_PREFIX.len()..];
                let pk = keys::advisory_pk(&version, key);
                for (asd, _) in query(t, &pk, keys::ADVISORY_PREFIX, None, usize::MAX)? {
                    t.remove((pk.as_str(), asd.as_str()))
                        .map_err(RegistryError::storage)?;
                }
                t.remove((index_pk.as_str(), sk.as_str()))
                    .map_err(RegistryError::storage)?;
            }
            Ok(entries.len())
        })
        .await
    }
}
