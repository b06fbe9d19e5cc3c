//! `ProxyCacheStore`: what a proxy project remembers about its upstream besides the
//! cached manifests and blobs themselves (those live in the metadata and blob stores):
//! when each tag was last checked upstream, and how many bytes the project has cached.
//!
//! Consistency: `tag_checked` reads what the last `set_tag_checked` wrote (strongly
//! consistent); `add_cached_bytes` is an atomic increment (concurrent adds all count)
//! returning the new total. Errors: `Storage` for backend failures.

use async_trait::async_trait;

use crate::error::Result;
use crate::names::{RepoName, Tag};

#[async_trait]
pub trait ProxyCacheStore: Send + Sync + 'static {
    /// When `repo:tag` was last found current upstream (ms since the epoch), if ever.
    async fn tag_checked(&self, repo: &RepoName, tag: &Tag) -> Result<Option<u64>>;

    /// Records that `repo:tag` was found current upstream at `at_ms`.
    async fn set_tag_checked(&self, repo: &RepoName, tag: &Tag, at_ms: u64) -> Result<()>;

    /// Bytes of blobs cached for `project` so far.
    async fn cached_bytes(&self, project: &str) -> Result<u64>;

    /// Adds `bytes` to `project`'s cached total; returns the new total.
    async fn add_cached_bytes(&self, project: &str, bytes: u64) -> Result<u64>;
}
