//! `GetUsage`: a user's plan, current usage per category and the last six
//! periods.

use chrono::{DateTime, Utc};
use sea_orm::Iterable;
use sea_orm::{ColumnTrait, Condition, QueryFilter};
use uuid::Uuid;

use super::entity::counter;
use super::ledger::release_expired;
use super::limits::Allowance;
use super::model::Category;
use super::period::{self, ALL_TIME};
use crate::db::Scoped;
use crate::error::AppResult;
use crate::pb::v1 as pb;
use crate::pb::v1::LimitPeriod;
use crate::timestamps;

/// Periods shown in the history, the current one included.
pub const HISTORY_PERIODS: u32 = 6;

/// The dashboard of `user_id` at `now`. Gives back expired reservations
/// first, so `reserved` shows only live ones.
pub async fn usage(
    scoped: &Scoped,
    user_id: Uuid,
    upgrade_url: &str,
    now: DateTime<Utc>,
) -> AppResult<pb::Usage> {
    release_expired(scoped, user_id, None, now).await?;
    let allowance = Allowance::load(scoped, user_id).await?;
    let anchor = allowance.user.plan_started_at;
    let current_index = period::index_at(anchor, now);
    let first = current_index.saturating_sub(HISTORY_PERIODS - 1);
    let current = period::nth(anchor, current_index);
    let oldest = period::nth(anchor, first).start;
    // Every counter needed, in one query.
    let counters = scoped
        .find::<counter::Entity>()
        .filter(counter::Column::UserId.eq(user_id))
        .filter(
            Condition::any()
                .add(counter::Column::PeriodStart.gte(oldest))
                .add(counter::Column::PeriodStart.eq(ALL_TIME)),
        )
        .all(scoped.txn())
        .await?;
    let find = |category: Category, start: DateTime<Utc>| {
        counters
            .iter()
            .find(|c| c.category == category && c.period_start == start)
    };

    let categories = Category::iter()
        .map(|category| {
            let (start, resets) = match category.period() {
                LimitPeriod::Monthly => (current.start, Some(current.end)),
                _ => (ALL_TIME, None),
            };
            let (used, reserved) = find(category, start).map_or((0, 0), |c| (c.used, c.reserved));
            let limit = allowance.limit(category);
            let percent = match limit {
                Some(limit) if limit > 0 => used as f64 * 100.0 / limit as f64,
                Some(_) if used > 0 => 100.0,
                _ => 0.0,
            };
            pb::CategoryUsage {
                category: pb::UsageCategory::from(category).into(),
                used,
                reserved,
                limit: limit.unwrap_or(0),
                unlimited: limit.is_none(),
                percent,
                reset_time: timestamps::opt_to_proto(resets),
                unit: category.unit().to_owned(),
            }
        })
        .collect();
    let history = (first..=current_index)
        .rev()
        .map(|index| {
            let period = period::nth(anchor, index);
            pb::PeriodUsage {
                start_time: Some(timestamps::to_proto(period.start)),
                end_time: Some(timestamps::to_proto(period.end)),
                totals: Category::iter()
                    .filter(|c| c.period() == LimitPeriod::Monthly)
                    .map(|category| pb::CategoryTotal {
                        category: pb::UsageCategory::from(category).into(),
                        amount: find(category, period.start).map_or(0, |c| c.used),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(pb::Usage {
        user: format!("users/{user_id}"),
        plan: Some(pb::Plan::from((allowance.plan, allowance.plan_limits))),
        period_start_time: Some(timestamps::to_proto(current.start)),
        period_end_time: Some(timestamps::to_proto(current.end)),
        categories,
        history,
        upgrade_url: upgrade_url.to_owned(),
    })
}
