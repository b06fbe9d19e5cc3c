//! Finds Maven artifacts in Java archives (JAR, WAR, EAR) read as streams, and in loose
//! `pom.properties` files: `META-INF/maven/<groupId>/<artifactId>/pom.properties` gives
//! `groupId`, `artifactId` and `version`, reported as `groupId:artifactId`. Archives nested
//! one level deep (`BOOT-INF/lib/*.jar`, `WEB-INF/lib/*.jar`) are read too, as streams
//! inside the stream.
//!
//! The archive is walked by its local file headers, never by its central directory (at the
//! end), so nothing is buffered but one `pom.properties` at a time. This reader is used
//! rather than `zip::read::read_zipfile_from_stream` because that one refuses entries with
//! a data descriptor (sizes after the data), which the JDK's `jar` tool and
//! `java.util.zip.ZipOutputStream` write for every deflated entry: here a deflated entry
//! ends where its deflate stream ends, as `java.util.zip.ZipInputStream` does. Stored
//! entries with a data descriptor (their end cannot be found without the central directory)
//! and entries of other compression methods with one stop the walk with a warning, keeping
//! what was found. Artifacts without `pom.properties` (no Maven metadata; only a
//! `MANIFEST.MF` or a file name) are not reported.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::DeflateDecoder;

use crate::{Ecosystem, Package};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY: u32 = 0x0606_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;
/// The largest `pom.properties` read.
const MAX_POM_PROPERTIES: u64 = 1 << 20;

/// Whether a file is a Java archive, by its name (`.jar`, `.war`, `.ear`, any case).
pub fn is_archive_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    [".jar", ".war", ".ear"]
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// Whether `path` is `…META-INF/maven/<groupId>/<artifactId>/pom.properties`.
pub fn is_pom_properties(path: &str) -> bool {
    const DIR: &str = "META-INF/maven/";
    let Some(at) = path.rfind(DIR) else {
        return false;
    };
    if at > 0 && !path[..at].ends_with('/') {
        return false;
    }
    matches!(
        path[at + DIR.len()..].split('/').collect::<Vec<_>>().as_slice(),
        [group, artifact, "pom.properties"] if !group.is_empty() && !artifact.is_empty()
    )
}

/// The artifact of a `pom.properties` (Java properties: `key=value`, `key: value`,
/// `#`/`!` comments); `None` without `groupId`, `artifactId` or `version`, or with an
/// unresolved `${…}` version.
pub fn parse_pom_properties(data: &[u8], path: &str, layer: usize) -> Option<Package> {
    let text = String::from_utf8_lossy(data);
    let (mut group, mut artifact, mut version) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', '!']) {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            continue;
        };
        let value = line[split + 1..].trim();
        let slot = match line[..split].trim() {
            "groupId" => &mut group,
            "artifactId" => &mut artifact,
            "version" => &mut version,
            _ => continue,
        };
        *slot = (!value.is_empty()).then(|| value.to_owned());
    }
    let version = version.filter(|version| !version.contains("${"))?;
    Some(Package {
        ecosystem: Ecosystem::Maven,
        name: format!("{}:{}", group?, artifact?),
        version,
        source_name: None,
        source_version: None,
        layer,
        path: path.to_owned(),
    })
}

/// What [`scan_archive`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveScan {
    /// The artifacts, all reported at the archive's path.
    pub packages: Vec<Package>,
    /// Why (part of) the archive could not be read.
    pub warnings: Vec<String>,
}

/// Reads a Java archive as a stream and finds the artifacts of its `pom.properties` files
/// (and of those of the archives it holds, one level deep). Never fails: what could not be
/// read is a warning, and what was found before is kept. Stops at the central directory,
/// without reading the stream to its end.
pub fn scan_archive<R: Read>(reader: R, path: &str, layer: usize) -> ArchiveScan {
    let mut scan = ArchiveScan::default();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut walker = Walker {
        path,
        layer,
        scan: &mut scan,
    };
    if let Err(e) = walker.walk(&mut reader, None) {
        scan.warnings.push(format!("{path}: {e}"));
    }
    scan
}

struct Walker<'a> {
    path: &'a str,
    layer: usize,
    scan: &'a mut ArchiveScan,
}

/// What an entry is read for.
enum Want {
    Skip,
    PomProperties,
    Nested,
}

impl Walker<'_> {
    /// Walks the local entries of a zip stream; `nested` is the name of the entry holding it.
    fn walk(&mut self, reader: &mut dyn BufRead, nested: Option<&str>) -> Result<(), String> {
        loop {
            let mut signature = [0u8; 4];
            if !read_exact_or_eof(reader, &mut signature).map_err(|e| e.to_string())? {
                return Ok(());
            }
            match u32::from_le_bytes(signature) {
                LOCAL_HEADER => {}
                CENTRAL_HEADER | END_OF_CENTRAL_DIRECTORY | ZIP64_END_OF_CENTRAL_DIRECTORY => {
                    return Ok(());
                }
                other => {
                    return Err(format!(
                        "not a zip archive (record signature {other:#010x})"
                    ));
                }
            }
            self.entry(reader, nested)?;
        }
    }

    /// Reads one entry after its signature, leaving the stream at the next record.
    fn entry(&mut self, reader: &mut dyn BufRead, nested: Option<&str>) -> Result<(), String> {
        let io = |e: io::Error| e.to_string();
        let mut fixed = [0u8; 26];
        reader.read_exact(&mut fixed).map_err(io)?;
        let le16 = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let le32 = |at: usize| {
            u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let (flags, method) = (le16(2), le16(4));
        let (mut compressed, mut uncompressed) = (u64::from(le32(14)), u64::from(le32(18)));
        let mut name = vec![0u8; usize::from(le16(22))];
        reader.read_exact(&mut name).map_err(io)?;
        let mut extra = vec![0u8; usize::from(le16(24))];
        reader.read_exact(&mut extra).map_err(io)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let zip64 = zip64_sizes(&extra, &mut uncompressed, &mut compressed);
        let encrypted = flags & 1 != 0;
        let descriptor = flags & 8 != 0;

        let want = if encrypted || name.ends_with('/') {
            Want::Skip
        } else if is_pom_properties(&name) {
            Want::PomProperties
        } else if nested.is_none() && name.to_ascii_lowercase().ends_with(".jar") {
            Want::Nested
        } else {
            Want::Skip
        };

        match (method, descriptor) {
            (DEFLATED, _) if !encrypted => {
                let mut body = reader.take(if descriptor { u64::MAX } else { compressed });
                {
                    let mut inflated = DeflateDecoder::new(&mut body);
                    self.read_entry(&mut inflated, &name, want, nested);
                    // To the end of the deflate stream.
                    io::copy(&mut inflated, &mut io::sink()).map_err(|e| format!("{name}: {e}"))?;
                }
                if !descriptor {
                    io::copy(&mut body, &mut io::sink()).map_err(io)?;
                }
            }
            (STORED, false) if !encrypted => {
                let mut body = reader.take(compressed);
                self.read_entry(&mut body, &name, want, nested);
                io::copy(&mut body, &mut io::sink()).map_err(io)?;
            }
            (_, false) => {
                io::copy(&mut reader.take(compressed), &mut io::sink()).map_err(io)?;
            }
            (_, true) => {
                return Err(format!(
                    "{name}: an entry of compression method {method}{} with a data \
                     descriptor cannot be read as a stream",
                    if encrypted { ", encrypted," } else { "" }
                ));
            }
        }
        if descriptor {
            // [signature] crc32, then sizes of 4 bytes, or 8 with a zip64 extra field.
            let mut first = [0u8; 4];
            reader.read_exact(&mut first).map_err(io)?;
            if u32::from_le_bytes(first) == DATA_DESCRIPTOR {
                reader.read_exact(&mut first).map_err(io)?;
            }
            let mut sizes = [0u8; 16];
            let sizes = &mut sizes[..if zip64 { 16 } else { 8 }];
            reader.read_exact(sizes).map_err(io)?;
        }
        Ok(())
    }

    /// Reads an entry's (uncompressed) content for what it is wanted for; problems inside
    /// it are warnings, the caller skips what is left of it.
    fn read_entry(&mut self, content: &mut dyn Read, name: &str, want: Want, nested: Option<&str>) {
        match want {
            Want::Skip => {}
            Want::PomProperties => {
                let mut data = Vec::new();
                match content.take(MAX_POM_PROPERTIES).read_to_end(&mut data) {
                    Ok(_) => {
                        if let Some(package) = parse_pom_properties(&data, self.path, self.layer) {
                            self.scan.packages.push(package);
                        }
                    }
                    Err(e) => self.scan.warnings.push(format!(
                        "{}: {}{name}: {e}",
                        self.path,
                        nested.map(|outer| format!("{outer}: ")).unwrap_or_default()
                    )),
                }
            }
            Want::Nested => {
                let mut inner = BufReader::with_capacity(16 * 1024, content);
                if let Err(e) = self.walk(&mut inner, Some(name)) {
                    self.scan
                        .warnings
                        .push(format!("{}: {name}: {e}", self.path));
                }
            }
        }
    }
}

/// Reads the zip64 extended sizes of a local header's extra field into the sizes that are
/// `0xFFFFFFFF`; whether the field is there (then data descriptors have 8-byte sizes).
fn zip64_sizes(mut extra: &[u8], uncompressed: &mut u64, compressed: &mut u64) -> bool {
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let size = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        let Some(data) = extra.get(4..4 + size) else {
            return false;
        };
        if id == 0x0001 {
            let mut values = data
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
            for size in [uncompressed, compressed] {
                if *size == 0xFFFF_FFFF
                    && let Some(value) = values.next()
                {
                    *size = value;
                }
            }
            return true;
        }
        extra = &extra[4 + size..];
    }
    false
}

/// Fills `buf`; false at a clean end of stream before its first byte.
fn read_exact_or_eof(reader: &mut dyn BufRead, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::DeflateEncoder;
    use std::io::Write;

    const POM: &str = "#Generated by Maven\n#Tue Oct 10 10:10:10 UTC 2023\n\
groupId=com.fasterxml.jackson.core\nartifactId=jackson-databind\nversion=2.15.3\n";

    /// Writes a zip as `java.util.zip.ZipOutputStream` does: deflated entries with data
    /// descriptors (signature included), stored entries with sizes up front.
    fn jdk_style_zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, deflate) in entries {
            let crc = {
                let mut hasher = flate2::Crc::new();
                hasher.update(data);
                hasher.sum()
            };
            let body = if *deflate {
                let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            } else {
                data.to_vec()
            };
            out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&(if *deflate { 8u16 } else { 0 }).to_le_bytes());
            out.extend_from_slice(&(if *deflate { DEFLATED } else { STORED }).to_le_bytes());
            out.extend_from_slice(&[0u8; 4]);
            let (crc_field, c, u) = if *deflate {
                (0, 0, 0)
            } else {
                (crc, body.len() as u32, data.len() as u32)
            };
            out.extend_from_slice(&crc_field.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&u.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            if *deflate {
                out.extend_from_slice(&DATA_DESCRIPTOR.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            }
        }
        // A token central directory: the walk stops at its signature.
        out.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        out.extend_from_slice(&[0u8; 42]);
        out
    }

    #[test]
    fn pom_properties() {
        let package = parse_pom_properties(POM.as_bytes(), "app.jar", 1).unwrap();
        assert_eq!(package.name, "com.fasterxml.jackson.core:jackson-databind");
        assert_eq!(package.version, "2.15.3");
        assert_eq!(package.ecosystem, Ecosystem::Maven);
        assert_eq!(
            parse_pom_properties(b"groupId=a\nartifactId=b\nversion=${revision}\n", "p", 0),
            None
        );
        assert_eq!(
            parse_pom_properties(b"groupId : a\nartifactId: b\n", "p", 0),
            None
        );
    }

    #[test]
    fn names() {
        assert!(is_archive_name("opt/app/app.JAR"));
        assert!(is_archive_name("usr/local/tomcat/webapps/ROOT.war"));
        assert!(!is_archive_name("usr/bin/jar"));
        assert!(!is_archive_name(".jar"));
        assert!(is_pom_properties(
            "META-INF/maven/org.slf4j/slf4j-api/pom.properties"
        ));
        assert!(is_pom_properties(
            "WEB-INF/classes/META-INF/maven/com.example/app/pom.properties"
        ));
        assert!(!is_pom_properties(
            "META-INF/maven/org.slf4j/pom.properties"
        ));
        assert!(!is_pom_properties("XMETA-INF/maven/a/b/pom.properties"));
    }

    #[test]
    fn data_descriptors_and_nested_jars() {
        let inner = jdk_style_zip(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\n", true),
            (
                "META-INF/maven/org.yaml/snakeyaml/pom.properties",
                b"version=2.2\ngroupId=org.yaml\nartifactId=snakeyaml\n",
                true,
            ),
        ]);
        let outer = jdk_style_zip(&[
            ("META-INF/", b"", false),
            (
                "BOOT-INF/classes/App.class",
                &[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 61],
                true,
            ),
            ("BOOT-INF/lib/snakeyaml-2.2.jar", &inner, false),
            (
                "META-INF/maven/com.fasterxml.jackson.core/jackson-databind/pom.properties",
                POM.as_bytes(),
                true,
            ),
            ("BOOT-INF/lib/deflated.jar", &inner, true),
        ]);
        let scan = scan_archive(&outer[..], "app/app.jar", 2);
        assert_eq!(scan.warnings, Vec::<String>::new());
        let names: Vec<_> = scan
            .packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.path.as_str(),
                    p.layer,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("org.yaml:snakeyaml", "2.2", "app/app.jar", 2),
                (
                    "com.fasterxml.jackson.core:jackson-databind",
                    "2.15.3",
                    "app/app.jar",
                    2
                ),
                ("org.yaml:snakeyaml", "2.2", "app/app.jar", 2),
            ]
        );
    }

    #[test]
    fn garbage_is_a_warning_and_keeps_what_was_found() {
        let mut zip = jdk_style_zip(&[(
            "META-INF/maven/a/b/pom.properties",
            b"groupId=a\nartifactId=b\nversion=1\n",
            true,
        )]);
        zip.truncate(zip.len() - 46);
        zip.extend_from_slice(b"garbage!");
        let scan = scan_archive(&zip[..], "x.jar", 0);
        assert_eq!(scan.packages.len(), 1);
        assert_eq!(scan.warnings.len(), 1);
        let scan = scan_archive(&b"#!/bin/sh\n"[..], "y.jar", 0);
        assert!(scan.packages.is_empty());
        assert_eq!(scan.warnings.len(), 1);
    }
}
