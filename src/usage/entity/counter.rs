//! `usage_counters`: what a user used and holds, per category and period.

use sea_orm::entity::prelude::*;

use crate::usage::model::Category;

/// One counter. Categories counted over all time use the epoch as their
/// period start.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_counters")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The category.
    #[sea_orm(primary_key, auto_increment = false)]
    pub category: Category,
    /// Start of the period counted.
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_start: DateTimeUtc,
    /// Committed usage.
    pub used: i64,
    /// Held by reservations in progress.
    pub reserved: i64,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
