//! `refresh_tokens`: the hashes of a session's refresh tokens.

use sea_orm::entity::prelude::*;

/// One refresh token (only its hash).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The session it belongs to.
    pub session_id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: String,
    /// When it stops working.
    pub expires_at: DateTimeUtc,
    /// When it was exchanged; a token works once.
    pub used_at: Option<DateTimeUtc>,
    /// The token issued in exchange.
    pub replaced_by: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
