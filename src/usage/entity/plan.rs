//! `plans`: subscription plans (shared, not user data).

use sea_orm::entity::prelude::*;

/// A plan.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plans")]
pub struct Model {
    /// Slug, e.g. `free`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Name shown in the product.
    pub display_name: String,
    /// What the plan is for.
    pub description: String,
    /// Monthly price in US cents.
    pub monthly_price_cents: i64,
    /// Sort order, cheapest first.
    pub position: i32,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// A plan has limits.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The plan's limits.
    #[sea_orm(has_many = "super::plan_limit::Entity")]
    Limits,
}

impl Related<super::plan_limit::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Limits.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
