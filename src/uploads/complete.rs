//! `CompleteUpload`: the chunks become the meeting's original recording,
//! after every check — size, checksum, scanners, type, and a decode — or
//! the upload is rejected and leaves nothing behind.
//!
//! On local disk the chunks were written in place into one file, and
//! hashed and scanned as they arrived ([`super::digest`]): it is probed
//! where it lies and renamed to the original, so every byte is written once
//! and none is read back. (An upload begun before the running digest was
//! kept is read once instead, each chunk's checksum checked.) On S3 the
//! chunk objects are streamed one at a time into a scratch file (memory
//! bounded by one chunk), checked there, and streamed to storage as the
//! original object.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::digest::Running;
use super::entity::{State, chunk, upload};
use super::lifecycle::{self, delete_objects};
use super::store;
use crate::audio::container::{self, Container};
use crate::audio::probe::{self, AudioFacts};
use crate::context::RequestMeta;
use crate::error::{AppError, AppResult};
use crate::events::model::Payload;
use crate::meetings::entity::{self as meeting, Status};
use crate::scratch::ScratchFile;
use crate::shared::Shared;
use crate::usage::ledger;

/// A refusal: reason code and explanation.
type Refusal = (&'static str, String);

/// How long a completion holds its upload. A completion runs inside one
/// request, which the server ends after `DEBRIEF_REQUEST_TIMEOUT`; the claim
/// lasts twice that, so it lapses only once its holder is surely gone
/// (killed mid-completion), and the upload can then be completed or ended
/// again.
fn claim_until(state: &Shared, now: DateTime<Utc>) -> DateTime<Utc> {
    let lease = state.config.request_timeout * 2;
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(1))
}

/// Completes the upload `id` of `user_id`.
///
/// The upload is claimed first, in its own transaction, so that no cancel,
/// expiry or second completion ends it while the recording is being
/// stored; nothing is written to storage before that. The recording goes
/// to a key of this upload alone, and becomes the meeting's in the
/// transaction that ends the claim.
pub async fn complete(
    state: &Shared,
    meta: &RequestMeta,
    user_id: Uuid,
    id: Uuid,
) -> AppResult<(upload::Model, meeting::Model)> {
    let now = Utc::now();
    let token = Uuid::now_v7();
    let (upload, chunks) = {
        let scoped = state.db.as_user(user_id).await?;
        let upload = store::get_active(&scoped, id, now).await?;
        if upload.committed_bytes != upload.size_bytes {
            return Err(AppError::FailedPrecondition {
                reason: "UPLOAD_INCOMPLETE",
                message: format!(
                    "{} of {} bytes have arrived; append the rest from offset {}",
                    upload.committed_bytes, upload.size_bytes, upload.committed_bytes
                ),
                metadata: HashMap::from([
                    ("upload".to_owned(), format!("uploads/{id}")),
                    ("committed_bytes".to_owned(), upload.committed_bytes.to_string()),
                ]),
            });
        }
        if !store::claim_completion(&scoped, id, token, claim_until(state, now), now).await? {
            return Err(store::completing());
        }
        let chunks = store::chunks(&scoped, upload.id).await?;
        scoped.commit().await?;
        (upload, chunks)
    };
    let stored = store_recording(state, meta, &upload, &chunks, token).await;
    let (facts, original) = match stored {
        Ok(Ok(stored)) => stored,
        // Refused: the upload was rejected (and its claim with it).
        Ok(Err(refusal)) => return Err(refusal),
        Err(error) => {
            // A failure of ours: let a retry complete it at once.
            if let Ok(scoped) = state.db.as_user(user_id).await
                && store::release_completion(&scoped, id, token).await.is_ok()
            {
                let _ = scoped.commit().await;
            }
            return Err(error);
        }
    };

    let scoped = state.db.as_user(user_id).await?;
    if !store::finish(&scoped, id, State::Completed, None, Some(token), now).await? {
        drop(scoped);
        // The claim lapsed and the upload was ended meanwhile: nothing refers
        // to the recording stored for it (this deletes nothing of an upload
        // that is still active, held by another completion).
        delete_objects(state, &upload).await;
        return Err(AppError::FailedPrecondition {
            reason: "UPLOAD_NOT_ACTIVE",
            message: "the upload was cancelled or expired meanwhile".into(),
            metadata: Default::default(),
        });
    }
    scoped
        .update_many::<meeting::Entity>()
        .col_expr(meeting::Column::FileName, Expr::value(upload.file_name.as_str()))
        .col_expr(
            meeting::Column::ContentType,
            Expr::value(upload.content_type.as_str()),
        )
        .col_expr(meeting::Column::SizeBytes, Expr::value(upload.size_bytes))
        .col_expr(meeting::Column::DurationMs, Expr::value(facts.duration_ms))
        .col_expr(meeting::Column::Codec, Expr::value(facts.codec.as_str()))
        .col_expr(
            meeting::Column::SampleRateHz,
            Expr::value(i32::try_from(facts.sample_rate_hz).unwrap_or(i32::MAX)),
        )
        .col_expr(
            meeting::Column::Channels,
            Expr::value(i32::try_from(facts.channels).unwrap_or(0)),
        )
        .col_expr(meeting::Column::OriginalObject, Expr::value(original.as_str()))
        .filter(meeting::Column::Id.eq(upload.meeting_id))
        .exec()
        .await?;
    crate::meetings::store::transition(&scoped, upload.meeting_id, &[Status::Uploading], Status::Uploaded)
        .await?;
    if let Some(reservation_id) = upload.reservation_id
        && let Some(reservation) = ledger::find(&scoped, reservation_id).await?
    {
        reservation
            .commit(&scoped, upload.size_bytes, Some(upload.meeting_id), now)
            .await?;
    }
    crate::processing::enqueue(state, &scoped, user_id, upload.meeting_id).await?;
    let completed = Payload::UploadCompleted {
        upload: id,
        size_bytes: upload.size_bytes,
    };
    crate::events::publish(&scoped, user_id, Some(upload.meeting_id), completed).await?;
    let done = store::get(&scoped, id, now).await?;
    let meeting = crate::meetings::store::get(&scoped, upload.meeting_id).await?;
    scoped.commit().await?;
    delete_objects(state, &done).await;
    Ok((done, meeting))
}

/// Reads the whole file (hashing and scanning on the way, memory bounded
/// by one buffer), checks it, and stores it as the upload's recording.
/// Ok(Err(..)) is a refusal, after which the upload is rejected; Err(..) a
/// failure of ours. Returns the facts and the key.
async fn store_recording(
    state: &Shared,
    meta: &RequestMeta,
    upload: &upload::Model,
    chunks: &[chunk::Model],
    token: Uuid,
) -> AppResult<Result<(AudioFacts, String), AppError>> {
    let original = store::original_key(upload.meeting_id, upload.id);
    let data_key = store::data_key(upload.id);
    // Chunks stored as objects of their own (on S3, or by an earlier
    // version on local disk) are assembled.
    let written_in_place = chunks.iter().all(|c| c.object_key == data_key);
    // The digest kept as the chunks arrived, unless the upload began
    // without one.
    let kept = Running::resume(upload.digest_state.as_deref(), upload.size_bytes);
    let whole = match (
        state.storage.local_path(&data_key),
        state.storage.local_path(&original),
    ) {
        (Some(data), Some(moved)) if written_in_place => in_place(upload, chunks, data, moved, kept).await?,
        _ => assemble(state, upload, chunks, kept).await?,
    };

    let verdict = check(state, upload, &whole.path, whole.digest).await?;
    let verdict = match verdict {
        Ok(facts) => practice_length(state, upload, facts).await?,
        refused => refused,
    };
    let facts = match verdict {
        Ok(facts) => facts,
        Err((reason, message)) => {
            return Ok(Err(lifecycle::reject(
                state, meta, upload, token, reason, message,
            )
            .await));
        }
    };
    match whole.becomes_original {
        Becomes::Renamed => {
            state.storage.rename(&data_key, &original).await?;
        }
        Becomes::AlreadyIs => {}
        Becomes::Copied(_scratch) => state.storage.put_file(&original, &whole.path).await?,
    }
    Ok(Ok((facts, original)))
}

/// The whole file of an upload in one local file, and its digest.
struct Whole {
    path: PathBuf,
    digest: Running,
    becomes_original: Becomes,
}

/// How the file becomes the meeting's original recording.
enum Becomes {
    /// The chunks were written into it in place: a rename.
    Renamed,
    /// A completion that died after the rename left it there already.
    AlreadyIs,
    /// It is a scratch copy of the chunk objects: copied to storage.
    Copied(ScratchFile),
}

/// On local disk: the upload's file where it lies, with the digest kept as
/// its chunks arrived; or, for an upload begun without one, read there —
/// each chunk's CRC32C checked against its row — without a byte written.
async fn in_place(
    upload: &upload::Model,
    chunks: &[chunk::Model],
    data: PathBuf,
    moved: PathBuf,
    kept: Option<Running>,
) -> AppResult<Whole> {
    let (path, becomes_original) = if tokio::fs::try_exists(&data).await.map_err(AppError::internal)? {
        (data, Becomes::Renamed)
    } else {
        (moved, Becomes::AlreadyIs)
    };
    if let Some(digest) = kept {
        return Ok(Whole {
            path,
            digest,
            becomes_original,
        });
    }
    let expected: Vec<(i64, i64, i64)> = chunks
        .iter()
        .map(|c| (c.offset, c.size_bytes, c.crc32c))
        .collect();
    let (id, file) = (upload.id, path.clone());
    let digest = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&file)?;
        let mut digest = Running::default();
        let mut buffer = vec![0u8; 1 << 20];
        for (offset, size, crc32c) in expected {
            let mut crc = 0;
            let mut left = usize::try_from(size).unwrap_or(0);
            while left > 0 {
                let piece = &mut buffer[..left.min(1 << 20)];
                std::io::Read::read_exact(&mut file, piece)?;
                crc = crc32c::crc32c_append(crc, piece);
                digest.update(piece);
                left -= piece.len();
            }
            if i64::from(crc) != crc32c {
                return Err(std::io::Error::other(corrupt(offset, id)));
            }
        }
        Ok(digest)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)?;
    Ok(Whole {
        path,
        digest,
        becomes_original,
    })
}

/// The failure of a chunk whose stored bytes no longer match its CRC32C.
fn corrupt(offset: i64, upload: Uuid) -> String {
    format!("chunk at {offset} of upload {upload} is corrupt in storage")
}

/// The chunks stored as objects (on S3), one at a time, into a scratch file (memory
/// bounded by one chunk), each checked against its row's CRC32C, and hashed
/// and scanned unless the digest was `kept` as they arrived.
async fn assemble(
    state: &Shared,
    upload: &upload::Model,
    chunks: &[chunk::Model],
    kept: Option<Running>,
) -> AppResult<Whole> {
    let dir = crate::scratch::dir(&state.config.data_dir)
        .await
        .map_err(AppError::internal)?;
    let temp = ScratchFile::create(&dir, &format!("upload-{}-", upload.id)).map_err(AppError::internal)?;
    let mut file = tokio::fs::File::create(temp.path())
        .await
        .map_err(AppError::internal)?;
    let hashing = kept.is_none();
    let mut digest = kept.unwrap_or_default();
    let data_key = store::data_key(upload.id);
    for chunk in chunks {
        let bytes = if chunk.object_key == data_key {
            // An upload begun as chunk objects (by an earlier version) and
            // continued in place: this chunk is its range of the file.
            let end = chunk.offset + chunk.size_bytes;
            state
                .storage
                .get_range(
                    &data_key,
                    u64::try_from(chunk.offset).unwrap_or(0)..u64::try_from(end).unwrap_or(0),
                )
                .await?
                .try_collect::<Vec<_>>()
                .await?
                .concat()
                .into()
        } else {
            state.storage.get(&chunk.object_key).await?
        };
        if i64::from(crc32c::crc32c(&bytes)) != chunk.crc32c {
            return Err(AppError::internal(corrupt(chunk.offset, upload.id)));
        }
        if hashing {
            digest.update(&bytes);
        }
        file.write_all(&bytes).await.map_err(AppError::internal)?;
    }
    file.flush().await.map_err(AppError::internal)?;
    Ok(Whole {
        path: temp.path().to_owned(),
        digest,
        becomes_original: Becomes::Copied(temp),
    })
}

/// Every check of the assembled file, in order: checksum, scanners, type,
/// decode. Ok(Err(..)) is a refusal; Err(..) a failure of ours.
async fn check(
    state: &Shared,
    upload: &upload::Model,
    path: &Path,
    digest: Running,
) -> AppResult<Result<AudioFacts, Refusal>> {
    let (sha256, scanner) = digest.finish();
    if upload.sha256.as_ref().is_some_and(|declared| *declared != sha256) {
        return Ok(Err((
            "CHECKSUM_MISMATCH",
            "the file's SHA-256 differs from the one declared".into(),
        )));
    }
    if let Some(finding) = scanner.finish() {
        return Ok(Err((
            finding.reason,
            format!("the file was refused: it contains {}", finding.what),
        )));
    }
    if let Some(clamd) = &state.config.clamd_addr
        && let Some(signature) = super::clamd::scan(clamd, path).await?
    {
        return Ok(Err((
            "MALWARE_DETECTED",
            format!("the file was refused: ClamAV found {signature}"),
        )));
    }
    let mut head = vec![0u8; 8192];
    let read = tokio::fs::File::open(path)
        .await
        .map_err(AppError::internal)?
        .read(&mut head)
        .await
        .map_err(AppError::internal)?;
    head.truncate(read);
    let declared = container::declared(&upload.content_type).map(|(c, _)| c);
    let sniffed = container::sniff(&head);
    if sniffed.is_none() || sniffed != declared {
        return Ok(Err((
            "UNSUPPORTED_FORMAT",
            format!(
                "the file is not {} as declared; MP3, MP4, M4A and WAV recordings are accepted",
                upload.content_type
            ),
        )));
    }
    let extension = sniffed.map_or("wav", Container::extension);
    let path = path.to_owned();
    let probed = tokio::task::spawn_blocking(move || probe::probe(&path, extension))
        .await
        .map_err(AppError::internal)?;
    Ok(probed.map_err(|e| (e.reason, e.message)))
}

/// Longest recording of a practice answer.
pub const MAX_PRACTICE_RECORDING_MS: i64 = 10 * 60 * 1000;

/// Refuses a practice answer's recording longer than
/// [`MAX_PRACTICE_RECORDING_MS`]: practice recordings hold no analysis
/// minutes (the session is what the plan counts), so their length is
/// bounded here.
async fn practice_length(
    state: &Shared,
    upload: &upload::Model,
    facts: AudioFacts,
) -> AppResult<Result<AudioFacts, Refusal>> {
    let scoped = state.db.as_user(upload.user_id).await?;
    let meeting = crate::meetings::store::get(&scoped, upload.meeting_id).await?;
    if meeting.kind == meeting::Kind::Practice && facts.duration_ms > MAX_PRACTICE_RECORDING_MS {
        return Ok(Err((
            "PRACTICE_RECORDING_TOO_LONG",
            format!(
                "a practice answer may be at most {} minutes long; this recording is {} minutes",
                MAX_PRACTICE_RECORDING_MS / 60_000,
                (facts.duration_ms + 59_999) / 60_000
            ),
        )));
    }
    Ok(Ok(facts))
}
