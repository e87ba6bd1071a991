//! What a user's plan allows: the plan's limits with the user's overrides.

use std::collections::HashMap;

use sea_orm::sea_query::{Condition, Expr, ExprTrait as _, JoinType};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{limit_override, plan, plan_limit};
use super::model::Category;
use crate::auth::entity::user;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};

/// A user's plan and effective limits.
#[derive(Debug, Clone)]
pub struct Allowance {
    /// The user.
    pub user: user::Model,
    /// Their plan.
    pub plan: plan::Model,
    /// The plan's own limits.
    pub plan_limits: Vec<plan_limit::Model>,
    /// The user's overrides.
    pub overrides: Vec<limit_override::Model>,
}

impl Allowance {
    /// Loads the user, their plan and overrides.
    pub async fn load(scoped: &Scoped, user_id: Uuid) -> AppResult<Self> {
        let user = scoped
            .find::<user::Entity>()
            .filter(user::Column::Id.eq(user_id))
            .one(scoped.txn())
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        let (plan, plan_limits) = plan_with_limits(scoped, &user.plan_id).await?;
        let overrides = scoped
            .find::<limit_override::Entity>()
            .filter(limit_override::Column::UserId.eq(user_id))
            .all(scoped.txn())
            .await?;
        Ok(Self {
            user,
            plan,
            plan_limits,
            overrides,
        })
    }

    /// The limit in `category`; None for unlimited. A category a plan does
    /// not list is unlimited.
    pub fn limit(&self, category: Category) -> Option<i64> {
        effective(
            self.overrides
                .iter()
                .find(|o| o.category == category)
                .map(|o| o.limit_value),
            self.plan_limits
                .iter()
                .find(|l| l.category == category)
                .and_then(|l| l.limit_value),
        )
    }
}

/// The rule of every limit: the user's override if they have one (whose
/// value may itself be None, unlimited), else their plan's limit, else none.
fn effective(overridden: Option<Option<i64>>, plan: Option<i64>) -> Option<i64> {
    overridden.unwrap_or(plan)
}

/// The limit in `category` of each of `users` (None: unlimited), by the same
/// rule as [`Allowance::limit`], in one query however many users. A user
/// not found has no entry.
pub async fn limits_of(
    scoped: &Scoped,
    users: &[Uuid],
    category: Category,
) -> AppResult<HashMap<Uuid, Option<i64>>> {
    let overridden = |column| Expr::col((limit_override::Entity, column));
    let planned = |column| Expr::col((plan_limit::Entity, column));
    let mut select = scoped
        .find::<user::Entity>()
        .filter(user::Column::Id.is_in(users.iter().copied()))
        .select_only()
        .column(user::Column::Id)
        .column_as(overridden(limit_override::Column::UserId), "override_of")
        .column_as(overridden(limit_override::Column::LimitValue), "override_limit")
        .column_as(planned(plan_limit::Column::LimitValue), "plan_limit");
    QuerySelect::query(&mut select)
        .join(
            JoinType::LeftJoin,
            limit_override::Entity,
            Condition::all()
                .add(overridden(limit_override::Column::UserId).equals((user::Entity, user::Column::Id)))
                .add(overridden(limit_override::Column::Category).eq(category)),
        )
        .join(
            JoinType::LeftJoin,
            plan_limit::Entity,
            Condition::all()
                .add(planned(plan_limit::Column::PlanId).equals((user::Entity, user::Column::PlanId)))
                .add(planned(plan_limit::Column::Category).eq(category)),
        );
    // The user, the user of their override (none without one), its limit,
    // and the plan's limit.
    type Row = (Uuid, Option<Uuid>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = select.into_tuple().all(scoped.txn()).await?;
    Ok(rows
        .into_iter()
        .map(|(user, override_of, override_limit, plan)| {
            (user, effective(override_of.map(|_| override_limit), plan))
        })
        .collect())
}

/// A plan and its limits, or NOT_FOUND.
pub async fn plan_with_limits(
    scoped: &Scoped,
    plan_id: &str,
) -> AppResult<(plan::Model, Vec<plan_limit::Model>)> {
    let plan = plan::Entity::find_by_id(plan_id.to_owned())
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("plan"))?;
    let limits = plan_limit::Entity::find()
        .filter(plan_limit::Column::PlanId.eq(plan_id))
        .all(scoped.txn())
        .await?;
    Ok((plan, limits))
}

/// The first plan after `current` (by position) that allows more in
/// `category`, with its limit (None: unlimited).
pub async fn better_plan(
    scoped: &Scoped,
    current: &plan::Model,
    category: Category,
    limit: i64,
) -> AppResult<Option<(plan::Model, Option<i64>)>> {
    let plans = plan::Entity::find()
        .filter(plan::Column::Position.gt(current.position))
        .order_by_asc(plan::Column::Position)
        .all(scoped.txn())
        .await?;
    for candidate in plans {
        let found = plan_limit::Entity::find()
            .filter(plan_limit::Column::PlanId.eq(candidate.id.as_str()))
            .filter(plan_limit::Column::Category.eq(category))
            .one(scoped.txn())
            .await?;
        let their = found.and_then(|l| l.limit_value);
        if their.is_none_or(|their| their > limit) {
            return Ok(Some((candidate, their)));
        }
    }
    Ok(None)
}
