//! The export's usage: what the person used in each period, from the
//! counters (monthly categories by period; storage, kept over all time,
//! with the start 1970-01-01 and no end).

use chrono::{DateTime, Months, Utc};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::counter;
use super::period::{self, ALL_TIME};
use crate::auth::entity::user;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::export::{Page, Part, Record};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Usage by period, for the export.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["usage"]
    }

    /// One page: a row per category a month, so a decade is a few hundred.
    async fn page(&self, scoped: &Scoped, user_id: Uuid, _after: Option<Uuid>) -> AppResult<Page> {
        let anchor = scoped
            .find::<user::Entity>()
            .filter(user::Column::Id.eq(user_id))
            .one(scoped.txn())
            .await?
            .map(|u| u.plan_started_at);
        let counters = scoped
            .find::<counter::Entity>()
            .filter(counter::Column::UserId.eq(user_id))
            .order_by_asc(counter::Column::PeriodStart)
            .order_by_asc(counter::Column::Category)
            .all(scoped.txn())
            .await?;
        let mut periods: Vec<pb::PeriodUsage> = Vec::new();
        for row in counters {
            let start = Some(timestamps::to_proto(row.period_start));
            if periods.last().is_none_or(|p| p.start_time != start) {
                periods.push(pb::PeriodUsage {
                    start_time: start,
                    end_time: end_of(anchor, row.period_start).map(timestamps::to_proto),
                    totals: Vec::new(),
                });
            }
            if let Some(period) = periods.last_mut() {
                period.totals.push(pb::CategoryTotal {
                    category: pb::UsageCategory::from(row.category).into(),
                    amount: row.used,
                });
            }
        }
        Ok((periods.into_iter().map(Record::Usage).collect(), None))
    }
}

/// The end of the period starting at `start`: by the plan's anchor when it
/// still falls on one of its periods, else a month on (the plan changed).
fn end_of(anchor: Option<DateTime<Utc>>, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if start == ALL_TIME {
        return None;
    }
    anchor
        .map(|anchor| period::current(anchor, start))
        .filter(|period| period.start == start)
        .map(|period| period.end)
        .or_else(|| start.checked_add_months(Months::new(1)))
}
