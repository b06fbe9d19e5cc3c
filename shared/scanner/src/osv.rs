//! OSV advisories (<https://ossf.github.io/osv-schema/>): the schema as serde structs,
//! OSV ecosystem names mapped to [`Ecosystem`]s and releases, and readers for a single
//! JSON document, a directory tree of them and a zip of them (the form of OSV's
//! `<ecosystem>/all.zip` exports).
//!
//! Parsing is lenient where real data is sloppy: absent or `null` lists are empty,
//! unknown fields are ignored, unknown range types and events are kept as `Unknown` and
//! ignored by the matcher. Withdrawn advisories are skipped by the readers.

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{Ecosystem, ScanError};

/// The largest advisory read from a zip (bigger entries are errors, not allocations).
pub const MAX_ADVISORY_BYTES: u64 = 16 << 20;

/// `null` as the default value (OSV exporters write `"aliases": null`).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One OSV record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    pub id: String,
    /// RFC 3339; required by the schema, tolerated when missing.
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// Set when the advisory was withdrawn: it then matches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub aliases: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub related: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub upstream: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub severity: Vec<OsvSeverity>,
    #[serde(default, deserialize_with = "nullable")]
    pub affected: Vec<Affected>,
    #[serde(default, deserialize_with = "nullable")]
    pub references: Vec<Reference>,
    #[serde(default, deserialize_with = "nullable")]
    pub credits: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

impl Advisory {
    /// Whether the record was withdrawn.
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn
            .as_deref()
            .is_some_and(|w| !w.trim().is_empty())
    }
}

/// A `severity[]` entry: `type` is `CVSS_V2`, `CVSS_V3`, `CVSS_V4` or `Ubuntu`, `score`
/// a vector string (CVSS) or a rating (`Ubuntu`: `negligible` … `critical`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsvSeverity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// A `references[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

/// An `affected[]` entry: one package and the versions of it that are affected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// Absent for entries that only name a repository (GIT ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<AffectedPackage>,
    /// Per-package severities (allowed by the schema, overriding the advisory's).
    #[serde(default, deserialize_with = "nullable")]
    pub severity: Vec<OsvSeverity>,
    #[serde(default, deserialize_with = "nullable")]
    pub ranges: Vec<Range>,
    /// Explicitly affected versions.
    #[serde(default, deserialize_with = "nullable")]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// `affected[].package`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedPackage {
    /// `Debian:12`, `PyPI`, … (see [`parse_ecosystem`]).
    pub ecosystem: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// `affected[].ranges[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: RangeType,
    /// The repository of a `GIT` range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub events: Vec<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// How a range's versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeType {
    /// The ecosystem's own order.
    Ecosystem,
    /// SemVer 2.0 (without a `v` prefix).
    Semver,
    /// Commit hashes: not comparable with package versions, ignored by the matcher.
    Git,
    /// A type this code does not know: ignored.
    #[serde(other)]
    Unknown,
}

/// One event of a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawEvent", into = "RawEvent")]
pub enum Event {
    /// Affected from this version on (`"0"`: from the beginning).
    Introduced(String),
    /// Not affected from this version on.
    Fixed(String),
    /// Affected up to and including this version.
    LastAffected(String),
    /// Nothing at or above this version is affected by this range.
    Limit(String),
    /// An object without a known key: ignored.
    Unknown,
}

impl Event {
    /// The version the event names (`None` for [`Event::Unknown`]).
    pub fn version(&self) -> Option<&str> {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => {
                Some(v)
            }
            Event::Unknown => None,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct RawEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<String>,
}

impl From<RawEvent> for Event {
    fn from(raw: RawEvent) -> Self {
        if let Some(v) = raw.introduced {
            Event::Introduced(v)
        } else if let Some(v) = raw.fixed {
            Event::Fixed(v)
        } else if let Some(v) = raw.last_affected {
            Event::LastAffected(v)
        } else if let Some(v) = raw.limit {
            Event::Limit(v)
        } else {
            Event::Unknown
        }
    }
}

impl From<Event> for RawEvent {
    fn from(event: Event) -> Self {
        let mut raw = RawEvent::default();
        match event {
            Event::Introduced(v) => raw.introduced = Some(v),
            Event::Fixed(v) => raw.fixed = Some(v),
            Event::LastAffected(v) => raw.last_affected = Some(v),
            Event::Limit(v) => raw.limit = Some(v),
            Event::Unknown => {}
        }
        raw
    }
}

/// Maps an OSV ecosystem string to an [`Ecosystem`] and a release, or `None` for
/// ecosystems this scanner does not handle (which callers skip, not fail on).
///
/// | OSV | result |
/// |---|---|
/// | `Debian`, `Debian:12` | `(Debian, None)`, `(Debian, Some("12"))` |
/// | `Ubuntu:22.04:LTS`, `Ubuntu:24.10` | `(Ubuntu, Some("22.04"))`, `(Ubuntu, Some("24.10"))` |
/// | `Ubuntu:Pro:…`, `Ubuntu:…:FIPS…` | `None`: their fixes (`+esm`) are not in the public archive |
/// | `Alpine:v3.19` | `(Alpine, Some("v3.19"))` (as written; the matcher drops the `v`) |
/// | `Red Hat:enterprise_linux:9::appstream` | `(Rpm, Some("rhel:9"))`; other Red Hat products (EUS streams, OpenShift…) → `None` |
/// | `Rocky Linux:9`, `AlmaLinux:8` | `(Rpm, Some("rocky:9"))`, `(Rpm, Some("almalinux:8"))` |
/// | `PyPI`, `npm`, `crates.io`, `Go`, `Maven` (any `:suffix` ignored) | `(…, None)` |
///
/// rpm releases are `<os-release ID>:<major version>` because one [`Ecosystem::Rpm`]
/// covers several vendors whose fixed versions differ; an rpm ecosystem without a
/// version is `None` (it could not be matched safely).
pub fn parse_ecosystem(s: &str) -> Option<(Ecosystem, Option<String>)> {
    let s = s.trim();
    let (name, rest) = match s.split_once(':') {
        Some((name, rest)) => (name, Some(rest.trim()).filter(|r| !r.is_empty())),
        None => (s, None),
    };
    let language = |ecosystem| Some((ecosystem, None));
    match name {
        "PyPI" => language(Ecosystem::PyPI),
        "npm" => language(Ecosystem::Npm),
        "crates.io" => language(Ecosystem::CratesIo),
        "Go" => language(Ecosystem::Go),
        "Maven" => language(Ecosystem::Maven),
        "Debian" => Some((Ecosystem::Debian, rest.map(str::to_owned))),
        "Alpine" => Some((Ecosystem::Alpine, rest.map(str::to_owned))),
        "Ubuntu" => match rest {
            None => Some((Ecosystem::Ubuntu, None)),
            Some(rest) => {
                let parts: Vec<&str> = rest.split(':').collect();
                if parts.iter().any(|p| {
                    p.eq_ignore_ascii_case("pro") || p.to_ascii_lowercase().contains("fips")
                }) {
                    return None;
                }
                let version = parts.iter().find(|p| is_dotted_number(p))?;
                Some((Ecosystem::Ubuntu, Some((*version).to_owned())))
            }
        },
        "Red Hat" => {
            // `Red Hat:<product>:<version>::<repository>`: only the main RHEL product.
            let mut parts = rest?.split(':');
            if parts.next()? != "enterprise_linux" {
                return None;
            }
            rpm_release("rhel", parts.next()?)
        }
        "Rocky Linux" => rpm_release("rocky", rest?),
        "AlmaLinux" => rpm_release("almalinux", rest?),
        _ => None,
    }
}

fn is_dotted_number(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `<id>:<major>` from a version such as `9`, `9.3` or `8.10`.
fn rpm_release(id: &str, version: &str) -> Option<(Ecosystem, Option<String>)> {
    let major = version.split(['.', ':']).next()?.trim();
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()))
        .then(|| (Ecosystem::Rpm, Some(format!("{id}:{major}"))))
}

/// Parses one OSV JSON document.
pub fn parse_advisory(json: &[u8]) -> Result<Advisory, ScanError> {
    serde_json::from_slice(json).map_err(|e| ScanError::Advisory(e.to_string()))
}

fn parse_named(name: &str, json: &[u8]) -> Option<Result<Advisory, ScanError>> {
    match parse_advisory(json) {
        Ok(advisory) if advisory.is_withdrawn() => None,
        Ok(advisory) => Some(Ok(advisory)),
        Err(ScanError::Advisory(e)) => Some(Err(ScanError::Advisory(format!("{name}: {e}")))),
        Err(e) => Some(Err(e)),
    }
}

fn is_json_name(name: &str) -> bool {
    name.len() > ".json".len() && name.to_ascii_lowercase().ends_with(".json")
}

/// The advisories of the `*.json` files under `path` (recursively, in path order,
/// without following symbolic links to directories), parsed one at a time; withdrawn
/// ones are skipped. An unreadable directory or file, or invalid JSON, is an `Err`
/// item and the walk goes on.
pub fn read_dir(path: impl AsRef<Path>) -> impl Iterator<Item = Result<Advisory, ScanError>> {
    DirAdvisories {
        dirs: vec![path.as_ref().to_path_buf()],
        pending: VecDeque::new(),
    }
}

struct DirAdvisories {
    /// Directories still to list (a stack: depth first).
    dirs: Vec<PathBuf>,
    /// Files and listing errors of the directory being walked.
    pending: VecDeque<Result<PathBuf, ScanError>>,
}

impl DirAdvisories {
    /// Lists the next directory: its subdirectories go on the stack (in reverse, so
    /// they are walked in order), its JSON files and errors into `pending`.
    fn list(&mut self, dir: &Path) {
        let error = |e: std::io::Error, path: &Path| {
            ScanError::Advisory(format!("reading {}: {e}", path.display()))
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.pending.push_back(Err(error(e, dir)));
                return;
            }
        };
        let mut files = Vec::new();
        let mut subdirs = Vec::new();
        for entry in entries {
            match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
                Ok((path, kind)) if kind.is_dir() => subdirs.push(path),
                Ok((path, _)) => {
                    if path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_json_name)
                    {
                        files.push(path);
                    }
                }
                Err(e) => self.pending.push_back(Err(error(e, dir))),
            }
        }
        files.sort();
        subdirs.sort();
        self.pending.extend(files.into_iter().map(Ok));
        self.dirs.extend(subdirs.into_iter().rev());
    }
}

impl Iterator for DirAdvisories {
    type Item = Result<Advisory, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.pending.pop_front() {
                Some(Ok(path)) => {
                    let name = path.display().to_string();
                    let read = fs::read(&path)
                        .map_err(|e| ScanError::Advisory(format!("reading {name}: {e}")));
                    match read {
                        Ok(bytes) => match parse_named(&name, &bytes) {
                            Some(item) => return Some(item),
                            None => continue,
                        },
                        Err(e) => return Some(Err(e)),
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    let dir = self.dirs.pop()?;
                    self.list(&dir);
                }
            }
        }
    }
}

/// The advisories of the `*.json` entries of a zip archive (OSV's `all.zip` exports),
/// in archive order, parsed one at a time; withdrawn ones are skipped. Opening the
/// archive fails if its central directory is unreadable; a bad entry (unsupported
/// compression, more than [`MAX_ADVISORY_BYTES`], invalid JSON) is an `Err` item and
/// reading goes on.
pub fn read_zip<R: Read + Seek>(reader: R) -> Result<ZipAdvisories<R>, ScanError> {
    let archive = zip::ZipArchive::new(reader)
        .map_err(|e| ScanError::Advisory(format!("opening zip: {e}")))?;
    Ok(ZipAdvisories { archive, next: 0 })
}

/// Iterator returned by [`read_zip`].
pub struct ZipAdvisories<R> {
    archive: zip::ZipArchive<R>,
    next: usize,
}

impl<R: Read + Seek> ZipAdvisories<R> {
    /// Reads entry `index`: `None` if it is not a JSON file.
    fn entry(&mut self, index: usize) -> Option<Result<(String, Vec<u8>), ScanError>> {
        let mut file = match self.archive.by_index(index) {
            Ok(file) => file,
            Err(e) => {
                return Some(Err(ScanError::Advisory(format!("zip entry {index}: {e}"))));
            }
        };
        if file.is_dir() || !is_json_name(file.name()) {
            return None;
        }
        let name = file.name().to_owned();
        if file.size() > MAX_ADVISORY_BYTES {
            return Some(Err(ScanError::Advisory(format!(
                "{name}: larger than {MAX_ADVISORY_BYTES} bytes"
            ))));
        }
        let mut bytes = Vec::with_capacity(file.size() as usize);
        let read = (&mut file)
            .take(MAX_ADVISORY_BYTES + 1)
            .read_to_end(&mut bytes);
        Some(match read {
            Err(e) => Err(ScanError::Advisory(format!("{name}: {e}"))),
            Ok(_) if bytes.len() as u64 > MAX_ADVISORY_BYTES => Err(ScanError::Advisory(format!(
                "{name}: larger than {MAX_ADVISORY_BYTES} bytes"
            ))),
            Ok(_) => Ok((name, bytes)),
        })
    }
}

impl<R: Read + Seek> Iterator for ZipAdvisories<R> {
    type Item = Result<Advisory, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.archive.len() {
            let index = self.next;
            self.next += 1;
            match self.entry(index) {
                None => continue,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok((name, bytes))) => match parse_named(&name, &bytes) {
                    Some(item) => return Some(item),
                    None => continue,
                },
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    #[test]
    fn ecosystems() {
        type Expected = Option<(Ecosystem, Option<&'static str>)>;
        let cases: &[(&str, Expected)] = &[
            ("Debian", Some((Ecosystem::Debian, None))),
            ("Debian:12", Some((Ecosystem::Debian, Some("12")))),
            ("Debian:11", Some((Ecosystem::Debian, Some("11")))),
            ("Alpine:v3.19", Some((Ecosystem::Alpine, Some("v3.19")))),
            ("Ubuntu:22.04:LTS", Some((Ecosystem::Ubuntu, Some("22.04")))),
            ("Ubuntu:24.10", Some((Ecosystem::Ubuntu, Some("24.10")))),
            ("Ubuntu", Some((Ecosystem::Ubuntu, None))),
            ("Ubuntu:Pro:18.04:LTS", None),
            ("Ubuntu:Pro:FIPS-updates:22.04:LTS", None),
            ("Ubuntu:FIPS:20.04", None),
            ("PyPI", Some((Ecosystem::PyPI, None))),
            ("npm", Some((Ecosystem::Npm, None))),
            ("crates.io", Some((Ecosystem::CratesIo, None))),
            ("Go", Some((Ecosystem::Go, None))),
            ("Maven", Some((Ecosystem::Maven, None))),
            (
                "Maven:https://repo.maven.apache.org/maven2/",
                Some((Ecosystem::Maven, None)),
            ),
            (
                "Red Hat:enterprise_linux:9::appstream",
                Some((Ecosystem::Rpm, Some("rhel:9"))),
            ),
            (
                "Red Hat:enterprise_linux:8::baseos",
                Some((Ecosystem::Rpm, Some("rhel:8"))),
            ),
            ("Red Hat:rhel_eus:9.2::appstream", None),
            ("Red Hat:openshift:4.14::el9", None),
            ("Red Hat", None),
            ("Rocky Linux:9", Some((Ecosystem::Rpm, Some("rocky:9")))),
            ("Rocky Linux:8.9", Some((Ecosystem::Rpm, Some("rocky:8")))),
            ("AlmaLinux:9", Some((Ecosystem::Rpm, Some("almalinux:9")))),
            ("AlmaLinux", None),
            ("RubyGems", None),
            ("Packagist", None),
            ("openSUSE:Leap 15.5", None),
            ("Wolfi", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let expected = expected.map(|(e, r)| (e, r.map(str::to_owned)));
            assert_eq!(parse_ecosystem(input), expected, "{input}");
        }
    }

    const GHSA: &str = r#"{
      "schema_version": "1.6.0",
      "id": "GHSA-xxxx-yyyy-zzzz",
      "modified": "2024-03-01T00:00:00Z",
      "published": "2024-02-01T00:00:00Z",
      "aliases": null,
      "summary": "Example",
      "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
      "affected": [{
        "package": {"ecosystem": "npm", "name": "lodash", "purl": "pkg:npm/lodash"},
        "ranges": [
          {"type": "SEMVER", "events": [{"introduced": "0"}, {"last_affected": "4.17.20"}]},
          {"type": "GIT", "repo": "https://github.com/lodash/lodash", "events": [{"introduced": "abc"}, {"limit": "def"}]},
          {"type": "FANCY", "events": [{"introduced": "1"}, {"surprise": "2"}]}
        ],
        "versions": ["4.17.19", "4.17.20"],
        "database_specific": {"source": "x"}
      }],
      "references": [{"type": "WEB", "url": "https://example.com"}],
      "database_specific": {"severity": "CRITICAL", "cwe_ids": ["CWE-1321"]},
      "unknown_field": 1
    }"#;

    #[test]
    fn parses_the_schema() {
        let a = parse_advisory(GHSA.as_bytes()).unwrap();
        assert_eq!(a.id, "GHSA-xxxx-yyyy-zzzz");
        assert!(a.aliases.is_empty());
        assert!(!a.is_withdrawn());
        assert_eq!(a.severity[0].kind, "CVSS_V3");
        let affected = &a.affected[0];
        let package = affected.package.as_ref().unwrap();
        assert_eq!(
            (package.ecosystem.as_str(), package.name.as_str()),
            ("npm", "lodash")
        );
        assert_eq!(package.purl.as_deref(), Some("pkg:npm/lodash"));
        assert_eq!(affected.ranges[0].kind, RangeType::Semver);
        assert_eq!(
            affected.ranges[0].events,
            [
                Event::Introduced("0".into()),
                Event::LastAffected("4.17.20".into())
            ]
        );
        assert_eq!(affected.ranges[1].kind, RangeType::Git);
        assert_eq!(affected.ranges[1].events[1], Event::Limit("def".into()));
        assert_eq!(affected.ranges[2].kind, RangeType::Unknown);
        assert_eq!(affected.ranges[2].events[1], Event::Unknown);
        assert_eq!(affected.versions, ["4.17.19", "4.17.20"]);
        assert_eq!(
            a.database_specific.as_ref().unwrap()["severity"],
            Value::from("CRITICAL")
        );

        // Serialises back to OSV.
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json["affected"][0]["ranges"][0]["events"],
            serde_json::json!([{"introduced": "0"}, {"last_affected": "4.17.20"}])
        );
        assert_eq!(json["affected"][0]["ranges"][0]["type"], "SEMVER");
        let again: Advisory = serde_json::from_value(json).unwrap();
        assert_eq!(again.affected[0].ranges[0], a.affected[0].ranges[0]);
    }

    #[test]
    fn invalid_json_is_an_advisory_error() {
        assert!(matches!(parse_advisory(b"{"), Err(ScanError::Advisory(_))));
        assert!(matches!(
            parse_advisory(br#"{"summary": "no id"}"#),
            Err(ScanError::Advisory(_))
        ));
    }

    fn advisory_json(id: &str, withdrawn: bool) -> String {
        let withdrawn = if withdrawn {
            r#","withdrawn": "2024-01-02T00:00:00Z""#
        } else {
            ""
        };
        format!(r#"{{"id": "{id}", "modified": "2024-01-01T00:00:00Z"{withdrawn}}}"#)
    }

    #[test]
    fn reads_a_directory_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/nested")).unwrap();
        fs::create_dir_all(root.join("a")).unwrap();
        fs::write(root.join("z.json"), advisory_json("Z-1", false)).unwrap();
        fs::write(root.join("a/A-1.json"), advisory_json("A-1", false)).unwrap();
        fs::write(root.join("a/A-2.JSON"), advisory_json("A-2", false)).unwrap();
        fs::write(root.join("a/withdrawn.json"), advisory_json("W-1", true)).unwrap();
        fs::write(root.join("a/readme.txt"), "not json").unwrap();
        fs::write(root.join("b/nested/B-1.json"), advisory_json("B-1", false)).unwrap();
        fs::write(root.join("b/broken.json"), "{not json").unwrap();

        let items: Vec<_> = read_dir(root).collect();
        let ids: Vec<_> = items
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(ids, ["Z-1", "A-1", "A-2", "B-1"]);
        let errors: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("broken.json"),
            "{}",
            errors[0]
        );

        let missing: Vec<_> = read_dir(root.join("missing")).collect();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].is_err());
    }

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in entries {
            if name.ends_with('/') {
                writer.add_directory(*name, options).unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                writer.write_all(content.as_bytes()).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_a_zip() {
        let bytes = zip_of(&[
            ("dir/", ""),
            ("GHSA-1.json", GHSA),
            ("dir/OSV-2.json", &advisory_json("OSV-2", false)),
            ("dir/OSV-3.json", &advisory_json("OSV-3", true)),
            ("notes.md", "# hi"),
            ("bad.json", "[]"),
        ]);
        let items: Vec<_> = read_zip(Cursor::new(bytes)).unwrap().collect();
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[0].as_ref().unwrap().id, "GHSA-xxxx-yyyy-zzzz");
        assert_eq!(items[1].as_ref().unwrap().id, "OSV-2");
        let err = items[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");

        assert!(matches!(
            read_zip(Cursor::new(b"not a zip".to_vec())),
            Err(ScanError::Advisory(_))
        ));
    }
}
