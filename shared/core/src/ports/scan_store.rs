//! `ScanStore`: the scan report of each image (repository + manifest digest), and the
//! list of every scanned image, which a new vulnerability database rescans.
//!
//! Keys: report `REPO#<name>` / `SCAN#<digest>`; index of scanned images `SCANS` /
//! `<name>@<digest>`. Consistency: `put_report` replaces the image's report and its index
//! entry and records `events` in the outbox (see [`MetadataStore`]) atomically; reads
//! after a write see it. Errors: `Storage` for backend failures.
//!
//! [`MetadataStore`]: crate::ports::MetadataStore

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::Result;
use crate::events::Event;
use crate::names::RepoName;
use crate::scan::ScanReport;

#[async_trait]
pub trait ScanStore: Send + Sync + 'static {
    /// Creates or replaces the report of `report.repository` / `report.digest`, with
    /// `events` (`scan.completed`, `scan.failed`) in the outbox.
    async fn put_report(&self, report: &ScanReport, events: &[Event]) -> Result<()>;
    async fn get_report(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanReport>>;
    /// Up to `limit` scanned images in (repository, digest) order, after `after`.
    async fn scanned_images(
        &self,
        after: Option<&(RepoName, Digest)>,
        limit: usize,
    ) -> Result<Vec<(RepoName, Digest)>>;
}
