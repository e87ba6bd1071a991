//! `usage_warnings`: warning thresholds a counter crossed, once per period.

use sea_orm::entity::prelude::*;

use crate::usage::model::Category;

/// One crossed threshold.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_warnings")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The category.
    #[sea_orm(primary_key, auto_increment = false)]
    pub category: Category,
    /// The counter's period.
    #[sea_orm(primary_key, auto_increment = false)]
    pub period_start: DateTimeUtc,
    /// 80 or 100.
    #[sea_orm(primary_key, auto_increment = false)]
    pub threshold_percent: i32,
    /// Usage (used and held) when it was crossed.
    pub used: i64,
    /// The limit then.
    pub limit_value: Option<i64>,
    /// When it was crossed.
    pub created_at: DateTimeUtc,
    /// Equal to `created_at`.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
