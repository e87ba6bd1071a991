//! The client-streaming `Upload`: metadata first, then the bytes, appended
//! in chunks of the largest size as they arrive and completed at the end.
//!
//! What a stream commits is kept when the stream is cut (the client's
//! connection drops, the server shuts down): the error names the upload and
//! its committed size, and a later stream resumes it by naming it, or
//! replaces it by not doing so.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tonic::Streaming;
use uuid::Uuid;

use super::append::{self, Chunk};
use super::entity::upload;
use super::lifecycle::{self, Earlier, NewUpload};
use super::model::max_chunk;
use super::{complete, store};
use crate::context::RequestMeta;
use crate::error::{AppError, AppResult, Violations};
use crate::meetings::entity as meeting;
use crate::names::parse_name;
use crate::pb::v1 as pb;
use crate::shared::Shared;

/// How the bytes of a stream ended, when they did not all arrive.
enum Cut {
    /// The stream broke off, or the server is shutting down: what arrived
    /// stays for a later stream to resume.
    Interrupted { shutdown: bool },
    /// The stream itself was wrong: the upload is cancelled.
    Refused(AppError),
}

impl From<AppError> for Cut {
    fn from(error: AppError) -> Self {
        Self::Refused(error)
    }
}

/// Runs one `Upload` stream of `user_id`.
pub async fn upload(
    state: &Shared,
    meta: &RequestMeta,
    user_id: Uuid,
    mut stream: Streaming<pb::UploadRequest>,
) -> AppResult<(upload::Model, meeting::Model)> {
    let first = stream
        .message()
        .await
        .map_err(|status| AppError::invalid("metadata", status.message().to_owned()))?;
    let Some(pb::UploadRequest {
        kind: Some(pb::upload_request::Kind::Metadata(metadata)),
        write_offset,
    }) = first
    else {
        return Err(AppError::invalid(
            "metadata",
            "the first message must carry the upload's metadata",
        ));
    };
    let upload = if metadata.name.is_empty() {
        if write_offset != 0 {
            return Err(AppError::invalid(
                "write_offset",
                "must be 0 for a new upload; name the upload in the metadata to resume it",
            ));
        }
        let new = NewUpload::parse(Some(metadata), String::new())?;
        lifecycle::create(state, user_id, new, Earlier::Replace).await?
    } else {
        resumed(state, user_id, &metadata, write_offset).await?
    };
    match stream_chunks(state, &upload, &mut stream).await {
        Ok(()) => complete::complete(state, meta, user_id, upload.id).await,
        Err(Cut::Refused(error)) => {
            // Nothing half-uploaded stays behind.
            let _ = lifecycle::cancel(state, user_id, upload.id).await;
            Err(error)
        }
        Err(Cut::Interrupted { shutdown }) => Err(interrupted(state, user_id, upload.id, shutdown).await),
    }
}

/// The unfinished upload a stream names to resume, checked against what
/// the stream says about it.
async fn resumed(
    state: &Shared,
    user_id: Uuid,
    metadata: &pb::Upload,
    write_offset: i64,
) -> AppResult<upload::Model> {
    let mut bad = Violations::default();
    let id = bad.check(parse_name("metadata.name", &metadata.name, "uploads"))?;
    if write_offset < 0 {
        bad.add("write_offset", "must not be negative");
    }
    let id = bad.finish(|| id)?;
    let scoped = state.db.as_user(user_id).await?;
    let upload = store::get_active(&scoped, id, chrono::Utc::now()).await?;
    let mut bad = Violations::default();
    if !metadata.meeting.is_empty() && metadata.meeting != format!("meetings/{}", upload.meeting_id) {
        bad.add(
            "metadata.meeting",
            "is not the meeting of the upload being resumed",
        );
    }
    if metadata.size_bytes != 0 && metadata.size_bytes != upload.size_bytes {
        bad.add(
            "metadata.size_bytes",
            format!("differs from the {} bytes the upload declared", upload.size_bytes),
        );
    }
    bad.finish(|| Some(()))?;
    if write_offset != upload.committed_bytes {
        return Err(AppError::Aborted {
            reason: "OFFSET_MISMATCH",
            message: format!(
                "the stream must start at the committed size, {}",
                upload.committed_bytes
            ),
            metadata: resume_point(&upload),
        });
    }
    Ok(upload)
}

/// What a client needs to resume: the upload and its committed size.
fn resume_point(upload: &upload::Model) -> HashMap<String, String> {
    HashMap::from([
        ("upload".to_owned(), format!("uploads/{}", upload.id)),
        ("committed_bytes".to_owned(), upload.committed_bytes.to_string()),
    ])
}

/// The error of a stream that broke off, naming where to resume.
async fn interrupted(state: &Shared, user_id: Uuid, id: Uuid, shutdown: bool) -> AppError {
    let found = async {
        let scoped = state.db.as_user(user_id).await?;
        store::get(&scoped, id, chrono::Utc::now()).await
    };
    let upload = match found.await {
        Ok(upload) => upload,
        Err(error) => return error,
    };
    let (name, committed) = (format!("uploads/{id}"), upload.committed_bytes);
    if shutdown {
        AppError::Unavailable {
            reason: "SERVER_SHUTTING_DOWN",
            retry_after: Some(Duration::from_secs(1)),
            message: format!(
                "the server is shutting down; resume {name} from byte {committed} in a new stream"
            ),
            metadata: resume_point(&upload),
        }
    } else {
        AppError::Aborted {
            reason: "UPLOAD_INTERRUPTED",
            message: format!("the stream broke off; resume {name} from byte {committed} in a new stream"),
            metadata: resume_point(&upload),
        }
    }
}

/// Reads the stream after its metadata into chunks of the largest size and
/// appends them from the upload's committed size.
async fn stream_chunks(
    state: &Shared,
    upload: &upload::Model,
    stream: &mut Streaming<pb::UploadRequest>,
) -> Result<(), Cut> {
    let limit = usize::try_from(max_chunk(state.config.max_message_bytes)).unwrap_or(usize::MAX);
    let mut buffer = BytesMut::with_capacity(limit);
    let mut offset = upload.committed_bytes;
    let flush = |data: Bytes, at: i64| {
        append::append(
            state,
            upload.user_id,
            upload.id,
            Chunk {
                offset: at,
                crc32c: None,
                data,
            },
        )
    };
    loop {
        // Shutdown first: once it has begun, a stream is cut at the next
        // message even if its end is already here (a client that half-closes
        // as the server stops must not get an answer that depends on which
        // of the two the runtime polled first).
        let message = tokio::select! {
            biased;
            () = state.shutdown.cancelled() => return Err(Cut::Interrupted { shutdown: true }),
            message = stream.message() => message,
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) => return Err(Cut::Interrupted { shutdown: false }),
        };
        let bytes = match message.kind {
            Some(pb::upload_request::Kind::Chunk(bytes)) => bytes,
            _ => {
                return Err(AppError::invalid("chunk", "only the first message may carry metadata").into());
            }
        };
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let take = (limit - buffer.len()).min(rest.len());
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buffer.len() == limit {
                let data = buffer.split().freeze();
                let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                flush(data, offset).await?;
                offset += len;
            }
        }
    }
    if !buffer.is_empty() {
        flush(buffer.split().freeze(), offset).await?;
    }
    Ok(())
}
