//! The durable job queue: one `processing_jobs` row per meeting, claimed
//! with a lease that its worker renews while alive.
//!
//! - A claim takes the oldest runnable job — pending and due, or running
//!   with a lapsed lease (its worker died) — unless its owner already has as
//!   many jobs running as their plan allows (`concurrent_jobs`).
//! - Every write a worker makes for a job is fenced: it checks in the same
//!   transaction that the worker still holds the job, so a worker that lost
//!   its lease can never write twice.
//! - A failed attempt waits an exponential backoff with jitter; after the
//!   last attempt the job is dead (the dead letter) until `RetryProcessing`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbBackend, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{JobState, job};
use crate::db::{Db, Scoped, ScopedWrite};
use crate::error::{AppError, AppResult};
use crate::pagination::{BeforeId, PageRequest};
use crate::usage::model::Category;

/// The one kind of job.
pub const PROCESS_MEETING: &str = "process_meeting";

fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

/// Queues the meeting's job (again, if it had one), due now.
pub async fn enqueue(
    scoped: &Scoped,
    user_id: Uuid,
    meeting_id: Uuid,
    reservation_id: Option<Uuid>,
    max_attempts: i32,
) -> AppResult<()> {
    let now = Utc::now();
    let existing = scoped
        .find::<job::Entity>()
        .filter(job::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?;
    if existing.is_some() {
        return requeue(scoped, meeting_id, reservation_id).await;
    }
    scoped
        .insert(job::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            meeting_id: Set(Some(meeting_id)),
            kind: Set(PROCESS_MEETING.to_owned()),
            state: Set(JobState::Pending),
            attempts: Set(0),
            max_attempts: Set(max_attempts),
            run_at: Set(now),
            lease_until: Set(None),
            worker: Set(None),
            last_error: Set(None),
            reservation_id: Set(reservation_id),
            subject_id: Set(None),
            ..Default::default()
        })
        .await?;
    scoped.wake_workers_after_commit();
    Ok(())
}

/// Queues a task's job of `kind` about `subject_id` for `user_id`, due now
/// (see [`super::tasks`]).
pub async fn enqueue_task(
    scoped: &Scoped,
    user_id: Uuid,
    kind: &'static str,
    subject_id: Uuid,
    max_attempts: i32,
) -> AppResult<()> {
    scoped
        .insert(job::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            meeting_id: Set(None),
            kind: Set(kind.to_owned()),
            state: Set(JobState::Pending),
            attempts: Set(0),
            max_attempts: Set(max_attempts),
            run_at: Set(Utc::now()),
            lease_until: Set(None),
            worker: Set(None),
            last_error: Set(None),
            reservation_id: Set(None),
            subject_id: Set(Some(subject_id)),
            ..Default::default()
        })
        .await?;
    scoped.wake_workers_after_commit();
    Ok(())
}

/// Ends every unfinished job of `user_id` but `except` (their account is
/// closing): a worker holding one loses it at its next fenced write.
pub async fn stop_all_of_user(
    scoped: &Scoped,
    user_id: Uuid,
    except: Option<Uuid>,
    reason: &str,
) -> AppResult<()> {
    let mut stop = scoped
        .update_many::<job::Entity>()
        .col_expr(job::Column::State, Expr::value(JobState::Dead))
        .col_expr(job::Column::LastError, Expr::value(reason))
        .filter(job::Column::UserId.eq(user_id))
        .filter(job::Column::State.is_in([JobState::Pending, JobState::Running]));
    if let Some(except) = except {
        stop = stop.filter(job::Column::Id.ne(except));
    }
    stop.exec().await?;
    Ok(())
}

/// The latest lease still running on a job of `user_id` other than
/// `except`: until then a worker may still be writing for them.
pub async fn live_lease_of_user(
    scoped: &Scoped,
    user_id: Uuid,
    except: Uuid,
) -> AppResult<Option<DateTime<Utc>>> {
    let leases: Vec<Option<DateTime<Utc>>> = scoped
        .find::<job::Entity>()
        .filter(job::Column::UserId.eq(user_id))
        .filter(job::Column::Id.ne(except))
        .filter(job::Column::LeaseUntil.gt(Utc::now()))
        .select_only()
        .column(job::Column::LeaseUntil)
        .into_tuple()
        .all(scoped.txn())
        .await?;
    Ok(leases.into_iter().flatten().max())
}

/// Makes the meeting's job pending again with fresh attempts (a retry).
pub async fn requeue(scoped: &Scoped, meeting_id: Uuid, reservation_id: Option<Uuid>) -> AppResult<()> {
    let now = Utc::now();
    let mut update = scoped
        .update_many::<job::Entity>()
        .col_expr(job::Column::State, Expr::value(JobState::Pending))
        .col_expr(job::Column::Attempts, Expr::value(0))
        .col_expr(job::Column::RunAt, Expr::value(now))
        .col_expr(job::Column::LeaseUntil, Expr::value(None::<DateTime<Utc>>))
        .col_expr(job::Column::Worker, Expr::value(None::<String>))
        .filter(job::Column::MeetingId.eq(meeting_id));
    if reservation_id.is_some() {
        update = update.col_expr(job::Column::ReservationId, Expr::value(reservation_id));
    }
    update.exec().await?;
    scoped.wake_workers_after_commit();
    Ok(())
}

/// The meeting's job, if it has one.
pub async fn of_meeting(scoped: &Scoped, meeting_id: Uuid) -> AppResult<Option<job::Model>> {
    Ok(scoped
        .find::<job::Entity>()
        .filter(job::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?)
}

/// Whether a job is runnable at `now`: pending and due, or running with a
/// lapsed lease (its worker died).
fn runnable(now: DateTime<Utc>) -> Condition {
    Condition::any().add(due(now)).add(lapsed(now))
}

fn due(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(job::Column::State.eq(JobState::Pending))
        .add(job::Column::RunAt.lte(now))
}

fn lapsed(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(job::Column::State.eq(JobState::Running))
        .add(job::Column::LeaseUntil.lt(now))
}

/// Claims up to `max` runnable jobs for `worker`, oldest first, holding
/// each for `lease`, in one transaction: no owner gets more jobs running
/// than their plan's `concurrent_jobs` allows.
pub async fn claim(db: &Db, worker: &str, lease: Duration, max: usize) -> AppResult<Vec<job::Model>> {
    use sea_orm::sea_query::ExprTrait as _;
    let now = Utc::now();
    // Postgres plans the candidate reads below once for any values, from
    // estimates a queue's churn keeps stale; that plan read every due job
    // and sorted them to return the first few (10 ms a claim with 4,000
    // queued, against 0.2 ms in the index's order). Not sorting makes it
    // follow the index.
    let scoped = db.as_service_with(&[("enable_sort", "off")]).await?;
    let postgres = scoped.txn().get_database_backend() == DbBackend::Postgres;
    // A few more candidates than wanted, in case some owners are full. The
    // due and the lapsed are read apart, each in the order of the
    // `(state, run_at)` index, so a claim reads about `limit` rows however
    // long the queue is (one query with both conditions sorted every
    // runnable job to take the first few).
    let limit = max.saturating_mul(4).max(16);
    // Only what choosing needs: most candidates are not taken, and the
    // taken come back whole from the UPDATE.
    let mut candidates = Vec::new();
    for runnable in [due(now), lapsed(now)] {
        let mut query = scoped
            .find::<job::Entity>()
            .select_only()
            .columns([job::Column::RunAt, job::Column::Id, job::Column::UserId])
            .filter(runnable)
            .order_by_asc(job::Column::RunAt)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX));
        if postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        candidates.extend(
            query
                .into_tuple::<(DateTime<Utc>, Uuid, Uuid)>()
                .all(scoped.txn())
                .await?,
        );
    }
    candidates.sort_unstable();
    candidates.truncate(limit);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut owners: Vec<Uuid> = candidates.iter().map(|&(_, _, owner)| owner).collect();
    owners.sort_unstable();
    owners.dedup();
    // Read before the owners' turns, to keep them short: a limit changed
    // meanwhile applies from the next claim, as if this one came first.
    let limits = crate::usage::limits::limits_of(&scoped, &owners, Category::ConcurrentJobs).await?;
    if postgres {
        // Claims for one owner take turns, so two workers cannot both take
        // the owner's last free slot; taken in id order, so two claimers
        // never wait for each other in a circle. (Ids are hex and dashes:
        // safe to write into the statement.)
        let keys: Vec<String> = owners.iter().map(|id| format!("'{id}'")).collect();
        scoped
            .txn()
            .execute_unprepared(&format!(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(owner, 7))) \
                 FROM unnest(ARRAY[{}]::text[]) AS owner",
                keys.join(",")
            ))
            .await?;
    }
    let running: HashMap<Uuid, i64> = scoped
        .find::<job::Entity>()
        .filter(job::Column::UserId.is_in(owners.iter().copied()))
        .filter(job::Column::State.eq(JobState::Running))
        .filter(job::Column::LeaseUntil.gte(now))
        .select_only()
        .column(job::Column::UserId)
        .column_as(job::Column::Id.count(), "running")
        .group_by(job::Column::UserId)
        .into_tuple()
        .all(scoped.txn())
        .await?
        .into_iter()
        .collect();
    let mut free: HashMap<Uuid, Option<i64>> = limits
        .into_iter()
        .map(|(owner, limit)| {
            (
                owner,
                limit.map(|l| l - running.get(&owner).copied().unwrap_or(0)),
            )
        })
        .collect();
    let mut picked = Vec::new();
    for &(_, id, owner) in &candidates {
        if picked.len() == max {
            break;
        }
        match free.get_mut(&owner) {
            Some(None) => picked.push(id),
            Some(Some(slots)) if *slots > 0 => {
                *slots -= 1;
                picked.push(id);
            }
            _ => {}
        }
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let mut taken = scoped
        .update_many::<job::Entity>()
        .col_expr(job::Column::State, Expr::value(JobState::Running))
        .col_expr(job::Column::Attempts, Expr::col(job::Column::Attempts).add(1))
        .col_expr(job::Column::LeaseUntil, Expr::value(later(now, lease)))
        .col_expr(job::Column::Worker, Expr::value(worker))
        .filter(job::Column::Id.is_in(picked))
        .filter(runnable(now))
        .exec_with_returning()
        .await?;
    scoped.commit().await?;
    taken.sort_by_key(|job| (job.run_at, job.id));
    Ok(taken)
}

/// Extends `worker`'s lease on job `id`; false if the worker lost it.
pub async fn renew(db: &Db, id: Uuid, worker: &str, lease: Duration) -> AppResult<bool> {
    let scoped = db.as_service().await?;
    let renewed = held(&scoped, id, worker)
        .col_expr(job::Column::LeaseUntil, Expr::value(later(Utc::now(), lease)))
        .exec()
        .await?;
    scoped.commit().await?;
    Ok(renewed.rows_affected == 1)
}

fn held<'a>(scoped: &'a Scoped, id: Uuid, worker: &str) -> ScopedWrite<'a, sea_orm::UpdateMany<job::Entity>> {
    scoped
        .update_many::<job::Entity>()
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::State.eq(JobState::Running))
        .filter(job::Column::Worker.eq(worker))
}

/// The reason of the error a worker gets once it no longer holds its job.
pub const LEASE_LOST: &str = "JOB_LEASE_LOST";

fn lease_lost() -> AppError {
    AppError::Aborted {
        reason: LEASE_LOST,
        message: "another worker took over this job".into(),
        metadata: Default::default(),
    }
}

/// Fails the transaction unless `worker` still holds job `id`: every write
/// of a job's results goes through this first.
pub async fn fence(scoped: &Scoped, id: Uuid, worker: &str) -> AppResult<()> {
    if held(scoped, id, worker).exec().await?.rows_affected == 1 {
        Ok(())
    } else {
        Err(lease_lost())
    }
}

/// Ends the job: done.
pub async fn succeed(scoped: &Scoped, id: Uuid, worker: &str) -> AppResult<()> {
    settle(scoped, id, worker, JobState::Succeeded, None, Utc::now(), None).await
}

/// Ends the attempt with `error`: pending again after `wait`, or dead.
pub async fn fail(
    scoped: &Scoped,
    id: Uuid,
    worker: &str,
    error: &str,
    retry_after: Option<Duration>,
) -> AppResult<()> {
    let now = Utc::now();
    match retry_after {
        Some(wait) => {
            settle(
                scoped,
                id,
                worker,
                JobState::Pending,
                Some(error),
                later(now, wait),
                None,
            )
            .await
        }
        None => settle(scoped, id, worker, JobState::Dead, Some(error), now, None).await,
    }
}

/// Hands the job back untouched (the worker is shutting down): due now,
/// without counting the attempt.
pub async fn release(scoped: &Scoped, job: &job::Model, worker: &str) -> AppResult<()> {
    settle(
        scoped,
        job.id,
        worker,
        JobState::Pending,
        job.last_error.as_deref(),
        Utc::now(),
        Some(job.attempts - 1),
    )
    .await
}

async fn settle(
    scoped: &Scoped,
    id: Uuid,
    worker: &str,
    state: JobState,
    error: Option<&str>,
    run_at: DateTime<Utc>,
    attempts: Option<i32>,
) -> AppResult<()> {
    let update = held(scoped, id, worker)
        .col_expr(job::Column::State, Expr::value(state))
        .col_expr(job::Column::RunAt, Expr::value(run_at))
        .col_expr(job::Column::LeaseUntil, Expr::value(None::<DateTime<Utc>>))
        .col_expr(job::Column::Worker, Expr::value(None::<String>))
        .col_expr_if_some(job::Column::LastError, error)
        .col_expr_if_some(job::Column::Attempts, attempts.map(|a| a.max(0)));
    if update.exec().await?.rows_affected == 1 {
        // A slot of the owner's is free: claimers of this process that
        // found nothing runnable look again.
        scoped.wake_workers_after_commit();
        Ok(())
    } else {
        Err(lease_lost())
    }
}

/// Forgets the reservation once it is settled.
pub async fn clear_reservation(scoped: &Scoped, id: Uuid) -> AppResult<()> {
    scoped
        .update_many::<job::Entity>()
        .col_expr(job::Column::ReservationId, Expr::value(None::<Uuid>))
        .filter(job::Column::Id.eq(id))
        .exec()
        .await?;
    Ok(())
}

/// The wait before attempt `attempts + 1`: `base * 2^(attempts-1)`, at most
/// `max`, of which a random half is taken off (jitter), so jobs that failed
/// together do not come back together.
pub fn backoff(attempts: i32, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(30);
    let full = base.saturating_mul(1 << exponent).min(max);
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
    full.mul_f64(0.5 + fraction / 2.0)
}

/// Jobs for `ListJobs`, newest first.
pub async fn list(
    scoped: &Scoped,
    state: Option<JobState>,
    page: &PageRequest<BeforeId>,
) -> AppResult<(Vec<job::Model>, Option<BeforeId>)> {
    let mut query = page.newest_first(scoped.find::<job::Entity>(), job::Column::Id);
    if let Some(state) = state {
        query = query.filter(job::Column::State.eq(state));
    }
    let rows = query.all(scoped.txn()).await?;
    Ok(page.page(rows, |last| BeforeId { before: last.id }))
}

/// How many jobs wait, run and are dead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depths {
    /// Pending (including those waiting out a backoff).
    pub pending: i64,
    /// Held by a worker.
    pub running: i64,
    /// Dead letters.
    pub dead: i64,
}

/// The queue's depths, in one query.
pub async fn depths(scoped: &Scoped) -> AppResult<Depths> {
    let counts: Vec<(JobState, i64)> = scoped
        .find::<job::Entity>()
        .select_only()
        .column(job::Column::State)
        .column_as(job::Column::Id.count(), "jobs")
        .group_by(job::Column::State)
        .into_tuple()
        .all(scoped.txn())
        .await?;
    let of = |state| counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
    Ok(Depths {
        pending: of(JobState::Pending),
        running: of(JobState::Running),
        dead: of(JobState::Dead),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_maximum() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(300);
        for (attempts, full) in [(1, 10), (2, 20), (3, 40), (9, 300)] {
            let wait = backoff(attempts, base, max);
            let full = Duration::from_secs(full);
            assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
        }
    }
}
