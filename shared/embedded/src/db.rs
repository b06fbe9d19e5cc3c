//! Opening the redb database shared by the embedded metadata store and job queue, and
//! running blocking transactions off the async runtime.

use std::path::Path;
use std::sync::Arc;

use redb::Database;
use registry_core::{RegistryError, Result};

/// Opens (or creates) the database file at `path`, creating parent directories.
pub fn open_database(path: &Path) -> Result<Arc<Database>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(RegistryError::storage)?;
    }
    let db = Database::create(path).map_err(RegistryError::storage)?;
    Ok(Arc::new(db))
}

/// Runs `f` on the blocking pool: redb calls block on disk I/O and fsync.
pub(crate) async fn blocking<T, F>(db: &Arc<Database>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Database) -> Result<T> + Send + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || f(&db))
        .await
        .map_err(RegistryError::storage)?
}
