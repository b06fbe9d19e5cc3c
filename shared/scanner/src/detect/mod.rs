//! Finds the distribution and the packages of an image's final filesystem: which files
//! the layer reader keeps ([`classify`]), parsers of their contents (one submodule per
//! format) and the OS-level detection that needs the final filesystem ([`detect_os`]).
//!
//! Two sorts of detector:
//! - whole-file parsers of small metadata files picked by path: [`os_release`], [`dpkg`],
//!   [`apk`], [`rpm`] (kept until the last layer, since the distribution decides the
//!   ecosystem and symlinks may point at them), and [`python`], [`npm`], [`cargo`] and
//!   loose Maven `pom.properties` ([`java`]), parsed as soon as they are read (their
//!   packages depend on nothing else, so only the packages are kept, not the files);
//! - streaming detectors for files that cannot be kept whole: [`go`] (the build info of Go
//!   binaries) and [`java`] (JAR/WAR/EAR archives).

pub mod apk;
pub mod cargo;
pub mod dpkg;
pub mod go;
pub mod java;
pub mod npm;
pub mod os_release;
pub mod python;
pub mod rpm;

use crate::{Distro, Ecosystem, Package};

/// The largest metadata file kept or parsed whole (64 MiB); bigger ones are skipped with a
/// warning. rpm databases are the largest expected (tens of MiB for big images).
pub const MAX_KEPT_FILE: u64 = 64 << 20;

/// What a file picked by path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `os-release` (any directory, so that symlinks to unusual places resolve).
    OsRelease,
    /// `var/lib/dpkg/status`.
    DpkgStatus,
    /// A file of `var/lib/dpkg/status.d/` (distroless images), not `*.md5sums`.
    DpkgStatusD,
    /// `lib/apk/db/installed` or `usr/lib/apk/db/installed`.
    ApkInstalled,
    /// `var/lib/rpm/rpmdb.sqlite` or `usr/lib/sysimage/rpm/rpmdb.sqlite`.
    RpmSqlite,
    /// The write-ahead log next to an rpm SQLite database (`rpmdb.sqlite-wal`).
    RpmSqliteWal,
    /// An rpm database in a format not read (BerkeleyDB `Packages`, NDB `Packages.db`):
    /// only its presence is remembered, to warn.
    RpmUnsupported,
    /// `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` or a `*.egg-info` file.
    PythonMetadata,
    /// `node_modules/<name>/package.json` or `node_modules/@scope/<name>/package.json`.
    NpmPackageJson,
    /// `Cargo.lock`.
    CargoLock,
    /// `META-INF/maven/<groupId>/<artifactId>/pom.properties` outside an archive.
    PomProperties,
}

impl Kind {
    /// Whether the file is kept until the final filesystem is known (OS metadata), rather
    /// than parsed when read ([`parse_standalone`]).
    pub fn is_os(self) -> bool {
        matches!(
            self,
            Kind::OsRelease
                | Kind::DpkgStatus
                | Kind::DpkgStatusD
                | Kind::ApkInstalled
                | Kind::RpmSqlite
                | Kind::RpmSqliteWal
                | Kind::RpmUnsupported
        )
    }

    /// Whether the content is needed (not for [`Kind::RpmUnsupported`]).
    pub fn needs_content(self) -> bool {
        self != Kind::RpmUnsupported
    }
}

/// Where the OS detectors look, in order of preference, before following symlinks.
const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d";
const APK_INSTALLED: [&str; 2] = ["lib/apk/db/installed", "usr/lib/apk/db/installed"];
const RPM_SQLITE: [&str; 2] = [
    "var/lib/rpm/rpmdb.sqlite",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
];
const RPM_UNSUPPORTED: [&str; 4] = [
    "var/lib/rpm/Packages",
    "var/lib/rpm/Packages.db",
    "usr/lib/sysimage/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages.db",
];

/// What a regular file at `path` (normalised: no leading `/` or `./`) is kept for, if
/// anything. JAR archives and Go binaries are not classified here: they are streamed.
pub fn classify(path: &str) -> Option<Kind> {
    if path == DPKG_STATUS {
        return Some(Kind::DpkgStatus);
    }
    if APK_INSTALLED.contains(&path) {
        return Some(Kind::ApkInstalled);
    }
    if RPM_SQLITE.contains(&path) {
        return Some(Kind::RpmSqlite);
    }
    if let Some(db) = path.strip_suffix("-wal")
        && RPM_SQLITE.contains(&db)
    {
        return Some(Kind::RpmSqliteWal);
    }
    if RPM_UNSUPPORTED.contains(&path) {
        return Some(Kind::RpmUnsupported);
    }
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    };
    if name == "os-release" {
        return Some(Kind::OsRelease);
    }
    if parent == DPKG_STATUS_D && !name.ends_with(".md5sums") && !name.starts_with('.') {
        return Some(Kind::DpkgStatusD);
    }
    if (name == "METADATA" && parent.ends_with(".dist-info"))
        || (name == "PKG-INFO" && parent.ends_with(".egg-info"))
        || (name.ends_with(".egg-info") && name.len() > ".egg-info".len())
    {
        return Some(Kind::PythonMetadata);
    }
    if name == "package.json" && npm::is_module_manifest(path) {
        return Some(Kind::NpmPackageJson);
    }
    if name == "Cargo.lock" {
        return Some(Kind::CargoLock);
    }
    if name == "pom.properties" && java::is_pom_properties(path) {
        return Some(Kind::PomProperties);
    }
    None
}

/// Whether a symlink at `path` must be remembered: it is a file [`classify`] picks, or a
/// directory on the way to one the OS detectors look up (`etc`, `var/lib/rpm`, `lib`, …),
/// so that `etc/os-release -> ../usr/lib/os-release` or `var/lib/rpm ->
/// ../../usr/lib/sysimage/rpm` resolve. The set is fixed, so the memory is too.
pub fn is_symlink_anchor(path: &str) -> bool {
    if classify(path).is_some() {
        return true;
    }
    OS_RELEASE
        .iter()
        .chain([DPKG_STATUS, DPKG_STATUS_D].iter())
        .chain(APK_INSTALLED.iter())
        .chain(RPM_SQLITE.iter())
        .any(|looked_up| {
            *looked_up == path
                || looked_up
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Parses a file whose packages depend on its content alone (a [`Kind`] that is not
/// [`Kind::is_os`]) into packages found at `path`, written by layer `layer`.
pub fn parse_standalone(
    kind: Kind,
    path: &str,
    layer: usize,
    data: &[u8],
) -> Result<Vec<Package>, String> {
    match kind {
        Kind::PythonMetadata => Ok(python::parse_metadata(data, path, layer)
            .into_iter()
            .collect()),
        Kind::NpmPackageJson => Ok(npm::parse_package_json(data, path, layer)?
            .into_iter()
            .collect()),
        Kind::CargoLock => Ok(cargo::parse_lock(data, path, layer)),
        Kind::PomProperties => Ok(java::parse_pom_properties(data, path, layer)
            .into_iter()
            .collect()),
        _ => Err(format!("{kind:?} files are not parsed on their own")),
    }
}

/// A kept regular file of the final filesystem.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    /// Its path, after following symlinks.
    pub path: &'a str,
    /// The index of the layer that last wrote it.
    pub layer: usize,
    pub data: &'a [u8],
}

/// The kept files of the final filesystem, as the OS detectors see it.
pub trait FinalFs {
    /// The kept regular file at `path`, after following symlinks (of its directories and
    /// of itself).
    fn lookup(&self, path: &str) -> Option<File<'_>>;
    /// The kept regular files directly in the directory `dir` (after following symlinks;
    /// not those of the files in it), in path order.
    fn list(&self, dir: &str) -> Vec<File<'_>>;
}

/// What the OS detectors found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsFindings {
    pub distro: Option<Distro>,
    pub packages: Vec<Package>,
    pub warnings: Vec<String>,
}

/// Finds the distribution (`etc/os-release`, else `usr/lib/os-release`) and the OS
/// packages: dpkg (`var/lib/dpkg/status` and `var/lib/dpkg/status.d/*`), apk
/// (`lib/apk/db/installed`, else `usr/lib/apk/db/installed`) and rpm (SQLite
/// `var/lib/rpm/rpmdb.sqlite`, else `usr/lib/sysimage/rpm/rpmdb.sqlite`).
pub fn detect_os(fs: &dyn FinalFs) -> OsFindings {
    let mut found = OsFindings {
        distro: OS_RELEASE
            .iter()
            .find_map(|path| fs.lookup(path))
            .and_then(|file| os_release::parse(file.data)),
        ..OsFindings::default()
    };
    let dpkg_ecosystem = match found.distro.as_ref() {
        Some(distro) if distro.id == "ubuntu" => Ecosystem::Ubuntu,
        _ => Ecosystem::Debian,
    };
    if let Some(file) = fs.lookup(DPKG_STATUS) {
        found.packages.extend(dpkg::parse_status(
            file.data,
            dpkg_ecosystem,
            file.path,
            file.layer,
            true,
        ));
    }
    for file in fs.list(DPKG_STATUS_D) {
        if classify(file.path) == Some(Kind::DpkgStatusD) {
            found.packages.extend(dpkg::parse_status(
                file.data,
                dpkg_ecosystem,
                file.path,
                file.layer,
                false,
            ));
        }
    }
    if let Some(file) = APK_INSTALLED.iter().find_map(|path| fs.lookup(path)) {
        found
            .packages
            .extend(apk::parse_installed(file.data, file.path, file.layer));
    }
    if let Some(file) = RPM_SQLITE.iter().find_map(|path| fs.lookup(path)) {
        let wal_path = format!("{}-wal", file.path);
        let wal = fs.lookup(&wal_path).map(|wal| wal.data);
        match rpm::read_sqlite(file.data, wal, file.path, file.layer) {
            Ok(packages) => found.packages.extend(packages),
            Err(message) => found.warnings.push(format!("{}: {message}", file.path)),
        }
    } else if let Some(file) = RPM_UNSUPPORTED.iter().find_map(|path| fs.lookup(path)) {
        found.warnings.push(format!(
            "{}: BerkeleyDB and NDB rpm databases are not read; rpm packages not listed",
            file.path
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn classifies_paths() {
        assert_eq!(classify("etc/os-release"), Some(Kind::OsRelease));
        assert_eq!(classify("var/lib/dpkg/status"), Some(Kind::DpkgStatus));
        assert_eq!(classify("var/lib/dpkg/status-old"), None);
        assert_eq!(
            classify("var/lib/dpkg/status.d/libc6"),
            Some(Kind::DpkgStatusD)
        );
        assert_eq!(classify("var/lib/dpkg/status.d/libc6.md5sums"), None);
        assert_eq!(classify("lib/apk/db/installed"), Some(Kind::ApkInstalled));
        assert_eq!(
            classify("usr/lib/sysimage/rpm/rpmdb.sqlite"),
            Some(Kind::RpmSqlite)
        );
        assert_eq!(
            classify("var/lib/rpm/rpmdb.sqlite-wal"),
            Some(Kind::RpmSqliteWal)
        );
        assert_eq!(classify("var/lib/rpm/Packages"), Some(Kind::RpmUnsupported));
        assert_eq!(
            classify("usr/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA"),
            Some(Kind::PythonMetadata)
        );
        assert_eq!(
            classify("usr/lib/python3/dist-packages/six-1.16.0.egg-info"),
            Some(Kind::PythonMetadata)
        );
        assert_eq!(
            classify("app/node_modules/@types/node/package.json"),
            Some(Kind::NpmPackageJson)
        );
        assert_eq!(classify("app/package.json"), None);
        assert_eq!(classify("src/app/Cargo.lock"), Some(Kind::CargoLock));
        assert_eq!(
            classify("opt/app/META-INF/maven/org.slf4j/slf4j-api/pom.properties"),
            Some(Kind::PomProperties)
        );
        assert_eq!(classify("usr/bin/ls"), None);
    }

    #[test]
    fn symlink_anchors_are_the_lookup_paths_and_their_directories() {
        for path in [
            "etc",
            "etc/os-release",
            "usr",
            "usr/lib",
            "var/lib/rpm",
            "lib",
            "var/lib/dpkg/status.d",
        ] {
            assert!(is_symlink_anchor(path), "{path}");
        }
        for path in ["usr/bin", "et", "var/lib/rpm2", "usr/share/zoneinfo/UTC"] {
            assert!(!is_symlink_anchor(path), "{path}");
        }
    }

    /// A final filesystem without symlinks.
    struct Plain(BTreeMap<&'static str, &'static str>);

    impl FinalFs for Plain {
        fn lookup(&self, path: &str) -> Option<File<'_>> {
            self.0.get_key_value(path).map(|(path, data)| File {
                path,
                layer: 0,
                data: data.as_bytes(),
            })
        }
        fn list(&self, dir: &str) -> Vec<File<'_>> {
            self.0
                .iter()
                .filter(|(path, _)| {
                    path.rsplit_once('/')
                        .is_some_and(|(parent, _)| parent == dir)
                })
                .map(|(path, data)| File {
                    path,
                    layer: 0,
                    data: data.as_bytes(),
                })
                .collect()
        }
    }

    #[test]
    fn ubuntu_dpkg_packages_are_ubuntu() {
        let fs = Plain(BTreeMap::from([
            (
                "etc/os-release",
                "ID=ubuntu\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n",
            ),
            (
                "var/lib/dpkg/status",
                "Package: bash\nStatus: install ok installed\nVersion: 5.1-6ubuntu1\n",
            ),
            (
                "var/lib/dpkg/status.d/tzdata",
                "Package: tzdata\nVersion: 2024a-0ubuntu0.22.04\n",
            ),
            ("var/lib/dpkg/status.d/tzdata.md5sums", "abc  usr/share/x\n"),
        ]));
        let found = detect_os(&fs);
        assert_eq!(found.distro.unwrap().version_id.as_deref(), Some("22.04"));
        let names: Vec<_> = found
            .packages
            .iter()
            .map(|p| (p.ecosystem, p.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [(Ecosystem::Ubuntu, "bash"), (Ecosystem::Ubuntu, "tzdata")]
        );
    }

    #[test]
    fn unsupported_rpm_database_is_a_warning() {
        let fs = Plain(BTreeMap::from([("var/lib/rpm/Packages", "")]));
        let found = detect_os(&fs);
        assert!(found.packages.is_empty());
        assert_eq!(found.warnings.len(), 1);
    }
}
