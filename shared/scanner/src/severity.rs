//! How bad an advisory is: a [`Severity`] (the Harbor/Trivy scale, `UNKNOWN` … `CRITICAL`)
//! and, when a CVSS vector gives one, a base score, chosen from an OSV advisory's
//! CVSS vectors or else its database's own rating ([`rate`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::osv::{Advisory, Affected, OsvSeverity};

pub use registry_core::scan::{Severity, UnknownSeverity};

use std::str::FromStr;

/// Where a [`Rating`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RatingSource {
    CvssV3,
    CvssV4,
    CvssV2,
    /// The database's own word (GHSA, Debian urgency, Ubuntu priority, …).
    Vendor,
    /// Nothing usable: [`Severity::Unknown`].
    None,
}

/// A severity and, when it comes from a CVSS vector, its base score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    pub severity: Severity,
    pub score: Option<f64>,
    pub source: RatingSource,
}

impl Rating {
    const UNKNOWN: Rating = Rating {
        severity: Severity::Unknown,
        score: None,
        source: RatingSource::None,
    };
}

/// The severity and score of a CVSS vector (`CVSS:3.1/…`, `CVSS:3.0/…`, `CVSS:4.0/…` or
/// a v2 vector `AV:N/AC:L/Au:N/…`), by the `cvss` crate: v3 base score, v4 score of the
/// metrics present, v2 base score rated on NVD's v2 scale (low < 4, medium < 7, high).
/// `None` if the vector does not parse.
pub fn cvss_rating(vector: &str) -> Option<Rating> {
    let cvss = cvss::Cvss::from_str(vector.trim()).ok()?;
    let score = cvss.score();
    let source = match cvss {
        cvss::Cvss::CvssV30(_) | cvss::Cvss::CvssV31(_) => RatingSource::CvssV3,
        cvss::Cvss::CvssV40(_) => RatingSource::CvssV4,
        cvss::Cvss::CvssV20(_) => RatingSource::CvssV2,
        _ => return None,
    };
    let severity = match cvss.severity() {
        cvss::Severity::None => Severity::Unknown,
        cvss::Severity::Low => Severity::Low,
        cvss::Severity::Medium => Severity::Medium,
        cvss::Severity::High => Severity::High,
        cvss::Severity::Critical => Severity::Critical,
    };
    Some(Rating {
        severity,
        score: Some(score),
        source,
    })
}

/// Keys under which databases put their own rating, in `ecosystem_specific` and
/// `database_specific` objects.
const RATING_KEYS: [&str; 3] = ["severity", "urgency", "priority"];

fn rating_in(object: Option<&Value>) -> Option<Severity> {
    let object = object?;
    RATING_KEYS.iter().find_map(|key| match object.get(key)? {
        Value::String(word) => Severity::from_rating(word),
        _ => None,
    })
}

/// The rating of `advisory` for one of its `affected` entries (or the advisory alone).
///
/// Sources, the first that gives a rating wins:
/// 1. `CVSS_V3` vectors: the highest base score (the entry's own `severity[]` when it has
///    one, else the advisory's);
/// 2. `CVSS_V4` vectors, likewise;
/// 3. the database's word: an `Ubuntu` severity entry (Ubuntu priority), then
///    `severity`/`urgency`/`priority` in the entry's `ecosystem_specific` (Debian
///    urgency), the entry's `database_specific`, the advisory's `database_specific`
///    (GHSA: `LOW`/`MODERATE`/`HIGH`/`CRITICAL`) — see [`Severity::from_rating`];
/// 4. `CVSS_V2` vectors (old records only; a vendor's word is more current);
/// 5. else [`Severity::Unknown`] (Alpine's records, most PyPA ones).
///
/// A CVSS score of 0.0 rates "None": it does not count as a rating and later sources are
/// tried; if none gives one the result is `Unknown` with the 0.0 score kept.
pub fn rate(advisory: &Advisory, affected: Option<&Affected>) -> Rating {
    let entries: &[OsvSeverity] = match affected {
        Some(a) if !a.severity.is_empty() => &a.severity,
        _ => &advisory.severity,
    };
    let cvss: Vec<Rating> = entries
        .iter()
        .filter(|e| e.kind.to_ascii_uppercase().starts_with("CVSS"))
        .filter_map(|e| cvss_rating(&e.score))
        .collect();
    let best = |source: RatingSource| {
        cvss.iter()
            .filter(|r| r.source == source)
            .copied()
            .max_by(|a, b| {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    };
    let mut zero = None;
    for source in [RatingSource::CvssV3, RatingSource::CvssV4] {
        match best(source) {
            Some(r) if r.severity != Severity::Unknown => return r,
            Some(r) => zero = zero.or(Some(r)),
            None => {}
        }
    }
    let vendor = entries
        .iter()
        .filter(|e| e.kind.eq_ignore_ascii_case("ubuntu"))
        .find_map(|e| Severity::from_rating(&e.score))
        .or_else(|| rating_in(affected.and_then(|a| a.ecosystem_specific.as_ref())))
        .or_else(|| rating_in(affected.and_then(|a| a.database_specific.as_ref())))
        .or_else(|| rating_in(advisory.database_specific.as_ref()));
    if let Some(severity) = vendor {
        return Rating {
            severity,
            score: None,
            source: RatingSource::Vendor,
        };
    }
    match best(RatingSource::CvssV2) {
        Some(r) if r.severity != Severity::Unknown => r,
        _ => zero.map_or(Rating::UNKNOWN, |r| Rating {
            severity: Severity::Unknown,
            ..r
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::parse_advisory;

    #[test]
    fn order_names_and_serde() {
        assert!(Severity::Unknown < Severity::Low);
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
        assert_eq!(Severity::default(), Severity::Unknown);
        assert_eq!(serde_json::to_string(&Severity::High).unwrap(), r#""HIGH""#);
        assert_eq!(
            serde_json::from_str::<Severity>(r#""CRITICAL""#).unwrap(),
            Severity::Critical
        );
        assert_eq!("medium".parse::<Severity>(), Ok(Severity::Medium));
        assert_eq!(Severity::Low.to_string(), "LOW");
        assert!("moderate".parse::<Severity>().is_err());
    }

    #[test]
    fn cvss_scale() {
        for (score, severity) in [
            (0.0, Severity::Unknown),
            (0.1, Severity::Low),
            (3.9, Severity::Low),
            (4.0, Severity::Medium),
            (6.9, Severity::Medium),
            (7.0, Severity::High),
            (8.9, Severity::High),
            (9.0, Severity::Critical),
            (10.0, Severity::Critical),
            (f64::NAN, Severity::Unknown),
        ] {
            assert_eq!(Severity::from_cvss_score(score), severity, "{score}");
        }
    }

    #[test]
    fn vendor_words() {
        for (word, severity) in [
            ("LOW", Some(Severity::Low)),
            ("MODERATE", Some(Severity::Medium)),
            ("HIGH", Some(Severity::High)),
            ("CRITICAL", Some(Severity::Critical)),
            ("Important", Some(Severity::High)),
            ("medium", Some(Severity::Medium)),
            ("low**", Some(Severity::Low)),
            ("unimportant", Some(Severity::Low)),
            ("negligible", Some(Severity::Low)),
            ("not yet assigned", None),
            ("untriaged", None),
            ("end-of-life", None),
            ("", None),
        ] {
            assert_eq!(Severity::from_rating(word), severity, "{word:?}");
        }
    }

    #[test]
    fn cvss_vectors() {
        let r = cvss_rating("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!(
            (r.severity, r.score, r.source),
            (Severity::Critical, Some(9.8), RatingSource::CvssV3)
        );
        let r = cvss_rating("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N").unwrap();
        assert_eq!((r.severity, r.score), (Severity::Medium, Some(5.9)));
        let r = cvss_rating("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:L").unwrap();
        assert_eq!((r.severity, r.score), (Severity::Low, Some(3.3)));
        let r = cvss_rating("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N").unwrap();
        assert_eq!((r.severity, r.score), (Severity::Unknown, Some(0.0)));
        let r =
            cvss_rating("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N").unwrap();
        assert_eq!(
            (r.severity, r.score, r.source),
            (Severity::Critical, Some(9.3), RatingSource::CvssV4)
        );
        let r = cvss_rating("AV:N/AC:L/Au:N/C:P/I:P/A:P").unwrap();
        assert_eq!(
            (r.severity, r.score, r.source),
            (Severity::High, Some(7.5), RatingSource::CvssV2)
        );
        assert_eq!(cvss_rating("CVSS:3.1/AV:X"), None);
        assert_eq!(cvss_rating("high"), None);
    }

    fn advisory(json: &str) -> Advisory {
        parse_advisory(json.as_bytes()).unwrap()
    }

    #[test]
    fn ghsa_prefers_cvss_v3_then_its_own_word() {
        let a = advisory(
            r#"{"id": "GHSA-1", "severity": [
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"},
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"},
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "database_specific": {"severity": "MODERATE"}}"#,
        );
        let r = rate(&a, None);
        assert_eq!(
            (r.severity, r.score, r.source),
            (Severity::Critical, Some(9.8), RatingSource::CvssV3)
        );

        let a = advisory(
            r#"{"id": "GHSA-2", "severity": [
                {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
                "database_specific": {"severity": "MODERATE"}}"#,
        );
        assert_eq!(rate(&a, None).source, RatingSource::CvssV4);

        let a = advisory(r#"{"id": "GHSA-3", "database_specific": {"severity": "MODERATE"}}"#);
        assert_eq!(
            rate(&a, None),
            Rating {
                severity: Severity::Medium,
                score: None,
                source: RatingSource::Vendor
            }
        );
    }

    #[test]
    fn debian_urgency_ubuntu_priority_and_nothing() {
        let a = advisory(
            r#"{"id": "DEBIAN-CVE-2024-1", "affected": [
                {"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ecosystem_specific": {"urgency": "not yet assigned"}},
                {"package": {"ecosystem": "Debian:11", "name": "openssl"},
                 "ecosystem_specific": {"urgency": "high"}}]}"#,
        );
        assert_eq!(rate(&a, Some(&a.affected[0])), Rating::UNKNOWN);
        assert_eq!(rate(&a, Some(&a.affected[1])).severity, Severity::High);

        let a = advisory(
            r#"{"id": "UBUNTU-CVE-2024-1", "severity": [{"type": "Ubuntu", "score": "medium"}],
                "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "curl"}}]}"#,
        );
        let r = rate(&a, Some(&a.affected[0]));
        assert_eq!(
            (r.severity, r.source),
            (Severity::Medium, RatingSource::Vendor)
        );

        let a = advisory(
            r#"{"id": "ALPINE-CVE-2024-1", "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "openssl"}}]}"#,
        );
        assert_eq!(rate(&a, Some(&a.affected[0])), Rating::UNKNOWN);
    }

    #[test]
    fn per_package_severity_overrides_and_v2_is_last() {
        let a = advisory(
            r#"{"id": "X-1",
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected": [
                  {"package": {"ecosystem": "PyPI", "name": "a"},
                   "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:L"}]},
                  {"package": {"ecosystem": "PyPI", "name": "b"}}]}"#,
        );
        assert_eq!(rate(&a, Some(&a.affected[0])).severity, Severity::Low);
        assert_eq!(rate(&a, Some(&a.affected[1])).severity, Severity::Critical);

        let a = advisory(
            r#"{"id": "X-2", "severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}],
                "database_specific": {"severity": "LOW"}}"#,
        );
        assert_eq!(rate(&a, None).severity, Severity::Low);
        let a = advisory(
            r#"{"id": "X-3", "severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]}"#,
        );
        assert_eq!(
            rate(&a, None),
            Rating {
                severity: Severity::High,
                score: Some(7.5),
                source: RatingSource::CvssV2
            }
        );

        // A 0.0 vector is no rating: the vendor's word wins, else unknown with the score.
        let none =
            r#"{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"}"#;
        let a = advisory(&format!(
            r#"{{"id": "X-4", "severity": [{none}], "database_specific": {{"severity": "HIGH"}}}}"#
        ));
        assert_eq!(rate(&a, None).severity, Severity::High);
        let a = advisory(&format!(r#"{{"id": "X-5", "severity": [{none}]}}"#));
        let r = rate(&a, None);
        assert_eq!((r.severity, r.score), (Severity::Unknown, Some(0.0)));

        // Unparsable vectors are skipped.
        let a = advisory(
            r#"{"id": "X-6", "severity": [{"type": "CVSS_V3", "score": "garbage"}],
                "database_specific": {"severity": "CRITICAL"}}"#,
        );
        assert_eq!(rate(&a, None).severity, Severity::Critical);
    }
}
