//! Reads rpm databases in the SQLite format (`rpmdb.sqlite`, rpm ≥ 4.16: RHEL 9, Fedora
//! 33+, Rocky/Alma 9, Amazon Linux 2023…): table `Packages(hnum, blob)`, each blob an rpm
//! header. The older BerkeleyDB (`Packages`) and NDB (`Packages.db`, SUSE) formats are not
//! read.
//!
//! SQLite needs a file: the kept bytes (and the `-wal` log, when one was kept) are written
//! to a private temporary directory, removed afterwards.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use crate::{Ecosystem, Package};

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The fields of an rpm header the scanner uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpmHeader {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub source_rpm: Option<String>,
}

impl RpmHeader {
    /// `[epoch:]version-release`, the epoch only when not 0.
    pub fn evr(&self) -> String {
        let vr = if self.release.is_empty() {
            self.version.clone()
        } else {
            format!("{}-{}", self.version, self.release)
        };
        match self.epoch {
            Some(epoch) if epoch != 0 => format!("{epoch}:{vr}"),
            _ => vr,
        }
    }
}

/// Parses an rpm header blob as rpmdb stores it (no lead, no magic): a 4-byte big-endian
/// index entry count, a 4-byte data length, the 16-byte index entries {tag, type, offset,
/// count} and the data store.
pub fn parse_header(blob: &[u8]) -> Result<RpmHeader, String> {
    let be32 = |at: usize| -> Option<u32> {
        blob.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let count = be32(0).ok_or("header blob shorter than 8 bytes")? as usize;
    let data_len = be32(4).ok_or("header blob shorter than 8 bytes")? as usize;
    let data_start = count
        .checked_mul(16)
        .and_then(|index_len| index_len.checked_add(8))
        .filter(|start| {
            start
                .checked_add(data_len)
                .is_some_and(|end| end <= blob.len())
        })
        .ok_or("header blob truncated")?;
    let data = &blob[data_start..data_start + data_len];
    let mut header = RpmHeader::default();
    for entry in 0..count {
        let at = 8 + entry * 16;
        let (Some(tag), Some(kind), Some(offset)) = (be32(at), be32(at + 4), be32(at + 8)) else {
            return Err("header index truncated".into());
        };
        let offset = offset as usize;
        let string = || -> Result<String, String> {
            if !matches!(kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
                return Err(format!("tag {tag} has type {kind}, not a string"));
            }
            let rest = data
                .get(offset..)
                .ok_or_else(|| format!("tag {tag} points outside the data"))?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("tag {tag}: string not terminated"))?;
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        match tag {
            TAG_NAME => header.name = string()?,
            TAG_VERSION => header.version = string()?,
            TAG_RELEASE => header.release = string()?,
            TAG_ARCH => header.arch = Some(string()?),
            TAG_SOURCERPM => header.source_rpm = Some(string()?),
            TAG_EPOCH => {
                if kind != TYPE_INT32 {
                    return Err(format!("epoch has type {kind}, not int32"));
                }
                let bytes = data
                    .get(offset..offset + 4)
                    .ok_or("epoch points outside the data")?;
                header.epoch = Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
            }
            _ => {}
        }
    }
    if header.name.is_empty() || header.version.is_empty() {
        return Err("header without name or version".into());
    }
    Ok(header)
}

/// The source package name and version-release of a source rpm file name:
/// `openssl-3.0.7-24.el9.src.rpm` → (`openssl`, `3.0.7-24.el9`).
pub fn parse_source_rpm(file_name: &str) -> Option<(&str, &str)> {
    let stem = file_name
        .strip_suffix(".src.rpm")
        .or_else(|| file_name.strip_suffix(".nosrc.rpm"))?;
    let (name_version, _release) = stem.rsplit_once('-')?;
    let (name, _version) = name_version.rsplit_once('-')?;
    (!name.is_empty()).then(|| (name, &stem[name.len() + 1..]))
}

/// The package of a header; `gpg-pubkey` pseudo-packages (imported signing keys) give none.
pub fn header_package(header: &RpmHeader, path: &str, layer: usize) -> Option<Package> {
    if header.name == "gpg-pubkey" {
        return None;
    }
    let version = header.evr();
    let source = header.source_rpm.as_deref().and_then(parse_source_rpm);
    let source_version = source.and_then(|(_, source_vr)| {
        let binary_vr = format!("{}-{}", header.version, header.release);
        (source_vr != binary_vr).then(|| match header.epoch {
            Some(epoch) if epoch != 0 => format!("{epoch}:{source_vr}"),
            _ => source_vr.to_owned(),
        })
    });
    Some(Package {
        ecosystem: Ecosystem::Rpm,
        name: header.name.clone(),
        version,
        source_name: source.map(|(name, _)| name.to_owned()),
        source_version,
        layer,
        path: path.to_owned(),
    })
}

/// The packages of an `rpmdb.sqlite` (with its `-wal` log if one was kept). Headers that do
/// not parse are skipped; an unreadable database is an error.
pub fn read_sqlite(
    db: &[u8],
    wal: Option<&[u8]>,
    path: &str,
    layer: usize,
) -> Result<Vec<Package>, String> {
    let dir = TempDir::new().map_err(|e| format!("temporary directory: {e}"))?;
    let db_path = dir.0.join("rpmdb.sqlite");
    fs::write(&db_path, db).map_err(|e| format!("writing a temporary copy: {e}"))?;
    if let Some(wal) = wal.filter(|wal| !wal.is_empty()) {
        fs::write(dir.0.join("rpmdb.sqlite-wal"), wal)
            .map_err(|e| format!("writing a temporary copy: {e}"))?;
    }
    let connection = Connection::open_with_flags(
        &db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening the rpm database: {e}"))?;
    let mut statement = connection
        .prepare("SELECT blob FROM Packages")
        .map_err(|e| format!("reading the rpm database: {e}"))?;
    let blobs = statement
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .map_err(|e| format!("reading the rpm database: {e}"))?;
    let mut packages = Vec::new();
    for blob in blobs {
        let blob = blob.map_err(|e| format!("reading the rpm database: {e}"))?;
        if let Some(package) = parse_header(&blob)
            .ok()
            .and_then(|header| header_package(&header, path, layer))
        {
            packages.push(package);
        }
    }
    Ok(packages)
}

/// A directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut attempt = 0;
        loop {
            let path = std::env::temp_dir().join(format!(
                "registry-scanner-rpmdb-{}-{nanos}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Builds header blobs for tests: string tags and an int32 epoch.
#[cfg(test)]
pub(crate) fn build_header(strings: &[(u32, &str)], epoch: Option<u32>) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    // A region tag first, as real headers have (HEADER_IMMUTABLE, type BIN).
    index.push((63u32, 7u32, 0u32, 16u32));
    data.extend_from_slice(&[0u8; 16]);
    if let Some(epoch) = epoch {
        while data.len() % 4 != 0 {
            data.push(0);
        }
        index.push((TAG_EPOCH, TYPE_INT32, data.len() as u32, 1));
        data.extend_from_slice(&epoch.to_be_bytes());
    }
    for (tag, value) in strings {
        index.push((*tag, TYPE_STRING, data.len() as u32, 1));
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for (tag, kind, offset, count) in index {
        for field in [tag, kind, offset, count] {
            blob.extend_from_slice(&field.to_be_bytes());
        }
    }
    blob.extend_from_slice(&data);
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl() -> Vec<u8> {
        build_header(
            &[
                (TAG_NAME, "openssl-libs"),
                (TAG_VERSION, "3.0.7"),
                (TAG_RELEASE, "24.el9"),
                (TAG_ARCH, "x86_64"),
                (TAG_SOURCERPM, "openssl-3.0.7-24.el9.src.rpm"),
            ],
            Some(1),
        )
    }

    #[test]
    fn parses_a_header_blob() {
        let header = parse_header(&openssl()).unwrap();
        assert_eq!(header.name, "openssl-libs");
        assert_eq!(header.evr(), "1:3.0.7-24.el9");
        assert_eq!(header.arch.as_deref(), Some("x86_64"));
        let package = header_package(&header, "var/lib/rpm/rpmdb.sqlite", 0).unwrap();
        assert_eq!(package.source_name.as_deref(), Some("openssl"));
        assert_eq!(package.source_version, None);
        assert_eq!(package.ecosystem, Ecosystem::Rpm);
    }

    #[test]
    fn rejects_truncated_blobs() {
        let blob = openssl();
        assert!(parse_header(&blob[..blob.len() - 1]).is_err());
        assert!(parse_header(&blob[..6]).is_err());
        let mut huge = blob.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn source_rpm_names() {
        assert_eq!(
            parse_source_rpm("openssl-3.0.7-24.el9.src.rpm"),
            Some(("openssl", "3.0.7-24.el9"))
        );
        assert_eq!(
            parse_source_rpm("python3.11-3.11.5-1.el9_3.src.rpm"),
            Some(("python3.11", "3.11.5-1.el9_3"))
        );
        assert_eq!(parse_source_rpm("(none)"), None);
        assert_eq!(parse_source_rpm("x-1.src.rpm"), None);
    }

    fn write_db(path: &std::path::Path, blobs: &[Vec<u8>]) -> Connection {
        let connection = Connection::open(path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
            )
            .unwrap();
        for blob in blobs {
            connection
                .execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
                .unwrap();
        }
        connection
    }

    #[test]
    fn reads_an_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let pubkey = build_header(&[(TAG_NAME, "gpg-pubkey"), (TAG_VERSION, "fd431d51")], None);
        drop(write_db(&path, &[openssl(), pubkey, b"garbage".to_vec()]));
        let db = fs::read(&path).unwrap();
        let packages = read_sqlite(&db, None, "var/lib/rpm/rpmdb.sqlite", 3).unwrap();
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].name, "openssl-libs");
        assert_eq!(packages[0].layer, 3);
        assert!(read_sqlite(b"not a database", None, "x", 0).is_err());
    }

    #[test]
    fn reads_rows_only_in_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let connection = write_db(&path, &[]);
        connection
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
            .unwrap();
        connection
            .execute("INSERT INTO Packages (blob) VALUES (?1)", [openssl()])
            .unwrap();
        // Copied while the connection is open: the row is only in the log.
        let db = fs::read(&path).unwrap();
        let wal = fs::read(dir.path().join("rpmdb.sqlite-wal")).unwrap();
        assert!(!wal.is_empty());
        assert!(read_sqlite(&db, None, "p", 0).unwrap().is_empty());
        let packages = read_sqlite(&db, Some(&wal), "p", 0).unwrap();
        assert_eq!(packages.len(), 1);
        drop(connection);
    }
}
