//! Sign-in sessions and their tokens: opening, refresh rotation with reuse
//! detection, and revocation.
//!
//! A session is the family of its refresh tokens. Each refresh token works
//! once; exchanging it marks it used and stores its successor's hash. The
//! successor is derived from the token with a key every instance shares
//! ([`secret::derive`]), so a second refresh with the same token inside
//! the grace window (two browser tabs) receives the same successor. After
//! the window, presenting a used token means it was copied: the session is
//! revoked and the event audited.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::Auth;
use super::entity::{refresh_token, session, user};
use super::keys;
use super::secret::{self, REFRESH_PREFIX};
use crate::audit::{self, Entry};
use crate::context::RequestMeta;
use crate::db::{Db, Scoped};
use crate::error::{AppError, AppResult};
use crate::pagination::{BeforeId, PageRequest};
use crate::pb::v1 as pb;
use crate::timestamps;

fn invalid_refresh() -> AppError {
    AppError::Unauthenticated {
        reason: "REFRESH_TOKEN_INVALID",
        message: "the refresh token is not valid; sign in again".into(),
    }
}

fn ttl(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::days(30))
}

/// Opens a session for `user` and returns its first tokens.
pub async fn open(
    auth: &Auth,
    scoped: &Scoped,
    user: &user::Model,
    meta: &RequestMeta,
) -> AppResult<pb::SessionTokens> {
    let now = Utc::now();
    let expires_at = now + ttl(auth.config.session_ttl);
    let session = scoped
        .insert(session::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user.id),
            user_agent: Set(meta.user_agent.clone()),
            ip_address: Set(meta.ip_text()),
            last_used_at: Set(now),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            revoke_reason: Set(None),
            ..Default::default()
        })
        .await?;
    let refresh = secret::generate(REFRESH_PREFIX)?;
    insert_refresh_token(scoped, &session, &refresh, Uuid::now_v7()).await?;
    tokens(auth, user, session.id, refresh, expires_at)
}

async fn insert_refresh_token(
    scoped: &Scoped,
    session: &session::Model,
    token: &str,
    id: Uuid,
) -> AppResult<()> {
    scoped
        .insert(refresh_token::ActiveModel {
            id: Set(id),
            session_id: Set(session.id),
            user_id: Set(session.user_id),
            token_hash: Set(secret::hash(token)),
            expires_at: Set(session.expires_at),
            used_at: Set(None),
            replaced_by: Set(None),
            ..Default::default()
        })
        .await?;
    Ok(())
}

fn tokens(
    auth: &Auth,
    user: &user::Model,
    session_id: Uuid,
    refresh_token: String,
    refresh_expires_at: DateTime<Utc>,
) -> AppResult<pb::SessionTokens> {
    let claims = keys::claims(
        user.id,
        session_id,
        user.role,
        &auth.config.issuer,
        auth.config.access_token_ttl,
    );
    let access_token = auth.keys.sign(&claims).map_err(AppError::internal)?;
    Ok(pb::SessionTokens {
        access_token,
        access_token_expire_time: DateTime::from_timestamp(claims.exp, 0).map(timestamps::to_proto),
        refresh_token,
        refresh_token_expire_time: Some(timestamps::to_proto(refresh_expires_at)),
        token_type: "Bearer".into(),
        session: format!("authSessions/{session_id}"),
    })
}

/// Exchanges a refresh token for new tokens (see the module docs).
pub async fn refresh(
    auth: &Auth,
    db: &Db,
    presented: &str,
    meta: &RequestMeta,
) -> AppResult<pb::SessionTokens> {
    if !presented.starts_with(REFRESH_PREFIX) {
        return Err(invalid_refresh());
    }
    let now = Utc::now();
    // The token is all we know: find it across users.
    let scoped = db.as_service().await?;
    let token = scoped
        .find::<refresh_token::Entity>()
        .filter(refresh_token::Column::TokenHash.eq(secret::hash(presented)))
        .one(scoped.txn())
        .await?
        .ok_or_else(invalid_refresh)?;
    let session = scoped
        .find::<session::Entity>()
        .filter(session::Column::Id.eq(token.session_id))
        .one(scoped.txn())
        .await?
        .filter(|s| s.is_active(now) && token.expires_at > now)
        .ok_or_else(|| AppError::Unauthenticated {
            reason: "SESSION_ENDED",
            message: "the session has ended; sign in again".into(),
        })?;
    let user = super::store::get_user(&scoped, session.user_id).await?;
    let successor = secret::derive(auth.keys.derivation_key(), REFRESH_PREFIX, presented)?;

    let successor_id = Uuid::now_v7();
    let claimed = scoped
        .update_many::<refresh_token::Entity>()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .col_expr(refresh_token::Column::ReplacedBy, Expr::value(successor_id))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec()
        .await?;
    if claimed.rows_affected == 1 {
        let expires_at = now + ttl(auth.config.session_ttl);
        scoped
            .update_many::<session::Entity>()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .col_expr(session::Column::ExpiresAt, Expr::value(expires_at))
            .filter(session::Column::Id.eq(session.id))
            .exec()
            .await?;
        let session = session::Model {
            expires_at,
            ..session
        };
        insert_refresh_token(&scoped, &session, &successor, successor_id).await?;
        scoped.commit().await?;
        return tokens(auth, &user, session.id, successor, expires_at);
    }

    // Already exchanged, by this client a moment ago or by a copy.
    let used_at = scoped
        .find::<refresh_token::Entity>()
        .filter(refresh_token::Column::Id.eq(token.id))
        .one(scoped.txn())
        .await?
        .and_then(|t| t.used_at)
        .unwrap_or(now);
    if now - used_at <= ttl(auth.config.refresh_reuse_grace) {
        let issued = scoped
            .find::<refresh_token::Entity>()
            .filter(refresh_token::Column::TokenHash.eq(secret::hash(&successor)))
            .one(scoped.txn())
            .await?
            .ok_or_else(invalid_refresh)?;
        return tokens(auth, &user, session.id, successor, issued.expires_at);
    }
    revoke(
        &scoped,
        session.user_id,
        RevokeWhich::One(session.id),
        "refresh_token_reused",
    )
    .await?;
    audit::record(
        &scoped,
        meta,
        Entry::about("auth.refresh_token_reused", session.user_id)
            .target(format!("authSessions/{}", session.id)),
    )
    .await?;
    scoped.commit().await?;
    auth.authenticator.forget_sessions(&[session.id]);
    tracing::warn!(session = %session.id, "a rotated refresh token was presented again; session revoked");
    Err(AppError::Unauthenticated {
        reason: "REFRESH_TOKEN_REUSED",
        message: "this refresh token was already used, so the session was ended to protect the account; sign in again"
            .into(),
    })
}

/// Which of a user's sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum RevokeWhich {
    /// One session.
    One(Uuid),
    /// Every active session.
    All,
    /// Every active session but this one.
    AllBut(Uuid),
}

/// Revokes active sessions of `user_id`; returns the ids revoked. The
/// caller tells the authenticator after committing.
pub async fn revoke(
    scoped: &Scoped,
    user_id: Uuid,
    which: RevokeWhich,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let now = Utc::now();
    let mut select = scoped
        .find::<session::Entity>()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null());
    select = match which {
        RevokeWhich::One(id) => select.filter(session::Column::Id.eq(id)),
        RevokeWhich::All => select,
        RevokeWhich::AllBut(id) => select.filter(session::Column::Id.ne(id)),
    };
    let ids: Vec<Uuid> = select
        .all(scoped.txn())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    if !ids.is_empty() {
        scoped
            .update_many::<session::Entity>()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .col_expr(session::Column::RevokeReason, Expr::value(reason))
            .filter(session::Column::Id.is_in(ids.clone()))
            .exec()
            .await?;
    }
    Ok(ids)
}

/// The caller's active sessions, newest first.
pub async fn list(
    db: &Db,
    user_id: Uuid,
    current: Option<Uuid>,
    page_size: i32,
    page_token: &str,
) -> AppResult<pb::AuthServiceListSessionsResponse> {
    let page = PageRequest::<BeforeId>::parse(page_size, page_token, 50, 200)?;
    let scoped = db.read_as_user(user_id).await?;
    let query = page.newest_first(
        scoped
            .find::<session::Entity>()
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(Utc::now())),
        session::Column::Id,
    );
    let (sessions, next) = page.page(query.all(scoped.txn()).await?, |last| BeforeId {
        before: last.id,
    });
    Ok(pb::AuthServiceListSessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|session| {
                let is_current = Some(session.id) == current;
                pb::AuthSession::from((session, is_current))
            })
            .collect(),
        next_page_token: PageRequest::token(next.as_ref()),
    })
}

/// Ends one of the caller's sessions: NOT_FOUND if it is not theirs.
/// Ending an already ended session is harmless.
pub async fn end(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    user_id: Uuid,
    session_id: Uuid,
    reason: &'static str,
) -> AppResult<()> {
    let scoped = db.as_user(user_id).await?;
    scoped
        .find::<session::Entity>()
        .filter(session::Column::Id.eq(session_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("session"))?;
    let revoked = revoke(&scoped, user_id, RevokeWhich::One(session_id), reason).await?;
    if !revoked.is_empty() {
        let action = if reason == "sign_out" {
            "auth.sign_out"
        } else {
            "auth.session_revoked"
        };
        audit::record(
            &scoped,
            meta,
            Entry::own(action, user_id).target(format!("authSessions/{session_id}")),
        )
        .await?;
    }
    scoped.commit().await?;
    auth.authenticator.forget_sessions(&revoked);
    Ok(())
}
