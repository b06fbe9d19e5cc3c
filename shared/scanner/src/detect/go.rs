//! Finds the modules a Go binary was built from, by streaming it: the Go linker writes a
//! build-info blob starting with the magic `\xff Go buildinf:` and [`BuildInfoScanner`]
//! searches for it with a sliding window, so memory stays constant with the binary's size:
//! at most [`MAX_MODINFO`] plus the chunk being fed, whatever the size of the binary.
//!
//! Only the inline format of Go ≥ 1.18 is read (flags byte & 2: the Go version and the
//! module info follow the 32-byte header as varint-length-prefixed strings). Binaries of
//! Go < 1.18 store pointers to those strings in the data segment instead; following them
//! would need the executable's segment table and random access, so they are skipped (no
//! packages, no error).

use std::io::{self, Read};

use crate::{Ecosystem, Package};

/// The magic that starts a build-info blob.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// The size of the blob's header, after which the inline strings start.
const HEADER: usize = 32;
/// The longest Go version string accepted.
const MAX_VERSION: usize = 1024;
/// The longest module info accepted (big binaries list hundreds of modules: tens of KiB).
pub const MAX_MODINFO: usize = 1 << 20;

/// What the build info of a Go binary says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.21.4` (possibly followed by ` X:…` experiments).
    pub go_version: String,
    /// The module info text (`path`, `mod`, `dep`, `=>`, `build` lines), without the
    /// sentinels around it; empty when the binary was built without module support.
    pub modinfo: String,
}

/// Searches a stream, fed in chunks of any size, for a build-info blob.
#[derive(Debug, Default)]
pub struct BuildInfoScanner {
    /// Unsearched bytes: at most `MAGIC.len() - 1` bytes carried over, or a candidate blob
    /// (from its magic on) waiting for more bytes, plus the chunk being fed.
    window: Vec<u8>,
    found: Option<BuildInfo>,
}

enum Blob {
    Found(BuildInfo),
    NeedMore,
    Invalid,
}

impl BuildInfoScanner {
    pub fn new() -> BuildInfoScanner {
        BuildInfoScanner::default()
    }

    /// Feeds the next chunk; true once the build info is found (more chunks are ignored).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.found.is_some() {
            return true;
        }
        self.window.extend_from_slice(chunk);
        let mut start = 0;
        loop {
            let Some(at) = find_magic(&self.window[start..]).map(|i| start + i) else {
                let keep_from = self.window.len().saturating_sub(MAGIC.len() - 1).max(start);
                self.window.drain(..keep_from);
                return false;
            };
            match parse_blob(&self.window[at..]) {
                Blob::Found(info) => {
                    self.found = Some(info);
                    self.window = Vec::new();
                    return true;
                }
                Blob::NeedMore => {
                    self.window.drain(..at);
                    return false;
                }
                Blob::Invalid => start = at + 1,
            }
        }
    }

    /// The build info, once the whole stream has been fed.
    pub fn finish(mut self) -> Option<BuildInfo> {
        if self.found.is_some() {
            return self.found;
        }
        // A candidate still waiting for bytes was cut short by the end of the stream; a
        // later one in the window may be complete.
        let mut start = 0;
        while let Some(at) = find_magic(&self.window[start..]).map(|i| start + i) {
            if let Blob::Found(info) = parse_blob(&self.window[at..]) {
                return Some(info);
            }
            start = at + 1;
        }
        self.window.clear();
        None
    }
}

fn find_magic(haystack: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == MAGIC[0]) {
        let at = from + i;
        let rest = &haystack[at..];
        if rest.len() < MAGIC.len() {
            // A partial match at the end: not a match yet.
            return None;
        }
        if rest.starts_with(MAGIC) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Parses a blob starting at its magic.
fn parse_blob(blob: &[u8]) -> Blob {
    if blob.len() < HEADER {
        return Blob::NeedMore;
    }
    let (pointer_size, flags) = (blob[14], blob[15]);
    if flags & 2 == 0 || !matches!(pointer_size, 4 | 8) {
        // The pointer format of Go < 1.18, or not a header at all.
        return Blob::Invalid;
    }
    let (version, used) = match read_string(&blob[HEADER..], MAX_VERSION) {
        Ok(Some(found)) => found,
        Ok(None) => return Blob::NeedMore,
        Err(()) => return Blob::Invalid,
    };
    let Ok(go_version) = std::str::from_utf8(version) else {
        return Blob::Invalid;
    };
    if !(go_version.starts_with("go") || go_version.starts_with("devel")) {
        return Blob::Invalid;
    }
    let (modinfo, _) = match read_string(&blob[HEADER + used..], MAX_MODINFO) {
        Ok(Some(found)) => found,
        Ok(None) => return Blob::NeedMore,
        Err(()) => return Blob::Invalid,
    };
    // The module info is framed by two 16-byte sentinels; without them, there is none.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        String::from_utf8_lossy(&modinfo[16..modinfo.len() - 16]).into_owned()
    } else {
        String::new()
    };
    Blob::Found(BuildInfo {
        go_version: go_version.to_owned(),
        modinfo,
    })
}

/// A uvarint-length-prefixed string: `Ok(None)` when more bytes are needed, `Err` when the
/// length is malformed or over `max`; else the string and the bytes used.
fn read_string(bytes: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, ()> {
    let mut length: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        length |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let length = usize::try_from(length).map_err(|_| ())?;
            if length > max {
                return Err(());
            }
            let start = i + 1;
            return Ok(bytes
                .get(start..start + length)
                .map(|string| (string, start + length)));
        }
    }
    if bytes.len() >= 10 { Err(()) } else { Ok(None) }
}

/// Whether a file starts like an executable (ELF, Mach-O, PE), worth searching.
pub fn is_executable_magic(head: &[u8]) -> bool {
    matches!(
        head,
        [0x7f, b'E', b'L', b'F', ..]
            | [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..]
            | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..]
            | [b'M', b'Z', ..]
    )
}

/// Reads a stream to its end (or to the build info) in chunks of `buffer`'s size and
/// returns its packages; none when it is not an executable or has no (inline) build info.
pub fn scan<R: Read>(
    mut reader: R,
    buffer: &mut [u8],
    path: &str,
    layer: usize,
) -> io::Result<Vec<Package>> {
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if !is_executable_magic(&head[..filled]) {
        return Ok(Vec::new());
    }
    let mut scanner = BuildInfoScanner::new();
    scanner.feed(&head[..filled]);
    loop {
        let n = match reader.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if scanner.feed(&buffer[..n]) {
            break;
        }
    }
    Ok(scanner
        .finish()
        .map(|info| packages(&info, path, layer))
        .unwrap_or_default())
}

/// The packages of a build info: the main module (unless its version is `(devel)`), each
/// dependency (its replacement when a `=>` line follows it; dropped when the replacement is
/// a local directory, which has no version), and the standard library as `stdlib` with the
/// Go version without `go` (`go1.21.4` → `1.21.4`; none for `devel` toolchains). Module
/// versions are kept as Go records them (`v1.2.3`, pseudo-versions `v0.0.0-…`).
pub fn packages(info: &BuildInfo, path: &str, layer: usize) -> Vec<Package> {
    let package = |name: &str, version: &str| Package {
        ecosystem: Ecosystem::Go,
        name: name.to_owned(),
        version: version.to_owned(),
        source_name: None,
        source_version: None,
        layer,
        path: path.to_owned(),
    };
    let mut modules: Vec<(String, String)> = Vec::new();
    for line in info.modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", module, version, ..] if !version.is_empty() && *version != "(devel)" => {
                modules.push((module.to_string(), version.to_string()));
            }
            ["dep", module, version, ..] => {
                modules.push((module.to_string(), version.to_string()));
            }
            ["=>", module, version, ..] => {
                if let Some(last) = modules.last_mut() {
                    *last = (module.to_string(), version.to_string());
                }
            }
            _ => {}
        }
    }
    let mut found: Vec<Package> = modules
        .iter()
        .filter(|(module, version)| !module.is_empty() && !version.is_empty())
        .map(|(module, version)| package(module, version))
        .collect();
    if let Some(version) = info
        .go_version
        .split_whitespace()
        .next()
        .and_then(|version| version.strip_prefix("go"))
        .filter(|version| !version.is_empty())
    {
        found.push(package("stdlib", version));
    }
    found
}

/// Builds an inline (Go ≥ 1.18) build-info blob, for tests.
#[cfg(test)]
fn encode_inline(go_version: &str, modinfo: &str) -> Vec<u8> {
    let mut blob = MAGIC.to_vec();
    blob.push(8);
    blob.push(2);
    blob.resize(HEADER, 0);
    let mut framed = Vec::new();
    if !modinfo.is_empty() {
        framed.extend_from_slice(&[
            0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6,
            0x18, 0xe6,
        ]);
        framed.extend_from_slice(modinfo.as_bytes());
        framed.extend_from_slice(&[
            0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16,
            0xd8, 0xf2,
        ]);
    }
    for string in [go_version.as_bytes(), &framed] {
        let mut length = string.len() as u64;
        loop {
            let byte = (length & 0x7f) as u8;
            length >>= 7;
            if length == 0 {
                blob.push(byte);
                break;
            }
            blob.push(byte | 0x80);
        }
        blob.extend_from_slice(string);
    }
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODINFO: &str = "path\tgithub.com/example/app\n\
mod\tgithub.com/example/app\tv1.4.0\th1:abc=\n\
dep\tgithub.com/google/uuid\tv1.6.0\th1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n\
dep\tgolang.org/x/net\tv0.17.0\n\
=>\tgolang.org/x/net\tv0.23.0\th1:xyz=\n\
dep\texample.com/local\tv0.0.0-00010101000000-000000000000\n\
=>\t../local\t\t\n\
build\t-compiler=gc\n\
build\tGOOS=linux\n";

    fn names(packages: &[Package]) -> Vec<(&str, &str)> {
        packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect()
    }

    #[test]
    fn parses_modinfo() {
        let info = BuildInfo {
            go_version: "go1.21.4 X:boringcrypto".into(),
            modinfo: MODINFO.into(),
        };
        let packages = packages(&info, "usr/local/bin/app", 2);
        assert_eq!(
            names(&packages),
            [
                ("github.com/example/app", "v1.4.0"),
                ("github.com/google/uuid", "v1.6.0"),
                ("golang.org/x/net", "v0.23.0"),
                ("stdlib", "1.21.4"),
            ]
        );
        assert!(
            packages
                .iter()
                .all(|p| p.ecosystem == Ecosystem::Go && p.layer == 2)
        );
    }

    #[test]
    fn devel_main_module_is_not_reported() {
        let info = BuildInfo {
            go_version: "go1.22.0".into(),
            modinfo: "path\tcmd/x\nmod\tcmd/x\t(devel)\t\n".into(),
        };
        assert_eq!(names(&packages(&info, "p", 0)), [("stdlib", "1.22.0")]);
    }

    #[test]
    fn finds_blobs_fed_byte_by_byte_and_skips_false_starts() {
        let mut stream = b"\x7fELF".to_vec();
        // A bare magic (as in binaries importing debug/buildinfo), then a pointer-format
        // header, then the real one at an odd offset.
        stream.extend_from_slice(MAGIC);
        stream.extend_from_slice(b"xyz");
        let mut pointer = MAGIC.to_vec();
        pointer.extend_from_slice(&[8, 0]);
        pointer.resize(HEADER, 0);
        stream.extend_from_slice(&pointer);
        stream.extend_from_slice(&[0u8; 1001]);
        stream.extend_from_slice(&encode_inline("go1.21.4", MODINFO));
        stream.extend_from_slice(&[0xffu8; 77]);
        for chunk_size in [1, 3, 13, 14, 4096] {
            let mut scanner = BuildInfoScanner::new();
            for chunk in stream.chunks(chunk_size) {
                if scanner.feed(chunk) {
                    break;
                }
            }
            let info = scanner.finish().expect("found");
            assert_eq!(info.go_version, "go1.21.4");
            assert_eq!(info.modinfo, MODINFO);
        }
    }

    #[test]
    fn a_truncated_blob_is_not_found_and_the_window_stays_small() {
        let blob = encode_inline("go1.21.4", MODINFO);
        let mut scanner = BuildInfoScanner::new();
        scanner.feed(&blob[..blob.len() - 1]);
        assert!(scanner.finish().is_none());

        let mut scanner = BuildInfoScanner::new();
        for _ in 0..100 {
            scanner.feed(&[0xffu8; 4096]);
            assert!(scanner.window.len() < MAGIC.len());
        }
    }

    #[test]
    fn oversized_lengths_are_invalid() {
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, 2]);
        blob.resize(HEADER, 0);
        blob.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(parse_blob(&blob), Blob::Invalid));
    }

    #[test]
    fn scans_readers_of_executables_only() {
        let mut binary = b"\x7fELF".to_vec();
        binary.extend_from_slice(&vec![0u8; 70_001]);
        binary.extend_from_slice(&encode_inline("go1.20.1", MODINFO));
        binary.extend_from_slice(&vec![0u8; 5000]);
        let mut buffer = vec![0u8; 65536];
        let found = scan(&binary[..], &mut buffer, "bin/app", 0).unwrap();
        assert_eq!(found.len(), 4);
        let script = [
            b"#!/bin/sh\n".as_slice(),
            &encode_inline("go1.20.1", MODINFO),
        ]
        .concat();
        assert!(
            scan(&script[..], &mut buffer, "bin/x", 0)
                .unwrap()
                .is_empty()
        );
    }
}
