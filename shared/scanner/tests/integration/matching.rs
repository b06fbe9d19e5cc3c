//! Matching packages against realistic OSV advisories (Debian, Ubuntu, Alpine, Rocky,
//! PyPI, npm, Go, Maven): affected / not affected at the boundaries, the fixed version
//! reported, releases kept apart, source versions used, withdrawn records ignored, and
//! an inventory's findings sorted and deduplicated.

use registry_scanner::matcher::{AdvisoryIndex, Finding};
use registry_scanner::osv::{parse_advisory, read_dir, read_zip};
use registry_scanner::severity::Severity;
use registry_scanner::{Distro, Ecosystem, Inventory, Package};

const DEBIAN_OPENSSL: &str = r#"{
  "schema_version": "1.6.0",
  "id": "DSA-5621-1",
  "summary": "openssl - security update",
  "aliases": ["CVE-2023-5678", "CVE-2023-6129", "CVE-2023-6237", "CVE-2024-0727"],
  "modified": "2024-02-05T12:00:00Z",
  "published": "2024-02-04T00:00:00Z",
  "affected": [
    {
      "package": {"ecosystem": "Debian:12", "name": "openssl", "purl": "pkg:deb/debian/openssl?arch=source"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}],
      "ecosystem_specific": {"urgency": "medium"}
    },
    {
      "package": {"ecosystem": "Debian:11", "name": "openssl", "purl": "pkg:deb/debian/openssl?arch=source"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.1w-0+deb11u1"}]}],
      "ecosystem_specific": {"urgency": "high"}
    }
  ]
}"#;

/// An advisory on a source package whose binaries have unrelated versions.
const DEBIAN_GCC_DEFAULTS: &str = r#"{
  "id": "DEBIAN-CVE-2099-0001",
  "summary": "gcc-defaults: example",
  "modified": "2024-01-01T00:00:00Z",
  "affected": [{
    "package": {"ecosystem": "Debian:12", "name": "gcc-defaults"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.204"}]}],
    "ecosystem_specific": {"urgency": "low"}
  }]
}"#;

/// No release: applies to every Debian release.
const DEBIAN_ANY_RELEASE: &str = r#"{
  "id": "DEBIAN-CVE-2099-0002",
  "modified": "2024-01-01T00:00:00Z",
  "affected": [{
    "package": {"ecosystem": "Debian", "name": "openssl"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "3.0.0-1"}, {"fixed": "3.0.12-1"}]}],
    "ecosystem_specific": {"urgency": "not yet assigned"}
  }]
}"#;

const UBUNTU_OPENSSL: &str = r#"{
  "id": "UBUNTU-CVE-2024-0727",
  "aliases": ["CVE-2024-0727"],
  "summary": "openssl vulnerability",
  "modified": "2024-03-01T00:00:00Z",
  "severity": [{"type": "Ubuntu", "score": "low"}],
  "affected": [
    {
      "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.14"}]}]
    },
    {
      "package": {"ecosystem": "Ubuntu:Pro:18.04:LTS", "name": "openssl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.1-1ubuntu2.1~18.04.23+esm4"}]}]
    }
  ]
}"#;

const ALPINE_OPENSSL: &str = r#"{
  "id": "ALPINE-CVE-2024-0727",
  "aliases": ["CVE-2024-0727"],
  "modified": "2024-03-01T00:00:00Z",
  "published": "2024-01-26T09:15:00Z",
  "details": "Processing a maliciously formatted PKCS12 file may lead OpenSSL to crash",
  "affected": [
    {
      "package": {"ecosystem": "Alpine:v3.19", "name": "openssl", "purl": "pkg:apk/alpine/openssl?arch=source"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.4-r5"}]}]
    },
    {
      "package": {"ecosystem": "Alpine:v3.20", "name": "openssl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.3.0-r0"}]}]
    }
  ]
}"#;

const ROCKY_OPENSSL: &str = r#"{
  "id": "RLSA-2024:1234",
  "summary": "Moderate: openssl security update",
  "modified": "2024-03-01T00:00:00Z",
  "affected": [{
    "package": {"ecosystem": "Rocky Linux:9", "name": "openssl"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:3.0.7-25.el9_3"}]}]
  }],
  "database_specific": {"severity": "Moderate"}
}"#;

const PYPI_REQUESTS: &str = r#"{
  "schema_version": "1.4.0",
  "id": "GHSA-j8r2-6x86-q33q",
  "modified": "2024-02-20T05:34:30Z",
  "published": "2023-05-22T20:36:32Z",
  "aliases": ["CVE-2023-32681", "PYSEC-2023-74"],
  "summary": "Unintended leak of Proxy-Authorization header in requests",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"}],
  "affected": [{
    "package": {"ecosystem": "PyPI", "name": "requests", "purl": "pkg:pypi/requests"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}]}]
  }],
  "database_specific": {"cwe_ids": ["CWE-200"], "severity": "MODERATE", "github_reviewed": true}
}"#;

const PYPI_JINJA2: &str = r#"{
  "id": "GHSA-h5c8-rqwp-cp95",
  "modified": "2024-01-11T15:20:48Z",
  "aliases": ["CVE-2024-22195"],
  "summary": "Jinja vulnerable to HTML attribute injection when passing user input as keys to xmlattr filter",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"}],
  "affected": [{
    "package": {"ecosystem": "PyPI", "name": "Jinja2"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.3"}]}],
    "versions": ["2.10", "3.1.2"]
  }],
  "database_specific": {"severity": "MODERATE"}
}"#;

const PYPI_WITHDRAWN: &str = r#"{
  "id": "GHSA-wwww-wwww-wwww",
  "modified": "2024-01-01T00:00:00Z",
  "withdrawn": "2024-01-02T00:00:00Z",
  "summary": "Withdrawn: not a vulnerability in requests",
  "affected": [{
    "package": {"ecosystem": "PyPI", "name": "requests"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
  }]
}"#;

const NPM_IP: &str = r#"{
  "id": "GHSA-2p57-rm9w-gvfp",
  "modified": "2024-06-10T00:00:00Z",
  "aliases": ["CVE-2024-29415"],
  "summary": "ip SSRF improper categorization in isPublic",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{
    "package": {"ecosystem": "npm", "name": "ip"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"last_affected": "2.0.1"}]}]
  }],
  "database_specific": {"severity": "HIGH"}
}"#;

const GO_NET: &str = r#"{
  "schema_version": "1.3.1",
  "id": "GO-2024-2687",
  "modified": "2024-04-05T00:00:00Z",
  "aliases": ["CVE-2023-45288", "GHSA-4v7x-pqxf-cx7m"],
  "summary": "HTTP/2 CONTINUATION flood in net/http",
  "affected": [
    {
      "package": {"name": "stdlib", "ecosystem": "Go"},
      "ranges": [{"type": "SEMVER", "events": [
        {"introduced": "0"}, {"fixed": "1.21.9"}, {"introduced": "1.22.0-0"}, {"fixed": "1.22.2"}]}],
      "ecosystem_specific": {"imports": [{"path": "net/http"}]}
    },
    {
      "package": {"name": "golang.org/x/net", "ecosystem": "Go"},
      "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.23.0"}]}]
    }
  ],
  "database_specific": {"url": "https://pkg.go.dev/vuln/GO-2024-2687"}
}"#;

const MAVEN_LOG4J: &str = r#"{
  "id": "GHSA-jfh8-c2jp-5v3q",
  "modified": "2024-01-01T00:00:00Z",
  "aliases": ["CVE-2021-44228"],
  "summary": "Remote code injection in Log4j",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
  "affected": [
    {
      "package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.13.0"}, {"fixed": "2.15.0"}]}]
    },
    {
      "package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0-beta9"}, {"fixed": "2.12.2"}]}]
    }
  ]
}"#;

/// One broken range (an unparsable fixed version) next to a good one.
const BROKEN_RANGE: &str = r#"{
  "id": "GHSA-bbbb-bbbb-bbbb",
  "modified": "2024-01-01T00:00:00Z",
  "affected": [{
    "package": {"ecosystem": "npm", "name": "left-pad"},
    "ranges": [
      {"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "one point five"}]},
      {"type": "GIT", "repo": "https://example.com/left-pad", "events": [{"introduced": "0"}, {"fixed": "abcdef"}]},
      {"type": "SEMVER", "events": [{"introduced": "1.1.0"}, {"fixed": "1.3.0"}]}
    ]
  }]
}"#;

const ALL: &[&str] = &[
    DEBIAN_OPENSSL,
    DEBIAN_GCC_DEFAULTS,
    DEBIAN_ANY_RELEASE,
    UBUNTU_OPENSSL,
    ALPINE_OPENSSL,
    ROCKY_OPENSSL,
    PYPI_REQUESTS,
    PYPI_JINJA2,
    PYPI_WITHDRAWN,
    NPM_IP,
    GO_NET,
    MAVEN_LOG4J,
    BROKEN_RANGE,
];

fn index() -> AdvisoryIndex {
    let mut index = AdvisoryIndex::new();
    for json in ALL {
        let advisory = parse_advisory(json.as_bytes()).unwrap();
        let withdrawn = advisory.is_withdrawn();
        assert_eq!(index.insert(advisory), !withdrawn);
    }
    index
}

fn distro(id: &str, version_id: &str) -> Distro {
    Distro {
        id: id.into(),
        version_id: Some(version_id.into()),
        ..Distro::default()
    }
}

fn package(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
    Package {
        ecosystem,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        layer: 0,
        path: String::new(),
    }
}

fn from_source(mut p: Package, source: &str, source_version: Option<&str>) -> Package {
    p.source_name = Some(source.into());
    p.source_version = source_version.map(str::to_owned);
    p
}

fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

/// The only finding with `id`.
fn finding<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
    let mut matching = findings.iter().filter(|f| f.id == id);
    let f = matching
        .next()
        .unwrap_or_else(|| panic!("no {id} in {findings:?}"));
    assert!(matching.next().is_none(), "{id} twice");
    f
}

#[test]
fn debian_openssl_fixed_in_bookworm_update() {
    let index = index();
    let bookworm = distro("debian", "12");
    let libssl = from_source(
        package(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2"),
        "openssl",
        None,
    );
    let findings = index.match_package(Some(&bookworm), &libssl);
    assert_eq!(ids(&findings), ["DEBIAN-CVE-2099-0002", "DSA-5621-1"]);
    let f = finding(&findings, "DSA-5621-1");
    assert_eq!(f.package, "libssl3");
    assert_eq!(f.installed_version, "3.0.11-1~deb12u2");
    assert_eq!(f.fixed_version.as_deref(), Some("3.0.13-1~deb12u1"));
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.score, None);
    assert_eq!(f.aliases.len(), 4);
    assert_eq!(f.summary.as_deref(), Some("openssl - security update"));
    assert_eq!(f.ecosystem, Ecosystem::Debian);
    // The release-less advisory applies too; its urgency is not assigned.
    let any = finding(&findings, "DEBIAN-CVE-2099-0002");
    assert_eq!(any.fixed_version.as_deref(), Some("3.0.12-1"));
    assert_eq!(any.severity, Severity::Unknown);

    // Exactly the fixed version is not affected; neither is anything above.
    for version in ["3.0.13-1~deb12u1", "3.0.13-1~deb12u2", "3.0.15-1~deb12u1"] {
        let fixed = from_source(
            package(Ecosystem::Debian, "openssl", version),
            "openssl",
            None,
        );
        assert!(
            index.match_package(Some(&bookworm), &fixed).is_empty(),
            "{version}"
        );
    }
    // Just below the fix (the `~` makes 3.0.13-1~deb12u1 lower than 3.0.13-1).
    let below = package(Ecosystem::Debian, "openssl", "3.0.13-1~deb12u0");
    assert_eq!(
        ids(&index.match_package(Some(&bookworm), &below)),
        ["DSA-5621-1"]
    );
}

#[test]
fn debian_releases_are_kept_apart() {
    let index = index();
    let openssl = package(Ecosystem::Debian, "openssl", "1.1.1n-0+deb11u5");

    // Bullseye: the Debian:11 entry with its own fix and urgency.
    let findings = index.match_package(Some(&distro("debian", "11")), &openssl);
    let f = finding(&findings, "DSA-5621-1");
    assert_eq!(f.fixed_version.as_deref(), Some("1.1.1w-0+deb11u1"));
    assert_eq!(f.severity, Severity::High);

    // A release with no entry: only release-less advisories (here: none in range).
    let trixie = index.match_package(Some(&distro("debian", "13")), &openssl);
    assert!(trixie.is_empty(), "{trixie:?}");

    // No distribution known: only release-less advisories.
    let newer = package(Ecosystem::Debian, "openssl", "3.0.11-1~deb12u2");
    assert_eq!(
        ids(&index.match_package(None, &newer)),
        ["DEBIAN-CVE-2099-0002"]
    );
    let no_version = Distro {
        id: "debian".into(),
        ..Distro::default()
    };
    assert_eq!(
        ids(&index.match_package(Some(&no_version), &newer)),
        ["DEBIAN-CVE-2099-0002"]
    );

    // Ubuntu's openssl is not Debian's.
    let ubuntu_pkg = package(Ecosystem::Ubuntu, "openssl", "3.0.11-1~deb12u2");
    let ubuntu = index.match_package(Some(&distro("ubuntu", "12")), &ubuntu_pkg);
    assert!(ubuntu.is_empty(), "{ubuntu:?}");
}

#[test]
fn source_versions_are_compared() {
    let index = index();
    let bookworm = distro("debian", "12");

    // A binNMU: the binary is `+b1` of the source version, which is what is compared;
    // the finding shows the installed (binary) version.
    let binnmu = from_source(
        package(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2+b1"),
        "openssl",
        Some("3.0.11-1~deb12u2"),
    );
    let findings = index.match_package(Some(&bookworm), &binnmu);
    let f = finding(&findings, "DSA-5621-1");
    assert_eq!(f.installed_version, "3.0.11-1~deb12u2+b1");
    assert_eq!(f.fixed_version.as_deref(), Some("3.0.13-1~deb12u1"));

    // gcc-defaults 1.203 builds cpp 4:12.2.0-3: the binary version would compare above
    // the fix (epoch 4), the source version is below it.
    let cpp = from_source(
        package(Ecosystem::Debian, "cpp", "4:12.2.0-3"),
        "gcc-defaults",
        Some("1.203"),
    );
    let findings = index.match_package(Some(&bookworm), &cpp);
    let f = finding(&findings, "DEBIAN-CVE-2099-0001");
    assert_eq!(
        (f.package.as_str(), f.installed_version.as_str()),
        ("cpp", "4:12.2.0-3")
    );
    assert_eq!(f.fixed_version.as_deref(), Some("1.204"));
    assert_eq!(f.severity, Severity::Low);
    let fixed_cpp = from_source(
        package(Ecosystem::Debian, "cpp", "4:12.2.0-3"),
        "gcc-defaults",
        Some("1.204"),
    );
    assert!(index.match_package(Some(&bookworm), &fixed_cpp).is_empty());

    // Without the source name the binary name is looked up: no advisory names `cpp`.
    let bare = package(Ecosystem::Debian, "cpp", "4:12.2.0-3");
    assert!(index.match_package(Some(&bookworm), &bare).is_empty());
}

#[test]
fn ubuntu_lts_matches_and_pro_is_skipped() {
    let index = index();
    let jammy = distro("ubuntu", "22.04");
    let libssl = from_source(
        package(Ecosystem::Ubuntu, "libssl3", "3.0.2-0ubuntu1.12"),
        "openssl",
        None,
    );
    let findings = index.match_package(Some(&jammy), &libssl);
    let f = finding(&findings, "UBUNTU-CVE-2024-0727");
    assert_eq!(f.fixed_version.as_deref(), Some("3.0.2-0ubuntu1.14"));
    assert_eq!(f.severity, Severity::Low);
    let fixed = from_source(
        package(Ecosystem::Ubuntu, "libssl3", "3.0.2-0ubuntu1.14"),
        "openssl",
        None,
    );
    assert!(index.match_package(Some(&jammy), &fixed).is_empty());

    // 18.04 only has a Pro entry, which is not indexed.
    let bionic_pkg = package(Ecosystem::Ubuntu, "openssl", "1.1.1-1ubuntu2.1~18.04.23");
    assert!(
        index
            .match_package(Some(&distro("ubuntu", "18.04")), &bionic_pkg)
            .is_empty()
    );
}

#[test]
fn alpine_release_from_version_id() {
    let index = index();
    let libcrypto = from_source(
        package(Ecosystem::Alpine, "libcrypto3", "3.1.4-r2"),
        "openssl",
        None,
    );
    let findings = index.match_package(Some(&distro("alpine", "3.19.1")), &libcrypto);
    let f = finding(&findings, "ALPINE-CVE-2024-0727");
    assert_eq!(f.fixed_version.as_deref(), Some("3.1.4-r5"));
    assert_eq!(f.severity, Severity::Unknown);
    assert_eq!(f.score, None);
    assert_eq!(f.summary, None);

    // Boundaries: -r4 affected, -r5 and a later upstream release not.
    let r4 = from_source(
        package(Ecosystem::Alpine, "libcrypto3", "3.1.4-r4"),
        "openssl",
        None,
    );
    assert_eq!(
        index
            .match_package(Some(&distro("alpine", "3.19.0")), &r4)
            .len(),
        1
    );
    for version in ["3.1.4-r5", "3.1.5-r0", "3.1.4_p1-r0"] {
        let p = from_source(
            package(Ecosystem::Alpine, "libcrypto3", version),
            "openssl",
            None,
        );
        assert!(
            index
                .match_package(Some(&distro("alpine", "3.19.1")), &p)
                .is_empty(),
            "{version}"
        );
    }

    // 3.20 has its own entry and fix; 3.18 has none.
    let findings = index.match_package(Some(&distro("alpine", "3.20.3")), &libcrypto);
    assert_eq!(
        finding(&findings, "ALPINE-CVE-2024-0727")
            .fixed_version
            .as_deref(),
        Some("3.3.0-r0")
    );
    assert!(
        index
            .match_package(Some(&distro("alpine", "3.18.6")), &libcrypto)
            .is_empty()
    );
}

#[test]
fn rpm_vendor_and_major_release() {
    let index = index();
    let openssl = package(Ecosystem::Rpm, "openssl-libs", "1:3.0.7-24.el9");
    let openssl = from_source(openssl, "openssl", None);
    let findings = index.match_package(Some(&distro("rocky", "9.3")), &openssl);
    let f = finding(&findings, "RLSA-2024:1234");
    assert_eq!(f.fixed_version.as_deref(), Some("1:3.0.7-25.el9_3"));
    assert_eq!(f.severity, Severity::Medium);

    let fixed = from_source(
        package(Ecosystem::Rpm, "openssl-libs", "1:3.0.7-25.el9_3"),
        "openssl",
        None,
    );
    assert!(
        index
            .match_package(Some(&distro("rocky", "9.3")), &fixed)
            .is_empty()
    );
    // Without the epoch the installed version is lower than any epoch-1 fix.
    let no_epoch = from_source(
        package(Ecosystem::Rpm, "openssl-libs", "3.0.7-99.el9"),
        "openssl",
        None,
    );
    assert_eq!(
        index
            .match_package(Some(&distro("rocky", "9.3")), &no_epoch)
            .len(),
        1
    );
    // Rocky's advisories are not AlmaLinux's, nor Rocky 8's.
    assert!(
        index
            .match_package(Some(&distro("almalinux", "9.3")), &openssl)
            .is_empty()
    );
    assert!(
        index
            .match_package(Some(&distro("rocky", "8.9")), &openssl)
            .is_empty()
    );
    assert!(index.match_package(None, &openssl).is_empty());
}

#[test]
fn pypi_ecosystem_range_with_cvss_v3() {
    let index = index();
    let requests = package(Ecosystem::PyPI, "requests", "2.28.1");
    // The distribution does not matter for language packages.
    let findings = index.match_package(Some(&distro("alpine", "3.19.1")), &requests);
    // The withdrawn advisory on requests is not there.
    assert_eq!(ids(&findings), ["GHSA-j8r2-6x86-q33q"]);
    let f = &findings[0];
    assert_eq!(f.fixed_version.as_deref(), Some("2.31.0"));
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.score, Some(6.1));
    assert_eq!(f.aliases, ["CVE-2023-32681", "PYSEC-2023-74"]);
    assert_eq!(f.ecosystem, Ecosystem::PyPI);

    for (version, affected) in [
        ("2.2.1", false),
        ("2.3.0", true),
        ("2.31.0rc1", true),
        ("2.30.0.post1", true),
        ("2.31.0", false),
        ("2.31.0.post1", false),
        ("2.32.3", false),
    ] {
        let p = package(Ecosystem::PyPI, "requests", version);
        assert_eq!(
            !index.match_package(None, &p).is_empty(),
            affected,
            "{version}"
        );
    }

    // PEP 503 names: `Jinja2` in the advisory, `jinja2` installed, and the reverse.
    for name in ["jinja2", "Jinja2", "JINJA2"] {
        let p = package(Ecosystem::PyPI, name, "3.1.2");
        let findings = index.match_package(None, &p);
        let f = finding(&findings, "GHSA-h5c8-rqwp-cp95");
        assert_eq!(f.package, name);
        assert_eq!(f.fixed_version.as_deref(), Some("3.1.3"));
        assert_eq!((f.severity, f.score), (Severity::Medium, Some(5.4)));
    }
    assert!(
        index
            .match_package(None, &package(Ecosystem::PyPI, "jinja2", "3.1.3"))
            .is_empty()
    );
}

#[test]
fn npm_last_affected_is_inclusive() {
    let index = index();
    let ip = |version| package(Ecosystem::Npm, "ip", version);
    let findings = index.match_package(None, &ip("2.0.1"));
    let f = finding(&findings, "GHSA-2p57-rm9w-gvfp");
    assert_eq!(f.fixed_version, None);
    assert_eq!((f.severity, f.score), (Severity::High, Some(8.1)));
    assert_eq!(index.match_package(None, &ip("1.1.9")).len(), 1);
    assert_eq!(index.match_package(None, &ip("2.0.1-beta.1")).len(), 1);
    assert!(index.match_package(None, &ip("2.0.2")).is_empty());
    assert!(index.match_package(None, &ip("2.0.1+build")).len() == 1);
    // Names are exact for npm; another ecosystem's `ip` is something else.
    assert!(
        index
            .match_package(None, &package(Ecosystem::Npm, "IP", "1.0.0"))
            .is_empty()
    );
    assert!(
        index
            .match_package(None, &package(Ecosystem::PyPI, "ip", "1.0.0"))
            .is_empty()
    );
    // An unparsable installed version matches nothing.
    assert!(index.match_package(None, &ip("latest")).is_empty());
}

#[test]
fn go_versions_with_and_without_v() {
    let index = index();
    let net = |version| package(Ecosystem::Go, "golang.org/x/net", version);
    let findings = index.match_package(None, &net("v0.22.0"));
    let f = finding(&findings, "GO-2024-2687");
    assert_eq!(f.fixed_version.as_deref(), Some("0.23.0"));
    assert_eq!(f.severity, Severity::Unknown);
    assert_eq!(
        index
            .match_package(None, &net("v0.0.0-20220722155237-a158d28d115b"))
            .len(),
        1
    );
    assert!(index.match_package(None, &net("v0.23.0")).is_empty());
    assert!(index.match_package(None, &net("v0.24.0")).is_empty());

    // The standard library: two introduced/fixed pairs, toolchain spelling.
    let stdlib = |version| package(Ecosystem::Go, "stdlib", version);
    let fixed = |version| {
        index
            .match_package(None, &stdlib(version))
            .first()
            .map(|f| f.fixed_version.clone())
    };
    assert_eq!(fixed("go1.21.8"), Some(Some("1.21.9".into())));
    assert_eq!(fixed("v1.21.8"), Some(Some("1.21.9".into())));
    assert_eq!(fixed("go1.21.9"), None);
    assert_eq!(fixed("go1.22rc1"), Some(Some("1.22.2".into())));
    assert_eq!(fixed("go1.22.1"), Some(Some("1.22.2".into())));
    assert_eq!(fixed("go1.22.2"), None);
}

#[test]
fn maven_two_ranges() {
    let index = index();
    let log4j = |version| {
        package(
            Ecosystem::Maven,
            "org.apache.logging.log4j:log4j-core",
            version,
        )
    };
    let fixed = |version| {
        index
            .match_package(None, &log4j(version))
            .first()
            .map(|f| (f.fixed_version.clone(), f.severity, f.score))
    };
    let critical = |v: &str| Some((Some(v.to_owned()), Severity::Critical, Some(10.0)));
    assert_eq!(fixed("2.14.1"), critical("2.15.0"));
    assert_eq!(fixed("2.13.0"), critical("2.15.0"));
    assert_eq!(fixed("2.12.1"), critical("2.12.2"));
    assert_eq!(fixed("2.0-beta9"), critical("2.12.2"));
    assert_eq!(fixed("2.0-rc1"), critical("2.12.2"));
    assert_eq!(fixed("2.0-beta8"), None);
    assert_eq!(fixed("2.12.2"), None);
    assert_eq!(fixed("2.15.0"), None);
    assert_eq!(fixed("2.17.1"), None);
    assert_eq!(fixed("1.2.17"), None);
}

#[test]
fn versions_lists_and_broken_ranges() {
    let index = index();
    // `versions[]` lists 2.10 for Jinja2; the range says so too, and gives the fix.
    let findings = index.match_package(None, &package(Ecosystem::PyPI, "jinja2", "2.10"));
    assert_eq!(
        finding(&findings, "GHSA-h5c8-rqwp-cp95")
            .fixed_version
            .as_deref(),
        Some("3.1.3")
    );
    // A version that does not parse as PEP 440 cannot be placed in a range, but
    // `versions[]` listing it literally still matches.
    let listed = parse_advisory(
        br#"{"id": "PYSEC-0000-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "odd"},
             "versions": ["1.0-weird-build"],
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}"#,
    )
    .unwrap();
    let index2: AdvisoryIndex = [listed].into_iter().collect();
    let findings = index2.match_package(None, &package(Ecosystem::PyPI, "odd", "1.0-weird-build"));
    assert_eq!(ids(&findings), ["PYSEC-0000-1"]);
    // No range can be evaluated against an unparsable version: no fixed version.
    assert_eq!(findings[0].fixed_version, None);

    // The range with the unparsable fix is skipped, the GIT range ignored, the good
    // range still matches.
    let left_pad = |version| package(Ecosystem::Npm, "left-pad", version);
    assert!(index.match_package(None, &left_pad("1.0.0")).is_empty());
    let findings = index.match_package(None, &left_pad("1.2.0"));
    assert_eq!(ids(&findings), ["GHSA-bbbb-bbbb-bbbb"]);
    assert_eq!(findings[0].fixed_version.as_deref(), Some("1.3.0"));
    assert!(index.match_package(None, &left_pad("1.3.0")).is_empty());
}

#[test]
fn inventory_sorted_and_deduplicated() {
    let index = index();
    let mut libssl = from_source(
        package(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2"),
        "openssl",
        None,
    );
    libssl.layer = 0;
    let openssl = from_source(
        package(Ecosystem::Debian, "openssl", "3.0.11-1~deb12u2"),
        "openssl",
        None,
    );
    let mut ip_old = package(Ecosystem::Npm, "ip", "1.1.8");
    ip_old.layer = 2;
    ip_old.path = "app/node_modules/a/node_modules/ip/package.json".into();
    let mut ip_new = package(Ecosystem::Npm, "ip", "2.0.0");
    ip_new.layer = 3;
    ip_new.path = "app/node_modules/ip/package.json".into();
    let mut requests = package(Ecosystem::PyPI, "requests", "2.28.1");
    requests.layer = 1;
    let log4j = package(
        Ecosystem::Maven,
        "org.apache.logging.log4j:log4j-core",
        "2.14.1",
    );
    let safe = package(Ecosystem::PyPI, "urllib3", "2.2.2");
    let mut packages = vec![libssl, openssl, ip_new, ip_old, requests, log4j, safe];
    packages.sort();
    let inventory = Inventory {
        distro: Some(distro("debian", "12")),
        packages,
    };
    let findings = index.match_inventory(&inventory);
    let summary: Vec<(&str, &str, Severity)> = findings
        .iter()
        .map(|f| (f.id.as_str(), f.package.as_str(), f.severity))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "GHSA-jfh8-c2jp-5v3q",
                "org.apache.logging.log4j:log4j-core",
                Severity::Critical
            ),
            ("GHSA-2p57-rm9w-gvfp", "ip", Severity::High),
            ("DSA-5621-1", "libssl3", Severity::Medium),
            ("DSA-5621-1", "openssl", Severity::Medium),
            ("GHSA-j8r2-6x86-q33q", "requests", Severity::Medium),
            ("DEBIAN-CVE-2099-0002", "libssl3", Severity::Unknown),
            ("DEBIAN-CVE-2099-0002", "openssl", Severity::Unknown),
        ]
    );
    // One finding for the two copies of `ip`: the lower version.
    let ip = finding(&findings, "GHSA-2p57-rm9w-gvfp");
    assert_eq!((ip.installed_version.as_str(), ip.layer), ("1.1.8", 2));
    let requests = finding(&findings, "GHSA-j8r2-6x86-q33q");
    assert_eq!(requests.layer, 1);

    // Findings serialise with upper-case severities and camelCase names.
    let json = serde_json::to_value(&findings[0]).unwrap();
    assert_eq!(json["severity"], "CRITICAL");
    assert_eq!(json["fixedVersion"], "2.15.0");
    assert_eq!(json["installedVersion"], "2.14.1");
    assert_eq!(json["ecosystem"], "Maven");
}

#[test]
fn index_from_a_directory_and_a_zip() {
    let dir = tempfile::tempdir().unwrap();
    for (i, json) in ALL.iter().enumerate() {
        let sub = dir.path().join(if i % 2 == 0 { "even" } else { "odd" });
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("{i}.json")), json).unwrap();
    }
    let from_dir: AdvisoryIndex = read_dir(dir.path()).map(Result::unwrap).collect();
    assert_eq!(
        from_dir.len(),
        ALL.len() - 1,
        "the withdrawn one is skipped"
    );

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (i, json) in ALL.iter().enumerate() {
        zip.start_file(format!("{i}.json"), options).unwrap();
        std::io::Write::write_all(&mut zip, json.as_bytes()).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let from_zip: AdvisoryIndex = read_zip(std::io::Cursor::new(bytes))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(from_zip.len(), ALL.len() - 1);

    let requests = package(Ecosystem::PyPI, "requests", "2.28.1");
    assert_eq!(
        from_zip.match_package(None, &requests),
        from_dir.match_package(None, &requests)
    );
    assert_eq!(from_zip.match_package(None, &requests).len(), 1);
}

/// A database that stores each advisory under `advisory_keys` and a scan that looks up
/// `package_keys` find the same advisories as an index of everything.
#[test]
fn storage_keys_find_what_the_full_index_finds() {
    use std::collections::BTreeMap;

    use registry_scanner::matcher::{advisory_keys, package_keys};

    let full = index();
    let mut stored: BTreeMap<String, Vec<registry_scanner::osv::Advisory>> = BTreeMap::new();
    for json in ALL {
        let advisory = parse_advisory(json.as_bytes()).unwrap();
        for key in advisory_keys(&advisory) {
            stored.entry(key).or_default().push(advisory.clone());
        }
    }
    let inventory = Inventory {
        distro: Some(distro("debian", "12")),
        packages: vec![
            from_source(
                package(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u2"),
                "openssl",
                None,
            ),
            package(Ecosystem::PyPI, "Jinja2", "3.1.2"),
            package(Ecosystem::Npm, "ip", "2.0.0"),
        ],
    };
    let looked_up: AdvisoryIndex = inventory
        .packages
        .iter()
        .flat_map(|p| package_keys(inventory.distro.as_ref(), p))
        .filter_map(|k| stored.get(&k))
        .flatten()
        .cloned()
        .collect();
    let expected = full.match_inventory(&inventory);
    assert!(!expected.is_empty(), "the fixture matches something");
    assert_eq!(looked_up.match_inventory(&inventory), expected);
}
