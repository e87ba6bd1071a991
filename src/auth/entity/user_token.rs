//! `user_tokens`: single-use email verification and password reset tokens.

use sea_orm::entity::prelude::*;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Purpose {
    /// Proves the account owns its email address.
    #[sea_orm(string_value = "verify_email")]
    VerifyEmail,
    /// Sets a new password.
    #[sea_orm(string_value = "reset_password")]
    ResetPassword,
}

/// A token (only its hash).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_tokens")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// What it is for.
    pub purpose: Purpose,
    /// SHA-256 of the token.
    pub token_hash: String,
    /// When it stops working.
    pub expires_at: DateTimeUtc,
    /// When it was used.
    pub used_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
