//! Queries of the meetings domain.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::entity::{self, Kind, Status};
use super::model::{MeetingChanges, MeetingFields};
use crate::db::{Db, Scoped};
use crate::error::{AppError, AppResult};
use crate::lifecycle::Stage;
use crate::pagination::{BeforeId, PageRequest};

/// Where every object of a meeting lives: its originals and what
/// processing derived from them.
pub fn object_prefix(meeting_id: Uuid) -> String {
    format!("meetings/{meeting_id}/")
}

/// The ids of every meeting of `user_id`, deleted ones included.
pub async fn ids_of_user(scoped: &Scoped, user_id: Uuid) -> AppResult<Vec<Uuid>> {
    Ok(scoped
        .find::<entity::Entity>()
        .filter(entity::Column::UserId.eq(user_id))
        .select_only()
        .column(entity::Column::Id)
        .into_tuple()
        .all(scoped.txn())
        .await?)
}

/// Creates a meeting (or a practice recording, `kind`) awaiting its
/// upload. A repeated `request_id` returns the meeting the first request
/// created.
pub async fn create(
    scoped: &Scoped,
    user_id: Uuid,
    kind: Kind,
    fields: MeetingFields,
    request_id: Option<String>,
) -> AppResult<entity::Model> {
    if let Some(request_id) = &request_id {
        let earlier = scoped
            .find::<entity::Entity>()
            .filter(entity::Column::RequestId.eq(request_id.as_str()))
            .filter(entity::Column::DeletedAt.is_null())
            .one(scoped.txn())
            .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
    }
    let MeetingFields {
        title,
        description,
        occurred_at,
        participant_count,
        tags,
    } = fields;
    scoped
        .insert(entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            title: Set(title),
            description: Set(description),
            status: Set(Status::AwaitingUpload),
            occurred_at: Set(occurred_at),
            participant_count: Set(participant_count),
            tags: Set(serde_json::json!(tags)),
            current_stage: Set(None),
            failure_reason: Set(None),
            upload_id: Set(None),
            file_name: Set(None),
            content_type: Set(None),
            size_bytes: Set(None),
            duration_ms: Set(None),
            codec: Set(None),
            sample_rate_hz: Set(None),
            channels: Set(None),
            original_object: Set(None),
            request_id: Set(request_id),
            processed_at: Set(None),
            deleted_at: Set(None),
            kind: Set(kind),
            ..Default::default()
        })
        .await
}

/// A meeting of the scope that is not deleted, or NOT_FOUND.
pub async fn get(scoped: &Scoped, id: Uuid) -> AppResult<entity::Model> {
    scoped
        .find::<entity::Entity>()
        .filter(entity::Column::Id.eq(id))
        .filter(entity::Column::DeletedAt.is_null())
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("meeting"))
}

/// Filters of `ListMeetings`.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Only these statuses (any when empty).
    pub statuses: Vec<Status>,
    /// Only meetings that took place at or after this.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Only meetings that took place before this.
    pub occurred_before: Option<DateTime<Utc>>,
}

/// One page of the scope's meetings, newest first, in one query.
pub async fn list(
    scoped: &Scoped,
    page: &PageRequest<BeforeId>,
    filter: ListFilter,
) -> AppResult<(Vec<entity::Model>, Option<BeforeId>)> {
    let mut query = page.newest_first(
        scoped
            .find::<entity::Entity>()
            .filter(entity::Column::DeletedAt.is_null())
            .filter(entity::Column::Kind.eq(Kind::Meeting)),
        entity::Column::Id,
    );
    if !filter.statuses.is_empty() {
        query = query.filter(entity::Column::Status.is_in(filter.statuses));
    }
    if let Some(after) = filter.occurred_after {
        query = query.filter(entity::Column::OccurredAt.gte(after));
    }
    if let Some(before) = filter.occurred_before {
        query = query.filter(entity::Column::OccurredAt.lt(before));
    }
    let rows = query.all(scoped.txn()).await?;
    Ok(page.page(rows, |last| BeforeId { before: last.id }))
}

/// Sets the fields `changes` names, in one statement that returns the
/// meeting as it now is (NOT_FOUND when there is none).
pub async fn update(scoped: &Scoped, id: Uuid, changes: MeetingChanges) -> AppResult<entity::Model> {
    let MeetingChanges {
        title,
        description,
        occurred_at,
        participant_count,
        tags,
    } = changes;
    scoped
        .update_many::<entity::Entity>()
        .col_expr_if_some(entity::Column::Title, title)
        .col_expr_if_some(entity::Column::Description, description)
        .col_expr_if_some(entity::Column::OccurredAt, occurred_at)
        .col_expr_if_some(entity::Column::ParticipantCount, participant_count)
        .col_expr_if_some(entity::Column::Tags, tags.map(|tags| serde_json::json!(tags)))
        .filter(entity::Column::Id.eq(id))
        .filter(entity::Column::DeletedAt.is_null())
        .exec_with_returning()
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("meeting"))
}

/// Moves a meeting from one of `from` to `to`, atomically: false if it was
/// in none of them (another request moved it first).
pub async fn transition(scoped: &Scoped, id: Uuid, from: &[Status], to: Status) -> AppResult<bool> {
    if let Some(bad) = from.iter().find(|s| !s.next().contains(&to)) {
        return Err(AppError::internal(format!(
            "meetings do not move from {bad:?} to {to:?}"
        )));
    }
    let moved = scoped
        .update_many::<entity::Entity>()
        .col_expr(entity::Column::Status, Expr::value(to))
        .filter(entity::Column::Id.eq(id))
        .filter(entity::Column::DeletedAt.is_null())
        .filter(entity::Column::Status.is_in(from.iter().copied()))
        .exec_with_returning()
        .await?;
    // Streams watching the meeting show its new status.
    for meeting in &moved {
        crate::events::wake(scoped, meeting.user_id).await?;
    }
    Ok(!moved.is_empty())
}

/// Records the processing stage a meeting is in.
pub async fn set_stage(scoped: &Scoped, id: Uuid, stage: Stage) -> AppResult<()> {
    scoped
        .update_many::<entity::Entity>()
        .col_expr(entity::Column::CurrentStage, Expr::value(stage))
        .filter(entity::Column::Id.eq(id))
        .exec()
        .await?;
    Ok(())
}

/// Records that a meeting's processing ended well at `now`.
pub async fn set_processed(scoped: &Scoped, id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    scoped
        .update_many::<entity::Entity>()
        .col_expr(entity::Column::CurrentStage, Expr::value(None::<Stage>))
        .col_expr(entity::Column::FailureReason, Expr::value(None::<String>))
        .col_expr(entity::Column::ProcessedAt, Expr::value(now))
        .filter(entity::Column::Id.eq(id))
        .exec()
        .await?;
    Ok(())
}

/// Records why a meeting's processing failed, in words for its owner.
pub async fn set_failure(scoped: &Scoped, id: Uuid, reason: &str) -> AppResult<()> {
    scoped
        .update_many::<entity::Entity>()
        .col_expr(entity::Column::FailureReason, Expr::value(reason))
        .col_expr(entity::Column::CurrentStage, Expr::value(None::<Stage>))
        .filter(entity::Column::Id.eq(id))
        .exec()
        .await?;
    Ok(())
}

/// Marks a meeting deleted; it disappears from every read at once.
pub async fn soft_delete(scoped: &Scoped, id: Uuid) -> AppResult<()> {
    let now = Utc::now();
    let deleted = scoped
        .update_many::<entity::Entity>()
        .col_expr(entity::Column::DeletedAt, Expr::value(now))
        .filter(entity::Column::Id.eq(id))
        .filter(entity::Column::DeletedAt.is_null())
        .exec_with_returning()
        .await?;
    let Some(meeting) = deleted.first() else {
        return Err(AppError::not_found("meeting"));
    };
    // Streams watching it end.
    crate::events::wake(scoped, meeting.user_id).await
}

/// Ready meetings processed before `cutoff` that still hold their
/// original recording (a batch).
pub async fn with_expired_originals(db: &Db, cutoff: DateTime<Utc>) -> AppResult<Vec<entity::Model>> {
    let scoped = db.as_service().await?;
    Ok(scoped
        .find::<entity::Entity>()
        .filter(entity::Column::Status.eq(Status::Ready))
        .filter(entity::Column::ProcessedAt.lt(cutoff))
        .filter(entity::Column::OriginalObject.is_not_null())
        .filter(entity::Column::DeletedAt.is_null())
        .limit(100)
        .all(scoped.txn())
        .await?)
}

/// Records that a meeting's original recording is gone and gives its
/// storage back.
pub async fn forget_original(db: &Db, meeting: &entity::Model, now: DateTime<Utc>) -> AppResult<()> {
    let scoped = db.as_service().await?;
    let forgotten = scoped
        .update_many::<entity::Entity>()
        .col_expr(entity::Column::OriginalObject, Expr::value(None::<String>))
        .col_expr(entity::Column::UpdatedAt, Expr::value(now))
        .filter(entity::Column::Id.eq(meeting.id))
        .filter(entity::Column::OriginalObject.is_not_null())
        .exec()
        .await?;
    if forgotten.rows_affected == 1
        && let Some(size) = meeting.size_bytes.filter(|s| *s > 0)
    {
        crate::usage::ledger::free(
            &scoped,
            meeting.user_id,
            crate::usage::model::Category::StorageBytes,
            size,
            now,
        )
        .await?;
    }
    scoped.commit().await
}

/// Removes the rows of meetings deleted before `cutoff` (their uploads,
/// transcripts and analyses go with them); returns their ids so the caller
/// can delete their objects.
pub async fn purge_deleted(db: &Db, cutoff: DateTime<Utc>) -> AppResult<Vec<Uuid>> {
    let scoped = db.as_service().await?;
    let doomed: Vec<Uuid> = scoped
        .find::<entity::Entity>()
        .filter(
            Condition::all()
                .add(entity::Column::DeletedAt.is_not_null())
                .add(entity::Column::DeletedAt.lt(cutoff)),
        )
        .limit(500)
        .all(scoped.txn())
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    if !doomed.is_empty() {
        scoped
            .delete_many::<entity::Entity>()
            .filter(entity::Column::Id.is_in(doomed.iter().copied()))
            .exec()
            .await?;
    }
    scoped.commit().await?;
    Ok(doomed)
}
