//! The one internal API through which every domain consumes something:
//! [`reserve`] an amount, then [`Reservation::commit`] what was really used
//! or [`Reservation::release`] it.
//!
//! A reservation is a conditional update of the counter row
//! (`used + reserved + amount <= limit`), so concurrent reservations on any
//! backend can never pass the limit together: Postgres serialises them on
//! the row, SQLite has one writer. Each reservation is also a row with an
//! expiry; one whose holder died is given back the next time the counter is
//! touched ([`release_expired`]) or by [`sweep_expired`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, QueryFilter, UpdateMany};
use uuid::Uuid;

use super::entity::{counter, metric, reservation, warning};
use super::limits::{Allowance, better_plan};
use super::model::Category;
use super::period::{self, ALL_TIME};
use super::quota::{self, Refusal};
use crate::db::{Db, Scoped, ScopedWrite};
use crate::error::{AppError, AppResult, QuotaExceeded};
use crate::pb::v1::LimitPeriod;

/// Usage levels, in percent of the limit, that are recorded once per period
/// for notifications.
pub const WARNING_THRESHOLDS: [i32; 2] = [80, 100];

/// One counter row: a user's category in one period (all time for
/// categories that are not monthly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The user.
    pub user_id: Uuid,
    /// The category.
    pub category: Category,
    /// Start of the period counted.
    pub period_start: DateTime<Utc>,
}

impl Counter {
    /// The counter `category` uses at `now` for a plan started at `anchor`,
    /// with the time it resets (None for all-time counters).
    fn at(
        user_id: Uuid,
        category: Category,
        anchor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Self, Option<DateTime<Utc>>) {
        let (period_start, resets_at) = match category.period() {
            LimitPeriod::Monthly => {
                let current = period::current(anchor, now);
                (current.start, Some(current.end))
            }
            _ => (ALL_TIME, None),
        };
        let counter = Self {
            user_id,
            category,
            period_start,
        };
        (counter, resets_at)
    }

    /// Creates the row if it does not exist yet (idempotent).
    async fn ensure(self, scoped: &Scoped, now: DateTime<Utc>) -> AppResult<()> {
        scoped
            .insert_or_ignore(
                counter::ActiveModel {
                    user_id: Set(self.user_id),
                    category: Set(self.category),
                    period_start: Set(self.period_start),
                    used: Set(0),
                    reserved: Set(0),
                    created_at: Set(now),
                    updated_at: Set(now),
                },
                [
                    counter::Column::UserId,
                    counter::Column::Category,
                    counter::Column::PeriodStart,
                ],
            )
            .await?;
        Ok(())
    }

    /// `UPDATE usage_counters SET column = column + delta` on this row.
    fn change<'a>(
        self,
        scoped: &'a Scoped,
        column: counter::Column,
        delta: i64,
        now: DateTime<Utc>,
    ) -> ScopedWrite<'a, UpdateMany<counter::Entity>> {
        scoped
            .update_many::<counter::Entity>()
            .col_expr(column, Expr::col(column).add(delta))
            .col_expr(counter::Column::UpdatedAt, Expr::value(now))
            .filter(counter::Column::UserId.eq(self.user_id))
            .filter(counter::Column::Category.eq(self.category))
            .filter(counter::Column::PeriodStart.eq(self.period_start))
    }

    /// Adds to what was used.
    async fn add_used(self, scoped: &Scoped, amount: i64, now: DateTime<Utc>) -> AppResult<()> {
        self.change(scoped, counter::Column::Used, amount, now)
            .exec()
            .await?;
        Ok(())
    }

    /// Takes a held amount off.
    async fn take_back(self, scoped: &Scoped, amount: i64, now: DateTime<Utc>) -> AppResult<()> {
        self.change(scoped, counter::Column::Reserved, -amount, now)
            .exec()
            .await?;
        Ok(())
    }

    /// Used plus held.
    async fn level(self, scoped: &Scoped) -> AppResult<i64> {
        let row = scoped
            .find::<counter::Entity>()
            .filter(counter::Column::UserId.eq(self.user_id))
            .filter(counter::Column::Category.eq(self.category))
            .filter(counter::Column::PeriodStart.eq(self.period_start))
            .one(scoped.txn())
            .await?;
        Ok(row.map_or(0, |c| c.used + c.reserved))
    }

    /// Records each warning threshold the counter has reached, once a
    /// period.
    async fn record_warnings(self, scoped: &Scoped, limit: Option<i64>, now: DateTime<Utc>) -> AppResult<()> {
        let Some(limit) = limit.filter(|l| *l > 0) else {
            return Ok(());
        };
        let level = self.level(scoped).await?;
        for threshold in WARNING_THRESHOLDS
            .into_iter()
            .filter(|t| level.saturating_mul(100) / limit >= i64::from(*t))
        {
            let inserted = scoped
                .insert_or_ignore(
                    warning::ActiveModel {
                        user_id: Set(self.user_id),
                        category: Set(self.category),
                        period_start: Set(self.period_start),
                        threshold_percent: Set(threshold),
                        used: Set(level),
                        limit_value: Set(Some(limit)),
                        created_at: Set(now),
                        updated_at: Set(now),
                    },
                    [
                        warning::Column::UserId,
                        warning::Column::Category,
                        warning::Column::PeriodStart,
                        warning::Column::ThresholdPercent,
                    ],
                )
                .await?;
            // Crossed just now (not recorded before): tell the user.
            if inserted {
                let warning = crate::events::model::Payload::QuotaWarning {
                    category: self.category.name().to_owned(),
                    threshold_percent: threshold,
                    used: level,
                    limit,
                };
                crate::events::publish(scoped, self.user_id, None, warning).await?;
            }
        }
        Ok(())
    }
}

/// An amount held for an operation in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "commit or release a reservation; otherwise it holds its amount until it expires"]
pub struct Reservation {
    /// Reservation id.
    pub id: Uuid,
    /// The counter it holds on.
    pub counter: Counter,
    /// The amount held.
    pub amount: i64,
}

/// Holds `amount` of `category` for `user_id` until committed, released or
/// `ttl` has passed. Over the limit: `RESOURCE_EXHAUSTED` explaining it.
pub async fn reserve(
    scoped: &Scoped,
    user_id: Uuid,
    category: Category,
    amount: i64,
    ttl: Duration,
    upgrade_url: &str,
    now: DateTime<Utc>,
) -> AppResult<Reservation> {
    if amount <= 0 || category == Category::MaxUploadBytes {
        return Err(AppError::internal(format!(
            "cannot reserve {amount} of {category:?}"
        )));
    }
    let allowance = Allowance::load(scoped, user_id).await?;
    let (counter, resets_at) = Counter::at(user_id, category, allowance.user.plan_started_at, now);
    release_expired(scoped, user_id, Some(category), now).await?;
    counter.ensure(scoped, now).await?;

    let limit = allowance.limit(category);
    let mut update = counter.change(scoped, counter::Column::Reserved, amount, now);
    if let Some(limit) = limit {
        update = update.filter(
            Expr::col(counter::Column::Used)
                .add(Expr::col(counter::Column::Reserved))
                .add(amount)
                .lte(limit),
        );
    }
    if update.exec().await?.rows_affected == 0 {
        let refused = Refused {
            limit: limit.unwrap_or(0),
            used: counter.level(scoped).await?,
            requested: amount,
            resets_at,
        };
        return Err(refused.explain(scoped, &allowance, category, upgrade_url).await?);
    }
    let id = Uuid::now_v7();
    scoped
        .insert(reservation::ActiveModel {
            id: Set(id),
            user_id: Set(user_id),
            category: Set(category),
            period_start: Set(counter.period_start),
            amount: Set(amount),
            expires_at: Set(now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1))),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .await?;
    counter.record_warnings(scoped, limit, now).await?;
    Ok(Reservation { id, counter, amount })
}

/// Checks a single amount against an instant limit (e.g. one upload's size).
pub async fn check_single(
    scoped: &Scoped,
    user_id: Uuid,
    category: Category,
    amount: i64,
    upgrade_url: &str,
) -> AppResult<()> {
    let allowance = Allowance::load(scoped, user_id).await?;
    match allowance.limit(category) {
        Some(limit) if amount > limit => {
            let refused = Refused {
                limit,
                used: 0,
                requested: amount,
                resets_at: None,
            };
            Err(refused.explain(scoped, &allowance, category, upgrade_url).await?)
        }
        _ => Ok(()),
    }
}

impl Reservation {
    /// Settles the reservation on what was really used (`actual` may differ
    /// from the amount held), and records the consumption in the metrics.
    /// For categories that are not consumed (jobs at once) it only releases.
    pub async fn commit(
        self,
        scoped: &Scoped,
        actual: i64,
        meeting_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let held = self.unhold(scoped, now).await?;
        if !held {
            tracing::warn!(reservation = %self.id, "committing a reservation that had expired");
        }
        let Counter {
            user_id, category, ..
        } = self.counter;
        if category.period() == LimitPeriod::Instant || actual <= 0 {
            return Ok(());
        }
        self.counter.add_used(scoped, actual, now).await?;
        append_metric(
            scoped,
            user_id,
            category,
            actual,
            meeting_id,
            metric::Kind::Actual,
            now,
        )
        .await?;
        let limit = Allowance::load(scoped, user_id).await?.limit(category);
        self.counter.record_warnings(scoped, limit, now).await
    }

    /// Gives the amount back.
    pub async fn release(self, scoped: &Scoped, now: DateTime<Utc>) -> AppResult<()> {
        self.unhold(scoped, now).await.map(|_| ())
    }

    /// Removes the reservation and its hold; false if it had already been
    /// given back (expired).
    async fn unhold(&self, scoped: &Scoped, now: DateTime<Utc>) -> AppResult<bool> {
        let deleted = scoped
            .delete_many::<reservation::Entity>()
            .filter(reservation::Column::Id.eq(self.id))
            .exec()
            .await?;
        if deleted.rows_affected == 0 {
            return Ok(false);
        }
        self.counter.take_back(scoped, self.amount, now).await?;
        Ok(true)
    }
}

/// A reservation by id, if it still holds (not committed, released or
/// given back).
pub async fn find(scoped: &Scoped, id: Uuid) -> AppResult<Option<Reservation>> {
    let row = scoped
        .find::<reservation::Entity>()
        .filter(reservation::Column::Id.eq(id))
        .one(scoped.txn())
        .await?;
    Ok(row.map(|r| Reservation {
        id: r.id,
        counter: Counter {
            user_id: r.user_id,
            category: r.category,
            period_start: r.period_start,
        },
        amount: r.amount,
    }))
}

/// Records consumption that needs no reservation (e.g. the actual AI cost
/// of a request), or an estimate, which only goes to the metrics.
pub async fn record(
    scoped: &Scoped,
    user_id: Uuid,
    category: Category,
    amount: i64,
    meeting_id: Option<Uuid>,
    kind: metric::Kind,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if kind == metric::Kind::Actual && category.period() != LimitPeriod::Instant {
        let allowance = Allowance::load(scoped, user_id).await?;
        let (counter, _) = Counter::at(user_id, category, allowance.user.plan_started_at, now);
        counter.ensure(scoped, now).await?;
        counter.add_used(scoped, amount, now).await?;
        counter
            .record_warnings(scoped, allowance.limit(category), now)
            .await?;
    }
    append_metric(scoped, user_id, category, amount, meeting_id, kind, now).await
}

/// Frees `amount` of an all-time category (storage of a deleted
/// recording), never below zero.
pub async fn free(
    scoped: &Scoped,
    user_id: Uuid,
    category: Category,
    amount: i64,
    now: DateTime<Utc>,
) -> AppResult<()> {
    if category.period() != LimitPeriod::Total || amount <= 0 {
        return Err(AppError::internal(format!(
            "cannot free {amount} of {category:?}"
        )));
    }
    let counter = Counter {
        user_id,
        category,
        period_start: ALL_TIME,
    };
    let freed = counter
        .change(scoped, counter::Column::Used, -amount, now)
        .filter(counter::Column::Used.gte(amount))
        .exec()
        .await?;
    if freed.rows_affected == 0 {
        scoped
            .update_many::<counter::Entity>()
            .col_expr(counter::Column::Used, Expr::value(0))
            .col_expr(counter::Column::UpdatedAt, Expr::value(now))
            .filter(counter::Column::UserId.eq(user_id))
            .filter(counter::Column::Category.eq(category))
            .filter(counter::Column::PeriodStart.eq(ALL_TIME))
            .exec()
            .await?;
    }
    Ok(())
}

/// Gives back the user's reservations that expired (in one category, or
/// all). Each is removed before its amount is returned, so two callers can
/// never return the same one twice.
pub async fn release_expired(
    scoped: &Scoped,
    user_id: Uuid,
    category: Option<Category>,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    let mut query = scoped
        .find::<reservation::Entity>()
        .filter(reservation::Column::UserId.eq(user_id))
        .filter(reservation::Column::ExpiresAt.lte(now));
    if let Some(category) = category {
        query = query.filter(reservation::Column::Category.eq(category));
    }
    let mut released = 0;
    for expired in query.all(scoped.txn()).await? {
        let reservation = Reservation {
            id: expired.id,
            counter: Counter {
                user_id,
                category: expired.category,
                period_start: expired.period_start,
            },
            amount: expired.amount,
        };
        if reservation.unhold(scoped, now).await? {
            released += 1;
        }
    }
    Ok(released)
}

/// Gives back every expired reservation of every user (a periodic sweep).
pub async fn sweep_expired(db: &Db, now: DateTime<Utc>) -> AppResult<u64> {
    let scoped = db.as_service().await?;
    let mut users: Vec<Uuid> = scoped
        .find::<reservation::Entity>()
        .filter(reservation::Column::ExpiresAt.lte(now))
        .all(scoped.txn())
        .await?
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    users.sort_unstable();
    users.dedup();
    let mut released = 0;
    for user_id in users {
        released += release_expired(&scoped, user_id, None, now).await?;
    }
    scoped.commit().await?;
    Ok(released)
}

async fn append_metric(
    scoped: &Scoped,
    user_id: Uuid,
    category: Category,
    amount: i64,
    meeting_id: Option<Uuid>,
    kind: metric::Kind,
    now: DateTime<Utc>,
) -> AppResult<()> {
    scoped
        .insert(metric::ActiveModel {
            user_id: Set(user_id),
            category: Set(category),
            amount: Set(amount),
            meeting_id: Set(meeting_id),
            kind: Set(kind),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The figures of a refusal.
struct Refused {
    limit: i64,
    used: i64,
    requested: i64,
    resets_at: Option<DateTime<Utc>>,
}

impl Refused {
    /// The `RESOURCE_EXHAUSTED` error, with a sentence that names the plan,
    /// the usage, the reset date and a plan that allows more.
    async fn explain(
        self,
        scoped: &Scoped,
        allowance: &Allowance,
        category: Category,
        upgrade_url: &str,
    ) -> AppResult<AppError> {
        let Self {
            limit,
            used,
            requested,
            resets_at,
        } = self;
        let better = better_plan(scoped, &allowance.plan, category, limit).await?;
        let message = quota::explain(&Refusal {
            category,
            plan_name: &allowance.plan.display_name,
            limit,
            used,
            requested,
            resets_at,
            better: better
                .as_ref()
                .map(|(plan, limit)| (plan.display_name.as_str(), *limit)),
        });
        Ok(AppError::QuotaExceeded(Box::new(QuotaExceeded {
            category: category.name(),
            plan: allowance.plan.id.clone(),
            limit,
            used,
            resets_at,
            message,
            upgrade_url: upgrade_url.to_owned(),
        })))
    }
}
