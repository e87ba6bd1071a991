//! `publish`: the one way to add an event, inside the transaction of the
//! change it reports.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use uuid::Uuid;

use super::entity::{event, sequence};
use super::model::Payload;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};

/// The Postgres channel that carries "user X has new events" between
/// instances; the payload is only the user id.
pub const CHANNEL: &str = "debrief_events";

/// Adds an event for `user_id` in `scoped`'s transaction and returns its
/// number. Subscribers are woken when (and only if) the transaction
/// commits: on this instance directly, on others through `NOTIFY`, which
/// Postgres also delivers at commit.
pub async fn publish(
    scoped: &Scoped,
    user_id: Uuid,
    meeting_id: Option<Uuid>,
    payload: Payload,
) -> AppResult<i64> {
    // Taking the user's next number locks their counter row until commit,
    // so the user's events commit in number order.
    sequence::Entity::insert(sequence::ActiveModel {
        user_id: Set(user_id),
        last_seq: Set(1),
    })
    .on_conflict(
        OnConflict::column(sequence::Column::UserId)
            .value(
                sequence::Column::LastSeq,
                Expr::col((sequence::Entity, sequence::Column::LastSeq)).add(1),
            )
            .to_owned(),
    )
    .exec(scoped.txn())
    .await?;
    let seq = sequence::Entity::find_by_id(user_id)
        .one(scoped.txn())
        .await?
        .map(|row| row.last_seq)
        .ok_or_else(|| AppError::internal("the event counter vanished"))?;
    let now = Utc::now();
    scoped
        .insert(event::ActiveModel {
            user_id: Set(user_id),
            event_type: Set(payload.type_name().to_owned()),
            meeting_id: Set(meeting_id),
            payload: Set(serde_json::to_value(&payload).map_err(AppError::internal)?),
            created_at: Set(now),
            updated_at: Set(now),
            seq: Set(seq),
            ..Default::default()
        })
        .await?;
    if scoped.txn().get_database_backend() == DbBackend::Postgres {
        scoped
            .txn()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [CHANNEL.into(), user_id.to_string().into()],
            ))
            .await?;
    }
    scoped.signal_after_commit(user_id);
    Ok(seq)
}
