//! `users`: one row per account.

use sea_orm::entity::prelude::*;

pub use crate::caller::Role;

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Account id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Normalised email address.
    pub email: String,
    /// argon2id PHC string; None for accounts that cannot sign in.
    pub password_hash: Option<String>,
    /// The account's role.
    pub role: Role,
    /// When the email address was verified.
    pub email_verified_at: Option<DateTimeUtc>,
    /// The plan, `plans.id`.
    pub plan_id: String,
    /// Start of the current plan; usage periods are anchored to it.
    pub plan_started_at: DateTimeUtc,
    /// Last successful sign-in.
    pub last_sign_in_at: Option<DateTimeUtc>,
    /// When the account was closed; its data is being erased.
    pub deleted_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by Id);
