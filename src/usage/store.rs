//! Queries of the usage domain.

use sea_orm::sea_query::ExprTrait;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, LoaderTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::entity::{plan, plan_limit};
use crate::error::AppResult;

/// Where a page of plans starts: after this (position, id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanCursor {
    position: i32,
    id: String,
}

/// One page of plans with their limits, and the cursor of the next page.
pub async fn list_plans(
    conn: &impl ConnectionTrait,
    limit: u64,
    after: Option<PlanCursor>,
) -> AppResult<(Vec<(plan::Model, Vec<plan_limit::Model>)>, Option<PlanCursor>)> {
    let mut query = plan::Entity::find()
        .order_by_asc(plan::Column::Position)
        .order_by_asc(plan::Column::Id)
        .limit(limit + 1);
    if let Some(after) = after {
        query = query.filter(
            plan::Column::Position
                .gt(after.position)
                .or(plan::Column::Position
                    .eq(after.position)
                    .and(plan::Column::Id.gt(after.id))),
        );
    }
    let mut plans = query.all(conn).await?;
    let next = if plans.len() as u64 > limit {
        plans.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        plans.last().map(|last| PlanCursor {
            position: last.position,
            id: last.id.clone(),
        })
    } else {
        None
    };
    // One query for the limits of the whole page.
    let limits = plans.load_many(plan_limit::Entity, conn).await?;
    Ok((plans.into_iter().zip(limits).collect(), next))
}
