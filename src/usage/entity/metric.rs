//! `usage_metrics`: privacy-safe consumption records (ids, category,
//! amount and time only).

use sea_orm::entity::prelude::*;

use crate::usage::model::Category;

/// Whether an amount was consumed or only estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Kind {
    /// Consumed.
    #[sea_orm(string_value = "actual")]
    Actual,
    /// Estimated before the work (e.g. AI cost).
    #[sea_orm(string_value = "estimate")]
    Estimate,
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_metrics")]
pub struct Model {
    /// Sequence number.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The user.
    pub user_id: Uuid,
    /// The category.
    pub category: Category,
    /// The amount in the category's unit.
    pub amount: i64,
    /// The meeting it was for, if any.
    pub meeting_id: Option<Uuid>,
    /// Actual or estimated.
    pub kind: Kind,
    /// When.
    pub created_at: DateTimeUtc,
    /// Equal to `created_at`.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
