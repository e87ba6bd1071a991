//! `stream_tickets`: single-use credentials for opening one event stream
//! from a browser `EventSource` (only their hashes).

use sea_orm::entity::prelude::*;

/// A ticket.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stream_tickets")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose streams it opens.
    pub user_id: Uuid,
    /// The session that minted it; the ticket works while it does.
    pub session_id: Uuid,
    /// SHA-256 of the ticket.
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
