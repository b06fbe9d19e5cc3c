//! The image scanner: reads an image's layers as streams and finds the distribution and
//! its OS packages (dpkg, apk, rpm) and language packages (Python, npm, Cargo, Go, Maven)
//! of the final filesystem ([`layers`], [`detect`]); writes a CycloneDX SBOM ([`sbom`]);
//! compares versions the way each ecosystem does ([`versions`]); reads OSV advisories
//! ([`osv`]) and their severities ([`severity`]) and matches packages against them
//! ([`matcher`]). No AWS, no HTTP, no async: callers run it on a blocking thread.

pub mod detect;
pub mod layers;
pub mod matcher;
pub mod osv;
pub mod sbom;
pub mod severity;
pub mod versions;

use serde::{Deserialize, Serialize};

/// Where a package comes from, as OSV names ecosystems (without a release suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ecosystem {
    /// dpkg packages of Debian (and derivatives reporting `ID=debian`).
    Debian,
    /// dpkg packages of Ubuntu.
    Ubuntu,
    /// apk packages of Alpine.
    Alpine,
    /// rpm packages (Red Hat, Rocky, Alma, Fedora, SUSE…): compared by rpm EVR.
    Rpm,
    PyPI,
    #[serde(rename = "npm")]
    Npm,
    #[serde(rename = "crates.io")]
    CratesIo,
    Go,
    Maven,
}

impl Ecosystem {
    /// The OSV ecosystem name (`Debian`, `PyPI`, `crates.io`, …).
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Rpm => "Red Hat",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
        }
    }

    /// The package-URL type (`deb`, `apk`, `rpm`, `pypi`, `npm`, `cargo`, `golang`, `maven`).
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Debian | Ecosystem::Ubuntu => "deb",
            Ecosystem::Alpine => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::PyPI => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "cargo",
            Ecosystem::Go => "golang",
            Ecosystem::Maven => "maven",
        }
    }
}

/// The distribution of an image, from `os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Distro {
    /// `ID` (`debian`, `alpine`, `ubuntu`, `rhel`, …).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`, …).
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    pub codename: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
}

/// One package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// The source package (dpkg `Source:`, apk origin, rpm source name), when it differs
    /// or is known: OS advisories name source packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// The source package's version when it differs from `version` (dpkg binNMUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Index (0 = base) of the layer that last wrote the file the package was found in.
    pub layer: usize,
    /// The file it was found in (`var/lib/dpkg/status`, a `METADATA`, a binary, …).
    pub path: String,
}

impl Package {
    /// The name advisories use: the source package for OS packages, else the name.
    pub fn advisory_name(&self) -> &str {
        self.source_name.as_deref().unwrap_or(&self.name)
    }

    /// The version advisories compare: the source version for OS packages, else the
    /// version.
    pub fn advisory_version(&self) -> &str {
        self.source_version.as_deref().unwrap_or(&self.version)
    }
}

/// What a scan of an image's filesystem found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub distro: Option<Distro>,
    /// Sorted, without duplicates.
    pub packages: Vec<Package>,
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading layer {layer}: {message}")]
    Layer { layer: usize, message: String },
    #[error("unsupported layer media type {0}")]
    MediaType(String),
    #[error("invalid vulnerability data: {0}")]
    Advisory(String),
}
