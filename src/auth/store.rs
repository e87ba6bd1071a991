//! Queries of the identity domain: accounts and one-time email tokens.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity::user::{self, Role};
use super::entity::user_token::{self, Purpose};
use super::secret;
use crate::db::{Scoped, ScopedWrite};
use crate::error::{AppError, AppResult};
use crate::pb::v1 as pb;
use crate::profiles;

/// The account with this (normalised) email, if the scope may see it.
pub async fn find_by_email(scoped: &Scoped, email: &str) -> AppResult<Option<user::Model>> {
    Ok(scoped
        .find::<user::Entity>()
        .filter(user::Column::Email.eq(email))
        .one(scoped.txn())
        .await?)
}

/// The account `id`, or NOT_FOUND.
pub async fn get_user(scoped: &Scoped, id: Uuid) -> AppResult<user::Model> {
    scoped
        .find::<user::Entity>()
        .filter(user::Column::Id.eq(id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

/// A new account's facts, already validated.
#[derive(Debug)]
pub struct NewAccount<'a> {
    /// Normalised email.
    pub email: &'a str,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    /// Role.
    pub role: Role,
    /// Display name for the profile.
    pub display_name: &'a str,
}

/// Creates an account and its profile on the free plan. The scope must be
/// the service scope (nobody owns the row before it exists).
pub async fn create_account(scoped: &Scoped, account: NewAccount<'_>) -> AppResult<user::Model> {
    let taken = || AppError::AlreadyExists {
        reason: "EMAIL_TAKEN",
        message: "an account with this email address already exists; sign in or reset the password".into(),
    };
    if find_by_email(scoped, account.email).await?.is_some() {
        return Err(taken());
    }
    let now = Utc::now();
    let id = Uuid::now_v7();
    let user = scoped
        .insert(user::ActiveModel {
            id: Set(id),
            email: Set(account.email.to_owned()),
            password_hash: Set(account.password_hash),
            role: Set(account.role),
            email_verified_at: Set(None),
            plan_id: Set("free".into()),
            plan_started_at: Set(now),
            last_sign_in_at: Set(None),
            ..Default::default()
        })
        .await
        // Two sign-ups with one email at once: the unique index decides.
        .map_err(|e| match e {
            AppError::Database(db) if is_unique_violation(&db) => taken(),
            other => other,
        })?;
    profiles::store::create(scoped, id, account.display_name).await?;
    Ok(user)
}

/// Whether a database error is a unique constraint violation.
pub fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// An update of accounts in a scope.
pub type UserUpdate<'a> = ScopedWrite<'a, sea_orm::UpdateMany<user::Entity>>;

/// Updates columns of one account.
pub async fn update_user<'a>(
    scoped: &'a Scoped,
    id: Uuid,
    changes: impl FnOnce(UserUpdate<'a>) -> UserUpdate<'a>,
) -> AppResult<()> {
    let update = scoped
        .update_many::<user::Entity>()
        .filter(user::Column::Id.eq(id));
    changes(update).exec().await?;
    Ok(())
}

/// The API message of an account with its profile's display name.
pub async fn user_with_profile(scoped: &Scoped, user: &user::Model) -> AppResult<pb::User> {
    let name = profiles::store::get(scoped, user.id)
        .await
        .map(|p| p.display_name)
        .unwrap_or_default();
    Ok(pb::User::from((user, name)))
}

/// Creates a single-use token for `purpose`, replacing earlier unused ones.
pub async fn issue_email_token(
    scoped: &Scoped,
    user_id: Uuid,
    purpose: Purpose,
    ttl: chrono::Duration,
) -> AppResult<String> {
    let now = Utc::now();
    scoped
        .update_many::<user_token::Entity>()
        .col_expr(user_token::Column::UsedAt, Expr::value(now))
        .filter(user_token::Column::UserId.eq(user_id))
        .filter(user_token::Column::Purpose.eq(purpose))
        .filter(user_token::Column::UsedAt.is_null())
        .exec()
        .await?;
    let token = secret::generate(secret::EMAIL_TOKEN_PREFIX)?;
    scoped
        .insert(user_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            purpose: Set(purpose),
            token_hash: Set(secret::hash(&token)),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            ..Default::default()
        })
        .await?;
    Ok(token)
}

/// The unused, unexpired token for `purpose`, without using it.
pub async fn find_email_token(
    scoped: &Scoped,
    token: &str,
    purpose: Purpose,
) -> AppResult<user_token::Model> {
    scoped
        .find::<user_token::Entity>()
        .filter(user_token::Column::TokenHash.eq(secret::hash(token)))
        .filter(user_token::Column::Purpose.eq(purpose))
        .filter(user_token::Column::UsedAt.is_null())
        .filter(user_token::Column::ExpiresAt.gt(Utc::now()))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::invalid("token", "is not valid, was already used or has expired"))
}

/// Marks a token used; fails if another request used it first.
pub async fn use_email_token(scoped: &Scoped, token: &user_token::Model) -> AppResult<()> {
    let used = scoped
        .update_many::<user_token::Entity>()
        .col_expr(user_token::Column::UsedAt, Expr::value(Utc::now()))
        .filter(user_token::Column::Id.eq(token.id))
        .filter(user_token::Column::UsedAt.is_null())
        .exec()
        .await?;
    if used.rows_affected == 1 {
        Ok(())
    } else {
        Err(AppError::invalid(
            "token",
            "is not valid, was already used or has expired",
        ))
    }
}
