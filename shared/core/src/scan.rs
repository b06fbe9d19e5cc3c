//! Vulnerability scanning as the registry sees it: the severity scale shared by the
//! scanner, scan reports and pull policies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Severity, ordered `Unknown < Low < Medium < High < Critical`; serialised in upper case
/// (`"HIGH"`) like Harbor and Trivy.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    #[default]
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// `UNKNOWN`, `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// The CVSS v3.1/v4.0 qualitative rating of a score: 0.1–3.9 low, 4.0–6.9 medium,
    /// 7.0–8.9 high, 9.0–10.0 critical; 0.0 ("None") and non-numbers are unknown.
    pub fn from_cvss_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s >= 0.1 => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// A vulnerability database's own word for a severity, case-insensitive, trailing
    /// `*` ignored (Debian's tracker marks guessed urgencies `low**`):
    ///
    /// | word | severity | used by |
    /// |---|---|---|
    /// | `critical` | Critical | GHSA, Ubuntu, Red Hat |
    /// | `high`, `important` | High | GHSA, Debian, Ubuntu, Red Hat |
    /// | `medium`, `moderate` | Medium | Debian, Ubuntu, GHSA, Red Hat |
    /// | `low` | Low | all |
    /// | `negligible` (Ubuntu), `unimportant` (Debian: not a security problem for Debian, kept visible) | Low | |
    /// | `not yet assigned`, `untriaged`, `unknown`, `none`, `end-of-life`, … | `None` (no rating) | |
    pub fn from_rating(word: &str) -> Option<Severity> {
        let word = word
            .trim()
            .trim_end_matches('*')
            .trim()
            .to_ascii_lowercase();
        match word.as_str() {
            "critical" => Some(Severity::Critical),
            "high" | "important" => Some(Severity::High),
            "medium" | "moderate" => Some(Severity::Medium),
            "low" | "negligible" | "unimportant" => Some(Severity::Low),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not one of the five severities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// The five names, case-insensitive (`high`, `HIGH`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "UNKNOWN" => Ok(Severity::Unknown),
            "LOW" => Ok(Severity::Low),
            "MEDIUM" => Ok(Severity::Medium),
            "HIGH" => Ok(Severity::High),
            "CRITICAL" => Ok(Severity::Critical),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

/// Findings counted per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeveritySummary {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub unknown: u32,
}

impl SeveritySummary {
    /// Counts one finding of `severity`.
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }

    /// The count of each severity, worst first.
    pub fn counts(&self) -> [(Severity, u32); 5] {
        [
            (Severity::Critical, self.critical),
            (Severity::High, self.high),
            (Severity::Medium, self.medium),
            (Severity::Low, self.low),
            (Severity::Unknown, self.unknown),
        ]
    }

    /// How many findings are `threshold` or worse.
    pub fn at_or_above(&self, threshold: Severity) -> u32 {
        self.counts()
            .into_iter()
            .filter(|(s, _)| *s >= threshold)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One vulnerability found in an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportFinding {
    /// The advisory id (`DEBIAN-CVE-2024-0727`, `GHSA-…`).
    pub id: String,
    /// Other ids of the same vulnerability (`CVE-…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The OSV ecosystem of the package (`Debian`, `PyPI`, …).
    pub ecosystem: String,
    pub package: String,
    pub installed_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    pub severity: Severity,
    /// The CVSS base score, when the severity comes from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The digest of the layer the package is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScanStatus {
    Completed,
    Failed,
}

/// The result of scanning one image (one manifest digest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    pub repository: crate::RepoName,
    pub digest: crate::Digest,
    pub status: ScanStatus,
    /// `registry-scanner <version>`.
    pub scanner: String,
    /// The vulnerability database version the findings come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_version: Option<String>,
    pub scanned_ms: u64,
    /// The distribution (`Debian GNU/Linux 12 (bookworm)`), when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    /// How many packages the image holds.
    pub packages: u64,
    pub summary: SeveritySummary,
    /// Worst first.
    pub findings: Vec<ReportFinding>,
    /// The SBOM artifact (a manifest in the same repository whose subject is the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<crate::Digest>,
    /// Why the scan failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ScanReport {
    /// The report in the Harbor pluggable-scanner format
    /// (`application/vnd.security.vulnerability.report; version=1.1`), so tools built for
    /// Harbor can read it.
    pub fn to_harbor(&self, artifact_media_type: &str) -> serde_json::Value {
        fn harbor_severity(s: Severity) -> &'static str {
            match s {
                Severity::Unknown => "Unknown",
                Severity::Low => "Low",
                Severity::Medium => "Medium",
                Severity::High => "High",
                Severity::Critical => "Critical",
            }
        }
        let worst = self
            .findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Unknown);
        let (name, version) = self
            .scanner
            .split_once(' ')
            .unwrap_or((self.scanner.as_str(), ""));
        let vulnerabilities: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let cve = f
                    .aliases
                    .iter()
                    .find(|a| a.starts_with("CVE-"))
                    .cloned()
                    .unwrap_or_else(|| f.id.clone());
                serde_json::json!({
                    "id": cve,
                    "package": f.package,
                    "version": f.installed_version,
                    "fix_version": f.fixed_version.clone().unwrap_or_default(),
                    "severity": harbor_severity(f.severity),
                    "description": f.summary.clone().unwrap_or_default(),
                    "links": [format!("https://osv.dev/vulnerability/{}", f.id)],
                    "layer": f.layer.as_ref().map(|d| serde_json::json!({"digest": d})),
                    "preferred_cvss": f.score.map(|s| serde_json::json!({"score_v3": s})),
                    "vendor_attributes": {"osv_id": f.id, "ecosystem": f.ecosystem},
                })
            })
            .collect();
        serde_json::json!({
            "generated_at": crate::timefmt::rfc3339(self.scanned_ms),
            "artifact": {
                "repository": self.repository,
                "digest": self.digest,
                "mime_type": artifact_media_type,
            },
            "scanner": {"name": name, "vendor": "registry", "version": version},
            "severity": harbor_severity(worst),
            "vulnerabilities": vulnerabilities,
        })
    }
}

/// A project's rule for pulls by scan results (`PATCH /api/v1/projects/{p}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VulnerabilityPolicy {
    /// Refuse pulls of images with a finding at this severity or worse (not
    /// allowlisted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_severity: Option<Severity>,
    /// Refuse pulls of images not scanned yet (or whose scan failed).
    #[serde(default)]
    pub block_unscanned: bool,
    /// Advisory ids or aliases (`CVE-2023-47038`) that never block, in this project.
    #[serde(default)]
    pub allowlist: std::collections::BTreeSet<String>,
}

impl VulnerabilityPolicy {
    /// Whether the policy can block anything.
    pub fn is_active(&self) -> bool {
        self.block_severity.is_some() || self.block_unscanned
    }

    /// `Ok` when the image whose report is `report` may be pulled from `project`;
    /// otherwise `Denied`, naming the policy, the counts and the findings that block.
    /// `system_allowlist` holds ids allowed everywhere.
    pub fn check_pull(
        &self,
        project: &str,
        image: &str,
        report: Option<&ScanReport>,
        system_allowlist: &std::collections::BTreeSet<String>,
    ) -> crate::Result<()> {
        let scanned = report.filter(|r| r.status == ScanStatus::Completed);
        let Some(report) = scanned else {
            if self.block_unscanned {
                let why = if report.is_some() {
                    "its scan failed"
                } else {
                    "it has not been scanned yet"
                };
                return Err(crate::RegistryError::Denied(format!(
                    "pull of {image} blocked by project {project}'s vulnerability policy (blockUnscanned): {why}"
                )));
            }
            return Ok(());
        };
        let Some(threshold) = self.block_severity else {
            return Ok(());
        };
        let allowed = |f: &ReportFinding| {
            std::iter::once(&f.id)
                .chain(&f.aliases)
                .any(|id| self.allowlist.contains(id) || system_allowlist.contains(id))
        };
        let blocking: Vec<&ReportFinding> = report
            .findings
            .iter()
            .filter(|f| f.severity >= threshold && !allowed(f))
            .collect();
        if blocking.is_empty() {
            return Ok(());
        }
        let mut counts = SeveritySummary::default();
        for f in &blocking {
            counts.add(f.severity);
        }
        let by_severity: Vec<String> = counts
            .counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let ids: Vec<&str> = blocking.iter().take(5).map(|f| f.id.as_str()).collect();
        let more = if blocking.len() > ids.len() {
            ", …"
        } else {
            ""
        };
        Err(crate::RegistryError::Denied(format!(
            "pull of {image} blocked by project {project}'s vulnerability policy (blockSeverity {threshold}): \
             {} findings at {threshold} or above ({}): {}{more}; fix the image or allowlist them",
            blocking.len(),
            by_severity.join(", "),
            ids.join(", ")
        )))
    }
}

/// Imports a vulnerability database sent to the API (implemented by the scanning crate,
/// so the HTTP layer needs no scanner): a zip of OSV JSON files.
#[async_trait::async_trait]
pub trait DatabaseImporter: Send + Sync + 'static {
    /// Imports `zip` (named `source`), makes it current, and queues the rescans.
    /// `Unsupported` for data that is not a zip of OSV advisories.
    async fn import_zip(
        &self,
        zip: bytes::Bytes,
        source: &str,
    ) -> crate::Result<crate::ports::VulnDbInfo>;
}

/// Applies projects' vulnerability policies to manifest pulls.
pub struct PullGate {
    pub(crate) projects: std::sync::Arc<crate::identity::ProjectCache>,
    reports: std::sync::Arc<dyn crate::ports::ScanStore>,
    system_allowlist: std::collections::BTreeSet<String>,
}

impl PullGate {
    pub fn new(
        projects: std::sync::Arc<crate::identity::ProjectCache>,
        reports: std::sync::Arc<dyn crate::ports::ScanStore>,
        system_allowlist: std::collections::BTreeSet<String>,
    ) -> Self {
        PullGate {
            projects,
            reports,
            system_allowlist,
        }
    }

    /// `Ok` when `record` may be pulled from `repo`. Indexes and artifacts always pass
    /// (a client pulling an index then pulls an image manifest, which is checked).
    /// Costs a project read once per [`crate::identity::PROJECT_CACHE_TTL`], and a report
    /// read when the project has a policy.
    pub async fn check(
        &self,
        repo: &crate::RepoName,
        record: &crate::ports::ManifestRecord,
    ) -> crate::Result<()> {
        let Some(crate::identity::Project {
            name: project,
            vulnerability_policy: policy,
            ..
        }) = self.projects.get(repo.project()).await?
        else {
            return Ok(());
        };
        if !policy.is_active() || !is_image(&record.content) {
            return Ok(());
        }
        let report = self.reports.get_report(repo, &record.digest).await?;
        policy.check_pull(
            &project,
            &format!("{repo}@{}", record.digest),
            report.as_ref(),
            &self.system_allowlist,
        )
    }
}

/// Whether a manifest is an image (a config of an image config type), not an index or
/// an artifact.
pub fn is_image(manifest: &str) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        media_type: Option<String>,
    }
    #[derive(Deserialize)]
    struct Doc {
        config: Option<Config>,
    }
    serde_json::from_str::<Doc>(manifest)
        .ok()
        .and_then(|d| d.config)
        .and_then(|c| c.media_type)
        .is_some_and(|t| IMAGE_CONFIG_TYPES.contains(&t.as_str()))
}

/// Config media types of container images.
pub const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_at_or_above_a_threshold() {
        let mut s = SeveritySummary::default();
        for sev in [
            Severity::Critical,
            Severity::High,
            Severity::High,
            Severity::Low,
            Severity::Unknown,
        ] {
            s.add(sev);
        }
        assert_eq!(s.at_or_above(Severity::Critical), 1);
        assert_eq!(s.at_or_above(Severity::High), 3);
        assert_eq!(s.at_or_above(Severity::Medium), 3);
        assert_eq!(s.at_or_above(Severity::Low), 4);
        assert_eq!(s.at_or_above(Severity::Unknown), 5);
    }

    fn report(findings: &[(&str, &str, Severity)]) -> ScanReport {
        let mut summary = SeveritySummary::default();
        let findings = findings
            .iter()
            .map(|(id, alias, severity)| {
                summary.add(*severity);
                ReportFinding {
                    id: (*id).into(),
                    aliases: vec![(*alias).into()],
                    ecosystem: "Debian".into(),
                    package: "p".into(),
                    installed_version: "1".into(),
                    fixed_version: None,
                    severity: *severity,
                    score: None,
                    layer: None,
                    summary: None,
                }
            })
            .collect();
        ScanReport {
            repository: "team/app".parse().unwrap(),
            digest: crate::Digest::of(crate::DigestAlgorithm::Sha256, b"m"),
            status: ScanStatus::Completed,
            scanner: "s".into(),
            db_version: None,
            scanned_ms: 0,
            distro: None,
            packages: 1,
            summary,
            findings,
            sbom: None,
            error: None,
        }
    }

    #[test]
    fn pull_policy_blocks_at_the_threshold_unless_allowlisted() {
        let none = std::collections::BTreeSet::new();
        let r = report(&[
            ("DEBIAN-CVE-1", "CVE-1", Severity::Critical),
            ("DEBIAN-CVE-2", "CVE-2", Severity::Medium),
        ]);
        let policy = |sev: Option<Severity>, allow: &[&str]| VulnerabilityPolicy {
            block_severity: sev,
            block_unscanned: false,
            allowlist: allow.iter().map(|s| (*s).to_owned()).collect(),
        };
        let check = |p: &VulnerabilityPolicy, sys: &std::collections::BTreeSet<String>| {
            p.check_pull("team", "team/app@x", Some(&r), sys)
        };
        assert!(
            check(&policy(None, &[]), &none).is_ok(),
            "no threshold, no block"
        );
        let err = check(&policy(Some(Severity::High), &[]), &none).unwrap_err();
        let crate::RegistryError::Denied(msg) = err else {
            panic!()
        };
        assert!(
            msg.contains("1 findings at HIGH or above (1 CRITICAL): DEBIAN-CVE-1"),
            "{msg}"
        );
        let err = check(&policy(Some(Severity::Medium), &[]), &none).unwrap_err();
        assert!(
            err.to_string()
                .contains("2 findings at MEDIUM or above (1 CRITICAL, 1 MEDIUM)"),
            "{err}"
        );
        assert!(
            check(&policy(Some(Severity::High), &["CVE-1"]), &none).is_ok(),
            "alias"
        );
        assert!(
            check(&policy(Some(Severity::High), &["DEBIAN-CVE-1"]), &none).is_ok(),
            "id"
        );
        let system = ["CVE-1".to_owned()].into_iter().collect();
        assert!(
            check(&policy(Some(Severity::High), &[]), &system).is_ok(),
            "system-wide"
        );
        assert!(check(&policy(Some(Severity::Critical), &["CVE-2"]), &none).is_err());
    }

    #[test]
    fn pull_policy_on_unscanned_and_failed_images() {
        let none = std::collections::BTreeSet::new();
        let strict = VulnerabilityPolicy {
            block_unscanned: true,
            ..VulnerabilityPolicy::default()
        };
        let err = strict.check_pull("team", "i", None, &none).unwrap_err();
        assert!(err.to_string().contains("not been scanned yet"), "{err}");
        let failed = ScanReport {
            status: ScanStatus::Failed,
            ..report(&[])
        };
        let err = strict
            .check_pull("team", "i", Some(&failed), &none)
            .unwrap_err();
        assert!(err.to_string().contains("its scan failed"), "{err}");
        assert!(
            strict
                .check_pull("team", "i", Some(&report(&[])), &none)
                .is_ok()
        );
        assert!(
            VulnerabilityPolicy::default()
                .check_pull("team", "i", None, &none)
                .is_ok()
        );
    }
}
