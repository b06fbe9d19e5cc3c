//! Parses dpkg databases: `var/lib/dpkg/status` and the per-package files of
//! `var/lib/dpkg/status.d/` that distroless images carry instead. Stanzas of
//! `Field: value` lines separated by blank lines; continuation lines (starting with a space
//! or tab) belong to the previous field and are ignored here.

use crate::{Ecosystem, Package};

/// The installed packages of a dpkg status file.
///
/// With `require_status` (the main `status` file), a stanza counts only when the third word
/// of its `Status:` is `installed` (`install ok installed`, and also `hold ok installed`
/// and `deinstall ok installed`, whose files are still on disk); `half-installed`,
/// `config-files`, `not-installed`… are skipped. Without it (`status.d` files, which have no
/// `Status:`), every stanza counts. Stanzas without `Package:` or `Version:` are skipped.
///
/// `Source: openssl (3.0.11-1~deb12u2)` gives the source name and version (the version
/// only when it differs from `Version:`); `Source: perl` gives the name only.
pub fn parse_status(
    data: &[u8],
    ecosystem: Ecosystem,
    path: &str,
    layer: usize,
    require_status: bool,
) -> Vec<Package> {
    let text = String::from_utf8_lossy(data);
    let mut packages = Vec::new();
    let mut stanza = Stanza::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(package) =
                stanza
                    .take()
                    .into_package(ecosystem, path, layer, require_status)
            {
                packages.push(package);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        let field = field.trim();
        if field.eq_ignore_ascii_case("Package") {
            stanza.package = Some(value);
        } else if field.eq_ignore_ascii_case("Version") {
            stanza.version = Some(value);
        } else if field.eq_ignore_ascii_case("Source") {
            stanza.source = Some(value);
        } else if field.eq_ignore_ascii_case("Status") {
            stanza.status = Some(value);
        }
    }
    packages
}

#[derive(Default)]
struct Stanza {
    package: Option<String>,
    version: Option<String>,
    source: Option<String>,
    status: Option<String>,
}

impl Stanza {
    fn take(&mut self) -> Stanza {
        std::mem::take(self)
    }

    fn into_package(
        self,
        ecosystem: Ecosystem,
        path: &str,
        layer: usize,
        require_status: bool,
    ) -> Option<Package> {
        let name = self.package.filter(|name| !name.is_empty())?;
        let version = self.version.filter(|version| !version.is_empty())?;
        if require_status
            && self
                .status
                .as_deref()
                .and_then(|status| status.split_whitespace().nth(2))
                != Some("installed")
        {
            return None;
        }
        let (source_name, source_version) = match self.source.as_deref() {
            Some(source) => parse_source(source),
            None => (None, None),
        };
        let source_version = source_version.filter(|source_version| *source_version != version);
        Some(Package {
            ecosystem,
            name,
            version,
            source_name,
            source_version,
            layer,
            path: path.to_owned(),
        })
    }
}

/// `openssl (3.0.11-1~deb12u2)` → name and version; `perl` → name.
fn parse_source(source: &str) -> (Option<String>, Option<String>) {
    let (name, rest) = match source.split_once('(') {
        Some((name, rest)) => (name.trim(), Some(rest)),
        None => (source.trim(), None),
    };
    let version = rest
        .and_then(|rest| rest.split(')').next())
        .map(str::trim)
        .filter(|version| !version.is_empty())
        .map(str::to_owned);
    ((!name.is_empty()).then(|| name.to_owned()), version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 6166
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.11-1~deb12u2
Depends: libc6 (>= 2.34)
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation of the SSL and
 .
 Package: not-a-field
Homepage: https://www.openssl.org/

Package: libperl5.36
Status: install ok installed
Source: perl (5.36.0-7+deb12u1)
Version: 5.36.0-7+deb12u1
Description: shared Perl library

Package: libgcc-s1
Status: hold ok installed
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14+b1

Package: old-config
Status: deinstall ok config-files
Version: 1.0

Package: broken
Status: install reinstreq half-installed
Version: 2.0

Package: no-version
Status: install ok installed
";

    #[test]
    fn installed_packages_with_sources() {
        let packages = parse_status(
            STATUS.as_bytes(),
            Ecosystem::Debian,
            "var/lib/dpkg/status",
            2,
            true,
        );
        let summary: Vec<_> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source_name.as_deref(),
                    p.source_version.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("libssl3", "3.0.11-1~deb12u2", Some("openssl"), None),
                ("libperl5.36", "5.36.0-7+deb12u1", Some("perl"), None),
                (
                    "libgcc-s1",
                    "12.2.0-14+b1",
                    Some("gcc-12"),
                    Some("12.2.0-14")
                ),
            ]
        );
        assert!(packages.iter().all(|p| p.layer == 2
            && p.path == "var/lib/dpkg/status"
            && p.ecosystem == Ecosystem::Debian));
    }

    #[test]
    fn status_d_files_have_no_status() {
        let data = b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n";
        let packages = parse_status(
            data,
            Ecosystem::Debian,
            "var/lib/dpkg/status.d/base-files",
            0,
            false,
        );
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].name, "base-files");
        assert_eq!(packages[0].source_name, None);
        assert!(parse_status(data, Ecosystem::Debian, "x", 0, true).is_empty());
    }

    #[test]
    fn crlf_and_binnmu_source_versions() {
        let data = b"Package: a\r\nStatus: install ok installed\r\nVersion: 1:2.0-1+b2\r\nSource: a-src (1:2.0-1)\r\n\r\nPackage: b\r\nStatus: install ok installed\r\nVersion: 1\r\n";
        let packages = parse_status(data, Ecosystem::Ubuntu, "s", 0, true);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].source_version.as_deref(), Some("1:2.0-1"));
        assert_eq!(packages[1].version, "1");
    }
}
