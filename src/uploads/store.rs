//! Queries of the uploads domain, and the storage keys of its objects.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{State, chunk, upload};
use crate::db::Scoped;
use crate::error::{AppError, AppResult};

/// Where the objects of an upload live (chunks and leftovers).
pub fn upload_prefix(upload_id: Uuid) -> String {
    format!("uploads/{upload_id}/")
}

/// The ids of every upload of `user_id`, ended ones included.
pub async fn ids_of_user(scoped: &Scoped, user_id: Uuid) -> AppResult<Vec<Uuid>> {
    Ok(scoped
        .find::<upload::Entity>()
        .filter(upload::Column::UserId.eq(user_id))
        .select_only()
        .column(upload::Column::Id)
        .into_tuple()
        .all(scoped.txn())
        .await?)
}

/// The key of a new chunk object: unique, so concurrent writers of the
/// same offset never overwrite each other.
pub fn chunk_key(upload_id: Uuid, offset: i64) -> String {
    format!("uploads/{upload_id}/chunks/{offset:016}-{}", Uuid::now_v7())
}

/// The key of the one file an upload's chunks are written into, at their
/// offsets, when objects are local files.
pub fn data_key(upload_id: Uuid) -> String {
    format!("uploads/{upload_id}/data")
}

/// The key of a meeting's original recording, as the upload `upload_id`
/// stores it: each upload writes its own key, so the clean-up of one that
/// ended can never remove another's recording.
pub fn original_key(meeting_id: Uuid, upload_id: Uuid) -> String {
    format!("meetings/{meeting_id}/original-{upload_id}")
}

/// Whether the upload is held by a completion in progress (not `holder`).
pub fn is_being_completed(upload: &upload::Model, holder: Option<Uuid>, now: DateTime<Utc>) -> bool {
    upload.completion_token.is_some()
        && upload.completion_token != holder
        && upload.completing_until.is_some_and(|until| until > now)
}

/// The refusal for a change to an upload that a completion holds.
pub fn completing() -> AppError {
    AppError::FailedPrecondition {
        reason: "UPLOAD_COMPLETING",
        message: "the upload is being completed; GetUpload shows when that has finished".into(),
        metadata: Default::default(),
    }
}

/// Claims the complete, active upload for the completion `token` until
/// `until`; false if it is not active, not complete, or held by a live
/// completion.
pub async fn claim_completion(
    scoped: &Scoped,
    id: Uuid,
    token: Uuid,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let claimed = scoped
        .update_many::<upload::Entity>()
        .col_expr(upload::Column::CompletionToken, Expr::value(token))
        .col_expr(upload::Column::CompletingUntil, Expr::value(until))
        .col_expr(upload::Column::UpdatedAt, Expr::value(now))
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::State.eq(State::Active))
        .filter(Expr::col(upload::Column::CommittedBytes).eq(Expr::col(upload::Column::SizeBytes)))
        .filter(unclaimed(None, now))
        .exec()
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Gives the claim of `token` up, so the upload can be completed again at
/// once (after a failure of ours).
pub async fn release_completion(scoped: &Scoped, id: Uuid, token: Uuid) -> AppResult<()> {
    scoped
        .update_many::<upload::Entity>()
        .col_expr(upload::Column::CompletionToken, Expr::value(None::<Uuid>))
        .col_expr(
            upload::Column::CompletingUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::CompletionToken.eq(token))
        .exec()
        .await?;
    Ok(())
}

/// Rows no live completion holds, or that `holder`'s holds.
fn unclaimed(holder: Option<Uuid>, now: DateTime<Utc>) -> sea_orm::Condition {
    let mut free = sea_orm::Condition::any()
        .add(upload::Column::CompletionToken.is_null())
        .add(upload::Column::CompletingUntil.lte(now));
    if let Some(holder) = holder {
        free = free.add(upload::Column::CompletionToken.eq(holder));
    }
    free
}

/// An upload of the scope, or NOT_FOUND (with a reason once expired).
pub async fn get(scoped: &Scoped, id: Uuid, now: DateTime<Utc>) -> AppResult<upload::Model> {
    let upload = scoped
        .find::<upload::Entity>()
        .filter(upload::Column::Id.eq(id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("upload"))?;
    let expired =
        upload.state == State::Expired || (upload.state == State::Active && upload.expires_at <= now);
    if expired {
        return Err(AppError::Gone {
            reason: "UPLOAD_EXPIRED",
            message: "the upload expired before it was completed; start a new one".into(),
        });
    }
    Ok(upload)
}

/// The state of an upload of the scope, whatever it is.
pub async fn state_of(scoped: &Scoped, id: Uuid) -> AppResult<Option<State>> {
    Ok(scoped
        .find::<upload::Entity>()
        .select_only()
        .column(upload::Column::State)
        .filter(upload::Column::Id.eq(id))
        .into_tuple()
        .one(scoped.txn())
        .await?)
}

/// An upload that still accepts chunks.
pub async fn get_active(scoped: &Scoped, id: Uuid, now: DateTime<Utc>) -> AppResult<upload::Model> {
    let upload = get(scoped, id, now).await?;
    if upload.state != State::Active {
        return Err(AppError::FailedPrecondition {
            reason: "UPLOAD_NOT_ACTIVE",
            message: format!("the upload is {:?}, not active", upload.state).to_lowercase(),
            metadata: Default::default(),
        });
    }
    Ok(upload)
}

/// The committed chunk at `offset`, if any.
pub async fn chunk_at(scoped: &Scoped, upload_id: Uuid, offset: i64) -> AppResult<Option<chunk::Model>> {
    Ok(scoped
        .find::<chunk::Entity>()
        .filter(chunk::Column::UploadId.eq(upload_id))
        .filter(chunk::Column::Offset.eq(offset))
        .one(scoped.txn())
        .await?)
}

/// Every committed chunk, in order.
pub async fn chunks(scoped: &Scoped, upload_id: Uuid) -> AppResult<Vec<chunk::Model>> {
    Ok(scoped
        .find::<chunk::Entity>()
        .filter(chunk::Column::UploadId.eq(upload_id))
        .order_by_asc(chunk::Column::Offset)
        .all(scoped.txn())
        .await?)
}

/// Moves an active upload to `to` (with a rejection reason) and deletes
/// its chunk rows; false if it was no longer active or a completion other
/// than `holder` holds it.
pub async fn finish(
    scoped: &Scoped,
    id: Uuid,
    to: State,
    reason: Option<&str>,
    holder: Option<Uuid>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let mut update = scoped
        .update_many::<upload::Entity>()
        .col_expr(upload::Column::State, Expr::value(to))
        .col_expr(upload::Column::UpdatedAt, Expr::value(now))
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::State.eq(State::Active))
        .filter(unclaimed(holder, now));
    if let Some(reason) = reason {
        update = update.col_expr(upload::Column::RejectionReason, Expr::value(reason));
    }
    if to == State::Completed {
        update = update
            .col_expr(upload::Column::CompletedAt, Expr::value(now))
            .filter(Expr::col(upload::Column::CommittedBytes).eq(Expr::col(upload::Column::SizeBytes)));
    }
    if update.exec().await?.rows_affected != 1 {
        return Ok(false);
    }
    // The chunks are no longer needed (their objects go after the commit).
    scoped
        .delete_many::<chunk::Entity>()
        .filter(chunk::Column::UploadId.eq(id))
        .exec()
        .await?;
    Ok(true)
}

/// Ended uploads whose objects may still exist, oldest first: those ended
/// before `before` and not marked cleaned (a batch).
pub async fn uncleaned(scoped: &Scoped, before: DateTime<Utc>, limit: u64) -> AppResult<Vec<upload::Model>> {
    Ok(scoped
        .find::<upload::Entity>()
        .filter(upload::Column::CleanedAt.is_null())
        .filter(upload::Column::State.ne(State::Active))
        .filter(upload::Column::UpdatedAt.lt(before))
        .order_by_asc(upload::Column::UpdatedAt)
        .limit(limit)
        .all(scoped.txn())
        .await?)
}

/// Marks the objects of an ended upload deleted, and deletes the chunk
/// rows an older version left behind.
pub async fn mark_cleaned(scoped: &Scoped, id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    scoped
        .update_many::<upload::Entity>()
        .col_expr(upload::Column::CleanedAt, Expr::value(now))
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::State.ne(State::Active))
        .exec()
        .await?;
    scoped
        .delete_many::<chunk::Entity>()
        .filter(chunk::Column::UploadId.eq(id))
        .exec()
        .await?;
    Ok(())
}
