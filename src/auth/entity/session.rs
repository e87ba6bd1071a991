//! `auth_sessions`: one row per sign-in, the family of its refresh tokens.

use sea_orm::entity::prelude::*;

/// A sign-in session.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_sessions")]
pub struct Model {
    /// Session id (the `sid` claim).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// User agent of the client that opened it.
    pub user_agent: String,
    /// IP address of the client that opened it.
    pub ip_address: String,
    /// Last refresh.
    pub last_used_at: DateTimeUtc,
    /// End unless refreshed.
    pub expires_at: DateTimeUtc,
    /// When it was revoked.
    pub revoked_at: Option<DateTimeUtc>,
    /// Why: `sign_out`, `revoked`, `refresh_token_reused`, `password_changed`...
    pub revoke_reason: Option<String>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);

impl Model {
    /// Whether its tokens may still be used at `now`.
    pub fn is_active(&self, now: DateTimeUtc) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}
