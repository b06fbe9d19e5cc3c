//! Parses Python package metadata: `*.dist-info/METADATA` (wheels, pip), `*.egg-info/PKG-INFO`
//! and `*.egg-info` files (setuptools, distutils; Debian's `dist-packages`). Both are
//! email-style headers; only `Name:` and `Version:` of the header block are read.

use crate::{Ecosystem, Package};

/// The package a metadata file describes; `None` without a name or a version.
pub fn parse_metadata(data: &[u8], path: &str, layer: usize) -> Option<Package> {
    let text = String::from_utf8_lossy(data);
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            // The end of the headers; the description follows.
            break;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.is_none() && field.eq_ignore_ascii_case("Name") && !value.is_empty() {
            name = Some(normalize_name(value));
        } else if version.is_none() && field.eq_ignore_ascii_case("Version") && !value.is_empty() {
            version = Some(value.to_owned());
        }
    }
    Some(Package {
        ecosystem: Ecosystem::PyPI,
        name: name?,
        version: version?,
        source_name: None,
        source_version: None,
        layer,
        path: path.to_owned(),
    })
}

/// A project name normalised as PEP 503 says: lower case, runs of `-`, `_` and `.` as one
/// `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_metadata() {
        let data = b"Metadata-Version: 2.1\nName: Flask_SQLAlchemy\nVersion: 3.1.1\n\
Summary: Add SQLAlchemy support\nRequires-Dist: flask>=2.2.5\n\n\
Name: not-this\nVersion: 0\n";
        let package = parse_metadata(
            data,
            "usr/local/lib/python3.12/site-packages/flask_sqlalchemy-3.1.1.dist-info/METADATA",
            4,
        )
        .unwrap();
        assert_eq!(package.name, "flask-sqlalchemy");
        assert_eq!(package.version, "3.1.1");
        assert_eq!(package.ecosystem, Ecosystem::PyPI);
        assert_eq!(package.layer, 4);
    }

    #[test]
    fn egg_info_with_crlf() {
        let data = b"Metadata-Version: 1.1\r\nName: zope.interface\r\nVersion: 5.5.2\r\n";
        let package = parse_metadata(data, "p", 0).unwrap();
        assert_eq!(package.name, "zope-interface");
        assert_eq!(package.version, "5.5.2");
        assert_eq!(parse_metadata(b"Name: x\n", "p", 0), None);
    }

    #[test]
    fn pep_503_names() {
        assert_eq!(normalize_name("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize_name("FRIENDLY-._BARD"), "friendly-bard");
        assert_eq!(normalize_name("ruamel.yaml.clib"), "ruamel-yaml-clib");
    }
}
