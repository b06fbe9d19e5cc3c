//! `EmbeddedMetadataStore`: the single-table key schema of `registry_core::keys` in one
//! redb table keyed by (partition key, sort key); each port method is one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use registry_core::events::Event;
use registry_core::keys;
use registry_core::manifest::ReferrerDescriptor;
use registry_core::ports::{ManifestRecord, MetadataStore, Page, PageRequest};
use registry_core::upload::UploadSession;
use registry_core::{Digest, RegistryError, RepoName, Result, Tag};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::db::blocking;

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");

#[derive(Serialize, Deserialize)]
struct TagItem {
    digest: Digest,
}

#[derive(Serialize, Deserialize)]
struct BlobLinkItem {
    size: u64,
}

pub(crate) const EMPTY: &[u8] = b"{}";

/// Metadata in redb; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedMetadataStore {
    db: Arc<Database>,
}

pub(crate) type Items<'t> = Table<'t, (&'static str, &'static str), &'static [u8]>;

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(RegistryError::storage)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(RegistryError::storage)
}

pub(crate) fn get_item<T: DeserializeOwned>(
    t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    pk: &str,
    sk: &str,
) -> Result<Option<T>> {
    match t.get((pk, sk)).map_err(RegistryError::storage)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// Items of partition `pk` whose sort key starts with `prefix`, strictly after
/// `prefix + after` when given, at most `limit`.
pub(crate) fn query(
    t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    pk: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    let start = match after {
        Some(a) => format!("{prefix}{a}"),
        None => prefix.to_owned(),
    };
    let mut out = Vec::new();
    for entry in t
        .range((pk, start.as_str())..)
        .map_err(RegistryError::storage)?
    {
        let (k, v) = entry.map_err(RegistryError::storage)?;
        let (kpk, ksk) = k.value();
        if kpk != pk || !ksk.starts_with(prefix) {
            break;
        }
        if after.is_some() && ksk == start {
            continue;
        }
        if out.len() == limit {
            break;
        }
        out.push((ksk.to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

pub(crate) fn page_of(items: Vec<(String, Vec<u8>)>, prefix: &str, limit: usize) -> Page {
    let more = items.len() > limit;
    Page {
        items: items
            .into_iter()
            .take(limit)
            .map(|(sk, _)| sk[prefix.len()..].to_owned())
            .collect(),
        more,
    }
}

/// Writes `events` as outbox items (inside the caller's transaction).
pub(crate) fn record_events(t: &mut Items<'_>, events: &[Event]) -> Result<()> {
    for event in events {
        let sk = keys::outbox_sk(&event.id);
        t.insert((keys::OUTBOX, sk.as_str()), encode(event)?.as_slice())
            .map_err(RegistryError::storage)?;
    }
    Ok(())
}

fn ensure_repo(t: &mut Items<'_>, repo: &RepoName) -> Result<()> {
    let pk = keys::repo_pk(repo);
    t.insert((pk.as_str(), keys::REPO_MARKER), EMPTY)
        .map_err(RegistryError::storage)?;
    let sk = keys::catalog_sk(repo);
    t.insert((keys::CATALOG, sk.as_str()), EMPTY)
        .map_err(RegistryError::storage)?;
    Ok(())
}

impl EmbeddedMetadataStore {
    pub fn new(db: Arc<Database>) -> Result<Self> {
        let txn = db.begin_write().map_err(RegistryError::storage)?;
        txn.open_table(ITEMS).map_err(RegistryError::storage)?;
        txn.commit().map_err(RegistryError::storage)?;
        Ok(EmbeddedMetadataStore { db })
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>) -> Result<T>
            + Send
            + 'static,
    {
        blocking(&self.db, move |db| {
            let txn = db.begin_read().map_err(RegistryError::storage)?;
            let t = txn.open_table(ITEMS).map_err(RegistryError::storage)?;
            f(&t)
        })
        .await
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Items<'_>) -> Result<T> + Send + 'static,
    {
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(RegistryError::storage)?;
            let out = {
                let mut t = txn.open_table(ITEMS).map_err(RegistryError::storage)?;
                f(&mut t)?
            };
            txn.commit().map_err(RegistryError::storage)?;
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl MetadataStore for EmbeddedMetadataStore {
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[Event],
    ) -> Result<()> {
        let (repo, digest, events) = (repo.clone(), digest.clone(), events.to_vec());
        self.write(move |t| {
            ensure_repo(t, &repo)?;
            record_events(t, &events)?;
            let (pk, sk) = (keys::repo_pk(&repo), keys::blob_sk(&digest));
            t.insert(
                (pk.as_str(), sk.as_str()),
                encode(&BlobLinkItem { size })?.as_slice(),
            )
            .map_err(RegistryError::storage)?;
            let (bpk, bsk) = (keys::blob_pk(&digest), keys::catalog_sk(&repo));
            t.insert((bpk.as_str(), bsk.as_str()), EMPTY)
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let (pk, sk) = (keys::repo_pk(repo), keys::blob_sk(digest));
        self.read(move |t| Ok(get_item::<BlobLinkItem>(t, &pk, &sk)?.map(|l| l.size)))
            .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (pk, sk) = (keys::repo_pk(repo), keys::blob_sk(digest));
        let (bpk, bsk) = (keys::blob_pk(digest), keys::catalog_sk(repo));
        self.write(move |t| {
            let existed = t
                .remove((pk.as_str(), sk.as_str()))
                .map_err(RegistryError::storage)?
                .is_some();
            t.remove((bpk.as_str(), bsk.as_str()))
                .map_err(RegistryError::storage)?;
            Ok(existed)
        })
        .await
    }

    async fn repositories_linking(&self, digest: &Digest, limit: usize) -> Result<Vec<RepoName>> {
        let pk = keys::blob_pk(digest);
        self.read(move |t| {
            query(t, &pk, keys::REPO_PREFIX, None, limit)?
                .into_iter()
                .map(|(sk, _)| sk[keys::REPO_PREFIX.len()..].parse())
                .collect()
        })
        .await
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
        events: &[Event],
    ) -> Result<()> {
        let (repo, record, tags) = (repo.clone(), record.clone(), tags.to_vec());
        let events = events.to_vec();
        self.write(move |t| {
            ensure_repo(t, &repo)?;
            record_events(t, &events)?;
            let pk = keys::repo_pk(&repo);
            let sk = keys::manifest_sk(&record.digest);
            t.insert((pk.as_str(), sk.as_str()), encode(&record)?.as_slice())
                .map_err(RegistryError::storage)?;
            for tag in &tags {
                let sk = keys::tag_sk(tag);
                let item = TagItem {
                    digest: record.digest.clone(),
                };
                t.insert((pk.as_str(), sk.as_str()), encode(&item)?.as_slice())
                    .map_err(RegistryError::storage)?;
            }
            if let Some(subject) = &record.subject {
                let sk = keys::referrer_sk(subject, &record.digest);
                let descriptor = record.referrer_descriptor();
                t.insert((pk.as_str(), sk.as_str()), encode(&descriptor)?.as_slice())
                    .map_err(RegistryError::storage)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let (pk, sk) = (keys::repo_pk(repo), keys::manifest_sk(digest));
        self.read(move |t| get_item(t, &pk, &sk)).await
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let (pk, sk) = (keys::repo_pk(repo), keys::tag_sk(tag));
        self.read(move |t| Ok(get_item::<TagItem>(t, &pk, &sk)?.map(|i| i.digest)))
            .await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[Event],
    ) -> Result<bool> {
        let pk = keys::repo_pk(repo);
        let (digest, events) = (digest.clone(), events.to_vec());
        self.write(move |t| {
            let sk = keys::manifest_sk(&digest);
            let Some(record) = get_item::<ManifestRecord>(t, &pk, &sk)? else {
                return Ok(false);
            };
            record_events(t, &events)?;
            t.remove((pk.as_str(), sk.as_str()))
                .map_err(RegistryError::storage)?;
            for (tag_sk, value) in query(t, &pk, keys::TAG_PREFIX, None, usize::MAX)? {
                if decode::<TagItem>(&value)?.digest == digest {
                    t.remove((pk.as_str(), tag_sk.as_str()))
                        .map_err(RegistryError::storage)?;
                }
            }
            if let Some(subject) = &record.subject {
                let sk = keys::referrer_sk(subject, &digest);
                t.remove((pk.as_str(), sk.as_str()))
                    .map_err(RegistryError::storage)?;
            }
            Ok(true)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[Event]) -> Result<bool> {
        let (pk, sk) = (keys::repo_pk(repo), keys::tag_sk(tag));
        let events = events.to_vec();
        self.write(move |t| {
            let existed = t
                .remove((pk.as_str(), sk.as_str()))
                .map_err(RegistryError::storage)?
                .is_some();
            if existed {
                record_events(t, &events)?;
            }
            Ok(existed)
        })
        .await
    }

    async fn list_tags(&self, repo: &RepoName, page: &PageRequest) -> Result<Page> {
        let pk = keys::repo_pk(repo);
        let page = page.clone();
        self.read(move |t| {
            let items = query(
                t,
                &pk,
                keys::TAG_PREFIX,
                page.after.as_deref(),
                page.limit.saturating_add(1),
            )?;
            Ok(page_of(items, keys::TAG_PREFIX, page.limit))
        })
        .await
    }

    async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ReferrerDescriptor>> {
        let pk = keys::repo_pk(repo);
        let prefix = keys::referrer_prefix(subject);
        self.read(move |t| {
            query(t, &pk, &prefix, None, usize::MAX)?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let pk = keys::repo_pk(repo);
        self.read(move |t| {
            Ok(t.get((pk.as_str(), keys::REPO_MARKER))
                .map_err(RegistryError::storage)?
                .is_some())
        })
        .await
    }

    async fn list_repositories(&self, page: &PageRequest) -> Result<Page> {
        let page = page.clone();
        self.read(move |t| {
            let items = query(
                t,
                keys::CATALOG,
                keys::REPO_PREFIX,
                page.after.as_deref(),
                page.limit.saturating_add(1),
            )?;
            Ok(page_of(items, keys::REPO_PREFIX, page.limit))
        })
        .await
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let session = session.clone();
        self.write(move |t| {
            let pk = keys::upload_pk(&session.id);
            t.insert((pk.as_str(), keys::UPLOAD_SK), encode(&session)?.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, upload_id: &str) -> Result<Option<UploadSession>> {
        let pk = keys::upload_pk(upload_id);
        self.read(move |t| get_item(t, &pk, keys::UPLOAD_SK)).await
    }

    async fn update_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<()> {
        let session = session.clone();
        self.write(move |t| {
            let pk = keys::upload_pk(&session.id);
            let current: Option<UploadSession> = get_item(t, &pk, keys::UPLOAD_SK)?;
            match current {
                Some(c) if c.offset == expected_offset => {
                    t.insert((pk.as_str(), keys::UPLOAD_SK), encode(&session)?.as_slice())
                        .map_err(RegistryError::storage)?;
                    Ok(())
                }
                Some(c) => Err(RegistryError::Conflict(format!(
                    "upload is at offset {}, not {expected_offset}",
                    c.offset
                ))),
                None => Err(RegistryError::BlobUploadUnknown),
            }
        })
        .await
    }

    async fn delete_upload(&self, upload_id: &str) -> Result<bool> {
        let pk = keys::upload_pk(upload_id);
        self.write(move |t| {
            Ok(t.remove((pk.as_str(), keys::UPLOAD_SK))
                .map_err(RegistryError::storage)?
                .is_some())
        })
        .await
    }

    async fn expired_uploads(&self, now_ms: u64, limit: usize) -> Result<Vec<UploadSession>> {
        self.read(move |t| {
            let mut out = Vec::new();
            for entry in t
                .range((keys::UPLOAD_PREFIX, "")..)
                .map_err(RegistryError::storage)?
            {
                let (k, v) = entry.map_err(RegistryError::storage)?;
                if !k.value().0.starts_with(keys::UPLOAD_PREFIX) || out.len() == limit {
                    break;
                }
                let s: UploadSession = decode(v.value())?;
                if s.expires_at_ms < now_ms {
                    out.push(s);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_events(&self, limit: usize) -> Result<Vec<Event>> {
        self.read(move |t| {
            query(t, keys::OUTBOX, keys::EVENT_PREFIX, None, limit)?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn remove_outbox_event(&self, event_id: &str) -> Result<()> {
        let sk = keys::outbox_sk(event_id);
        self.write(move |t| {
            t.remove((keys::OUTBOX, sk.as_str()))
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }
}
