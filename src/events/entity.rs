//! `events` and `event_sequences`.

use sea_orm::entity::prelude::*;

/// `events`: one row per event.
pub mod event {
    use super::*;

    /// An event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        /// Global row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The user it is for.
        pub user_id: Uuid,
        /// Kind, e.g. `upload_progress`.
        pub event_type: String,
        /// The meeting it concerns.
        pub meeting_id: Option<Uuid>,
        /// The payload ([`crate::events::model::Payload`] as JSON).
        pub payload: Json,
        /// When it happened.
        pub created_at: DateTimeUtc,
        /// Equal to `created_at`.
        pub updated_at: DateTimeUtc,
        /// The user's event number: the id clients see and resume from.
        pub seq: i64,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `event_sequences`: each user's last event number.
pub mod sequence {
    use super::*;

    /// A user's counter.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_sequences")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// The last number given out.
        pub last_seq: i64,
    }

    crate::db::entity_tail!(owned by UserId, unstamped);
}
