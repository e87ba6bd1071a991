//! Stream tickets: a browser's `EventSource` cannot send an
//! `Authorization` header, so a signed-in page mints a ticket with its
//! bearer token and opens the stream with `?ticket=...`. A ticket opens one
//! stream: it is single-use, lives [`TICKET_TTL`], works only while the
//! session that minted it does, and is accepted only by the HTTP edge on
//! server-streaming GETs (the edge passes it to the auth layer in the
//! request's extensions, which no client can set). Only its hash is stored.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity::stream_ticket;
use super::secret;
use crate::db::Db;
use crate::error::AppResult;

/// Prefix of stream tickets.
pub const TICKET_PREFIX: &str = "dst_";

/// How long a ticket may wait to be used.
pub const TICKET_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A ticket handed to the HTTP edge's auth, in a request's extensions.
#[derive(Debug, Clone)]
pub struct StreamTicket(pub String);

/// Mints a ticket for `user_id`'s session `session_id`.
pub async fn mint(db: &Db, user_id: Uuid, session_id: Uuid) -> AppResult<(String, DateTime<Utc>)> {
    let ticket = secret::generate(TICKET_PREFIX)?;
    let now = Utc::now();
    let expires_at = now + TICKET_TTL;
    let scoped = db.as_user(user_id).await?;
    scoped
        .insert(stream_ticket::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            session_id: Set(session_id),
            token_hash: Set(secret::hash(&ticket)),
            expires_at: Set(expires_at),
            used_at: Set(None),
            ..Default::default()
        })
        .await?;
    scoped.commit().await?;
    Ok((ticket, expires_at))
}

/// Uses up a ticket: the (user, session) it was minted for, once, if it
/// has not expired. The ticket is all that is known, so it is looked up
/// across users and only its own row is touched.
pub async fn redeem(db: &Db, ticket: &str) -> AppResult<Option<(Uuid, Uuid)>> {
    if !ticket.starts_with(TICKET_PREFIX) {
        return Ok(None);
    }
    let now = Utc::now();
    let scoped = db.as_service().await?;
    let used = scoped
        .update_many::<stream_ticket::Entity>()
        .col_expr(stream_ticket::Column::UsedAt, Expr::value(now))
        .filter(stream_ticket::Column::TokenHash.eq(secret::hash(ticket)))
        .filter(stream_ticket::Column::UsedAt.is_null())
        .filter(stream_ticket::Column::ExpiresAt.gt(now))
        .exec_with_returning()
        .await?;
    scoped.commit().await?;
    Ok(used.first().map(|t| (t.user_id, t.session_id)))
}

/// Deletes tickets that expired before `before` (housekeeping).
pub async fn prune(db: &Db, before: DateTime<Utc>) -> AppResult<u64> {
    let scoped = db.as_service().await?;
    let pruned = scoped
        .delete_many::<stream_ticket::Entity>()
        .filter(stream_ticket::Column::ExpiresAt.lt(before))
        .exec()
        .await?
        .rows_affected;
    scoped.commit().await?;
    Ok(pruned)
}
