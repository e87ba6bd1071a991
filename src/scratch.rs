//! Local scratch space under `{data dir}/tmp`: an upload being assembled, a
//! meeting being processed. Each file or directory is locked (`flock`) by
//! the process using it for as long as it lives, and removed when dropped;
//! one left by a process that was killed is unlocked, so housekeeping can
//! remove it at once rather than guess from its age.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Entries younger than this are never swept: the window between creating
/// one and locking it (microseconds, with a wide margin).
const CREATION_GRACE: Duration = Duration::from_secs(5);

/// Where a lock cannot be taken at all (a file system without `flock`),
/// entries older than this are taken for leftovers.
const UNLOCKABLE_AGE: Duration = Duration::from_secs(24 * 3600);

/// The scratch directory of `data_dir`, created if needed.
pub async fn dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir).await?;
    Ok(dir)
}

/// A scratch file, locked while it lives and removed when dropped.
#[derive(Debug)]
pub struct ScratchFile {
    path: PathBuf,
    _lock: File,
}

impl ScratchFile {
    /// Creates an empty file named `{prefix}{random}` in `dir`.
    pub fn create(dir: &Path, prefix: &str) -> std::io::Result<Self> {
        let (file, path) = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(dir)?
            .keep()
            .map_err(|e| e.error)?;
        file.try_lock().map_err(lock_error)?;
        Ok(Self { path, _lock: file })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A scratch directory, locked while it lives and removed with its
/// contents when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
    _lock: File,
}

impl ScratchDir {
    /// Creates a directory named `{prefix}{random}` in `dir`.
    pub fn create(dir: &Path, prefix: &str) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(dir)?;
        let lock = File::open(dir.path())?;
        lock.try_lock().map_err(lock_error)?;
        Ok(Self { dir, _lock: lock })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn lock_error(error: TryLockError) -> std::io::Error {
    match error {
        TryLockError::Error(error) => error,
        TryLockError::WouldBlock => std::io::Error::other("a fresh scratch entry is locked already"),
    }
}

/// Whether nobody holds the entry at `path` (and so it is a leftover).
fn abandoned(path: &Path, age: Duration) -> bool {
    let Ok(entry) = File::open(path) else {
        return false;
    };
    match entry.try_lock() {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        // No locks here: fall back on age.
        Err(TryLockError::Error(_)) => age > UNLOCKABLE_AGE,
    }
}

/// Removes the entries of the scratch directory `dir` that no process
/// holds: those a killed process left. Returns how many it removed.
pub async fn sweep(dir: &Path) -> usize {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return 0;
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let Ok(metadata) = entry.metadata().await else {
            continue;
        };
        let age = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .unwrap_or_default();
        let path = entry.path();
        let candidate = path.clone();
        let leftover = age > CREATION_GRACE
            && tokio::task::spawn_blocking(move || abandoned(&candidate, age))
                .await
                .unwrap_or(false);
        if !leftover {
            continue;
        }
        let result = if metadata.is_dir() {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        match result {
            Ok(()) => removed += 1,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "could not remove a leftover scratch entry")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_entry_is_in_use_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = ScratchFile::create(dir.path(), "upload-").unwrap();
        let work = ScratchDir::create(dir.path(), "work-").unwrap();
        assert!(!abandoned(file.path(), Duration::ZERO));
        assert!(!abandoned(work.path(), Duration::ZERO));
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "a dropped scratch file is removed");
        // What a killed process leaves: entries nobody holds.
        let ScratchDir { dir: kept, _lock } = work;
        let kept = kept.keep();
        drop(_lock);
        assert!(abandoned(&kept, Duration::ZERO));
        let stray = dir.path().join("upload-stray");
        std::fs::write(&stray, b"half an upload").unwrap();
        assert!(abandoned(&stray, Duration::ZERO));
    }
}
