//! `ProxyCacheStore` for the embedded metadata store: the proxy's tag check times and
//! cache sizes in the same redb table, by the key schema of `registry_core::keys`; each
//! method one transaction (so an increment is atomic: redb serializes write
//! transactions).

use async_trait::async_trait;
use registry_core::keys;
use registry_core::ports::ProxyCacheStore;
use registry_core::{RegistryError, RepoName, Result, Tag};
use serde::{Deserialize, Serialize};

use crate::metadata_store::{EmbeddedMetadataStore, encode, get_item};

/// `REPO#<name>` / `CHECKED#<tag>`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagCheckedItem {
    at_ms: u64,
}

/// `PROXY#<project>` / `CACHED`.
#[derive(Serialize, Deserialize)]
struct CachedItem {
    bytes: u64,
}

#[async_trait]
impl ProxyCacheStore for EmbeddedMetadataStore {
    async fn tag_checked(&self, repo: &RepoName, tag: &Tag) -> Result<Option<u64>> {
        let (pk, sk) = (keys::repo_pk(repo), keys::tag_checked_sk(tag));
        self.read(move |t| Ok(get_item::<TagCheckedItem>(t, &pk, &sk)?.map(|i| i.at_ms)))
            .await
    }

    async fn set_tag_checked(&self, repo: &RepoName, tag: &Tag, at_ms: u64) -> Result<()> {
        let (pk, sk) = (keys::repo_pk(repo), keys::tag_checked_sk(tag));
        self.write(move |t| {
            t.insert(
                (pk.as_str(), sk.as_str()),
                encode(&TagCheckedItem { at_ms })?.as_slice(),
            )
            .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn cached_bytes(&self, project: &str) -> Result<u64> {
        let pk = keys::proxy_pk(project);
        self.read(move |t| Ok(get_item::<CachedItem>(t, &pk, keys::CACHED)?.map_or(0, |i| i.bytes)))
            .await
    }

    async fn add_cached_bytes(&self, project: &str, bytes: u64) -> Result<u64> {
        let pk = keys::proxy_pk(project);
        self.write(move |t| {
            let now = get_item::<CachedItem>(t, &pk, keys::CACHED)?.map_or(0, |i| i.bytes);
            let total = now.saturating_add(bytes);
            t.insert(
                (pk.as_str(), keys::CACHED),
                encode(&CachedItem { bytes: total })?.as_slice(),
            )
            .map_err(RegistryError::storage)?;
            Ok(total)
        })
        .await
    }
}
