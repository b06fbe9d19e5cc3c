//! Importing an OSV vulnerability database (a directory or a zip of OSV JSON files, as
//! air-gapped sites carry them in): advisories are grouped by the package keys they can
//! match, stored as a new database version, made current (conditionally: two imports at
//! once cannot both win), the previous version deleted, and every scanned image queued
//! for a rescan. A malformed file fails the import before anything is stored.

use std::collections::BTreeMap;

use registry_core::events::new_event_id;
use registry_core::ports::{StoredAdvisory, VulnDbInfo};
use registry_core::{RegistryError, Result};
use registry_scanner::ScanError;
use registry_scanner::matcher::advisory_keys;
use registry_scanner::osv::Advisory;

use crate::Scanner;

/// Keys stored concurrently.
const CONCURRENT_PUTS: usize = 8;
/// Keys of the previous version deleted per call.
const DELETE_PAGE: usize = 500;

/// Advisories grouped by package key, ready to store.
#[derive(Debug, Default)]
pub struct Groups {
    by_key: BTreeMap<String, Vec<StoredAdvisory>>,
    /// Advisories that will be stored.
    pub advisories: u64,
    /// Withdrawn advisories, or ones naming no ecosystem the scanner knows.
    pub skipped: u64,
}

impl Groups {
    /// How many package keys the advisories are stored under.
    pub fn keys(&self) -> u64 {
        self.by_key.len() as u64
    }
}

/// Groups `advisories` by package key (sync: run it on a blocking thread); `on_read` is
/// called with the count read so far. Descriptions, references and credits are dropped
/// (reports link advisories by id).
pub fn group(
    advisories: impl IntoIterator<Item = Result<Advisory, ScanError>>,
    mut on_read: impl FnMut(u64),
) -> Result<Groups> {
    let mut groups = Groups::default();
    let mut read = 0u64;
    for advisory in advisories {
        let mut advisory =
            advisory.map_err(|e| RegistryError::Unsupported(format!("vulnerability data: {e}")))?;
        read += 1;
        on_read(read);
        let keys = advisory_keys(&advisory);
        if keys.is_empty() {
            groups.skipped += 1;
            continue;
        }
        advisory.details = None;
        advisory.references.clear();
        advisory.credits.clear();
        let stored = StoredAdvisory {
            id: advisory.id.clone(),
            document: serde_json::to_string(&advisory).map_err(RegistryError::storage)?,
        };
        for key in keys {
            groups.by_key.entry(key).or_default().push(stored.clone());
        }
        groups.advisories += 1;
    }
    Ok(groups)
}

/// Reads a zip of OSV JSON files and groups its advisories (see [`group`]; sync: run it
/// on a blocking thread). `Unsupported` for data that is not a zip.
pub fn group_zip(
    zip: impl std::io::Read + std::io::Seek,
    on_read: impl FnMut(u64),
) -> Result<Groups> {
    let advisories = registry_scanner::osv::read_zip(zip)
        .map_err(|e| RegistryError::Unsupported(format!("not a zip of OSV files: {e}")))?;
    group(advisories, on_read)
}

impl Scanner {
    /// Stores `groups` as a new database version named after `source`, makes it current,
    /// deletes the previous one and queues the rescan of every scanned image;
    /// `on_stored(done, total)` follows the keys stored.
    pub async fn import_database(
        &self,
        source: &str,
        groups: Groups,
        on_stored: impl Fn(u64, u64),
    ) -> Result<VulnDbInfo> {
        use futures_util::StreamExt;

        let previous = self.vulns.current_db().await?;
        let now = self.clock.now_millis();
        let info = VulnDbInfo {
            version: new_event_id(now),
            imported_ms: now,
            source: source.to_owned(),
            advisories: groups.advisories,
            keys: groups.keys(),
        };
        let total = groups.keys();
        let mut done = 0u64;
        let vulns = self.vulns.clone();
        let version = info.version.clone();
        let mut puts = futures_util::stream::iter(groups.by_key)
            .map(|(key, advisories)| {
                let (vulns, version) = (vulns.clone(), version.clone());
                async move { vulns.put_advisories(&version, &key, &advisories).await }
            })
            .buffer_unordered(CONCURRENT_PUTS);
        while let Some(put) = puts.next().await {
            if let Err(e) = put {
                drop(puts);
                self.delete_version(&info.version).await;
                return Err(e);
            }
            done += 1;
            on_stored(done, total);
        }
        drop(puts);
        if let Err(e) = self
            .vulns
            .set_current_db(&info, previous.as_ref().map(|p| p.version.as_str()))
            .await
        {
            self.delete_version(&info.version).await;
            return Err(e);
        }
        tracing::info!(version = %info.version, advisories = info.advisories, keys = info.keys, "vulnerability database imported");
        if let Some(previous) = previous {
            self.delete_version(&previous.version).await;
        }
        self.request_rescan_all().await?;
        Ok(info)
    }

    /// Deletes a database version (best effort: a failure is logged and leaves data that
    /// no scan reads).
    async fn delete_version(&self, version: &str) {
        loop {
            match self.vulns.delete_db_version(version, DELETE_PAGE).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(version, error = %e, "could not delete an old vulnerability database");
                    break;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl registry_core::scan::DatabaseImporter for Scanner {
    async fn import_zip(&self, zip: bytes::Bytes, source: &str) -> Result<VulnDbInfo> {
        let groups =
            tokio::task::spawn_blocking(move || group_zip(std::io::Cursor::new(zip), |_| {}))
                .await
                .map_err(RegistryError::storage)??;
        self.import_database(source, groups, |_, _| {}).await
    }
}
