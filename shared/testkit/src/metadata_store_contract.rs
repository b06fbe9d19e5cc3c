//! The contract every [`MetadataStore`] adapter must pass: blob links, manifests and
//! tags, referrers, the catalog and its pagination, upload sessions, and the atomicity
//! the port promises under concurrent writers, and the outbox of events written with
//! the changes they describe.
//!
//! Each check takes a fresh, empty store. Run them all, one test each, with
//! [`metadata_store_contract_tests!`](crate::metadata_store_contract_tests).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use registry_core::events::{Event, EventKind};
use registry_core::ports::{ManifestRecord, MetadataStore, Page, PageRequest};
use registry_core::upload::UploadSession;
use registry_core::{Digest, DigestAlgorithm, DigestHasher, RegistryError, RepoName, Tag};

const OCI_MANIFEST: &str = registry_core::manifest::OCI_MANIFEST;

fn repo(name: &str) -> RepoName {
    name.parse().expect("valid repository name")
}

fn tag(name: &str) -> Tag {
    name.parse().expect("valid tag")
}

fn blob_digest(seed: u64) -> Digest {
    Digest::of(DigestAlgorithm::Sha256, format!("blob {seed}").as_bytes())
}

/// An image manifest record whose bytes (and so digest) depend on `seed`.
fn manifest(seed: u64) -> ManifestRecord {
    let content = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob_digest(seed).to_string(),
            "size": 2
        },
        "layers": [],
        "annotations": { "contract.seed": seed.to_string() }
    })
    .to_string();
    ManifestRecord {
        digest: Digest::of(DigestAlgorithm::Sha256, content.as_bytes()),
        media_type: OCI_MANIFEST.to_owned(),
        content,
        subject: None,
        artifact_type: None,
        annotations: None,
    }
}

/// An artifact manifest that refers to `subject`, with an artifact type and annotations.
fn referrer(seed: u64, subject: &Digest) -> ManifestRecord {
    let artifact_type = "application/vnd.example.sbom.v1+json";
    let content = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 100 },
        "annotations": { "contract.seed": seed.to_string() }
    })
    .to_string();
    ManifestRecord {
        digest: Digest::of(DigestAlgorithm::Sha256, content.as_bytes()),
        media_type: OCI_MANIFEST.to_owned(),
        content,
        subject: Some(subject.clone()),
        artifact_type: Some(artifact_type.to_owned()),
        annotations: Some(BTreeMap::from([(
            "contract.seed".to_owned(),
            seed.to_string(),
        )])),
    }
}

fn page(after: Option<&str>, limit: usize) -> PageRequest {
    PageRequest {
        after: after.map(str::to_owned),
        limit,
    }
}

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every page of a listing of `limit` names, checking each page's size and `more`.
async fn walk<F, Fut>(limit: usize, mut list: F) -> Vec<String>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = registry_core::Result<Page>>,
{
    let mut all = Vec::new();
    let mut after = None;
    for _ in 0..1_000 {
        let p = list(page(after.as_deref(), limit)).await.unwrap();
        assert!(p.items.len() <= limit, "a page holds at most `limit` names");
        all.extend(p.items.iter().cloned());
        if !p.more {
            return all;
        }
        assert_eq!(p.items.len(), limit, "a page with `more` must be full");
        after = p.items.last().cloned();
    }
    panic!("pagination never ended");
}

async fn put(store: &dyn MetadataStore, r: &RepoName, record: &ManifestRecord, t: Option<&str>) {
    store
        .put_manifest(r, record, &t.map(tag).into_iter().collect::<Vec<_>>(), &[])
        .await
        .expect("put_manifest must succeed");
}

/// Resolves a tag both ways the port offers, and checks they agree: `resolve_tag` and
/// `get_manifest_by_tag` (which must return the very manifest the tag points at).
async fn resolve(store: &dyn MetadataStore, r: &RepoName, t: &str) -> Option<Digest> {
    let digest = store.resolve_tag(r, &tag(t)).await.unwrap();
    let record = store.get_manifest_by_tag(r, &tag(t)).await.unwrap();
    match (&digest, record) {
        (Some(d), Some(record)) => {
            assert_eq!(
                &record.digest, d,
                "get_manifest_by_tag disagrees with resolve_tag"
            );
            let by_digest = store.get_manifest(r, d).await.unwrap();
            assert_eq!(
                Some(record),
                by_digest,
                "tagged manifest differs from the stored one"
            );
        }
        (None, None) => {}
        (d, record) => panic!("resolve_tag gave {d:?} but get_manifest_by_tag gave {record:?}"),
    }
    digest
}

async fn all_tags(store: &dyn MetadataStore, r: &RepoName) -> Vec<String> {
    let p = store.list_tags(r, &page(None, 1_000)).await.unwrap();
    assert!(!p.more);
    p.items
}

/// Every tag of `r` resolves to a manifest that exists (no tag ever dangles).
async fn assert_no_dangling_tags(store: &dyn MetadataStore, r: &RepoName) {
    for t in all_tags(store, r).await {
        let digest = resolve(store, r, &t)
            .await
            .unwrap_or_else(|| panic!("listed tag {t} does not resolve"));
        assert!(
            store.get_manifest(r, &digest).await.unwrap().is_some(),
            "tag {t} points at {digest}, which does not exist"
        );
    }
}

fn session(id: &str, r: &RepoName, now_ms: u64, ttl_ms: u64) -> UploadSession {
    UploadSession::new(
        id.to_owned(),
        r.clone(),
        DigestAlgorithm::Sha256,
        "state-0".to_owned(),
        now_ms,
        ttl_ms,
    )
}

/// `s` advanced by `bytes` more bytes, as the core saves it after a chunk.
fn advanced(s: &UploadSession, bytes: &[u8], store_state: &str) -> UploadSession {
    let mut next = s.clone();
    let mut hasher: DigestHasher = s.hasher().expect("valid hash state");
    hasher.update(bytes);
    next.set_hasher(&hasher);
    next.offset += bytes.len() as u64;
    next.store_state = store_state.to_owned();
    next
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `link_blob` is idempotent and per repository; `unlink_blob` says whether it removed one.
pub async fn blob_links(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let (r, other) = (repo("contract/links"), repo("contract/links-other"));
    let d = blob_digest(1);
    assert_eq!(store.blob_link(&r, &d).await.unwrap(), None);
    store.link_blob(&r, &d, 42, &[]).await.unwrap();
    assert_eq!(store.blob_link(&r, &d).await.unwrap(), Some(42));
    store
        .link_blob(&r, &d, 42, &[])
        .await
        .expect("linking twice must succeed");
    assert_eq!(store.blob_link(&r, &d).await.unwrap(), Some(42));
    assert_eq!(store.blob_link(&other, &d).await.unwrap(), None);
    assert_eq!(store.blob_link(&r, &blob_digest(2)).await.unwrap(), None);

    assert!(store.unlink_blob(&r, &d).await.unwrap());
    assert_eq!(store.blob_link(&r, &d).await.unwrap(), None);
    assert!(!store.unlink_blob(&r, &d).await.unwrap());
    assert!(!store.unlink_blob(&other, &d).await.unwrap());
    store.link_blob(&r, &d, 42, &[]).await.unwrap();
    assert_eq!(store.blob_link(&r, &d).await.unwrap(), Some(42));
}

/// `repositories_linking` lists the repositories that link a digest, up to `limit`, and
/// forgets a repository once it unlinks the digest.
pub async fn repositories_linking(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let d = blob_digest(10);
    let e = blob_digest(11);
    let repos = [repo("contract/a"), repo("contract/b"), repo("contract/c")];
    for r in &repos {
        store.link_blob(r, &d, 10, &[]).await.unwrap();
    }
    store
        .link_blob(&repo("contract/z"), &e, 11, &[])
        .await
        .unwrap();

    let got = sorted(store.repositories_linking(&d, 10).await.unwrap());
    assert_eq!(got, repos.to_vec());
    let two = store.repositories_linking(&d, 2).await.unwrap();
    assert_eq!(two.len(), 2, "repositories_linking must honour `limit`");
    assert!(two.iter().all(|r| repos.contains(r)));
    assert_eq!(
        store.repositories_linking(&e, 10).await.unwrap(),
        vec![repo("contract/z")]
    );
    assert!(
        store
            .repositories_linking(&blob_digest(12), 10)
            .await
            .unwrap()
            .is_empty()
    );

    store.unlink_blob(&repos[1], &d).await.unwrap();
    let got = sorted(store.repositories_linking(&d, 10).await.unwrap());
    assert_eq!(got, vec![repos[0].clone(), repos[2].clone()]);
}

/// A manifest put with a tag reads back field for field and the tag resolves to it; a
/// manifest put without a tag gets none; nothing leaks into another repository.
pub async fn manifest_round_trip(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let (r, other) = (repo("contract/manifests"), repo("contract/manifests2"));
    let mut m = manifest(1);
    m.artifact_type = Some("application/vnd.example.config.v1+json".to_owned());
    m.annotations = Some(BTreeMap::from([
        ("org.opencontainers.image.title".to_owned(), "x".to_owned()),
        ("z".to_owned(), "ünïcødé".to_owned()),
    ]));
    assert!(!store.repository_exists(&r).await.unwrap());
    assert_eq!(store.get_manifest(&r, &m.digest).await.unwrap(), None);

    put(store, &r, &m, Some("latest")).await;
    assert_eq!(
        store.get_manifest(&r, &m.digest).await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(resolve(store, &r, "latest").await, Some(m.digest.clone()));
    assert_eq!(resolve(store, &r, "other").await, None);
    assert!(store.repository_exists(&r).await.unwrap());
    assert_eq!(store.get_manifest(&other, &m.digest).await.unwrap(), None);
    assert_eq!(resolve(store, &other, "latest").await, None);
    assert!(!store.repository_exists(&other).await.unwrap());

    let untagged = manifest(2);
    put(store, &r, &untagged, None).await;
    assert_eq!(
        store.get_manifest(&r, &untagged.digest).await.unwrap(),
        Some(untagged.clone())
    );
    assert_eq!(all_tags(store, &r).await, names(&["latest"]));
    assert_eq!(resolve(store, &r, "latest").await, Some(m.digest.clone()));

    // Putting the same manifest again (a re-push) changes nothing.
    put(store, &r, &m, Some("latest")).await;
    assert_eq!(store.get_manifest(&r, &m.digest).await.unwrap(), Some(m));
    assert_eq!(all_tags(store, &r).await, names(&["latest"]));
}

/// Pushing another manifest with a tag moves the tag; the old manifest stays; one
/// manifest can carry several tags.
pub async fn retag_moves_tag(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/retag");
    let (a, b) = (manifest(1), manifest(2));
    put(store, &r, &a, Some("latest")).await;
    put(store, &r, &b, Some("latest")).await;
    assert_eq!(resolve(store, &r, "latest").await, Some(b.digest.clone()));
    assert!(store.get_manifest(&r, &a.digest).await.unwrap().is_some());
    assert_eq!(all_tags(store, &r).await, names(&["latest"]));

    put(store, &r, &a, Some("v1")).await;
    put(store, &r, &a, Some("stable")).await;
    assert_eq!(resolve(store, &r, "v1").await, Some(a.digest.clone()));
    assert_eq!(resolve(store, &r, "stable").await, Some(a.digest.clone()));
    assert_eq!(resolve(store, &r, "latest").await, Some(b.digest.clone()));
    assert_eq!(
        all_tags(store, &r).await,
        names(&["latest", "stable", "v1"])
    );
}

/// `delete_manifest` removes the manifest, every tag on it and its referrer entry, and
/// nothing else: other tags, its subject, and referrers of it stay.
pub async fn delete_manifest_removes_its_tags_and_referrer(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/delete");
    let base = manifest(1);
    let doomed = referrer(2, &base.digest);
    let other = manifest(3);
    put(store, &r, &base, Some("base")).await;
    put(store, &r, &doomed, Some("t1")).await;
    put(store, &r, &doomed, Some("t2")).await;
    put(store, &r, &other, Some("t3")).await;
    assert_eq!(
        store.list_referrers(&r, &base.digest).await.unwrap(),
        vec![doomed.referrer_descriptor()]
    );

    assert!(
        store
            .delete_manifest(&r, &doomed.digest, &[])
            .await
            .unwrap()
    );
    assert_eq!(store.get_manifest(&r, &doomed.digest).await.unwrap(), None);
    assert_eq!(resolve(store, &r, "t1").await, None);
    assert_eq!(resolve(store, &r, "t2").await, None);
    assert_eq!(resolve(store, &r, "t3").await, Some(other.digest.clone()));
    assert_eq!(resolve(store, &r, "base").await, Some(base.digest.clone()));
    assert!(
        store
            .get_manifest(&r, &base.digest)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .list_referrers(&r, &base.digest)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(all_tags(store, &r).await, names(&["base", "t3"]));
    assert!(
        !store
            .delete_manifest(&r, &doomed.digest, &[])
            .await
            .unwrap()
    );

    // Deleting a subject keeps the referrers that point at it (they are listed even
    // while the subject is missing).
    let sbom = referrer(4, &base.digest);
    put(store, &r, &sbom, None).await;
    assert!(store.delete_manifest(&r, &base.digest, &[]).await.unwrap());
    assert_eq!(resolve(store, &r, "base").await, None);
    assert_eq!(
        store.list_referrers(&r, &base.digest).await.unwrap(),
        vec![sbom.referrer_descriptor()]
    );
    assert_no_dangling_tags(store, &r).await;
}

/// `delete_tag` removes only the tag; the manifest and its other tags stay.
pub async fn delete_tag_keeps_manifest(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/untag");
    let m = manifest(1);
    put(store, &r, &m, Some("a")).await;
    put(store, &r, &m, Some("b")).await;
    assert!(store.delete_tag(&r, &tag("a"), &[]).await.unwrap());
    assert_eq!(resolve(store, &r, "a").await, None);
    assert_eq!(resolve(store, &r, "b").await, Some(m.digest.clone()));
    assert_eq!(store.get_manifest(&r, &m.digest).await.unwrap(), Some(m));
    assert!(!store.delete_tag(&r, &tag("a"), &[]).await.unwrap());
    assert!(!store.delete_tag(&r, &tag("never"), &[]).await.unwrap());
    assert!(
        !store
            .delete_tag(&repo("contract/nothing"), &tag("b"), &[])
            .await
            .unwrap()
    );
    assert_eq!(all_tags(store, &r).await, names(&["b"]));
}

/// Tags list in byte order, strictly after `after`, at most `limit` per page, `more`
/// exactly when tags remain; other repositories' tags and other items never appear.
pub async fn list_tags_order_and_pagination(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/tags");
    let inserted = [
        "v2", "latest", "v10", "A", "_x", "v1", "1.0", "v1.0-rc", "b",
    ];
    let expected = names(&[
        "1.0", "A", "_x", "b", "latest", "v1", "v1.0-rc", "v10", "v2",
    ]);
    for (i, t) in inserted.iter().enumerate() {
        put(store, &r, &manifest(i as u64 % 3), Some(t)).await;
    }
    // Neighbours whose keys sort next to this repository's tags.
    for (n, name) in ["contract/tags-x", "contract/tags/sub", "contract/tag"]
        .iter()
        .enumerate()
    {
        put(
            store,
            &repo(name),
            &manifest(100 + n as u64),
            Some("0-neighbour"),
        )
        .await;
        put(store, &repo(name), &manifest(100 + n as u64), Some("zzz")).await;
    }
    store.link_blob(&r, &blob_digest(1), 1, &[]).await.unwrap();
    put(store, &r, &referrer(50, &manifest(0).digest), None).await;

    let full = store.list_tags(&r, &page(None, 100)).await.unwrap();
    assert_eq!(
        full,
        Page {
            items: expected.clone(),
            more: false
        }
    );
    for limit in [1, 2, 3, 4, 8] {
        let r = &r;
        let walked = walk(limit, |p| async move { store.list_tags(r, &p).await }).await;
        assert_eq!(walked, expected, "walking pages of {limit}");
    }
    let exact = store.list_tags(&r, &page(None, 9)).await.unwrap();
    assert_eq!(
        exact,
        Page {
            items: expected.clone(),
            more: false
        }
    );
    let short = store.list_tags(&r, &page(None, 8)).await.unwrap();
    assert_eq!(
        short,
        Page {
            items: expected[..8].to_vec(),
            more: true
        }
    );
    let first = store.list_tags(&r, &page(None, 3)).await.unwrap();
    assert_eq!(
        first,
        Page {
            items: names(&["1.0", "A", "_x"]),
            more: true
        }
    );
    let mid = store.list_tags(&r, &page(Some("_x"), 2)).await.unwrap();
    assert_eq!(
        mid,
        Page {
            items: names(&["b", "latest"]),
            more: true
        }
    );
    let not_a_tag = store.list_tags(&r, &page(Some("c"), 2)).await.unwrap();
    assert_eq!(
        not_a_tag,
        Page {
            items: names(&["latest", "v1"]),
            more: true
        }
    );
    let tail = store.list_tags(&r, &page(Some("v10"), 5)).await.unwrap();
    assert_eq!(
        tail,
        Page {
            items: names(&["v2"]),
            more: false
        }
    );
    let past = store.list_tags(&r, &page(Some("v2"), 5)).await.unwrap();
    assert_eq!(
        past,
        Page {
            items: vec![],
            more: false
        }
    );
    let none = store
        .list_tags(&repo("contract/empty"), &page(None, 5))
        .await
        .unwrap();
    assert_eq!(
        none,
        Page {
            items: vec![],
            more: false
        }
    );
}

/// `list_referrers` lists the descriptors of the manifests whose subject is the given
/// digest in that repository, once each, whether or not the subject exists.
pub async fn list_referrers_by_subject(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let (r, other) = (repo("contract/referrers"), repo("contract/referrers2"));
    let subject = manifest(1).digest;
    let second_subject = manifest(2).digest;
    let r1 = referrer(10, &subject);
    let mut r2 = referrer(11, &subject);
    r2.artifact_type = None;
    r2.annotations = None;
    let r3 = referrer(12, &second_subject);
    let r4 = referrer(13, &subject);
    put(store, &r, &r1, Some("sbom")).await;
    put(store, &r, &r2, None).await;
    put(store, &r, &r3, None).await;
    put(store, &other, &r4, None).await;
    put(store, &r, &r1, None).await;
    put(store, &r, &manifest(3), Some("latest")).await;

    let mut got = store.list_referrers(&r, &subject).await.unwrap();
    got.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut want = vec![r1.referrer_descriptor(), r2.referrer_descriptor()];
    want.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(got, want);
    assert_eq!(
        store.list_referrers(&r, &second_subject).await.unwrap(),
        vec![r3.referrer_descriptor()]
    );
    assert_eq!(
        store.list_referrers(&other, &subject).await.unwrap(),
        vec![r4.referrer_descriptor()]
    );
    assert!(
        store
            .list_referrers(&r, &manifest(4).digest)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A repository exists once it links a blob or holds a manifest; the catalog lists
/// repositories in byte order with the same pagination as tags.
pub async fn repositories_and_catalog(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    assert!(!store.repository_exists(&repo("beta")).await.unwrap());
    assert_eq!(
        store.list_repositories(&page(None, 10)).await.unwrap(),
        Page::default()
    );
    store
        .link_blob(&repo("beta/one"), &blob_digest(1), 1, &[])
        .await
        .unwrap();
    put(store, &repo("gamma"), &manifest(1), Some("latest")).await;
    put(store, &repo("beta"), &manifest(2), None).await;
    store
        .link_blob(&repo("beta-x"), &blob_digest(2), 2, &[])
        .await
        .unwrap();
    put(store, &repo("alpha"), &manifest(3), Some("v1")).await;
    store
        .link_blob(&repo("alpha"), &blob_digest(3), 3, &[])
        .await
        .unwrap();

    let expected = names(&["alpha", "beta", "beta-x", "beta/one", "gamma"]);
    for name in &expected {
        assert!(
            store.repository_exists(&repo(name)).await.unwrap(),
            "{name}"
        );
    }
    assert!(!store.repository_exists(&repo("beta/two")).await.unwrap());
    assert!(!store.repository_exists(&repo("bet")).await.unwrap());

    let full = store.list_repositories(&page(None, 100)).await.unwrap();
    assert_eq!(
        full,
        Page {
            items: expected.clone(),
            more: false
        }
    );
    for limit in [1, 2, 5] {
        let walked = walk(limit, |p| async move { store.list_repositories(&p).await }).await;
        assert_eq!(walked, expected, "walking pages of {limit}");
    }
    let first = store.list_repositories(&page(None, 2)).await.unwrap();
    assert_eq!(
        first,
        Page {
            items: names(&["alpha", "beta"]),
            more: true
        }
    );
    let next = store
        .list_repositories(&page(Some("beta"), 2))
        .await
        .unwrap();
    assert_eq!(
        next,
        Page {
            items: names(&["beta-x", "beta/one"]),
            more: true
        }
    );
    let last = store
        .list_repositories(&page(Some("beta/one"), 2))
        .await
        .unwrap();
    assert_eq!(
        last,
        Page {
            items: names(&["gamma"]),
            more: false
        }
    );
    let between = store.list_repositories(&page(Some("b"), 1)).await.unwrap();
    assert_eq!(
        between,
        Page {
            items: names(&["beta"]),
            more: true
        }
    );
}

/// Upload sessions: create, read back, replace only at the expected offset (otherwise
/// `Conflict`), delete; an update of a deleted session fails and does not recreate it.
pub async fn upload_session_lifecycle(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/uploads");
    let s = session("contractsession1", &r, 1_000, 60_000);
    assert_eq!(store.get_upload(&s.id).await.unwrap(), None);
    store.create_upload(&s).await.unwrap();
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_upload("contractsession2").await.unwrap(), None);

    let s1 = advanced(&s, &[7; 100], "state-1");
    store.update_upload(&s1, 0).await.unwrap();
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s1.clone()));

    let s2 = advanced(&s1, &[8; 50], "state-2");
    match store.update_upload(&s2, 0).await {
        Err(RegistryError::Conflict(_)) => {}
        other => panic!("update at a stale offset: expected Conflict, got {other:?}"),
    }
    match store.update_upload(&s2, 120).await {
        Err(RegistryError::Conflict(_)) => {}
        other => panic!("update at a wrong offset: expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s1.clone()));
    store.update_upload(&s2, 100).await.unwrap();
    assert_eq!(store.get_upload(&s.id).await.unwrap(), Some(s2.clone()));

    assert!(store.delete_upload(&s.id).await.unwrap());
    assert_eq!(store.get_upload(&s.id).await.unwrap(), None);
    assert!(!store.delete_upload(&s.id).await.unwrap());
    let s3 = advanced(&s2, &[9; 10], "state-3");
    assert!(
        store.update_upload(&s3, 150).await.is_err(),
        "updating a deleted session must fail"
    );
    assert_eq!(
        store.get_upload(&s.id).await.unwrap(),
        None,
        "a failed update must not recreate the session"
    );
}

/// `expired_uploads` lists sessions whose expiry is strictly before `now`, at most
/// `limit`, and forgets deleted ones.
pub async fn expired_uploads(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/expiry");
    put(store, &r, &manifest(1), Some("latest")).await;
    store.link_blob(&r, &blob_digest(1), 1, &[]).await.unwrap();
    let a = session("contractexpa", &r, 0, 100_000);
    let b = session("contractexpb", &r, 50_000, 150_000);
    let c = session("contractexpc", &r, 0, 300_000);
    let d = session("contractexpd", &r, 0, 250_000);
    for s in [&a, &b, &c, &d] {
        store.create_upload(s).await.unwrap();
    }
    let ids = |v: Vec<UploadSession>| v.into_iter().map(|s| s.id).collect::<BTreeSet<_>>();
    let set = |v: &[&UploadSession]| v.iter().map(|s| s.id.clone()).collect::<BTreeSet<_>>();

    assert!(store.expired_uploads(50_000, 10).await.unwrap().is_empty());
    assert!(
        store.expired_uploads(100_000, 10).await.unwrap().is_empty(),
        "a session expiring exactly now is not expired yet"
    );
    let expired = store.expired_uploads(250_000, 10).await.unwrap();
    assert!(expired.contains(&a), "expired sessions are returned whole");
    assert_eq!(ids(expired), set(&[&a, &b]));
    let one = store.expired_uploads(250_000, 1).await.unwrap();
    assert_eq!(one.len(), 1, "expired_uploads must honour `limit`");
    assert!(set(&[&a, &b]).contains(&one[0].id));
    assert_eq!(
        ids(store.expired_uploads(10_000_000, 10).await.unwrap()),
        set(&[&a, &b, &c, &d])
    );

    store.delete_upload(&a.id).await.unwrap();
    assert_eq!(
        ids(store.expired_uploads(250_000, 10).await.unwrap()),
        set(&[&b])
    );
}

/// Writers racing to point one tag at different manifests end with the tag on one of
/// them, which exists; a reader during the race never sees a dangling tag.
pub async fn concurrent_tag_moves(store: Arc<dyn MetadataStore>) {
    const WRITERS: u64 = 16;
    let r = repo("contract/race");
    for round in 0..3u64 {
        let records: Vec<ManifestRecord> =
            (0..WRITERS).map(|i| manifest(round * 100 + i)).collect();
        let reader = {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    if let Some(d) = store.resolve_tag(&r, &tag("latest")).await.unwrap() {
                        assert!(
                            store.get_manifest(&r, &d).await.unwrap().is_some(),
                            "tag resolved to {d}, which does not exist"
                        );
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let writers: Vec<_> = records
            .iter()
            .cloned()
            .map(|m| {
                let (store, r) = (store.clone(), r.clone());
                tokio::spawn(async move {
                    store
                        .put_manifest(&r, &m, &[tag("latest")], &[])
                        .await
                        .expect("racing put_manifest must succeed")
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer task");
        }
        reader.await.expect("reader task");

        let winner = resolve(&*store, &r, "latest").await.expect("tag exists");
        assert!(
            records.iter().any(|m| m.digest == winner),
            "the tag must end on one of the racing manifests"
        );
        for m in &records {
            assert_eq!(
                store.get_manifest(&r, &m.digest).await.unwrap().as_ref(),
                Some(m)
            );
        }
        assert_eq!(all_tags(&*store, &r).await, names(&["latest"]));
    }
}

/// Deleting a manifest while its tag moves to another manifest keeps the moved tag,
/// and a re-tag racing a delete never leaves a tag on a missing manifest.
pub async fn concurrent_delete_and_retag(store: Arc<dyn MetadataStore>) {
    let r = repo("contract/delete-race");
    for round in 0..10u64 {
        let (old, new) = (manifest(round * 2), manifest(round * 2 + 1));
        put(&*store, &r, &old, Some("latest")).await;
        let (s1, s2, r1, r2) = (store.clone(), store.clone(), r.clone(), r.clone());
        let old_digest = old.digest.clone();
        let new_record = new.clone();
        let delete = tokio::spawn(async move { s1.delete_manifest(&r1, &old_digest, &[]).await });
        let retag = tokio::spawn(async move {
            s2.put_manifest(&r2, &new_record, &[tag("latest")], &[])
                .await
        });
        assert!(delete.await.unwrap().unwrap(), "the old manifest existed");
        retag.await.unwrap().unwrap();
        assert_eq!(
            resolve(&*store, &r, "latest").await,
            Some(new.digest.clone()),
            "deleting the old manifest must not remove the tag moved to the new one"
        );

        // Re-tag the manifest being deleted: either order leaves no dangling tag.
        let (s1, s2, r1, r2) = (store.clone(), store.clone(), r.clone(), r.clone());
        let (digest, record) = (new.digest.clone(), new.clone());
        let delete = tokio::spawn(async move { s1.delete_manifest(&r1, &digest, &[]).await });
        let retag =
            tokio::spawn(async move { s2.put_manifest(&r2, &record, &[tag("again")], &[]).await });
        delete.await.unwrap().unwrap();
        retag.await.unwrap().unwrap();
        assert_no_dangling_tags(&*store, &r).await;
        for t in ["latest", "again"] {
            let _ = store.delete_tag(&r, &tag(t), &[]).await.unwrap();
        }
    }
}

/// Chunks racing to advance one upload from the same offset: exactly one update wins,
/// the others get `Conflict`, and the stored session is the winner's.
pub async fn concurrent_upload_updates(store: Arc<dyn MetadataStore>) {
    const RACERS: usize = 8;
    let r = repo("contract/upload-race");
    let s = session("contractuploadrace", &r, 1_000, 60_000);
    store.create_upload(&s).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            let next = advanced(&s, &vec![i as u8; 100 * (i + 1)], &format!("state-{i}"));
            tokio::spawn(async move {
                let result = store.update_upload(&next, 0).await;
                (next, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (next, result) = t.await.expect("racer task");
        match result {
            Ok(()) => winners.push(next),
            Err(RegistryError::Conflict(_)) => {}
            Err(e) => panic!("a losing update must be a Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racing update must win");
    assert_eq!(
        store.get_upload(&s.id).await.unwrap().as_ref(),
        winners.first()
    );
}

/// A manifest of `len` bytes or more whose digest depends on `seed`: pretty-printed (so
/// its exact whitespace matters) with a filler annotation full of characters that JSON
/// escapes and multi-byte UTF-8. `subject` makes it a referrer.
fn large_manifest(seed: u64, len: usize, subject: Option<&Digest>) -> ManifestRecord {
    let unit = "quote\" backslash\\ tab\t ünïcødé 🦀 newline\n ";
    let filler = unit.repeat(len / unit.len() + 1);
    let mut content = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob_digest(seed).to_string(),
            "size": 2
        },
        "layers": [],
        "annotations": { "contract.seed": seed.to_string(), "contract.filler": filler }
    });
    if let Some(subject) = subject {
        content["subject"] = serde_json::json!({ "mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 100 });
    }
    let content = serde_json::to_string_pretty(&content).expect("manifest JSON");
    assert!(content.len() >= len);
    ManifestRecord {
        digest: Digest::of(DigestAlgorithm::Sha256, content.as_bytes()),
        media_type: OCI_MANIFEST.to_owned(),
        content,
        subject: subject.cloned(),
        artifact_type: None,
        annotations: Some(BTreeMap::from([(
            "contract.seed".to_owned(),
            seed.to_string(),
        )])),
    }
}

/// Manifests too large for one database item (over 400 KB), and a 120 KB manifest with
/// 40 tags (its copies would not fit one 4 MB transaction), round-trip byte for byte
/// through `get_manifest` and `get_manifest_by_tag`; a large referrer is listed with its
/// size; deleting one in a repository removes its tags and keeps the same manifest in
/// another repository readable.
pub async fn large_manifests_round_trip(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let (r, other) = (repo("contract/large"), repo("contract/large-other"));
    let big = large_manifest(1, 600 * 1024, None);
    put(store, &r, &big, Some("big")).await;
    put(store, &r, &big, Some("big-2")).await;
    put(store, &other, &big, Some("big")).await;
    let got = store.get_manifest(&r, &big.digest).await.unwrap();
    assert_eq!(
        got.as_ref(),
        Some(&big),
        "a 600 KB manifest must round-trip"
    );
    for t in ["big", "big-2"] {
        let by_tag = store.get_manifest_by_tag(&r, &tag(t)).await.unwrap();
        assert_eq!(by_tag.as_ref(), Some(&big), "tag {t} of a 600 KB manifest");
        assert_eq!(resolve(store, &r, t).await, Some(big.digest.clone()));
    }

    let medium = large_manifest(2, 120 * 1024, None);
    let many: Vec<Tag> = (0..40).map(|i| tag(&format!("m{i:02}"))).collect();
    store
        .put_manifest(&r, &medium, &many, &[])
        .await
        .expect("put_manifest with 40 tags of a 120 KB manifest must succeed");
    for t in &many {
        let by_tag = store.get_manifest_by_tag(&r, t).await.unwrap();
        assert_eq!(
            by_tag.as_ref(),
            Some(&medium),
            "tag {t} of a 120 KB manifest"
        );
    }
    assert_eq!(
        store
            .get_manifest(&r, &medium.digest)
            .await
            .unwrap()
            .as_ref(),
        Some(&medium)
    );

    let sbom = large_manifest(3, 450 * 1024, Some(&big.digest));
    put(store, &r, &sbom, Some("sbom")).await;
    assert_eq!(
        store.list_referrers(&r, &big.digest).await.unwrap(),
        vec![sbom.referrer_descriptor()]
    );
    assert_eq!(resolve(store, &r, "sbom").await, Some(sbom.digest.clone()));

    assert!(store.delete_manifest(&r, &big.digest, &[]).await.unwrap());
    assert_eq!(store.get_manifest(&r, &big.digest).await.unwrap(), None);
    assert_eq!(resolve(store, &r, "big").await, None);
    assert_eq!(resolve(store, &r, "big-2").await, None);
    assert_eq!(
        store
            .get_manifest(&other, &big.digest)
            .await
            .unwrap()
            .as_ref(),
        Some(&big),
        "deleting a manifest in one repository keeps it in another"
    );
    assert_eq!(
        store
            .get_manifest_by_tag(&other, &tag("big"))
            .await
            .unwrap()
            .as_ref(),
        Some(&big)
    );
    assert!(
        store
            .delete_manifest(&r, &medium.digest, &[])
            .await
            .unwrap()
    );
    assert_eq!(all_tags(store, &r).await, names(&["sbom"]));
    assert_no_dangling_tags(store, &r).await;
}

/// A manifest that collected 150 tags over two pushes (more than one database
/// transaction holds) is deleted with every one of them; a tag moved off it and the
/// tags of another manifest stay.
pub async fn delete_manifest_with_many_tags(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/many-tags");
    let (m, keep) = (manifest(1), manifest(2));
    let first: Vec<Tag> = (0..80).map(|i| tag(&format!("t{i:03}"))).collect();
    let second: Vec<Tag> = (80..150).map(|i| tag(&format!("t{i:03}"))).collect();
    store.put_manifest(&r, &m, &first, &[]).await.unwrap();
    store.put_manifest(&r, &m, &second, &[]).await.unwrap();
    put(store, &r, &keep, Some("keep")).await;
    put(store, &r, &keep, Some("t042")).await;
    assert_eq!(all_tags(store, &r).await.len(), 151);
    assert_eq!(resolve(store, &r, "t149").await, Some(m.digest.clone()));

    assert!(store.delete_manifest(&r, &m.digest, &[]).await.unwrap());
    assert_eq!(store.get_manifest(&r, &m.digest).await.unwrap(), None);
    assert_eq!(all_tags(store, &r).await, names(&["keep", "t042"]));
    assert_eq!(resolve(store, &r, "t042").await, Some(keep.digest.clone()));
    assert_no_dangling_tags(store, &r).await;
}

fn event(kind: EventKind, r: &RepoName, at_ms: u64) -> Event {
    Event::new(kind, r, at_ms)
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// Events given with a change are in the outbox after it, exactly as given, oldest first;
/// removing one is idempotent and leaves the others.
pub async fn outbox_records_events_with_changes(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/outbox");
    assert_eq!(store.outbox_events(10).await.unwrap(), vec![]);
    let blob = blob_digest(1);
    let uploaded = event(EventKind::BlobUploaded, &r, 1_000)
        .with_digest(&blob)
        .with_size(2);
    store
        .link_blob(&r, &blob, 2, std::slice::from_ref(&uploaded))
        .await
        .unwrap();
    let m = manifest(1);
    let pushed = event(EventKind::ManifestPushed, &r, 2_000)
        .with_digest(&m.digest)
        .with_tags(["v1", "latest"])
        .with_media_type(OCI_MANIFEST)
        .with_detail(serde_json::json!({ "note": "détail" }));
    store
        .put_manifest(
            &r,
            &m,
            &[tag("latest"), tag("v1")],
            std::slice::from_ref(&pushed),
        )
        .await
        .unwrap();
    let untagged = event(EventKind::TagDeleted, &r, 3_000).with_tags(["v1"]);
    assert!(
        store
            .delete_tag(&r, &tag("v1"), std::slice::from_ref(&untagged))
            .await
            .unwrap()
    );
    let deleted = event(EventKind::ManifestDeleted, &r, 4_000).with_digest(&m.digest);
    assert!(
        store
            .delete_manifest(&r, &m.digest, std::slice::from_ref(&deleted))
            .await
            .unwrap()
    );
    let all = store.outbox_events(10).await.unwrap();
    assert_eq!(
        all,
        vec![
            uploaded.clone(),
            pushed.clone(),
            untagged.clone(),
            deleted.clone()
        ]
    );
    assert_eq!(ids(&store.outbox_events(2).await.unwrap()), ids(&all[..2]));

    store.remove_outbox_event(&pushed.id).await.unwrap();
    store.remove_outbox_event(&pushed.id).await.unwrap();
    store.remove_outbox_event("never-recorded").await.unwrap();
    assert_eq!(
        store.outbox_events(10).await.unwrap(),
        vec![uploaded, untagged, deleted]
    );
}

/// A delete of something absent records no event; a change with no events records none.
pub async fn outbox_records_nothing_without_a_change(store: Arc<dyn MetadataStore>) {
    let store = &*store;
    let r = repo("contract/outbox-none");
    let m = manifest(2);
    let gone = event(EventKind::ManifestDeleted, &r, 1_000).with_digest(&m.digest);
    assert!(
        !store
            .delete_manifest(&r, &m.digest, std::slice::from_ref(&gone))
            .await
            .unwrap()
    );
    let untag = event(EventKind::TagDeleted, &r, 1_000).with_tags(["nope"]);
    assert!(
        !store
            .delete_tag(&r, &tag("nope"), std::slice::from_ref(&untag))
            .await
            .unwrap()
    );
    put(store, &r, &m, Some("t")).await;
    store.link_blob(&r, &blob_digest(3), 1, &[]).await.unwrap();
    assert_eq!(store.outbox_events(10).await.unwrap(), vec![]);
}

/// Concurrent changes each record their own event: none is lost.
pub async fn concurrent_changes_keep_every_event(store: Arc<dyn MetadataStore>) {
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = repo("contract/outbox-race");
            let m = manifest(100 + i);
            let e = event(EventKind::ManifestPushed, &r, 10_000 + i).with_digest(&m.digest);
            store
                .put_manifest(&r, &m, &[tag("race")], std::slice::from_ref(&e))
                .await
                .unwrap();
            e.id
        }));
    }
    let mut expected = BTreeSet::new();
    for t in tasks {
        expected.insert(t.await.unwrap());
    }
    let recorded: BTreeSet<String> = ids(&store.outbox_events(100).await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(recorded, expected);
}
