//! Matching an image's packages against OSV advisories: an in-memory [`AdvisoryIndex`]
//! keyed by ecosystem, release and package name, and the range evaluation of the OSV
//! schema ("Evaluation" in <https://ossf.github.io/osv-schema/>) that turns a package
//! version into [`Finding`]s.
//!
//! Rules:
//! * OS packages (Debian, Ubuntu, Alpine, rpm) match advisories of their distribution's
//!   release ([`distro_release`]: `Debian:12` for `VERSION_ID=12`, `Alpine:v3.19` for
//!   `VERSION_ID=3.19.1`, `Red Hat:enterprise_linux:9::…` for `ID=rhel VERSION_ID=9.3`)
//!   and advisories without a release; they are looked up by
//!   [`Package::advisory_name`] (the source package) and compared by
//!   [`Package::advisory_version`] (the source version: a binNMU `+b1` is the source's
//!   version). Without a distribution (or a `VERSION_ID`) only release-less advisories
//!   match.
//! * Language packages match by name ([`normalize_name`]: PEP 503 for PyPI).
//! * A version is affected if an `ECOSYSTEM` or `SEMVER` range contains it or it is
//!   listed in `versions[]`; `GIT` ranges are ignored (they name commits).
//! * A range whose event versions (or the installed version) do not parse in the
//!   ecosystem's [`VersionScheme`] is skipped and the others are still evaluated: an
//!   unparsable record must neither hide the other records nor invent findings. An
//!   installed version that does not parse thus only matches `versions[]` literally.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::osv::{Advisory, Affected, Event, RangeType, parse_ecosystem};
use crate::severity::{Rating, Severity, rate};
use crate::versions::{VersionError, VersionScheme, compare};
use crate::{Distro, Ecosystem, Inventory, Package};

/// One advisory affecting one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The OSV id (`DEBIAN-CVE-2024-0727`, `GHSA-…`, `ALPINE-CVE-…`).
    pub id: String,
    /// Other ids of the same vulnerability (`CVE-…`).
    pub aliases: Vec<String>,
    /// The installed package's name (the binary package for OS packages).
    pub package: String,
    /// The installed package's version.
    pub installed_version: String,
    /// The lowest fixed version above the installed one, if the advisory names one
    /// (for OS packages a source-package version).
    pub fixed_version: Option<String>,
    pub severity: Severity,
    /// The CVSS base score the severity comes from, when it comes from one.
    pub score: Option<f64>,
    /// The layer the package was found in.
    pub layer: usize,
    pub summary: Option<String>,
    pub ecosystem: Ecosystem,
}

/// Whether packages of the ecosystem belong to the distribution.
fn is_os(ecosystem: Ecosystem) -> bool {
    matches!(
        ecosystem,
        Ecosystem::Debian | Ecosystem::Ubuntu | Ecosystem::Alpine | Ecosystem::Rpm
    )
}

/// The name advisories of the ecosystem use for a package: PyPI names normalised per
/// PEP 503 (lower case, runs of `-`, `_`, `.` → `-`); other names as they are.
pub fn normalize_name(ecosystem: Ecosystem, name: &str) -> Cow<'_, str> {
    if ecosystem != Ecosystem::PyPI {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.extend(c.to_lowercase());
        }
    }
    if separator {
        out.push('-');
    }
    Cow::Owned(out)
}

/// The first `n` dot-separated numeric components of `version` (`3.19.1` → `3.19` for
/// `n = 2`), or `None` if it does not start with a number.
fn leading_numbers(version: &str, n: usize) -> Option<String> {
    let parts: Vec<&str> = version
        .split('.')
        .take(n)
        .map(|p| {
            let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            &p[..end]
        })
        .take_while(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The index key of an advisory's release (from [`parse_ecosystem`]): Debian's major
/// version (`12`), Ubuntu's `YY.MM`, Alpine's `major.minor` without the `v` (`3.19`),
/// rpm's `<id>:<major>` as is; a release that is not a number is kept, lower case.
pub fn advisory_release(ecosystem: Ecosystem, release: &str) -> String {
    let release = release.trim();
    let numeric = match ecosystem {
        Ecosystem::Debian => leading_numbers(release, 1),
        Ecosystem::Ubuntu => leading_numbers(release, 2),
        Ecosystem::Alpine => leading_numbers(release.strip_prefix('v').unwrap_or(release), 2),
        _ => None,
    };
    numeric.unwrap_or_else(|| release.to_ascii_lowercase())
}

/// The release key of an image's distribution for packages of `ecosystem`, comparable
/// with [`advisory_release`]: from `VERSION_ID` (Debian `12`, Ubuntu `22.04`, Alpine
/// `3.19.1` → `3.19`); for rpm `<vendor>:<major>` where the vendor is the os-release
/// `ID`, with CentOS matched against RHEL's advisories (`centos` 9 → `rhel:9`).
/// `None` without a `VERSION_ID`, or for language ecosystems.
pub fn distro_release(ecosystem: Ecosystem, distro: &Distro) -> Option<String> {
    let version = distro.version_id.as_deref()?.trim();
    match ecosystem {
        Ecosystem::Debian => leading_numbers(version, 1),
        Ecosystem::Ubuntu => leading_numbers(version, 2),
        Ecosystem::Alpine => leading_numbers(version, 2),
        Ecosystem::Rpm => {
            let id = match distro.id.trim().to_ascii_lowercase().as_str() {
                "rhel" | "centos" => "rhel".to_owned(),
                other => other.to_owned(),
            };
            Some(format!("{id}:{}", leading_numbers(version, 1)?))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    ecosystem: Ecosystem,
    release: Option<String>,
    name: String,
}

impl Key {
    /// The storage key: `<OSV ecosystem>|<release or empty>|<normalised name>`.
    fn storage_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.ecosystem.osv_name(),
            self.release.as_deref().unwrap_or(""),
            self.name
        )
    }
}

/// The keys under which a vulnerability database stores `advisory` (one per affected
/// package it can match; none for a withdrawn advisory): a scan looks up
/// [`package_keys`] and builds an [`AdvisoryIndex`] from what it finds there.
pub fn advisory_keys(advisory: &Advisory) -> Vec<String> {
    if advisory.is_withdrawn() {
        return Vec::new();
    }
    let mut keys: Vec<String> = advisory_index_keys(advisory)
        .into_iter()
        .map(|(k, _)| k.storage_key())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The storage keys whose advisories may affect `package` in an image of `distro`.
pub fn package_keys(distro: Option<&Distro>, package: &Package) -> Vec<String> {
    package_index_keys(distro, package)
        .iter()
        .map(Key::storage_key)
        .collect()
}

fn advisory_index_keys(advisory: &Advisory) -> Vec<(Key, usize)> {
    let mut keys = Vec::new();
    for (i, affected) in advisory.affected.iter().enumerate() {
        let Some(package) = &affected.package else {
            continue;
        };
        let Some((ecosystem, release)) = parse_ecosystem(&package.ecosystem) else {
            continue;
        };
        let release = if is_os(ecosystem) {
            release.map(|r| advisory_release(ecosystem, &r))
        } else {
            None
        };
        let name = normalize_name(ecosystem, package.name.trim()).into_owned();
        keys.push((
            Key {
                ecosystem,
                release,
                name,
            },
            i,
        ));
    }
    keys
}

fn package_index_keys(distro: Option<&Distro>, package: &Package) -> Vec<Key> {
    let ecosystem = package.ecosystem;
    let name = normalize_name(ecosystem, package.advisory_name().trim()).into_owned();
    let mut releases = vec![None];
    if is_os(ecosystem)
        && let Some(release) = distro.and_then(|d| distro_release(ecosystem, d))
    {
        releases.insert(0, Some(release));
    }
    releases
        .into_iter()
        .map(|release| Key {
            ecosystem,
            release,
            name: name.clone(),
        })
        .collect()
}

/// Advisories indexed by (ecosystem, release, package name).
#[derive(Debug, Clone, Default)]
pub struct AdvisoryIndex {
    advisories: Vec<Advisory>,
    /// (index in `advisories`, index in its `affected`).
    by_package: HashMap<Key, Vec<(usize, usize)>>,
}

impl AdvisoryIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes the advisory's `affected[]` entries whose ecosystem is known (see
    /// [`parse_ecosystem`]); returns whether any was. Withdrawn advisories and those
    /// with no usable entry are dropped. Inserting the same id twice keeps both; their
    /// findings are merged by id.
    pub fn insert(&mut self, advisory: Advisory) -> bool {
        if advisory.is_withdrawn() {
            return false;
        }
        let index = self.advisories.len();
        let keys = advisory_index_keys(&advisory);
        if keys.is_empty() {
            return false;
        }
        for (key, i) in keys {
            self.by_package.entry(key).or_default().push((index, i));
        }
        self.advisories.push(advisory);
        true
    }

    /// The number of advisories indexed.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The advisories affecting `package` (see the module documentation for the rules),
    /// one finding per advisory id, sorted by id.
    pub fn match_package(&self, distro: Option<&Distro>, package: &Package) -> Vec<Finding> {
        let ecosystem = package.ecosystem;
        let scheme = VersionScheme::from(ecosystem);
        let version = package.advisory_version().trim();

        struct Hit<'a> {
            advisory: &'a Advisory,
            fixed: Option<String>,
            rating: Rating,
        }
        let mut hits: BTreeMap<&str, Hit<'_>> = BTreeMap::new();
        for key in package_index_keys(distro, package) {
            for &(a, i) in self.by_package.get(&key).into_iter().flatten() {
                let advisory = &self.advisories[a];
                let affected = &advisory.affected[i];
                let Some(fixed) = evaluate(scheme, affected, version) else {
                    continue;
                };
                let rating = rate(advisory, Some(affected));
                match hits.get_mut(advisory.id.as_str()) {
                    None => {
                        hits.insert(
                            &advisory.id,
                            Hit {
                                advisory,
                                fixed,
                                rating,
                            },
                        );
                    }
                    Some(hit) => {
                        hit.fixed = lowest(scheme, hit.fixed.take(), fixed);
                        if rating.severity > hit.rating.severity {
                            hit.rating = rating;
                        }
                    }
                }
            }
        }
        hits.into_values()
            .map(|hit| Finding {
                id: hit.advisory.id.clone(),
                aliases: hit.advisory.aliases.clone(),
                package: package.name.clone(),
                installed_version: package.version.clone(),
                fixed_version: hit.fixed,
                severity: hit.rating.severity,
                score: hit.rating.score,
                layer: package.layer,
                summary: hit.advisory.summary.clone(),
                ecosystem,
            })
            .collect()
    }

    /// The findings of all the inventory's packages, sorted by severity (highest
    /// first), then id, package name and installed version; one per (id, ecosystem,
    /// package name) — the same package installed twice (two `node_modules` copies)
    /// is reported once, at its lowest version.
    pub fn match_inventory(&self, inventory: &Inventory) -> Vec<Finding> {
        let mut findings: Vec<Finding> = inventory
            .packages
            .iter()
            .flat_map(|p| self.match_package(inventory.distro.as_ref(), p))
            .collect();
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.package.cmp(&b.package))
                .then_with(|| a.ecosystem.cmp(&b.ecosystem))
                .then_with(|| {
                    compare(
                        VersionScheme::from(a.ecosystem),
                        &a.installed_version,
                        &b.installed_version,
                    )
                    .unwrap_or_else(|_| a.installed_version.cmp(&b.installed_version))
                })
                .then_with(|| a.layer.cmp(&b.layer))
        });
        let mut seen = HashSet::new();
        findings.retain(|f| seen.insert((f.id.clone(), f.ecosystem, f.package.clone())));
        findings
    }
}

impl Extend<Advisory> for AdvisoryIndex {
    fn extend<T: IntoIterator<Item = Advisory>>(&mut self, iter: T) {
        for advisory in iter {
            self.insert(advisory);
        }
    }
}

impl FromIterator<Advisory> for AdvisoryIndex {
    fn from_iter<T: IntoIterator<Item = Advisory>>(iter: T) -> Self {
        let mut index = AdvisoryIndex::new();
        index.extend(iter);
        index
    }
}

/// The lower of two fixed versions; a known one beats none.
fn lowest(scheme: VersionScheme, a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match compare(scheme, &a, &b) {
            Ok(Ordering::Greater) => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

/// Whether `version` is affected by the entry: `Some(fixed version)` if it is.
///
/// The fixed version is the lowest `fixed` event above `version` among the ranges that
/// contain it (among all ranges when only `versions[]` lists it).
pub fn evaluate(
    scheme: VersionScheme,
    affected: &Affected,
    version: &str,
) -> Option<Option<String>> {
    let listed = affected
        .versions
        .iter()
        .any(|v| v.trim() == version || compare(scheme, v, version) == Ok(Ordering::Equal));
    let mut in_range = false;
    let mut fixed_in_range: Option<String> = None;
    let mut fixed_any: Option<String> = None;
    for range in &affected.ranges {
        let range_scheme = match range.kind {
            RangeType::Ecosystem => scheme,
            RangeType::Semver if scheme == VersionScheme::Go => VersionScheme::Go,
            RangeType::Semver => VersionScheme::Semver,
            RangeType::Git | RangeType::Unknown => continue,
        };
        let Ok(verdict) = evaluate_range(range_scheme, &range.events, version) else {
            continue;
        };
        if verdict.affected {
            in_range = true;
            fixed_in_range = lowest(range_scheme, fixed_in_range, verdict.fixed_above.clone());
        }
        fixed_any = lowest(range_scheme, fixed_any, verdict.fixed_above);
    }
    if in_range {
        Some(fixed_in_range)
    } else if listed {
        Some(fixed_any)
    } else {
        None
    }
}

/// What one range says about a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeVerdict {
    pub affected: bool,
    /// The lowest `fixed` event above the version.
    pub fixed_above: Option<String>,
}

/// `version` against an event version; `"0"` (OSV's "since the beginning") is below
/// every version without being parsed (it is not valid SemVer).
fn against(scheme: VersionScheme, version: &str, event: &str) -> Result<Ordering, VersionError> {
    match event.trim() {
        "0" if version == "0" => Ok(Ordering::Equal),
        "0" => Ok(Ordering::Greater),
        event => compare(scheme, version, event),
    }
}

/// Orders event versions, `"0"` lowest.
fn order_events(scheme: VersionScheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    match (a.trim(), b.trim()) {
        ("0", "0") => Ok(Ordering::Equal),
        ("0", _) => Ok(Ordering::Less),
        (_, "0") => Ok(Ordering::Greater),
        (a, b) => compare(scheme, a, b),
    }
}

/// Evaluates one `ECOSYSTEM`/`SEMVER` range per the OSV schema: with the events sorted,
/// the last one at or below the version decides — `introduced` (inclusive) makes it
/// affected, `fixed` (inclusive, i.e. the fixed version is not affected) and
/// `last_affected` (passed only by versions above it) make it not; on equal versions
/// the closing event wins. A `limit` at or below the version means not affected.
/// Fails if any event version (or the version) does not parse.
pub fn evaluate_range(
    scheme: VersionScheme,
    events: &[Event],
    version: &str,
) -> Result<RangeVerdict, VersionError> {
    let mut deciding: Option<&Event> = None;
    let mut limited = false;
    let mut fixed_above: Option<&str> = None;
    for event in events {
        let passed = match event {
            Event::Introduced(v) | Event::Fixed(v) => against(scheme, version, v)?.is_ge(),
            Event::LastAffected(v) => against(scheme, version, v)?.is_gt(),
            Event::Limit(v) => {
                if v.trim() != "*" && against(scheme, version, v)?.is_ge() {
                    limited = true;
                }
                continue;
            }
            Event::Unknown => continue,
        };
        if !passed {
            if let Event::Fixed(v) = event
                && fixed_above.is_none_or(|f| order_events(scheme, v, f).is_ok_and(Ordering::is_lt))
            {
                fixed_above = Some(v);
            }
            continue;
        }
        deciding = match deciding {
            None => Some(event),
            Some(current) => {
                let (Some(new), Some(old)) = (event.version(), current.version()) else {
                    unreachable!("only versioned events are passed")
                };
                match order_events(scheme, new, old)? {
                    Ordering::Greater => Some(event),
                    Ordering::Equal if matches!(current, Event::Introduced(_)) => Some(event),
                    _ => Some(current),
                }
            }
        };
    }
    let affected = !limited && matches!(deciding, Some(Event::Introduced(_)));
    Ok(RangeVerdict {
        affected,
        fixed_above: fixed_above.map(|f| f.trim().to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(spec: &[(&str, &str)]) -> Vec<Event> {
        spec.iter()
            .map(|&(kind, v)| match kind {
                "introduced" => Event::Introduced(v.into()),
                "fixed" => Event::Fixed(v.into()),
                "last_affected" => Event::LastAffected(v.into()),
                "limit" => Event::Limit(v.into()),
                _ => Event::Unknown,
            })
            .collect()
    }

    fn verdict(
        scheme: VersionScheme,
        spec: &[(&str, &str)],
        version: &str,
    ) -> (bool, Option<String>) {
        let v = evaluate_range(scheme, &events(spec), version).unwrap();
        (v.affected, v.fixed_above)
    }

    #[test]
    fn ranges() {
        use VersionScheme::Semver;
        let simple = [("introduced", "0"), ("fixed", "1.2.0")];
        assert_eq!(
            verdict(Semver, &simple, "1.1.9"),
            (true, Some("1.2.0".into()))
        );
        assert_eq!(verdict(Semver, &simple, "1.2.0"), (false, None));
        assert_eq!(
            verdict(Semver, &simple, "0.0.1"),
            (true, Some("1.2.0".into()))
        );

        let two = [
            ("introduced", "1.0.0"),
            ("fixed", "1.2.5"),
            ("introduced", "1.3.0"),
            ("fixed", "1.3.2"),
        ];
        assert_eq!(
            verdict(Semver, &two, "0.9.0"),
            (false, Some("1.2.5".into()))
        );
        assert_eq!(verdict(Semver, &two, "1.0.0"), (true, Some("1.2.5".into())));
        assert_eq!(
            verdict(Semver, &two, "1.2.9"),
            (false, Some("1.3.2".into()))
        );
        assert_eq!(verdict(Semver, &two, "1.3.1"), (true, Some("1.3.2".into())));
        assert!(!verdict(Semver, &two, "1.3.2").0);
        // Unsorted events are sorted.
        let shuffled = [two[3], two[0], two[2], two[1]];
        assert_eq!(
            verdict(Semver, &shuffled, "1.3.1"),
            (true, Some("1.3.2".into()))
        );
        assert!(!verdict(Semver, &shuffled, "1.2.9").0);

        let last = [("introduced", "2.0.0"), ("last_affected", "2.4.1")];
        assert_eq!(verdict(Semver, &last, "2.4.1"), (true, None));
        assert_eq!(verdict(Semver, &last, "2.4.2"), (false, None));
        assert_eq!(verdict(Semver, &last, "1.9.9"), (false, None));

        let open = [("introduced", "3.0.0")];
        assert_eq!(verdict(Semver, &open, "99.0.0"), (true, None));

        let limit = [("introduced", "0"), ("limit", "2.0.0")];
        assert_eq!(verdict(Semver, &limit, "1.0.0"), (true, None));
        assert_eq!(verdict(Semver, &limit, "2.0.0"), (false, None));
        let star = [("introduced", "0"), ("limit", "*")];
        assert_eq!(verdict(Semver, &star, "2.0.0"), (true, None));

        // Same version introduced and fixed: not affected.
        let empty = [("introduced", "1.0.0"), ("fixed", "1.0.0")];
        assert!(!verdict(Semver, &empty, "1.0.0").0);

        // Unparsable events fail the range.
        let bad = [("introduced", "0"), ("fixed", "not-a-version")];
        assert!(evaluate_range(Semver, &events(&bad), "1.0.0").is_err());
        assert!(evaluate_range(Semver, &events(&simple), "garbage").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name(Ecosystem::PyPI, "Django"), "django");
        assert_eq!(
            normalize_name(Ecosystem::PyPI, "zope.interface"),
            "zope-interface"
        );
        assert_eq!(
            normalize_name(Ecosystem::PyPI, "Foo__Bar-._baz"),
            "foo-bar-baz"
        );
        assert_eq!(
            normalize_name(Ecosystem::PyPI, "typing_extensions"),
            "typing-extensions"
        );
        assert_eq!(normalize_name(Ecosystem::Npm, "@Scope/Pkg"), "@Scope/Pkg");
        assert_eq!(
            normalize_name(Ecosystem::Maven, "org.apache.logging.log4j:log4j-core"),
            "org.apache.logging.log4j:log4j-core"
        );
    }

    #[test]
    fn releases() {
        let distro = |id: &str, version: Option<&str>| Distro {
            id: id.into(),
            version_id: version.map(str::to_owned),
            ..Distro::default()
        };
        assert_eq!(advisory_release(Ecosystem::Debian, "12"), "12");
        assert_eq!(advisory_release(Ecosystem::Alpine, "v3.19"), "3.19");
        assert_eq!(advisory_release(Ecosystem::Alpine, "edge"), "edge");
        assert_eq!(advisory_release(Ecosystem::Ubuntu, "22.04"), "22.04");
        assert_eq!(advisory_release(Ecosystem::Rpm, "rhel:9"), "rhel:9");

        let r = |e, d: &Distro| distro_release(e, d);
        assert_eq!(
            r(Ecosystem::Debian, &distro("debian", Some("12"))).as_deref(),
            Some("12")
        );
        assert_eq!(r(Ecosystem::Debian, &distro("debian", None)), None);
        assert_eq!(
            r(Ecosystem::Alpine, &distro("alpine", Some("3.19.1"))).as_deref(),
            Some("3.19")
        );
        assert_eq!(
            r(
                Ecosystem::Alpine,
                &distro("alpine", Some("3.20.0_alpha20240329"))
            )
            .as_deref(),
            Some("3.20")
        );
        assert_eq!(
            r(Ecosystem::Ubuntu, &distro("ubuntu", Some("22.04"))).as_deref(),
            Some("22.04")
        );
        assert_eq!(
            r(Ecosystem::Rpm, &distro("rhel", Some("9.3"))).as_deref(),
            Some("rhel:9")
        );
        assert_eq!(
            r(Ecosystem::Rpm, &distro("centos", Some("9"))).as_deref(),
            Some("rhel:9")
        );
        assert_eq!(
            r(Ecosystem::Rpm, &distro("rocky", Some("9.3"))).as_deref(),
            Some("rocky:9")
        );
        assert_eq!(r(Ecosystem::PyPI, &distro("debian", Some("12"))), None);
    }
}
