//! Object storage for recordings: the local filesystem under the data
//! directory by default, or any S3-compatible service when
//! `DEBRIEF_STORAGE_URL` is `s3://bucket[/prefix]` (credentials, region and
//! endpoint from the usual `AWS_*` variables, read with the rest of the
//! configuration).
//!
//! Keys are built by the application from ids, never from file names.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::config::Config;
use crate::error::{AppError, AppResult};

/// Why the storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no supported store.
    #[error("DEBRIEF_STORAGE_URL must be s3://bucket[/prefix] or unset (local files): {0}")]
    Url(String),
    /// The store could not be built.
    #[error("cannot open object storage: {0}")]
    Open(#[from] object_store::Error),
    /// The local directory could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// Where objects live.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: String,
    /// The directory of local storage (none for S3).
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// A local object file held under an exclusive lock, written in place.
#[derive(Debug)]
pub struct LockedFile(Arc<std::fs::File>);

impl LockedFile {
    /// Writes `bytes` at `offset` and waits until they are on the disk.
    pub async fn write_at(&self, offset: u64, bytes: Bytes) -> AppResult<()> {
        use std::os::unix::fs::FileExt as _;
        let file = self.0.clone();
        tokio::task::spawn_blocking(move || {
            file.write_all_at(&bytes, offset)?;
            file.sync_data()
        })
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
    }
}

/// Size of the parts of a multipart upload.
const PART: usize = 5 << 20;

/// Waits until the entries of the directory at `path` are on the disk.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn failed(error: object_store::Error) -> AppError {
    AppError::internal(error)
}

impl Storage {
    /// Opens the configured store.
    pub fn open(config: &Config) -> Result<Self, StorageError> {
        match &config.storage_url {
            None => {
                let dir = config.data_dir.join("objects");
                std::fs::create_dir_all(&dir).map_err(|source| StorageError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
                Ok(Self {
                    store: Arc::new(store),
                    description: format!("local files in {}", dir.display()),
                    local_root: Some(dir),
                })
            }
            Some(url) => {
                let parsed = url::Url::parse(url).map_err(|e| StorageError::Url(e.to_string()))?;
                if parsed.scheme() != "s3" {
                    return Err(StorageError::Url(format!(
                        "unsupported scheme {}",
                        parsed.scheme()
                    )));
                }
                let bucket = parsed
                    .host_str()
                    .ok_or_else(|| StorageError::Url("no bucket".into()))?;
                let mut builder = object_store::aws::AmazonS3Builder::new();
                for (key, value) in &config.s3_settings {
                    if let Ok(key) = key.to_ascii_lowercase().parse() {
                        builder = builder.with_config(key, value.expose());
                    }
                }
                let s3 = builder.with_bucket_name(bucket).build()?;
                let prefix = parsed.path().trim_matches('/');
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                };
                Ok(Self {
                    store,
                    description: format!("s3://{bucket}/{prefix}"),
                    local_root: None,
                })
            }
        }
    }

    /// Stores `bytes` at `key`.
    pub async fn put(&self, key: &str, bytes: Bytes) -> AppResult<()> {
        self.store
            .put(&Key::from(key), PutPayload::from(bytes))
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// The whole object at `key` (for chunks, which are small).
    pub async fn get(&self, key: &str) -> AppResult<Bytes> {
        let result = self.store.get(&Key::from(key)).await.map_err(failed)?;
        result.bytes().await.map_err(failed)
    }

    /// The bytes `range` of the object at `key`, as a stream of pieces:
    /// never held whole.
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> AppResult<futures::stream::BoxStream<'static, AppResult<Bytes>>> {
        use futures::StreamExt as _;
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&Key::from(key), options)
            .await
            .map_err(failed)?;
        Ok(result.into_stream().map(|piece| piece.map_err(failed)).boxed())
    }

    /// Streams a local file to `key` in parts, never holding it whole.
    pub async fn put_file(&self, key: &str, path: &Path) -> AppResult<()> {
        let mut file = tokio::fs::File::open(path).await.map_err(AppError::internal)?;
        let upload = self.store.put_multipart(&Key::from(key)).await.map_err(failed)?;
        // 5 MiB parts (S3's smallest), at most two in flight: memory stays
        // around 10 MiB per file whatever its size.
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = file.read(&mut buffer).await.map_err(AppError::internal)?;
            if read == 0 {
                break;
            }
            writer.wait_for_capacity(1).await.map_err(failed)?;
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(failed)?;
        Ok(())
    }

    /// The file holding `key` when objects are local files (None on S3):
    /// checks read it where it lies instead of from a copy.
    pub fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.local_root.as_ref().map(|root| root.join(key))
    }

    /// On local disk, the object `key` opened for writing in place (created
    /// if missing) under an exclusive lock, waiting for another holder; the
    /// lock ends when the [`LockedFile`] is dropped or its process dies.
    /// None on S3, whose objects cannot be written in place.
    pub async fn lock_for_writing(&self, key: &str) -> AppResult<Option<LockedFile>> {
        let Some(path) = self.local_path(key) else {
            return Ok(None);
        };
        let file = tokio::task::spawn_blocking(move || {
            let folder = path.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(folder)?;
            let created = !path.exists();
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            if created {
                // The new file's name reaches the disk before a chunk
                // written into it is committed.
                sync_dir(folder)?;
            }
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
        Ok(Some(LockedFile(Arc::new(file))))
    }

    /// Moves the object at `from` to `to`: on local disk a rename, on the
    /// disk when this returns.
    pub async fn rename(&self, from: &str, to: &str) -> AppResult<()> {
        self.store
            .rename(&Key::from(from), &Key::from(to))
            .await
            .map_err(failed)?;
        if let Some(folder) = self.local_path(to).and_then(|p| p.parent().map(Path::to_owned)) {
            tokio::task::spawn_blocking(move || sync_dir(&folder))
                .await
                .map_err(AppError::internal)?
                .map_err(AppError::internal)?;
        }
        Ok(())
    }

    /// Copies the object at `key` into a local file, streaming.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> AppResult<()> {
        let result = self.store.get(&Key::from(key)).await.map_err(failed)?;
        let mut stream = result.into_stream();
        let mut file = tokio::fs::File::create(path).await.map_err(AppError::internal)?;
        while let Some(bytes) = stream.try_next().await.map_err(failed)? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
                .await
                .map_err(AppError::internal)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(AppError::internal)?;
        Ok(())
    }

    /// Deletes one object; a missing one is fine.
    pub async fn delete(&self, key: &str) -> AppResult<()> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    /// Deletes every object under `prefix` (e.g. `uploads/{id}/`).
    pub async fn delete_prefix(&self, prefix: &str) -> AppResult<()> {
        let keys: Vec<Key> = self
            .store
            .list(Some(&Key::from(prefix)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(failed)?;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        // On local disk a write that was killed leaves a staging file
        // (`<key>#<n>`) that listing does not show: remove the folder.
        if let Some(root) = &self.local_root
            && let Some(folder) = prefix.strip_suffix('/').filter(|p| !p.is_empty())
        {
            match tokio::fs::remove_dir_all(root.join(folder)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AppError::internal(e)),
            }
        }
        Ok(())
    }

    /// The keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> AppResult<Vec<String>> {
        self.store
            .list(Some(&Key::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(failed)
    }
}
