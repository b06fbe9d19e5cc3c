//! Bench (prints figures, asserts nothing about speed): scan time and peak memory of the
//! layer scanner. With layer files as arguments it scans them as one image (a `.tar`,
//! `.tar.gz` or `.tar.zst` each, base first); without, it scans a synthetic image whose
//! one layer streams 1 GiB (a dpkg status, Python packages and 1 GiB of file contents)
//! straight from memory, so the figure is the scanner's own, not the disk's.
//! Run: `cargo bench -p registry-scanner --bench scan [-- LAYER…]`; env SYNTHETIC_MB.

use std::io::Read;
use std::time::Instant;

use registry_scanner::layers::{LayerInput, scan_layers_with_warnings};

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn media_type(path: &str) -> &'static str {
    if path.ends_with(".gz") || path.ends_with(".tgz") {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if path.ends_with(".zst") {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    }
}

/// A tar stream built on the fly: a dpkg status, a few Python packages, then `mb` MiB
/// of pseudo-random executables (ELF magic, so the Go build-info search reads them all)
/// in 16 MiB files; never more than one header in memory.
struct SyntheticLayer {
    pending: std::collections::VecDeque<u8>,
    files_left: u64,
    file_bytes_left: u64,
    seed: u64,
    trailer_written: bool,
}

const FILE_SIZE: u64 = 16 * 1024 * 1024;

impl SyntheticLayer {
    fn new(mb: u64) -> Self {
        let mut s = SyntheticLayer {
            pending: Default::default(),
            files_left: mb.div_ceil(16),
            file_bytes_left: 0,
            seed: 0x9e37_79b9_7f4a_7c15,
            trailer_written: false,
        };
        let mut status = String::new();
        for i in 0..400 {
            status.push_str(&format!(
                "Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\nSource: src{}\n\n",
                i / 4
            ));
        }
        s.push_file("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
        s.push_file("var/lib/dpkg/status", status.as_bytes());
        for i in 0..50 {
            let path = format!("usr/lib/python3/dist-packages/mod{i}-1.0.dist-info/METADATA");
            s.push_file(
                &path,
                format!("Name: mod{i}\nVersion: 1.0.{i}\n").as_bytes(),
            );
        }
        s
    }

    fn header(path: &str, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(size);
        h.set_mode(mode);
        h.set_cksum();
        h
    }

    fn push_file(&mut self, path: &str, data: &[u8]) {
        self.pending
            .extend(Self::header(path, data.len() as u64, 0o644).as_bytes());
        self.pending.extend(data);
        let pad = (512 - data.len() % 512) % 512;
        self.pending.extend(std::iter::repeat_n(0u8, pad));
    }
}

impl Read for SyntheticLayer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            for (dst, src) in buf.iter_mut().zip(self.pending.drain(..n)) {
                *dst = src;
            }
            return Ok(n);
        }
        if self.file_bytes_left > 0 {
            let n = buf.len().min(self.file_bytes_left as usize);
            for b in &mut buf[..n] {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                *b = self.seed as u8;
            }
            self.file_bytes_left -= n as u64;
            return Ok(n);
        }
        if self.files_left > 0 {
            self.files_left -= 1;
            let path = format!("data/blob{}.bin", self.files_left);
            // Executables with an ELF header: the Go build-info search reads every byte.
            self.pending
                .extend(Self::header(&path, FILE_SIZE, 0o755).as_bytes());
            self.pending.extend(b"\x7fELF");
            self.file_bytes_left = FILE_SIZE - 4;
            return self.read(buf);
        }
        if !self.trailer_written {
            self.trailer_written = true;
            self.pending.extend(std::iter::repeat_n(0u8, 1024));
            return self.read(buf);
        }
        Ok(0)
    }
}

fn report(label: &str, bytes: u64, started: Instant, scan: &registry_scanner::layers::LayerScan) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label}: {} MiB in {secs:.2} s ({:.0} MiB/s), peak RSS {} MiB, {} packages, distro {:?}, {} warnings",
        bytes / (1024 * 1024),
        bytes as f64 / (1024.0 * 1024.0) / secs,
        peak_rss_kib() / 1024,
        scan.inventory.packages.len(),
        scan.inventory.distro.as_ref().map(|d| format!(
            "{} {}",
            d.id,
            d.version_id.clone().unwrap_or_default()
        )),
        scan.warnings.len()
    );
}

fn main() {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    println!("peak RSS before scanning: {} MiB", peak_rss_kib() / 1024);
    if files.is_empty() {
        let mb: u64 = std::env::var("SYNTHETIC_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let started = Instant::now();
        let scan = scan_layers_with_warnings([LayerInput {
            media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
            reader: SyntheticLayer::new(mb),
        }])
        .expect("synthetic scan");
        report(
            &format!("synthetic {mb} MiB layer"),
            mb * 1024 * 1024,
            started,
            &scan,
        );
        return;
    }
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let started = Instant::now();
    let layers = files.iter().map(|f| LayerInput {
        media_type: media_type(f).to_owned(),
        reader: std::io::BufReader::new(std::fs::File::open(f).expect("layer file")),
    });
    let scan = scan_layers_with_warnings(layers).expect("scan");
    report(
        &format!("{} layer file(s)", files.len()),
        bytes,
        started,
        &scan,
    );
}
