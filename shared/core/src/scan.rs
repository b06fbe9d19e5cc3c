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
