//! `registry vulndb import --direct`: an OSV directory or zip imported straight into the
//! configured backend, with progress bars (reading, then storing).

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use registry_core::ports::VulnDbInfo;
use registry_core::{RegistryError, Result};

use crate::compose::build_scanning;
use crate::config::ServerConfig;

/// A spinner with `message`, ticking on its own (on a terminal; hidden otherwise).
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Imports `path` (a directory of OSV JSON files or a zip of them) into `config`'s
/// backend: the new database becomes current and scanned images are queued for a rescan.
pub async fn import_direct(config: &ServerConfig, path: &Path) -> Result<VulnDbInfo> {
    let scanning = build_scanning(config).await?;
    let reading = spinner(&format!("reading {}", path.display()));
    let counter = reading.clone();
    let source = path.to_owned();
    let groups = tokio::task::spawn_blocking(move || {
        let on_read = |n: u64| {
            if n.is_multiple_of(500) {
                counter.set_message(format!("read {n} advisories"));
            }
        };
        if source.is_dir() {
            registry_scan::import::group(registry_scanner::osv::read_dir(&source), on_read)
        } else {
            let file = std::fs::File::open(&source).map_err(|e| {
                RegistryError::Unsupported(format!("cannot open {}: {e}", source.display()))
            })?;
            registry_scan::import::group_zip(std::io::BufReader::new(file), on_read)
        }
    })
    .await
    .map_err(RegistryError::storage)??;
    reading.finish_with_message(format!(
        "read {} advisories ({} skipped)",
        groups.advisories, groups.skipped
    ));
    let storing = ProgressBar::new(groups.keys());
    storing.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} package keys stored {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = storing.clone();
    let info = scanning
        .scanner
        .import_database(&name, groups, move |done, _| bar.set_position(done))
        .await?;
    storing.finish();
    Ok(info)
}
