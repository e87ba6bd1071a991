//! `usage_reservations`: amounts held by operations in progress.

use sea_orm::entity::prelude::*;

use crate::usage::model::Category;

/// One held amount.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_reservations")]
pub struct Model {
    /// Reservation id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The category.
    pub category: Category,
    /// The counter's period.
    pub period_start: DateTimeUtc,
    /// The amount held.
    pub amount: i64,
    /// When it is given back if neither committed nor released.
    pub expires_at: DateTimeUtc,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
