//! The single-table key schema shared by every metadata adapter (DynamoDB and embedded).
//!
//! | item | partition key | sort key | value |
//! |---|---|---|---|
//! | repository marker | `REPO#<name>` | `REPO` | `{}` |
//! | catalog entry | `CATALOG` | `REPO#<name>` | `{}` |
//! | manifest | `REPO#<name>` | `MANIFEST#<digest>` | [`ManifestRecord`](crate::ports::ManifestRecord) |
//! | tag | `REPO#<name>` | `TAG#<tag>` | `{"digest": …}` |
//! | blob link | `REPO#<name>` | `BLOB#<digest>` | `{"size": …}` |
//! | reverse blob link | `BLOB#<digest>` | `REPO#<name>` | `{}` |
//! | referrer | `REPO#<name>` | `REFERRER#<subject>#<digest>` | referrer descriptor |
//! | upload session | `UPLOAD#<id>` | `UPLOAD` | [`UploadSession`](crate::upload::UploadSession) |
//! | outbox event | `OUTBOX` | `EVENT#<event id>` | [`Event`](crate::events::Event) |
//! | webhook policy | `WEBHOOKS#<project>` | `POLICY#<policy id>` | [`WebhookPolicy`](crate::ports::WebhookPolicy) |
//! | scan report | `REPO#<name>` | `SCAN#<digest>` | [`ScanReport`](crate::scan::ScanReport) |
//! | scanned image | `SCANS` | `<name>@<digest>` | `{}` |
//! | advisory | `VULN#<db version>#<package key>` | `ADV#<id>` | [`StoredAdvisory`](crate::ports::StoredAdvisory) |
//! | key of a db version | `VULNDB#<db version>` | `KEY#<package key>` | `{}` |
//! | current db | `VULNDB` | `CURRENT` | [`VulnDbInfo`](crate::ports::VulnDbInfo) |
//! | webhook delivery | `WEBHOOK#<policy id>` | `DELIVERY#<event id>` | [`Delivery`](crate::ports::Delivery) |
//! | proxy tag check | `REPO#<name>` | `CHECKED#<tag>` | `{"atMs": …}` |
//! | proxy cache size | `PROXY#<project>` | `CACHED` | `{"bytes": …}` (an atomic counter) |
//!
//! `#` never appears in names, tags or digests, so prefixes never collide. Manifest
//! puts and deletes are transactions over the repository's partition; tag writes are
//! unconditional puts inside them (last writer wins, never a dangling half-write).
//! Outbox items are written inside the transaction of the change they describe; event
//! ids are UUIDv7, so `EVENT#…` and `DELIVERY#…` sort by time.

use crate::digest::Digest;
use crate::names::{RepoName, Tag};

pub const REPO_MARKER: &str = "REPO";
pub const CATALOG: &str = "CATALOG";
pub const UPLOAD_SK: &str = "UPLOAD";
pub const MANIFEST_PREFIX: &str = "MANIFEST#";
pub const TAG_PREFIX: &str = "TAG#";
pub const BLOB_PREFIX: &str = "BLOB#";
pub const REPO_PREFIX: &str = "REPO#";
pub const REFERRER_PREFIX: &str = "REFERRER#";
pub const UPLOAD_PREFIX: &str = "UPLOAD#";
pub const OUTBOX: &str = "OUTBOX";
pub const EVENT_PREFIX: &str = "EVENT#";
pub const POLICY_PREFIX: &str = "POLICY#";
pub const DELIVERY_PREFIX: &str = "DELIVERY#";
pub const SCAN_PREFIX: &str = "SCAN#";
pub const SCANS: &str = "SCANS";
pub const ADVISORY_PREFIX: &str = "ADV#";
pub const DB_KEY_PREFIX: &str = "KEY#";
pub const VULNDB: &str = "VULNDB";
pub const CURRENT: &str = "CURRENT";
pub const CHECKED_PREFIX: &str = "CHECKED#";
pub const CACHED: &str = "CACHED";

pub fn repo_pk(repo: &RepoName) -> String {
    format!("{REPO_PREFIX}{repo}")
}
pub fn catalog_sk(repo: &RepoName) -> String {
    format!("{REPO_PREFIX}{repo}")
}
pub fn manifest_sk(digest: &Digest) -> String {
    format!("{MANIFEST_PREFIX}{digest}")
}
pub fn tag_sk(tag: &Tag) -> String {
    format!("{TAG_PREFIX}{tag}")
}
pub fn blob_sk(digest: &Digest) -> String {
    format!("{BLOB_PREFIX}{digest}")
}
pub fn blob_pk(digest: &Digest) -> String {
    format!("{BLOB_PREFIX}{digest}")
}
pub fn referrer_prefix(subject: &Digest) -> String {
    format!("{REFERRER_PREFIX}{subject}#")
}
pub fn referrer_sk(subject: &Digest, referrer: &Digest) -> String {
    format!("{REFERRER_PREFIX}{subject}#{referrer}")
}
pub fn upload_pk(upload_id: &str) -> String {
    format!("{UPLOAD_PREFIX}{upload_id}")
}
pub fn outbox_sk(event_id: &str) -> String {
    format!("{EVENT_PREFIX}{event_id}")
}
pub fn webhooks_pk(project: &str) -> String {
    format!("WEBHOOKS#{project}")
}
pub fn policy_sk(policy_id: &str) -> String {
    format!("{POLICY_PREFIX}{policy_id}")
}
pub fn deliveries_pk(policy_id: &str) -> String {
    format!("WEBHOOK#{policy_id}")
}
pub fn delivery_sk(event_id: &str) -> String {
    format!("{DELIVERY_PREFIX}{event_id}")
}
pub fn scan_sk(digest: &Digest) -> String {
    format!("{SCAN_PREFIX}{digest}")
}
pub fn scans_sk(repo: &RepoName, digest: &Digest) -> String {
    format!("{repo}@{digest}")
}
/// The image a [`scans_sk`] names; `None` when `sk` is not `<name>@<digest>`.
pub fn parse_scans_sk(sk: &str) -> Option<(RepoName, Digest)> {
    let (repo, digest) = sk.split_once('@')?;
    Some((repo.parse().ok()?, digest.parse().ok()?))
}
pub fn advisory_pk(db_version: &str, key: &str) -> String {
    format!("VULN#{db_version}#{key}")
}
pub fn advisory_sk(id: &str) -> String {
    format!("{ADVISORY_PREFIX}{id}")
}
pub fn db_version_pk(db_version: &str) -> String {
    format!("{VULNDB}#{db_version}")
}
pub fn db_key_sk(key: &str) -> String {
    format!("{DB_KEY_PREFIX}{key}")
}
pub fn tag_checked_sk(tag: &Tag) -> String {
    format!("{CHECKED_PREFIX}{tag}")
}
pub fn proxy_pk(project: &str) -> String {
    format!("PROXY#{project}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DigestAlgorithm;

    #[test]
    fn scans_sk_parses_back() {
        let repo: RepoName = "library/alpine".parse().unwrap();
        let digest = Digest::of(DigestAlgorithm::Sha256, b"x");
        let sk = scans_sk(&repo, &digest);
        assert_eq!(parse_scans_sk(&format!("Bad Name@{digest}")), None);
        assert_eq!(parse_scans_sk(&sk), Some((repo, digest)));
        assert_eq!(parse_scans_sk("no-at-sign"), None);
        assert_eq!(parse_scans_sk("library/alpine@not-a-digest"), None);
    }
}
