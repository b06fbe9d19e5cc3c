//! Reads an image's layers (tar archives, plain, gzip or zstd) as streams, applies them in
//! order as the OCI image spec's changeset rules say (whiteouts, opaque directories,
//! replacements) and finds the distribution and the packages of the final filesystem with
//! the detectors of [`crate::detect`].
//!
//! Memory is constant with the size of the layers by construction: each layer is read
//! once, entry by entry, through a decompressor with a bounded window (gzip: 32 KiB; zstd:
//! the frame's window, at most 128 MiB by zstd's default limit); of the entries only
//! what the detectors need is kept, keyed by path:
//! - the content of the OS metadata files picked by [`detect::classify`] (`os-release`,
//!   the dpkg, apk and rpm databases; at most [`detect::MAX_KEPT_FILE`] each, bigger ones
//!   are skipped with a warning);
//! - the packages (not the files) of language metadata files (`METADATA`, `package.json`,
//!   `Cargo.lock`, `pom.properties`), parsed as they are read;
//! - the packages of Go binaries and Java archives, found by streaming detectors that hold
//!   a bounded window ([`detect::go`], [`detect::java`]);
//! - the targets of the symlinks the OS lookups may go through
//!   ([`detect::is_symlink_anchor`]).
//!
//! So memory grows with the number of packages found, never with the bytes read. Each kept
//! item remembers the index of the layer that last wrote it, reported as
//! [`Package::layer`](crate::Package::layer).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Bound;

use flate2::read::MultiGzDecoder;

use crate::detect::{self, File, FinalFs};
use crate::{Inventory, Package, ScanError};

/// One layer: its media type (from the manifest) and its blob as a stream.
pub struct LayerInput<R: Read> {
    pub media_type: String,
    pub reader: R,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type declares; `None` when the media type is not a layer
/// type the scanner reads (OCI `tar`, `tar+gzip`, `tar+zstd` and their `nondistributable`
/// variants; Docker `rootfs.diff.tar(.gzip)` and `rootfs.foreign.diff.tar.gzip`).
/// Parameters after `;` are ignored.
pub fn compression_of(media_type: &str) -> Option<Compression> {
    let media_type = media_type.split(';').next().unwrap_or_default().trim();
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// What a scan found, and what it could not read without failing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerScan {
    pub inventory: Inventory,
    /// Files skipped or unreadable (too big, corrupt databases, unreadable archives…), one
    /// sentence each.
    pub warnings: Vec<String>,
}

/// Scans layers (index 0 = base) and returns the distribution and the packages of the final
/// filesystem. See [`scan_layers_with_warnings`].
pub fn scan_layers<R: Read>(
    layers: impl IntoIterator<Item = LayerInput<R>>,
) -> Result<Inventory, ScanError> {
    scan_layers_with_warnings(layers).map(|scan| scan.inventory)
}

/// Scans layers (index 0 = base) and returns the distribution and the packages of the final
/// filesystem, with warnings about what was skipped.
///
/// Layers are taken from the iterator one at a time, each read to its end before the next
/// is asked for (so a caller may open its streams lazily). A layer of an unknown media type
/// is [`ScanError::MediaType`]. The compression is taken from the data's magic bytes
/// (gzip `1f 8b`, zstd `28 b5 2f fd`, else plain tar), so a layer whose media type says
/// gzip but whose data is plain is still read. A layer that is not a readable tar is
/// [`ScanError::Layer`]; problems inside files are warnings.
pub fn scan_layers_with_warnings<R: Read>(
    layers: impl IntoIterator<Item = LayerInput<R>>,
) -> Result<LayerScan, ScanError> {
    let mut tree = Tree::default();
    let mut warnings = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    for (index, layer) in layers.into_iter().enumerate() {
        if compression_of(&layer.media_type).is_none() {
            return Err(ScanError::MediaType(layer.media_type));
        }
        let error = |e: io::Error| ScanError::Layer {
            layer: index,
            message: e.to_string(),
        };
        let reader = decompress(layer.reader).map_err(error)?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(error)? {
            let mut entry = entry.map_err(error)?;
            apply(&mut tree, &mut entry, index, &mut warnings, &mut buffer).map_err(error)?;
        }
        // Past the end-of-archive blocks: read the rest, so that the compressed stream is
        // checked to its end (gzip's CRC) and the caller's reader is consumed.
        if let Err(e) = io::copy(&mut archive.into_inner(), &mut io::sink()) {
            warnings.push(format!("layer {index}: after the end of the archive: {e}"));
        }
    }
    let os = detect::detect_os(&tree);
    warnings.extend(os.warnings);
    let mut packages = os.packages;
    for node in tree.nodes.into_values() {
        if let Node::Found {
            packages: found, ..
        } = node
        {
            packages.extend(found);
        }
    }
    packages.sort();
    packages.dedup();
    Ok(LayerScan {
        inventory: Inventory {
            distro: os.distro,
            packages,
        },
        warnings,
    })
}

/// A decompressing reader chosen by the first bytes.
fn decompress<'a, R: Read + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = magic[..filled].to_vec();
    let whole = io::Cursor::new(head).chain(reader);
    Ok(match &magic[..filled] {
        [0x1f, 0x8b, ..] => Box::new(MultiGzDecoder::new(whole)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(whole)?),
        _ => Box::new(whole),
    })
}

/// What is kept of a path of the filesystem being built.
#[derive(Debug, Clone)]
enum Node {
    /// The content of an OS metadata file.
    File { layer: usize, data: Vec<u8> },
    /// A symlink the OS lookups may go through.
    Symlink { layer: usize, target: String },
    /// The packages found in a file (language metadata, Go binary, Java archive).
    Found {
        layer: usize,
        packages: Vec<Package>,
    },
}

impl Node {
    fn layer(&self) -> usize {
        match self {
            Node::File { layer, .. } | Node::Symlink { layer, .. } | Node::Found { layer, .. } => {
                *layer
            }
        }
    }
}

/// The kept part of the filesystem, by normalised path.
#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Removes the nodes under `dir` (not `dir` itself; everything for the root `""`) that
    /// `keep` does not keep.
    fn remove_under(&mut self, dir: &str, keep: impl Fn(&Node) -> bool) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(&prefix))
            .filter(|(_, node)| !keep(node))
            .map(|(path, _)| path.clone())
            .collect();
        for path in doomed {
            self.nodes.remove(&path);
        }
    }

    /// A non-directory written at `path` replaces whatever was there, and what was under it
    /// if it was a directory.
    fn replace(&mut self, path: &str) {
        self.nodes.remove(path);
        self.remove_under(path, |_| false);
    }

    /// `.wh.<name>` in layer `layer`: `path` and its subtree disappear from lower layers.
    fn whiteout(&mut self, path: &str, layer: usize) {
        if self
            .nodes
            .get(path)
            .is_some_and(|node| node.layer() < layer)
        {
            self.nodes.remove(path);
        }
        self.remove_under(path, |node| node.layer() >= layer);
    }

    /// `.wh..wh..opq` in `dir`, layer `layer`: what lower layers had in `dir` disappears.
    fn opaque(&mut self, dir: &str, layer: usize) {
        self.remove_under(dir, |node| node.layer() >= layer);
    }

    /// `path` with its symlinks followed (at most 40, as Linux); `None` on a loop.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut components: Vec<String> = normalize(path)
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let mut hops = 0;
        'restart: loop {
            let mut current = String::new();
            for (i, component) in components.iter().enumerate() {
                let next = if current.is_empty() {
                    component.clone()
                } else {
                    format!("{current}/{component}")
                };
                if let Some(Node::Symlink { target, .. }) = self.nodes.get(&next) {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        current.clone()
                    };
                    let rest = components[i + 1..].join("/");
                    let joined = format!("{base}/{target}/{rest}");
                    components = normalize(&joined)
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect();
                    continue 'restart;
                }
                current = next;
            }
            return Some(current);
        }
    }
}

impl FinalFs for Tree {
    fn lookup(&self, path: &str) -> Option<File<'_>> {
        let resolved = self.resolve(path)?;
        match self.nodes.get_key_value(&resolved) {
            Some((path, Node::File { layer, data })) => Some(File {
                path,
                layer: *layer,
                data,
            }),
            _ => None,
        }
    }

    fn list(&self, dir: &str) -> Vec<File<'_>> {
        let Some(dir) = self.resolve(dir) else {
            return Vec::new();
        };
        let prefix = format!("{dir}/");
        self.nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(&prefix))
            .filter_map(|(path, node)| match node {
                Node::File { layer, data } if !path[prefix.len()..].contains('/') => Some(File {
                    path,
                    layer: *layer,
                    data,
                }),
                _ => None,
            })
            .collect()
    }
}

/// A tar path made relative to the root, without `.` components, repeated or trailing
/// slashes; `..` goes up, never above the root.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Applies one tar entry of layer `layer` to the tree.
fn apply<R: Read>(
    tree: &mut Tree,
    entry: &mut tar::Entry<'_, R>,
    layer: usize,
    warnings: &mut Vec<String>,
    buffer: &mut [u8],
) -> io::Result<()> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
    {
        return Ok(());
    }
    let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
    if path.is_empty() {
        return Ok(());
    }
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", path.as_str()),
    };
    if let Some(hidden) = name.strip_prefix(".wh.") {
        if hidden == ".wh..opq" {
            tree.opaque(dir, layer);
        } else if !hidden.starts_with(".wh.") && !hidden.is_empty() {
            let hidden = if dir.is_empty() {
                hidden.to_owned()
            } else {
                format!("{dir}/{hidden}")
            };
            tree.whiteout(&hidden, layer);
        }
        // Other `.wh..wh.*` names are aufs bookkeeping: ignored.
        return Ok(());
    }
    if kind.is_dir() {
        // Directories merge with lower ones; a directory replaces a lower non-directory.
        tree.nodes.remove(&path);
        return Ok(());
    }
    tree.replace(&path);

    if kind.is_symlink() {
        if detect::is_symlink_anchor(&path)
            && let Some(target) = entry.link_name_bytes()
        {
            let target = String::from_utf8_lossy(&target).into_owned();
            tree.nodes.insert(path, Node::Symlink { layer, target });
        }
        return Ok(());
    }
    if kind.is_hard_link() {
        // Same content as an earlier file (of this or a lower layer): take what was kept of
        // it, when it was kept for the same reason.
        let Some(target) = entry.link_name_bytes() else {
            return Ok(());
        };
        let target = normalize(&String::from_utf8_lossy(&target));
        if detect::classify(&target) != detect::classify(&path) {
            return Ok(());
        }
        let node = match tree.nodes.get(&target) {
            Some(Node::File { data, .. }) => Node::File {
                layer,
                data: data.clone(),
            },
            Some(Node::Found { packages, .. }) => Node::Found {
                layer,
                packages: packages
                    .iter()
                    .map(|package| Package {
                        layer,
                        path: path.clone(),
                        ..package.clone()
                    })
                    .collect(),
            },
            _ => return Ok(()),
        };
        tree.nodes.insert(path, node);
        return Ok(());
    }
    if !(kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse()) {
        // Devices, FIFOs: nothing to read.
        return Ok(());
    }

    if let Some(kind) = detect::classify(&path) {
        let size = entry.size();
        if size > detect::MAX_KEPT_FILE {
            warnings.push(format!(
                "layer {layer}: {path}: {size} bytes, over the {} bytes read of metadata \
                 files; skipped",
                detect::MAX_KEPT_FILE
            ));
            return Ok(());
        }
        let mut data = Vec::new();
        if kind.needs_content() {
            data.reserve(size as usize);
            entry.take(detect::MAX_KEPT_FILE).read_to_end(&mut data)?;
        }
        if kind.is_os() {
            tree.nodes.insert(path, Node::File { layer, data });
        } else {
            match detect::parse_standalone(kind, &path, layer, &data) {
                Ok(packages) if !packages.is_empty() => {
                    tree.nodes.insert(path, Node::Found { layer, packages });
                }
                Ok(_) => {}
                Err(e) => warnings.push(format!("layer {layer}: {path}: {e}")),
            }
        }
        return Ok(());
    }
    let packages = if detect::java::is_archive_name(&path) {
        let scan = detect::java::scan_archive(&mut *entry, &path, layer);
        warnings.extend(
            scan.warnings
                .into_iter()
                .map(|warning| format!("layer {layer}: {warning}")),
        );
        scan.packages
    } else if entry.header().mode().is_ok_and(|mode| mode & 0o111 != 0) {
        detect::go::scan(&mut *entry, buffer, &path, layer)?
    } else {
        Vec::new()
    };
    if !packages.is_empty() {
        tree.nodes.insert(path, Node::Found { layer, packages });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            compression_of("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.nondistributable.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            compression_of("application/vnd.oci.image.config.v1+json"),
            None
        );
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./etc/os-release"), "etc/os-release");
        assert_eq!(normalize("/usr//lib/./x/"), "usr/lib/x");
        assert_eq!(normalize("../../etc/../usr/lib"), "usr/lib");
        assert_eq!(normalize("./"), "");
    }

    fn file(layer: usize, data: &str) -> Node {
        Node::File {
            layer,
            data: data.as_bytes().to_vec(),
        }
    }

    fn symlink(target: &str) -> Node {
        Node::Symlink {
            layer: 0,
            target: target.into(),
        }
    }

    #[test]
    fn resolves_symlinks() {
        let mut tree = Tree::default();
        tree.nodes
            .insert("usr/lib/os-release".into(), file(0, "ID=x"));
        tree.nodes
            .insert("etc/os-release".into(), symlink("../usr/lib/os-release"));
        tree.nodes
            .insert("var/lib/rpm".into(), symlink("/usr/lib/sysimage/rpm"));
        tree.nodes
            .insert("usr/lib/sysimage/rpm/rpmdb.sqlite".into(), file(1, "db"));
        tree.nodes.insert("loop/a".into(), symlink("b"));
        tree.nodes.insert("loop/b".into(), symlink("a"));
        assert_eq!(
            tree.lookup("etc/os-release").map(|f| f.path),
            Some("usr/lib/os-release")
        );
        let db = tree.lookup("var/lib/rpm/rpmdb.sqlite").unwrap();
        assert_eq!(
            (db.path, db.layer),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", 1)
        );
        assert!(tree.lookup("loop/a").is_none());
        assert!(tree.lookup("etc/missing").is_none());
    }

    #[test]
    fn whiteouts_spare_the_same_layer() {
        let mut tree = Tree::default();
        tree.nodes.insert("a/x".into(), file(0, ""));
        tree.nodes.insert("a/y".into(), file(1, ""));
        tree.nodes.insert("ab".into(), file(0, ""));
        tree.opaque("a", 1);
        assert_eq!(tree.nodes.keys().collect::<Vec<_>>(), ["a/y", "ab"]);
        tree.whiteout("a", 2);
        assert_eq!(tree.nodes.keys().collect::<Vec<_>>(), ["ab"]);
        tree.opaque("", 3);
        assert!(tree.nodes.is_empty());
    }
}
