//! Usage rows to API messages.

use super::entity::{plan, plan_limit};
use crate::pb::v1 as pb;

/// A plan with its limits, as the API shows it.
impl From<(plan::Model, Vec<plan_limit::Model>)> for pb::Plan {
    fn from((plan, mut limits): (plan::Model, Vec<plan_limit::Model>)) -> Self {
        limits.sort_by_key(|limit| pb::UsageCategory::from(limit.category) as i32);
        let plan::Model {
            id,
            display_name,
            description,
            monthly_price_cents,
            position: _,
            created_at: _,
            updated_at: _,
        } = plan;
        Self {
            name: format!("plans/{id}"),
            display_name,
            description,
            limits: limits.into_iter().map(pb::PlanLimit::from).collect(),
            monthly_price_cents,
        }
    }
}

impl From<plan_limit::Model> for pb::PlanLimit {
    fn from(limit: plan_limit::Model) -> Self {
        let plan_limit::Model {
            plan_id: _,
            category,
            limit_value,
            created_at: _,
            updated_at: _,
        } = limit;
        Self {
            category: pb::UsageCategory::from(category).into(),
            limit: limit_value.unwrap_or(0),
            unlimited: limit_value.is_none(),
            period: category.period().into(),
            unit: category.unit().to_owned(),
        }
    }
}
