//! `AppendChunk`: one chunk, stored, then committed by an offset-checked
//! update of the upload row.
//!
//! The bytes are written first — on local disk into the upload's one file
//! at their offset, under that file's lock; on S3 as an object of their own
//! under a unique key — and fed meanwhile to the upload's running digest;
//! then `committed_bytes = committed_bytes + len WHERE committed_bytes =
//! offset` commits them together with their chunk row and the new digest.
//! Whatever instance takes the chunk, and whenever a process dies,
//! committed bytes (and the digest of them) are never changed: bytes that
//! were not committed lie past the committed size (overwritten by the next
//! chunk) or in an orphan object that cleanup deletes.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::digest::Running;
use super::entity::{State, chunk, upload};
use super::model::{MIN_CHUNK, max_chunk};
use super::{lifecycle, store};
use crate::error::{AppError, AppResult, Violations};
use crate::events::model::Payload;
use crate::shared::Shared;

/// A chunk to append.
#[derive(Debug)]
pub struct Chunk {
    /// Where it starts.
    pub offset: i64,
    /// Its CRC32C, when the client sent one.
    pub crc32c: Option<u32>,
    /// The bytes.
    pub data: Bytes,
}

/// The committed size and the new expiry after an append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// Bytes committed.
    pub committed_bytes: i64,
    /// When the upload expires if idle.
    pub expires_at: DateTime<Utc>,
}

fn offset_mismatch(committed: i64) -> AppError {
    AppError::Aborted {
        reason: "OFFSET_MISMATCH",
        message: format!("the chunk must start at the committed size, {committed}"),
        metadata: [("committed_bytes".to_owned(), committed.to_string())].into(),
    }
}

/// Checks a chunk against the upload's limits, reporting every problem.
fn check(upload: &upload::Model, chunk: &Chunk, max_message_bytes: usize) -> AppResult<u32> {
    let mut bad = Violations::default();
    let len = i64::try_from(chunk.data.len()).unwrap_or(i64::MAX);
    if len == 0 {
        bad.add("chunk", "is empty");
    }
    if chunk.offset < 0 {
        bad.add("offset", "must not be negative");
    }
    let max = max_chunk(max_message_bytes);
    if len > max {
        bad.add("chunk", format!("must be at most {max} bytes"));
    }
    let end = chunk.offset.saturating_add(len);
    if end > upload.size_bytes {
        bad.add(
            "chunk",
            format!(
                "ends at byte {end}, past the declared size of {} bytes",
                upload.size_bytes
            ),
        );
    } else if len > 0 && end < upload.size_bytes && len < MIN_CHUNK {
        bad.add(
            "chunk",
            format!("must be at least {MIN_CHUNK} bytes, except the last one"),
        );
    }
    let crc = crc32c::crc32c(&chunk.data);
    if chunk.crc32c.is_some_and(|sent| sent != crc) {
        bad.add("crc32c", "does not match the chunk's bytes");
    }
    bad.finish(|| Some(crc))
}

/// A chunk already committed at this offset with the same bytes: a retry.
async fn is_repeat(
    state: &Shared,
    user_id: Uuid,
    upload_id: Uuid,
    offset: i64,
    len: i64,
    crc: u32,
) -> AppResult<bool> {
    let scoped = state.db.read_as_user(user_id).await?;
    let found = store::chunk_at(&scoped, upload_id, offset).await?;
    Ok(found.is_some_and(|c| c.size_bytes == len && c.crc32c == i64::from(crc)))
}

/// Appends `chunk` to the upload `id` of `user_id`.
pub async fn append(state: &Shared, user_id: Uuid, id: Uuid, chunk: Chunk) -> AppResult<Appended> {
    let now = Utc::now();
    let upload = {
        let scoped = state.db.read_as_user(user_id).await?;
        store::get_active(&scoped, id, now).await?
    };
    let crc = check(&upload, &chunk, state.config.max_message_bytes)?;
    let len = i64::try_from(chunk.data.len()).unwrap_or(i64::MAX);
    if chunk.offset != upload.committed_bytes {
        return if chunk.offset < upload.committed_bytes
            && is_repeat(state, user_id, id, chunk.offset, len, crc).await?
        {
            Ok(Appended {
                committed_bytes: upload.committed_bytes,
                expires_at: upload.expires_at,
            })
        } else {
            Err(offset_mismatch(upload.committed_bytes))
        };
    }
    let offset = chunk.offset;
    let expires_at =
        now + chrono::Duration::from_std(state.config.upload_expiry).unwrap_or(chrono::Duration::days(1));
    if let Some(appended) = store_and_commit(state, &upload, chunk, crc, expires_at).await? {
        return Ok(appended);
    }
    // Another request committed this offset first.
    let scoped = state.db.read_as_user(user_id).await?;
    let now_committed = store::get_active(&scoped, id, now).await?.committed_bytes;
    drop(scoped);
    if is_repeat(state, user_id, id, offset, len, crc).await? {
        Ok(Appended {
            committed_bytes: now_committed,
            expires_at,
        })
    } else {
        Err(offset_mismatch(now_committed))
    }
}

/// The running digest of `upload` (read with the chunk's offset as its
/// committed size) with the chunk fed to it, in the form kept in its row;
/// None for an upload begun without one. Hashing runs on a blocking thread,
/// beside the chunk's write.
async fn advance(upload: &upload::Model, data: Bytes) -> AppResult<Option<Vec<u8>>> {
    let Some(mut digest) = Running::resume(upload.digest_state.as_deref(), upload.committed_bytes) else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || {
        digest.update(&data);
        Some(digest.save())
    })
    .await
    .map_err(AppError::internal)
}

/// Stores the chunk's bytes and commits them; None if the offset was
/// committed by another request first (or the upload ended meanwhile).
///
/// On local disk the bytes go straight into the upload's one file at their
/// offset (so completing writes nothing again), under the file's lock: the
/// committed size is read again once it is held, and bytes are only ever
/// written past it, so committed bytes are never overwritten. On S3 each
/// chunk is an object of its own under a unique key.
async fn store_and_commit(
    state: &Shared,
    upload: &upload::Model,
    chunk: Chunk,
    crc: u32,
    expires_at: DateTime<Utc>,
) -> AppResult<Option<Appended>> {
    let (id, user_id) = (upload.id, upload.user_id);
    let len = i64::try_from(chunk.data.len()).unwrap_or(i64::MAX);
    let held = state.storage.lock_for_writing(&store::data_key(id)).await?;
    let (key, digest) = if let Some(file) = &held {
        let current = {
            let scoped = state.db.read_as_user(user_id).await?;
            store::get_active(&scoped, id, Utc::now()).await
        };
        let current = match current {
            Ok(current) if current.committed_bytes == chunk.offset => current,
            Ok(_) => return Ok(None),
            Err(error) => {
                // Ended while this request waited: taking the lock may have
                // made its file again, which must not stay behind.
                drop(held);
                lifecycle::delete_objects(state, upload).await;
                return Err(error);
            }
        };
        let at = u64::try_from(chunk.offset).unwrap_or(0);
        let (digest, written) = tokio::join!(
            advance(&current, chunk.data.clone()),
            file.write_at(at, chunk.data)
        );
        written?;
        (store::data_key(id), digest?)
    } else {
        let key = store::chunk_key(id, chunk.offset);
        let (digest, put) = tokio::join!(
            advance(upload, chunk.data.clone()),
            state.storage.put(&key, chunk.data)
        );
        put?;
        (key, digest?)
    };
    let scoped = state.db.as_user(user_id).await?;
    let claimed = scoped
        .update_many::<upload::Entity>()
        .col_expr(
            upload::Column::CommittedBytes,
            Expr::col(upload::Column::CommittedBytes).add(len),
        )
        .col_expr(
            upload::Column::ChunkCount,
            Expr::col(upload::Column::ChunkCount).add(1),
        )
        .col_expr(upload::Column::ExpiresAt, Expr::value(expires_at))
        .col_expr(upload::Column::DigestState, Expr::value(digest))
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::State.eq(State::Active))
        .filter(upload::Column::CommittedBytes.eq(chunk.offset))
        .exec()
        .await?;
    if claimed.rows_affected == 1 {
        scoped
            .insert(chunk::ActiveModel {
                upload_id: Set(id),
                user_id: Set(user_id),
                offset: Set(chunk.offset),
                size_bytes: Set(len),
                crc32c: Set(i64::from(crc)),
                object_key: Set(key),
                ..Default::default()
            })
            .await?;
        let progress = Payload::UploadProgress {
            upload: id,
            committed_bytes: chunk.offset + len,
            size_bytes: upload.size_bytes,
        };
        crate::events::publish(&scoped, user_id, Some(upload.meeting_id), progress).await?;
        scoped.commit().await?;
        crate::metrics::upload_bytes(u64::try_from(len).unwrap_or(0));
        return Ok(Some(Appended {
            committed_bytes: chunk.offset + len,
            expires_at,
        }));
    }
    drop(scoped);
    if held.is_some() {
        // Under the lock nothing else commits: the upload ended meanwhile.
        drop(held);
        lifecycle::delete_objects(state, upload).await;
    } else {
        state.storage.delete(&key).await?;
    }
    Ok(None)
}
