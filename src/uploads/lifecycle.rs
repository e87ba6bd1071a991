//! Starting and ending uploads: creation with its quota checks, and the
//! ways an upload ends without a recording (cancel, reject, expire), which
//! all give the storage back and delete every object of the upload.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{State, upload};
use super::model::{container, sanitise_file_name};
use super::store;
use crate::audit::{self, Entry};
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::{AppError, AppResult, FieldViolation};
use crate::meetings::entity::{self as meeting, Status};
use crate::pb::v1 as pb;
use crate::server::AppState;
use crate::usage::ledger;
use crate::usage::model::Category;

/// How long the storage reservation of an upload may outlive a crash of
/// everything that would release it; expiry normally releases it first.
const RESERVATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A validated `CreateUpload`.
#[derive(Debug)]
pub struct NewUpload {
    /// The meeting.
    pub meeting_id: Uuid,
    /// Sanitised file name.
    pub file_name: String,
    /// Normalised content type.
    pub content_type: String,
    /// Declared size.
    pub size_bytes: i64,
    /// Declared SHA-256.
    pub sha256: Option<String>,
    /// Idempotency key.
    pub request_id: Option<String>,
}

impl NewUpload {
    /// Validates the request, reporting every bad field.
    pub fn parse(upload: Option<pb::Upload>, request_id: String) -> AppResult<Self> {
        let upload = upload.ok_or_else(|| AppError::invalid("upload", "is required"))?;
        let mut violations = Vec::new();
        let mut bad = |field: &str, description: &str| {
            violations.push(FieldViolation {
                field: field.to_owned(),
                description: description.to_owned(),
            });
        };
        let meeting_id = crate::auth::model::parse_name("upload.meeting", &upload.meeting, "meetings").ok();
        if meeting_id.is_none() {
            bad("upload.meeting", "must be `meetings/{id}`");
        }
        if upload.file_name.trim().is_empty() {
            bad("upload.file_name", "is required");
        }
        let content_type = container(&upload.content_type).map(|(_, normal)| normal.to_owned());
        if content_type.is_none() {
            bad(
                "upload.content_type",
                "must be audio/mpeg (MP3), audio/mp4 or video/mp4 (MP4, M4A) or audio/wav (WAV)",
            );
        }
        if upload.size_bytes <= 0 {
            bad("upload.size_bytes", "must be greater than zero");
        }
        let sha256 = upload.sha256.trim().to_ascii_lowercase();
        if !sha256.is_empty() && (sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
            bad("upload.sha256", "must be 64 hexadecimal digits");
        }
        if request_id.len() > 128 {
            bad("request_id", "must be at most 128 characters long");
        }
        match (meeting_id, content_type) {
            (Some(meeting_id), Some(content_type)) if violations.is_empty() => Ok(Self {
                meeting_id,
                file_name: sanitise_file_name(&upload.file_name),
                content_type,
                size_bytes: upload.size_bytes,
                sha256: (!sha256.is_empty()).then_some(sha256),
                request_id: (!request_id.is_empty()).then_some(request_id),
            }),
            _ => Err(AppError::InvalidArgument(violations)),
        }
    }
}

/// Starts an upload: checks the plan's largest upload, reserves the size
/// against the storage quota, and moves the meeting to `uploading`.
pub async fn create(state: &AppState, user_id: Uuid, new: NewUpload) -> AppResult<upload::Model> {
    let now = Utc::now();
    let scoped = state.db.as_user(user_id).await?;
    if let Some(request_id) = &new.request_id {
        let earlier = scoped
            .find::<upload::Entity>()
            .filter(upload::Column::RequestId.eq(request_id.as_str()))
            .one(scoped.txn())
            .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
    }
    crate::meetings::store::get(&scoped, new.meeting_id).await?;
    if !crate::meetings::store::transition(
        &scoped,
        new.meeting_id,
        &[Status::AwaitingUpload],
        Status::Uploading,
    )
    .await?
    {
        return Err(AppError::FailedPrecondition {
            reason: "MEETING_NOT_AWAITING_UPLOAD",
            message: "the meeting already has a recording or an upload in progress".into(),
        });
    }
    let url = &state.config.upgrade_url;
    ledger::check_single(&scoped, user_id, Category::MaxUploadBytes, new.size_bytes, url).await?;
    let reservation = ledger::reserve(
        &scoped,
        user_id,
        Category::StorageBytes,
        new.size_bytes,
        RESERVATION_TTL,
        url,
        now,
    )
    .await?;
    let expiry = chrono::Duration::from_std(state.config.upload_expiry).unwrap_or(chrono::Duration::days(1));
    let created = scoped
        .insert(upload::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            meeting_id: Set(new.meeting_id),
            file_name: Set(new.file_name),
            content_type: Set(new.content_type),
            size_bytes: Set(new.size_bytes),
            sha256: Set(new.sha256),
            committed_bytes: Set(0),
            chunk_count: Set(0),
            state: Set(State::Active),
            rejection_reason: Set(None),
            request_id: Set(new.request_id),
            expires_at: Set(now + expiry),
            completed_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            reservation_id: Set(Some(reservation.id)),
        })
        .await?;
    set_meeting_upload(&scoped, new.meeting_id, Some(created.id)).await?;
    scoped.commit().await?;
    Ok(created)
}

async fn set_meeting_upload(scoped: &Scoped, meeting_id: Uuid, upload_id: Option<Uuid>) -> AppResult<()> {
    scoped
        .update_many::<meeting::Entity>()
        .col_expr(meeting::Column::UploadId, Expr::value(upload_id))
        .filter(meeting::Column::Id.eq(meeting_id))
        .exec(scoped.txn())
        .await?;
    Ok(())
}

/// How an upload ended without a recording.
#[derive(Debug, Clone, Copy)]
pub enum Ending {
    /// The owner cancelled it.
    Cancelled,
    /// Validation or scanning refused it, with a reason code.
    Rejected(&'static str),
    /// It sat idle past its expiry.
    Expired,
}

/// Ends an active upload without a recording, in `scoped`: marks it,
/// returns the meeting to `awaiting_upload` and releases the storage
/// reservation. False if it had already ended. The caller deletes the
/// objects after committing ([`delete_objects`]).
pub async fn end(
    scoped: &Scoped,
    upload: &upload::Model,
    ending: Ending,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let (state, reason) = match ending {
        Ending::Cancelled => (State::Cancelled, None),
        Ending::Rejected(reason) => (State::Rejected, Some(reason)),
        Ending::Expired => (State::Expired, None),
    };
    if !store::finish(scoped, upload.id, state, reason, now).await? {
        return Ok(false);
    }
    crate::meetings::store::transition(
        scoped,
        upload.meeting_id,
        &[Status::Uploading],
        Status::AwaitingUpload,
    )
    .await?;
    set_meeting_upload(scoped, upload.meeting_id, None).await?;
    if let Some(id) = upload.reservation_id
        && let Some(reservation) = ledger::find(scoped, id).await?
    {
        reservation.release(scoped, now).await?;
    }
    Ok(true)
}

/// Cancels the active upload of a meeting being deleted, if any; returns
/// its id so the caller deletes its objects after committing.
pub async fn end_for_meeting(
    scoped: &Scoped,
    meeting_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Option<Uuid>> {
    let active = scoped
        .find::<upload::Entity>()
        .filter(upload::Column::MeetingId.eq(meeting_id))
        .filter(upload::Column::State.eq(State::Active))
        .one(scoped.txn())
        .await?;
    match active {
        Some(upload) if end(scoped, &upload, Ending::Cancelled, now).await? => Ok(Some(upload.id)),
        _ => Ok(None),
    }
}

/// Deletes every object of an upload. Failures are logged: the expiry
/// sweep deletes what is left.
pub async fn delete_objects(state: &AppState, upload_id: Uuid) {
    if let Err(error) = state
        .storage
        .delete_prefix(&store::upload_prefix(upload_id))
        .await
    {
        tracing::warn!(%error, upload = %upload_id, "could not delete an upload's objects");
    }
}

/// Cancels an upload at the owner's request.
pub async fn cancel(state: &AppState, user_id: Uuid, id: Uuid) -> AppResult<upload::Model> {
    let now = Utc::now();
    let scoped = state.db.as_user(user_id).await?;
    let upload = store::get_active(&scoped, id, now).await?;
    end(&scoped, &upload, Ending::Cancelled, now).await?;
    let upload = store::get(&scoped, id, now).await?;
    scoped.commit().await?;
    delete_objects(state, id).await;
    Ok(upload)
}

/// Rejects an upload, with an audit entry for malware.
pub async fn reject(
    state: &AppState,
    meta: &RequestMeta,
    upload: &upload::Model,
    reason: &'static str,
    message: String,
) -> AppError {
    let now = Utc::now();
    let result = async {
        let scoped = state.db.as_user(upload.user_id).await?;
        end(&scoped, upload, Ending::Rejected(reason), now).await?;
        let rejected = crate::events::model::Payload::UploadRejected {
            upload: upload.id,
            reason: reason.to_owned(),
            message: message.clone(),
        };
        crate::events::publish(&scoped, upload.user_id, Some(upload.meeting_id), rejected).await?;
        if matches!(reason, "MALWARE_DETECTED" | "EXECUTABLE" | "SCRIPT") {
            audit::record(
                &scoped,
                meta,
                Entry::about("upload.rejected_by_scanner", upload.user_id)
                    .target(format!("uploads/{}", upload.id))
                    .details(serde_json::json!({ "reason": reason, "finding": message })),
            )
            .await?;
        }
        scoped.commit().await
    }
    .await;
    delete_objects(state, upload.id).await;
    match result {
        Ok(()) => AppError::Rejected { reason, message },
        Err(error) => error,
    }
}

/// Expires every active upload idle past its expiry (a periodic sweep).
pub async fn expire_idle(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let scoped = state.db.as_service().await?;
    let idle = scoped
        .find::<upload::Entity>()
        .filter(upload::Column::State.eq(State::Active))
        .filter(upload::Column::ExpiresAt.lte(now))
        .all(scoped.txn())
        .await?;
    let mut expired = Vec::new();
    for upload in &idle {
        if end(&scoped, upload, Ending::Expired, now).await? {
            expired.push(upload.id);
        }
    }
    scoped.commit().await?;
    for id in &expired {
        delete_objects(state, *id).await;
    }
    Ok(expired.len())
}
