//! `api_keys`: credentials for server-to-server callers (hashes only).

use sea_orm::entity::prelude::*;

/// An API key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    /// Key id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The account it acts for.
    pub user_id: Uuid,
    /// Label chosen by the owner.
    pub display_name: String,
    /// First characters of the key, to recognise it.
    pub prefix: String,
    /// SHA-256 of the key.
    pub key_hash: String,
    /// Scopes, a JSON array of strings.
    pub scopes: Json,
    /// When it stops working; None for never.
    pub expires_at: Option<DateTimeUtc>,
    /// Last use (updated at most once a minute).
    pub last_used_at: Option<DateTimeUtc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTimeUtc>,
    /// Idempotency key of the create request.
    pub request_id: Option<String>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);

impl Model {
    /// The scopes as strings.
    pub fn scope_list(&self) -> Vec<String> {
        serde_json::from_value(self.scopes.clone()).unwrap_or_default()
    }

    /// Whether it may be used at `now`.
    pub fn is_active(&self, now: DateTimeUtc) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}
