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
//!
//! `#` never appears in names, tags or digests, so prefixes never collide. Manifest
//! puts and deletes are transactions over the repository's partition; tag writes are
//! unconditional puts inside them (last writer wins, never a dangling half-write).

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
