//! Closing an account: by its owner (with their password, or within
//! [`RECENT_SIGN_IN`] of signing in) or by an admin. In one transaction the
//! account loses every way in — sessions, refresh tokens, API keys, stream
//! tickets, email links, its password and its email address, which is free
//! to sign up again at once — and the erasure of everything it owns is
//! queued ([`super::Closing`]). The audit log keeps the entry, with ids only.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{api_key, session, stream_ticket, user, user_token};
use super::sessions::{self, RevokeWhich};
use super::throttle::FailureKeys;
use super::{Auth, password, store};
use crate::audit::{self, Entry};
use crate::caller::{Caller, Credential};
use crate::context::RequestMeta;
use crate::db::Db;
use crate::error::{AppError, AppResult};

/// How recent a sign-in deletes an account without the password again.
pub const RECENT_SIGN_IN: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The address a closed account keeps until it is erased: it matches no
/// sign-in and frees the real one.
fn closed_address(user_id: Uuid) -> String {
    format!("closed-{}@deleted.invalid", user_id.simple())
}

/// The caller deletes their own account, proving it is them with their
/// password or a sign-in less than [`RECENT_SIGN_IN`] before `now`.
pub async fn delete_own(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    caller: &Caller,
    given_password: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let user_id = caller.user_id;
    let Credential::Session { session_id } = caller.credential else {
        return Err(AppError::PermissionDenied {
            reason: "SIGN_IN_REQUIRED",
            message: "an API key cannot delete its account: sign in as the account's owner".into(),
        });
    };
    let (account, signed_in) = {
        let scoped = db.as_user(user_id).await?;
        let account = store::get_user(&scoped, user_id).await?;
        let signed_in = scoped
            .find::<session::Entity>()
            .filter(session::Column::Id.eq(session_id))
            .one(scoped.txn())
            .await?
            .map(|s| s.created_at);
        (account, signed_in)
    };
    if given_password.is_empty() {
        if signed_in.is_none_or(|at| now - at > RECENT_SIGN_IN) {
            return Err(AppError::invalid(
                "password",
                format!(
                    "is required: you signed in more than {} minutes ago, so confirm with your password \
                     (or sign in again) to delete your account",
                    RECENT_SIGN_IN.num_minutes()
                ),
            ));
        }
    } else {
        let keys = FailureKeys::new(&account.email, meta.ip);
        auth.throttle.check_locked(db.unscoped(), &keys).await?;
        if !password::verify(given_password, account.password_hash.as_deref()).await? {
            auth.throttle.record_failure(db.unscoped(), &keys).await?;
            return Err(AppError::invalid("password", "is not correct"));
        }
    }
    close(
        auth,
        db,
        meta,
        user_id,
        Entry::own("auth.account_deleted", user_id),
        now,
    )
    .await
}

/// Closes the account of `user_id` and queues the erasure of its data;
/// `entry` says who did it. NOT_FOUND if it is already closed.
pub async fn close(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    user_id: Uuid,
    entry: Entry,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let scoped = db.as_service().await?;
    let closed = scoped
        .update_many::<user::Entity>()
        .col_expr(user::Column::DeletedAt, Expr::value(now))
        .col_expr(user::Column::Email, Expr::value(closed_address(user_id)))
        .col_expr(user::Column::PasswordHash, Expr::value(Option::<String>::None))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::DeletedAt.is_null())
        .exec()
        .await?;
    if closed.rows_affected == 0 {
        return Err(AppError::not_found("user"));
    }
    let revoked = sessions::revoke(&scoped, user_id, RevokeWhich::All, "account_deleted").await?;
    let keys: Vec<Uuid> = scoped
        .find::<api_key::Entity>()
        .filter(api_key::Column::UserId.eq(user_id))
        .all(scoped.txn())
        .await?
        .into_iter()
        .map(|key| key.id)
        .collect();
    scoped
        .update_many::<api_key::Entity>()
        .col_expr(api_key::Column::RevokedAt, Expr::value(now))
        .filter(api_key::Column::UserId.eq(user_id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec()
        .await?;
    scoped
        .delete_many::<stream_ticket::Entity>()
        .filter(stream_ticket::Column::UserId.eq(user_id))
        .exec()
        .await?;
    scoped
        .delete_many::<user_token::Entity>()
        .filter(user_token::Column::UserId.eq(user_id))
        .exec()
        .await?;
    auth.closing.closing(&scoped, user_id).await?;
    audit::record(&scoped, meta, entry).await?;
    scoped.commit().await?;
    auth.authenticator.forget_sessions(&revoked);
    for key in keys {
        auth.authenticator.forget_api_key(key);
    }
    Ok(())
}
