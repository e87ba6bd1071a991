//! `user_limit_overrides`: limits that differ from the plan's for one user.

use sea_orm::entity::prelude::*;

use crate::usage::model::Category;

/// One override.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_limit_overrides")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The category.
    #[sea_orm(primary_key, auto_increment = false)]
    pub category: Category,
    /// The limit; None for unlimited.
    pub limit_value: Option<i64>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
