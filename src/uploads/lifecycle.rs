//! Starting and ending uploads: creation with its quota checks, and the
//! ways an upload ends without a recording (cancel, reject, expire), which
//! all give the storage back and delete every object of the upload.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{State, upload};
use super::model::sanitise_file_name;
use super::store;
use crate::audit::{self, Entry};
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::{AppError, AppResult, FieldViolation};
use crate::meetings::entity::{self as meeting, Status};
use crate::pb::v1 as pb;
use crate::shared::Shared;
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
        let meeting_id = crate::names::parse_name("upload.meeting", &upload.meeting, "meetings").ok();
        if meeting_id.is_none() {
            bad("upload.meeting", "must be `meetings/{id}`");
        }
        if upload.file_name.trim().is_empty() {
            bad("upload.file_name", "is required");
        }
        let content_type =
            crate::audio::container::declared(&upload.content_type).map(|(_, normal)| normal.to_owned());
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

/// What to do about an unfinished upload of the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// Refuse, naming it (resumable uploads: the caller resumes or cancels).
    Refuse,
    /// Cancel it and start anew (a client stream that starts over).
    Replace,
}

/// Starts an upload: checks the plan's largest upload, reserves the size
/// against the storage quota, and moves the meeting to `uploading`.
pub async fn create(
    state: &Shared,
    user_id: Uuid,
    new: NewUpload,
    earlier: Earlier,
) -> AppResult<upload::Model> {
    let scoped = state.db.as_user(user_id).await?;
    let (created, replaced) = create_in(state, &scoped, user_id, new, earlier).await?;
    scoped.commit().await?;
    if let Some(replaced) = replaced {
        delete_objects(state, &replaced).await;
    }
    Ok(created)
}

/// [`create`] in the caller's transaction (a practice attempt creates its
/// recording's meeting and upload together). Returns the upload and the
/// one it replaced, whose objects the caller deletes once it commits.
pub async fn create_in(
    state: &Shared,
    scoped: &Scoped,
    user_id: Uuid,
    new: NewUpload,
    earlier: Earlier,
) -> AppResult<(upload::Model, Option<upload::Model>)> {
    let now = Utc::now();
    if let Some(request_id) = &new.request_id {
        let earlier = scoped
            .find::<upload::Entity>()
            .filter(upload::Column::RequestId.eq(request_id.as_str()))
            .one(scoped.txn())
            .await?;
        if let Some(earlier) = earlier {
            return Ok((earlier, None));
        }
    }
    crate::meetings::store::get(scoped, new.meeting_id).await?;
    let unfinished = scoped
        .find::<upload::Entity>()
        .filter(upload::Column::MeetingId.eq(new.meeting_id))
        .filter(upload::Column::State.eq(State::Active))
        .one(scoped.txn())
        .await?;
    let replaced = match unfinished {
        Some(upload) if earlier == Earlier::Replace => {
            cancel_unless_completing(scoped, &upload, now).await?;
            Some(upload)
        }
        Some(upload) => {
            return Err(AppError::FailedPrecondition {
                reason: "MEETING_NOT_AWAITING_UPLOAD",
                message: format!(
                    "the meeting has an unfinished upload, uploads/{} ({} of {} bytes): resume it \
                     from its committed size or cancel it",
                    upload.id, upload.committed_bytes, upload.size_bytes
                ),
                metadata: HashMap::from([
                    ("upload".to_owned(), format!("uploads/{}", upload.id)),
                    ("committed_bytes".to_owned(), upload.committed_bytes.to_string()),
                ]),
            });
        }
        None => None,
    };
    if !crate::meetings::store::transition(
        scoped,
        new.meeting_id,
        &[Status::AwaitingUpload],
        Status::Uploading,
    )
    .await?
    {
        return Err(AppError::FailedPrecondition {
            reason: "MEETING_NOT_AWAITING_UPLOAD",
            message: "the meeting already has a recording".into(),
            metadata: Default::default(),
        });
    }
    let url = &state.config.upgrade_url;
    ledger::check_single(scoped, user_id, Category::MaxUploadBytes, new.size_bytes, url).await?;
    let reservation = ledger::reserve(
        scoped,
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
            reservation_id: Set(Some(reservation.id)),
            completion_token: Set(None),
            completing_until: Set(None),
            cleaned_at: Set(None),
            ..Default::default()
        })
        .await?;
    set_meeting_upload(scoped, new.meeting_id, Some(created.id)).await?;
    Ok((created, replaced))
}

async fn set_meeting_upload(scoped: &Scoped, meeting_id: Uuid, upload_id: Option<Uuid>) -> AppResult<()> {
    scoped
        .update_many::<meeting::Entity>()
        .col_expr(meeting::Column::UploadId, Expr::value(upload_id))
        .filter(meeting::Column::Id.eq(meeting_id))
        .exec()
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
/// reservation. False if it had already ended, or a completion other than
/// `holder` holds it. The caller deletes the objects after committing
/// ([`delete_objects`]).
pub async fn end(
    scoped: &Scoped,
    upload: &upload::Model,
    ending: Ending,
    holder: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let (state, reason) = match ending {
        Ending::Cancelled => (State::Cancelled, None),
        Ending::Rejected(reason) => (State::Rejected, Some(reason)),
        Ending::Expired => (State::Expired, None),
    };
    if !store::finish(scoped, upload.id, state, reason, holder, now).await? {
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
/// it so the caller deletes its objects after committing. Refused while a
/// completion is storing its recording.
async fn end_for_meeting(
    scoped: &Scoped,
    meeting_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Option<upload::Model>> {
    let active = scoped
        .find::<upload::Entity>()
        .filter(upload::Column::MeetingId.eq(meeting_id))
        .filter(upload::Column::State.eq(State::Active))
        .one(scoped.txn())
        .await?;
    let Some(upload) = active else {
        return Ok(None);
    };
    cancel_unless_completing(scoped, &upload, now).await?;
    Ok(Some(upload))
}

/// Ends the upload in progress of a meeting being deleted, and deletes its
/// objects once the deletion commits.
#[derive(Debug)]
pub struct EndWithMeeting(pub Shared);

#[tonic::async_trait]
impl crate::meetings::OnDelete for EndWithMeeting {
    async fn meeting_deleted(
        &self,
        scoped: &Scoped,
        meeting_id: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<Option<futures::future::BoxFuture<'static, ()>>> {
        let Some(upload) = end_for_meeting(scoped, meeting_id, now).await? else {
            return Ok(None);
        };
        let state = self.0.clone();
        Ok(Some(Box::pin(
            async move { delete_objects(&state, &upload).await },
        )))
    }
}

/// Cancels an active upload in `scoped`, or refuses with UPLOAD_COMPLETING
/// when a completion holds it (or took it meanwhile): its recording is being
/// stored and will need the meeting.
async fn cancel_unless_completing(
    scoped: &Scoped,
    upload: &upload::Model,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if store::is_being_completed(upload, None, now)
        || !end(scoped, upload, Ending::Cancelled, None, now).await?
    {
        return Err(store::completing());
    }
    Ok(())
}

/// Deletes the objects of an upload that ended — its chunks and, if it
/// never completed, the recording a completion may have stored — and marks
/// it cleaned. A failure is logged: housekeeping tries again.
pub async fn delete_objects(state: &Shared, upload: &upload::Model) {
    let deleted = async {
        let ended = {
            let scoped = state.db.as_service().await?;
            store::state_of(&scoped, upload.id).await?
        };
        let Some(ended) = ended.filter(|s| *s != State::Active) else {
            // Still active (or gone): its objects are someone's to use.
            return Ok(());
        };
        state
            .storage
            .delete_prefix(&store::upload_prefix(upload.id))
            .await?;
        if ended != State::Completed {
            let original = store::original_key(upload.meeting_id, upload.id);
            state.storage.delete(&original).await?;
        }
        let scoped = state.db.as_service().await?;
        store::mark_cleaned(&scoped, upload.id, Utc::now()).await?;
        scoped.commit().await
    };
    if let Err(error) = deleted.await {
        tracing::warn!(%error, upload = %upload.id, "could not delete an upload's objects");
    }
}

/// Cancels an upload at the owner's request.
pub async fn cancel(state: &Shared, user_id: Uuid, id: Uuid) -> AppResult<upload::Model> {
    let now = Utc::now();
    let scoped = state.db.as_user(user_id).await?;
    let upload = store::get_active(&scoped, id, now).await?;
    if store::is_being_completed(&upload, None, now)
        || !end(&scoped, &upload, Ending::Cancelled, None, now).await?
    {
        // A completion took it meanwhile (or has finished it).
        drop(scoped);
        let scoped = state.db.as_user(user_id).await?;
        let now_held = store::get_active(&scoped, id, Utc::now()).await?;
        return Err(if store::is_being_completed(&now_held, None, Utc::now()) {
            store::completing()
        } else {
            AppError::Aborted {
                reason: "UPLOAD_CHANGED",
                message: "the upload changed while it was being cancelled; try again".into(),
                metadata: Default::default(),
            }
        });
    }
    let cancelled = store::get(&scoped, id, now).await?;
    scoped.commit().await?;
    delete_objects(state, &upload).await;
    Ok(cancelled)
}

/// Rejects an upload that the completion `holder` holds, with an audit
/// entry for malware.
pub async fn reject(
    state: &Shared,
    meta: &RequestMeta,
    upload: &upload::Model,
    holder: Uuid,
    reason: &'static str,
    message: String,
) -> AppError {
    let now = Utc::now();
    let result = async {
        let scoped = state.db.as_user(upload.user_id).await?;
        end(&scoped, upload, Ending::Rejected(reason), Some(holder), now).await?;
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
    delete_objects(state, upload).await;
    match result {
        Ok(()) => AppError::Rejected { reason, message },
        Err(error) => error,
    }
}

/// Expires every active upload idle past its expiry (a periodic sweep).
pub async fn expire_idle(state: &Shared, now: DateTime<Utc>) -> AppResult<usize> {
    let scoped = state.db.as_service().await?;
    let idle = scoped
        .find::<upload::Entity>()
        .filter(upload::Column::State.eq(State::Active))
        .filter(upload::Column::ExpiresAt.lte(now))
        .all(scoped.txn())
        .await?;
    let mut expired = Vec::new();
    for upload in idle {
        if end(&scoped, &upload, Ending::Expired, None, now).await? {
            expired.push(upload);
        }
    }
    scoped.commit().await?;
    for upload in &expired {
        delete_objects(state, upload).await;
    }
    Ok(expired.len())
}

/// Finishes the clean-up of uploads that ended a while ago but whose
/// objects were not deleted (the process died in between, or storage
/// failed): chunks, uncommitted chunk objects and a recording a killed
/// completion stored. Returns how many it cleaned.
pub async fn clean_ended(state: &Shared, now: DateTime<Utc>) -> AppResult<usize> {
    // The request that ended an upload deletes its objects right after;
    // give it a moment before doing it for it.
    let before = now - chrono::Duration::minutes(1);
    let ended = {
        let scoped = state.db.as_service().await?;
        store::uncleaned(&scoped, before, 100).await?
    };
    for upload in &ended {
        delete_objects(state, upload).await;
    }
    Ok(ended.len())
}
