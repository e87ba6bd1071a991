//! Queries of the uploads domain, and the storage keys of its objects.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{State, chunk, upload};
use crate::db::Scoped;
use crate::error::{AppError, AppResult};

/// Where the objects of an upload live (chunks and leftovers).
pub fn upload_prefix(upload_id: Uuid) -> String {
    format!("uploads/{upload_id}/")
}

/// The key of a new chunk object: unique, so concurrent writers of the
/// same offset never overwrite each other.
pub fn chunk_key(upload_id: Uuid, offset: i64) -> String {
    format!("uploads/{upload_id}/chunks/{offset:016}-{}", Uuid::now_v7())
}

/// The key of a meeting's original recording.
pub fn original_key(meeting_id: Uuid) -> String {
    format!("meetings/{meeting_id}/original")
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

/// An upload that still accepts chunks.
pub async fn get_active(scoped: &Scoped, id: Uuid, now: DateTime<Utc>) -> AppResult<upload::Model> {
    let upload = get(scoped, id, now).await?;
    if upload.state != State::Active {
        return Err(AppError::FailedPrecondition {
            reason: "UPLOAD_NOT_ACTIVE",
            message: format!("the upload is {:?}, not active", upload.state).to_lowercase(),
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

/// Moves an active upload to `to` (with a rejection reason); false if it
/// was no longer active.
pub async fn finish(
    scoped: &Scoped,
    id: Uuid,
    to: State,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let mut update = scoped
        .update_many::<upload::Entity>()
        .col_expr(upload::Column::State, Expr::value(to))
        .col_expr(upload::Column::UpdatedAt, Expr::value(now))
        .filter(upload::Column::Id.eq(id))
        .filter(upload::Column::State.eq(State::Active));
    if let Some(reason) = reason {
        update = update.col_expr(upload::Column::RejectionReason, Expr::value(reason));
    }
    if to == State::Completed {
        update = update
            .col_expr(upload::Column::CompletedAt, Expr::value(now))
            .filter(Expr::col(upload::Column::CommittedBytes).eq(Expr::col(upload::Column::SizeBytes)));
    }
    Ok(update.exec(scoped.txn()).await?.rows_affected == 1)
}
