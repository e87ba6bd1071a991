//! `publish`: the one way to add an event, inside the transaction of the
//! change it reports.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbBackend, EntityName, EntityTrait, Statement};
use uuid::Uuid;

use super::entity::{event, sequence};
use super::model::Payload;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};

/// The Postgres channel that carries "user X has new events" between
/// instances; the payload is only the user id, or [`EVERYONE`].
pub const CHANNEL: &str = "debrief_events";

/// The notification payload that wakes every stream.
pub const EVERYONE: &str = "*";

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
    scoped
        .upsert(
            sequence::ActiveModel {
                user_id: Set(user_id),
                last_seq: Set(1),
            },
            next_number(),
        )
        .await?;
    let seq = sequence::Entity::find_by_id(user_id)
        .one(scoped.txn())
        .await?
        .map(|row| row.last_seq)
        .ok_or_else(|| AppError::internal("the event counter vanished"))?;
    scoped
        .insert(event::ActiveModel {
            user_id: Set(user_id),
            event_type: Set(payload.type_name().to_owned()),
            meeting_id: Set(meeting_id),
            payload: Set(serde_json::to_value(&payload).map_err(AppError::internal)?),
            seq: Set(seq),
            ..Default::default()
        })
        .await?;
    wake(scoped, user_id).await?;
    Ok(seq)
}

/// The counter row of a user who has one already counts one up.
fn next_number() -> OnConflict {
    OnConflict::column(sequence::Column::UserId)
        .value(
            sequence::Column::LastSeq,
            Expr::col((sequence::Entity, sequence::Column::LastSeq)).add(1),
        )
        .to_owned()
}

/// On Postgres, tells the other instances that `whom` (a user id, or
/// [`EVERYONE`]) has new events, once the transaction commits.
async fn notify(scoped: &Scoped, whom: &str) -> AppResult<()> {
    if scoped.txn().get_database_backend() == DbBackend::Postgres {
        scoped
            .txn()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [CHANNEL.into(), whom.into()],
            ))
            .await?;
    }
    Ok(())
}

/// Wakes `user_id`'s streams once `scoped` commits (never if it rolls
/// back): here directly, on other instances through `NOTIFY`, which
/// Postgres delivers at commit. For changes that streams show without an
/// event of their own, such as a meeting's status on `WatchMeeting`.
pub async fn wake(scoped: &Scoped, user_id: Uuid) -> AppResult<()> {
    notify(scoped, &user_id.to_string()).await?;
    scoped.signal_after_commit(user_id);
    Ok(())
}

/// Adds the same event (about no meeting) for every user that `recipients`
/// selects (one column: user ids), in two statements whatever their number,
/// and wakes every stream once the transaction commits. Returns how many
/// users it reached. For the service scope (a notice to everyone).
pub async fn publish_to_all(
    scoped: &Scoped,
    recipients: SelectStatement,
    payload: Payload,
) -> AppResult<u64> {
    // Each recipient's next number, as `publish` takes it one at a time.
    let mut numbered = recipients.clone();
    numbered
        .expr(Expr::val(1))
        // SQLite needs a WHERE to read ON CONFLICT after INSERT ... SELECT.
        .and_where(Expr::cust("true"));
    let counters = Query::insert()
        .into_table(sequence::Entity.table_ref())
        .columns([sequence::Column::UserId, sequence::Column::LastSeq])
        .select_from(numbered)
        .map_err(AppError::internal)?
        .on_conflict(next_number())
        .to_owned();
    let reached = scoped.execute_across_users(&counters).await?;
    let now = Utc::now();
    let value = serde_json::to_value(&payload).map_err(AppError::internal)?;
    let mut rows = Query::select();
    rows.column(sequence::Column::UserId)
        .expr(Expr::val(payload.type_name()))
        .expr(Expr::val(value))
        .expr(Expr::val(now))
        .expr(Expr::val(now))
        .column(sequence::Column::LastSeq)
        .from(sequence::Entity.table_ref())
        .and_where(Expr::col(sequence::Column::UserId).in_subquery(recipients));
    let insert = Query::insert()
        .into_table(event::Entity.table_ref())
        .columns([
            event::Column::UserId,
            event::Column::EventType,
            event::Column::Payload,
            event::Column::CreatedAt,
            event::Column::UpdatedAt,
            event::Column::Seq,
        ])
        .select_from(rows)
        .map_err(AppError::internal)?
        .to_owned();
    scoped.execute_across_users(&insert).await?;
    notify(scoped, EVERYONE).await?;
    scoped.signal_everyone_after_commit();
    Ok(reached)
}
