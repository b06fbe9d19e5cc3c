//! Integration tests of `registry_scanner::layers`: layers built here as tar archives
//! (plain, gzip, zstd) and scanned for the distribution and the packages of the final
//! filesystem: whiteouts, opaque directories, symlinks, hard links, Go binaries, JARs,
//! rpm databases.

use std::io::{Cursor, Write};

use registry_scanner::layers::{LayerInput, LayerScan, scan_layers, scan_layers_with_warnings};
use registry_scanner::{Ecosystem, Inventory, Package, ScanError};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One entry of a layer.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Exec(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn tar(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        match entry {
            E::File(path, data) | E::Exec(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if matches!(entry, E::Exec(..)) {
                    0o755
                } else {
                    0o644
                });
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
            E::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            E::Symlink(path, target) | E::Hardlink(path, target) => {
                header.set_entry_type(if matches!(entry, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn scan_with_warnings(layers: Vec<(&str, Vec<u8>)>) -> LayerScan {
    scan_layers_with_warnings(layers.into_iter().map(|(media_type, data)| LayerInput {
        media_type: media_type.to_owned(),
        reader: Cursor::new(data),
    }))
    .unwrap()
}

fn scan(layers: Vec<(&str, Vec<u8>)>) -> Inventory {
    let scan = scan_with_warnings(layers);
    assert_eq!(scan.warnings, Vec::<String>::new());
    let mut sorted = scan.inventory.packages.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted, scan.inventory.packages,
        "sorted, without duplicates"
    );
    scan.inventory
}

/// (ecosystem, name, version, layer, path) of each package.
fn summary(packages: &[Package]) -> Vec<(Ecosystem, &str, &str, usize, &str)> {
    packages
        .iter()
        .map(|p| {
            (
                p.ecosystem,
                p.name.as_str(),
                p.version.as_str(),
                p.layer,
                p.path.as_str(),
            )
        })
        .collect()
}

const DEBIAN_OS_RELEASE: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";

const STATUS_BOTH: &[u8] = b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n\
Source: bash (5.2.15-2)\n\nPackage: curl\nStatus: install ok installed\n\
Version: 7.88.1-10+deb12u5\n\n";
const STATUS_BASH: &[u8] = b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n\
Source: bash (5.2.15-2)\n\nPackage: curl\nStatus: deinstall ok config-files\n\
Version: 7.88.1-10+deb12u5\n\n";

#[test]
fn a_dpkg_package_removed_in_a_later_layer_is_gone() {
    let base = tar(&[
        E::Dir("./"),
        E::Dir("./etc/"),
        E::File("./etc/os-release", DEBIAN_OS_RELEASE),
        E::Dir("./var/lib/dpkg/"),
        E::File("./var/lib/dpkg/status", STATUS_BOTH),
    ]);
    let removal = tar(&[E::File("var/lib/dpkg/status", STATUS_BASH)]);
    let inventory = scan(vec![(TAR_GZIP, gzip(&base)), (DOCKER_GZIP, gzip(&removal))]);
    let distro = inventory.distro.unwrap();
    assert_eq!(
        (distro.id.as_str(), distro.version_id.as_deref()),
        ("debian", Some("12"))
    );
    assert_eq!(
        summary(&inventory.packages),
        [(
            Ecosystem::Debian,
            "bash",
            "5.2.15-2+b2",
            1,
            "var/lib/dpkg/status"
        )]
    );
    assert_eq!(
        inventory.packages[0].source_version.as_deref(),
        Some("5.2.15-2")
    );

    // Without the second layer, both.
    let inventory = scan(vec![(TAR, base)]);
    assert_eq!(inventory.packages.len(), 2);
    assert!(inventory.packages.iter().all(|p| p.layer == 0));
}

const SITE: &str = "usr/local/lib/python3.12/site-packages";

#[test]
fn a_whiteout_removes_a_python_package() {
    let requests = format!("{SITE}/requests-2.31.0.dist-info/METADATA");
    let urllib3 = format!("{SITE}/urllib3-2.2.1.dist-info/METADATA");
    let base = tar(&[
        E::File(
            &requests,
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
        ),
        E::File(
            &format!("{SITE}/requests-2.31.0.dist-info/RECORD"),
            b"requests/__init__.py,,\n",
        ),
        E::File(
            &urllib3,
            b"Metadata-Version: 2.1\nName: urllib3\nVersion: 2.2.1\n",
        ),
    ]);
    let whiteout = format!("{SITE}/.wh.requests-2.31.0.dist-info");
    let upper = tar(&[E::File(&whiteout, b"")]);
    let inventory = scan(vec![(TAR, base.clone()), (TAR_ZSTD, zstd(&upper))]);
    assert_eq!(inventory.distro, None);
    assert_eq!(
        summary(&inventory.packages),
        [(Ecosystem::PyPI, "urllib3", "2.2.1", 0, urllib3.as_str())]
    );

    // A whiteout of the file itself works too, and one of a parent directory.
    let upper = tar(&[E::File(
        &format!("{SITE}/urllib3-2.2.1.dist-info/.wh.METADATA"),
        b"",
    )]);
    let inventory = scan(vec![(TAR, base.clone()), (TAR, upper)]);
    assert_eq!(inventory.packages.len(), 1);
    assert_eq!(inventory.packages[0].name, "requests");
    let upper = tar(&[E::File("usr/local/.wh.lib", b"")]);
    assert!(scan(vec![(TAR, base), (TAR, upper)]).packages.is_empty());
}

#[test]
fn an_opaque_directory_hides_lower_packages_but_not_those_of_its_own_layer() {
    const DIST: &str = "usr/lib/python3/dist-packages";
    let base = tar(&[
        E::File(
            &format!("{DIST}/six-1.16.0.egg-info"),
            b"Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\n",
        ),
        E::File(
            &format!("{DIST}/certifi-2022.9.24.dist-info/METADATA"),
            b"Name: certifi\nVersion: 2022.9.24\n",
        ),
        E::File(
            &format!("{DIST}/idna-3.3.dist-info/METADATA"),
            b"Name: idna\nVersion: 3.3\n",
        ),
        E::File(
            &format!("{SITE}/PyYAML-6.0.1.dist-info/METADATA"),
            b"Name: PyYAML\nVersion: 6.0.1\n",
        ),
    ]);
    // Re-added entries before and after the opaque marker: both survive.
    let upper = tar(&[
        E::Dir(&format!("{DIST}/")),
        E::File(
            &format!("{DIST}/certifi-2024.2.2.dist-info/METADATA"),
            b"Name: certifi\nVersion: 2024.2.2\n",
        ),
        E::File(&format!("{DIST}/.wh..wh..opq"), b""),
        E::File(
            &format!("{DIST}/idna-3.3.dist-info/METADATA"),
            b"Name: idna\nVersion: 3.3\n",
        ),
    ]);
    let inventory = scan(vec![(TAR_GZIP, gzip(&base)), (TAR_GZIP, gzip(&upper))]);
    let found: Vec<_> = inventory
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.layer))
        .collect();
    assert_eq!(
        found,
        [
            ("certifi", "2024.2.2", 1),
            ("idna", "3.3", 1),
            ("pyyaml", "6.0.1", 0),
        ]
    );
}

const ALPINE_OS_RELEASE: &[u8] =
    b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n";
const APK_INSTALLED: &[u8] = b"C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n\n\
C:Q1def=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\n";

#[test]
fn os_release_through_a_symlink_with_gzip_and_zstd_layers() {
    let base = tar(&[
        E::File("usr/lib/os-release", ALPINE_OS_RELEASE),
        E::Symlink("etc/os-release", "../usr/lib/os-release"),
        E::File("lib/apk/db/installed", APK_INSTALLED),
    ]);
    let app = tar(&[
        E::File(
            "app/node_modules/express/package.json",
            br#"{"name":"express","version":"4.18.2","dependencies":{"qs":"6.11.0"}}"#,
        ),
        E::File(
            "app/node_modules/@types/node/package.json",
            br#"{"name":"@types/node","version":"20.11.5"}"#,
        ),
        E::File(
            "app/package.json",
            br#"{"name":"my-app","version":"1.0.0"}"#,
        ),
    ]);
    let inventory = scan(vec![(TAR_GZIP, gzip(&base)), (TAR_ZSTD, zstd(&app))]);
    let distro = inventory.distro.unwrap();
    assert_eq!(distro.id, "alpine");
    assert_eq!(distro.pretty_name.as_deref(), Some("Alpine Linux v3.19"));
    assert_eq!(
        summary(&inventory.packages),
        [
            (
                Ecosystem::Alpine,
                "libcrypto3",
                "3.1.4-r5",
                0,
                "lib/apk/db/installed"
            ),
            (
                Ecosystem::Alpine,
                "musl",
                "1.2.4_git20230717-r4",
                0,
                "lib/apk/db/installed"
            ),
            (
                Ecosystem::Npm,
                "@types/node",
                "20.11.5",
                1,
                "app/node_modules/@types/node/package.json"
            ),
            (
                Ecosystem::Npm,
                "express",
                "4.18.2",
                1,
                "app/node_modules/express/package.json"
            ),
        ]
    );
    assert_eq!(
        inventory.packages[0].source_name.as_deref(),
        Some("openssl")
    );
}

#[test]
fn absolute_symlinks_directory_symlinks_and_relinked_os_release() {
    let base = tar(&[
        E::File("usr/lib/os-release", b"ID=wolfi\nVERSION_ID=20230201\n"),
        E::File("opt/os-release", b"ID=other\n"),
        E::Symlink("etc/os-release", "/usr/lib/os-release"),
    ]);
    let inventory = scan(vec![(TAR, base.clone())]);
    assert_eq!(inventory.distro.unwrap().id, "wolfi");

    // Re-pointed (through a directory symlink) in a later layer.
    let upper = tar(&[E::Symlink("etc", "opt")]);
    let inventory = scan(vec![(TAR, base.clone()), (TAR, upper)]);
    assert_eq!(inventory.distro.unwrap().id, "other");

    // A dangling symlink falls back to usr/lib/os-release.
    let upper = tar(&[E::Symlink("etc/os-release", "../nowhere")]);
    let inventory = scan(vec![(TAR, base), (TAR, upper)]);
    assert_eq!(inventory.distro.unwrap().id, "wolfi");
}

#[test]
fn hard_links_to_kept_files() {
    let base = tar(&[
        E::File("etc/os-release", DEBIAN_OS_RELEASE),
        E::Hardlink("usr/lib/os-release", "etc/os-release"),
        E::File(
            "srv/node_modules/left-pad/package.json",
            br#"{"name":"left-pad","version":"1.3.0"}"#,
        ),
        E::Hardlink(
            "app/node_modules/left-pad/package.json",
            "./srv/node_modules/left-pad/package.json",
        ),
    ]);
    let upper = tar(&[
        E::File("etc/.wh.os-release", b""),
        E::File("srv/.wh.node_modules", b""),
    ]);
    let inventory = scan(vec![(TAR, base), (TAR, upper)]);
    assert_eq!(
        inventory.distro.unwrap().codename.as_deref(),
        Some("bookworm")
    );
    assert_eq!(
        summary(&inventory.packages),
        [(
            Ecosystem::Npm,
            "left-pad",
            "1.3.0",
            0,
            "app/node_modules/left-pad/package.json"
        )]
    );
}

#[test]
fn a_directory_replaced_by_a_file_loses_its_packages() {
    let base = tar(&[
        E::File(
            "app/node_modules/foo/package.json",
            br#"{"name":"foo","version":"1.0.0"}"#,
        ),
        E::File(
            "app/node_modules/bar/package.json",
            br#"{"name":"bar","version":"2.0.0"}"#,
        ),
    ]);
    let upper = tar(&[
        E::File("app/node_modules/foo", b"now a file"),
        E::Symlink("app/node_modules/bar", "/elsewhere"),
    ]);
    assert!(scan(vec![(TAR, base), (TAR, upper)]).packages.is_empty());
}

#[test]
fn distroless_status_d_and_cargo_lock() {
    let base = tar(&[
        E::File("etc/os-release", DEBIAN_OS_RELEASE),
        E::File(
            "var/lib/dpkg/status.d/base-files",
            b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n",
        ),
        E::File(
            "var/lib/dpkg/status.d/libssl3",
            b"Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n",
        ),
        E::File(
            "var/lib/dpkg/status.d/libssl3.md5sums",
            b"0123  usr/lib/x\n",
        ),
    ]);
    let app = tar(&[E::File(
        "usr/src/app/Cargo.lock",
        b"version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
[[package]]\nname = \"time\"\nversion = \"0.3.20\"\n\
source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    )]);
    let inventory = scan(vec![(TAR, base), (TAR_GZIP, gzip(&app))]);
    assert_eq!(
        summary(&inventory.packages),
        [
            (
                Ecosystem::Debian,
                "base-files",
                "12.4+deb12u5",
                0,
                "var/lib/dpkg/status.d/base-files"
            ),
            (
                Ecosystem::Debian,
                "libssl3",
                "3.0.11-1~deb12u2",
                0,
                "var/lib/dpkg/status.d/libssl3"
            ),
            (
                Ecosystem::CratesIo,
                "time",
                "0.3.20",
                1,
                "usr/src/app/Cargo.lock"
            ),
        ]
    );
}

/// An inline (Go ≥ 1.18) build-info blob, built from the format's description.
fn go_buildinfo(go_version: &str, modinfo: &str) -> Vec<u8> {
    fn uvarint(out: &mut Vec<u8>, mut value: usize) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    let mut blob = b"\xff Go buildinf:".to_vec();
    blob.push(8); // pointer size
    blob.push(2); // flags: inline strings, little endian
    blob.resize(32, 0);
    uvarint(&mut blob, go_version.len());
    blob.extend_from_slice(go_version.as_bytes());
    let mut framed = vec![0x30u8; 16];
    framed.extend_from_slice(modinfo.as_bytes());
    framed.extend_from_slice(&[0xf9u8; 16]);
    uvarint(&mut blob, framed.len());
    blob.extend_from_slice(&framed);
    blob
}

const MODINFO: &str = "path\tgithub.com/example/server\n\
mod\tgithub.com/example/server\tv0.3.1\th1:aaa=\n\
dep\tgithub.com/gorilla/mux\tv1.8.1\th1:TuBL49tXwgrFYWhqrNgrUNEY92u81SPhu7sTdzQEiWY=\n\
dep\tgolang.org/x/crypto\tv0.14.0\th1:bbb=\n\
=>\tgolang.org/x/crypto\tv0.17.0\th1:ccc=\n\
build\t-buildmode=exe\nbuild\tGOOS=linux\n";

#[test]
fn a_go_binary_found_across_chunk_boundaries() {
    // 5 MiB; the layer reader reads 4 bytes then 64 KiB chunks, so a blob at
    // 4 + 64 × 64 KiB − 7 (odd) straddles a chunk boundary.
    let mut binary = vec![0u8; 5 << 20];
    binary[..4].copy_from_slice(b"\x7fELF");
    for (i, byte) in binary.iter_mut().enumerate().skip(4) {
        // Noise full of 0xff, the magic's first byte.
        *byte = if i % 3 == 0 { 0xff } else { (i % 251) as u8 };
    }
    let blob = go_buildinfo("go1.21.4", MODINFO);
    let at = 4 + 64 * 65536 - 7;
    binary[at..at + blob.len()].copy_from_slice(&blob);
    let mut not_executable = binary.clone();
    not_executable[..4].copy_from_slice(b"\0\0\0\0");

    let layer = tar(&[
        E::Exec("usr/local/bin/server", &binary),
        E::Hardlink("usr/local/bin/server-link", "usr/local/bin/server"),
        E::File("usr/share/doc/server.bin", &binary),
        E::Exec("usr/local/bin/data", &not_executable),
    ]);
    let inventory = scan(vec![(TAR, layer.clone())]);
    let expected = |path| {
        vec![
            (
                Ecosystem::Go,
                "github.com/example/server",
                "v0.3.1",
                0,
                path,
            ),
            (Ecosystem::Go, "github.com/gorilla/mux", "v1.8.1", 0, path),
            (Ecosystem::Go, "golang.org/x/crypto", "v0.17.0", 0, path),
            (Ecosystem::Go, "stdlib", "1.21.4", 0, path),
        ]
    };
    let mut both = expected("usr/local/bin/server");
    both.extend(expected("usr/local/bin/server-link"));
    both.sort();
    assert_eq!(summary(&inventory.packages), both);

    // Compressed, the chunk sizes differ; the result does not. A later layer replacing
    // one binary with a script drops its packages.
    let upper = tar(&[E::Exec("usr/local/bin/server", b"#!/bin/sh\nexec true\n")]);
    let inventory = scan(vec![(TAR_ZSTD, zstd(&layer)), (TAR, upper)]);
    assert_eq!(
        summary(&inventory.packages),
        expected("usr/local/bin/server-link")
    );
}

/// A JAR written with the `zip` crate (which writes sizes up front; data descriptors are
/// covered by the unit tests of `detect::java`).
fn jar(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, deflate) in entries {
        let method = if *deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        writer
            .start_file(
                *name,
                SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn maven_artifacts_of_jars_and_nested_jars() {
    let library = jar(&[
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\n", true),
        (
            "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
            b"artifactId=log4j-core\ngroupId=org.apache.logging.log4j\nversion=2.14.1\n",
            true,
        ),
        (
            "org/apache/logging/log4j/core/Logger.class",
            &[0xca, 0xfe, 0xba, 0xbe],
            true,
        ),
    ]);
    let app = jar(&[
        (
            "META-INF/MANIFEST.MF",
            b"Main-Class: org.springframework.boot.loader.JarLauncher\r\n",
            true,
        ),
        (
            "META-INF/maven/com.example/demo/pom.properties",
            b"#Generated by Maven\ngroupId=com.example\nartifactId=demo\nversion=0.0.1-SNAPSHOT\n",
            true,
        ),
        ("BOOT-INF/lib/log4j-core-2.14.1.jar", &library, false),
    ]);
    let layer = tar(&[
        E::File("app/app.jar", &app),
        E::File("opt/lib/log4j-core-2.14.1.jar", &library),
        E::File("opt/broken.jar", b"PK\x03\x04 truncated"),
    ]);
    let scan = scan_with_warnings(vec![(TAR_GZIP, gzip(&layer))]);
    assert_eq!(
        summary(&scan.inventory.packages),
        [
            (
                Ecosystem::Maven,
                "com.example:demo",
                "0.0.1-SNAPSHOT",
                0,
                "app/app.jar"
            ),
            (
                Ecosystem::Maven,
                "org.apache.logging.log4j:log4j-core",
                "2.14.1",
                0,
                "app/app.jar"
            ),
            (
                Ecosystem::Maven,
                "org.apache.logging.log4j:log4j-core",
                "2.14.1",
                0,
                "opt/lib/log4j-core-2.14.1.jar"
            ),
        ]
    );
    assert_eq!(scan.warnings.len(), 1, "{:?}", scan.warnings);
    assert!(scan.warnings[0].contains("opt/broken.jar"));
}

/// An rpm header blob: string tags (and an int32 epoch), as rpmdb stores it.
fn rpm_header(name: &str, version: &str, release: &str, epoch: Option<u32>, srpm: &str) -> Vec<u8> {
    let mut index: Vec<[u32; 4]> = Vec::new();
    let mut data = Vec::new();
    if let Some(epoch) = epoch {
        index.push([1003, 4, data.len() as u32, 1]);
        data.extend_from_slice(&epoch.to_be_bytes());
    }
    for (tag, value) in [
        (1000, name),
        (1001, version),
        (1002, release),
        (1022, "x86_64"),
        (1044, srpm),
    ] {
        index.push([tag, 6, data.len() as u32, 1]);
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for entry in index {
        for field in entry {
            blob.extend_from_slice(&field.to_be_bytes());
        }
    }
    blob.extend_from_slice(&data);
    blob
}

#[test]
fn rpm_packages_of_an_sqlite_database_behind_a_directory_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpmdb.sqlite");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
        )
        .unwrap();
        for blob in [
            rpm_header(
                "openssl-libs",
                "3.0.7",
                "24.el9",
                Some(1),
                "openssl-3.0.7-24.el9.src.rpm",
            ),
            rpm_header(
                "bash",
                "5.1.8",
                "6.el9_1",
                None,
                "bash-5.1.8-6.el9_1.src.rpm",
            ),
        ] {
            db.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
                .unwrap();
        }
    }
    let rpmdb = std::fs::read(&path).unwrap();
    let layer = tar(&[
        E::File(
            "etc/os-release",
            b"NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\n",
        ),
        E::Symlink("var/lib/rpm", "../../usr/lib/sysimage/rpm"),
        E::File("usr/lib/sysimage/rpm/rpmdb.sqlite", &rpmdb),
    ]);
    let inventory = scan(vec![(TAR_GZIP, gzip(&layer))]);
    assert_eq!(inventory.distro.unwrap().id, "rhel");
    let db_path = "usr/lib/sysimage/rpm/rpmdb.sqlite";
    assert_eq!(
        summary(&inventory.packages),
        [
            (Ecosystem::Rpm, "bash", "5.1.8-6.el9_1", 0, db_path),
            (Ecosystem::Rpm, "openssl-libs", "1:3.0.7-24.el9", 0, db_path),
        ]
    );
    assert_eq!(
        inventory.packages[1].source_name.as_deref(),
        Some("openssl")
    );
}

#[test]
fn media_types_and_sniffed_compression() {
    let layer = tar(&[E::File("etc/os-release", DEBIAN_OS_RELEASE)]);
    // Says gzip, is plain; says plain, is zstd.
    let inventory = scan(vec![(TAR_GZIP, layer.clone()), (TAR, zstd(&layer))]);
    assert_eq!(inventory.distro.unwrap().id, "debian");

    let error = scan_layers(vec![
        LayerInput {
            media_type: TAR.to_owned(),
            reader: Cursor::new(layer.clone()),
        },
        LayerInput {
            media_type: "application/vnd.oci.image.config.v1+json".to_owned(),
            reader: Cursor::new(layer),
        },
    ])
    .unwrap_err();
    assert!(matches!(error, ScanError::MediaType(ref t) if t.ends_with("config.v1+json")));

    // Nondistributable layers are read like the others.
    let layer = tar(&[E::File("etc/os-release", ALPINE_OS_RELEASE)]);
    let inventory = scan(vec![(
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        gzip(&layer),
    )]);
    assert_eq!(inventory.distro.unwrap().id, "alpine");
}

#[test]
fn a_corrupt_layer_is_an_error_with_its_index() {
    let good = tar(&[E::File("etc/os-release", DEBIAN_OS_RELEASE)]);
    let mut corrupt = gzip(&good);
    let middle = corrupt.len() / 2;
    corrupt[middle..].fill(0x55);
    let error = scan_layers(vec![
        LayerInput {
            media_type: TAR.to_owned(),
            reader: Cursor::new(good),
        },
        LayerInput {
            media_type: TAR_GZIP.to_owned(),
            reader: Cursor::new(corrupt),
        },
    ])
    .unwrap_err();
    assert!(
        matches!(error, ScanError::Layer { layer: 1, .. }),
        "{error}"
    );
}

#[test]
fn an_empty_image_has_nothing() {
    let inventory = scan(vec![(TAR, tar(&[E::Dir("tmp/")]))]);
    assert_eq!(inventory, Inventory::default());
    let none: Vec<LayerInput<Cursor<Vec<u8>>>> = Vec::new();
    assert_eq!(scan_layers(none).unwrap(), Inventory::default());
}

#[test]
fn an_oversized_metadata_file_is_skipped_with_a_warning() {
    use std::io::Read;
    let base = tar(&[E::File("var/lib/dpkg/status", STATUS_BOTH)]);
    // A layer streamed without being held: a header, 64 MiB + 1 of zeros, padding, the end.
    let size = (64u64 << 20) + 1;
    let mut header = tar::Header::new_gnu();
    header.set_path("var/lib/dpkg/status").unwrap();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_cksum();
    let padding = (512 - size % 512) % 512;
    let huge = Cursor::new(header.as_bytes().to_vec())
        .chain(std::io::repeat(0).take(size + padding + 1024));
    let layers: Vec<LayerInput<Box<dyn Read>>> = vec![
        LayerInput {
            media_type: TAR.to_owned(),
            reader: Box::new(Cursor::new(base)),
        },
        LayerInput {
            media_type: TAR.to_owned(),
            reader: Box::new(huge),
        },
    ];
    let scan = scan_layers_with_warnings(layers).unwrap();
    assert!(scan.inventory.packages.is_empty());
    assert_eq!(scan.warnings.len(), 1);
    assert!(
        scan.warnings[0].starts_with("layer 1: var/lib/dpkg/status: 67108865 bytes"),
        "{}",
        scan.warnings[0]
    );
}
