//! Queries over practice sessions and their attempts, in the owner's scope.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{AttemptState, SessionState, attempt, session};
use super::model::{ExerciseFields, SessionExercise};
use crate::db::{Db, Scoped};
use crate::error::{AppError, AppResult};
use crate::pagination::{BeforeId, PageRequest};
use crate::usage::ledger;

/// How many exercises a session takes from its module.
pub const EXERCISES_PER_SESSION: usize = 3;

/// The exercises a session at `level` practises: the
/// [`EXERCISES_PER_SESSION`] whose difficulty is closest to the level
/// (the easier of two equally close), in the module's order.
pub fn pick(exercises: &[ExerciseFields], level: i32) -> Vec<&ExerciseFields> {
    let mut ranked: Vec<(usize, &ExerciseFields)> = exercises.iter().enumerate().collect();
    ranked.sort_by_key(|(position, e)| ((e.difficulty - level).abs(), e.difficulty, *position));
    ranked.truncate(EXERCISES_PER_SESSION);
    ranked.sort_by_key(|(position, _)| *position);
    ranked.into_iter().map(|(_, e)| e).collect()
}

/// A new session's facts.
#[derive(Debug)]
pub struct NewSession {
    /// The owner.
    pub user_id: Uuid,
    /// The module.
    pub module_id: String,
    /// The version it pins.
    pub module_version: i32,
    /// The level its exercises were picked for.
    pub difficulty: i32,
    /// The meeting that personalised it.
    pub meeting_id: Option<Uuid>,
    /// Its exercises, rendered.
    pub exercises: Vec<SessionExercise>,
    /// The practice session held from the plan.
    pub reservation_id: Uuid,
    /// Idempotency key.
    pub request_id: Option<String>,
}

/// Stores a new session.
pub async fn create(scoped: &Scoped, new: NewSession, now: DateTime<Utc>) -> AppResult<session::Model> {
    let NewSession {
        user_id,
        module_id,
        module_version,
        difficulty,
        meeting_id,
        exercises,
        reservation_id,
        request_id,
    } = new;
    scoped
        .insert(session::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            module_id: Set(module_id),
            module_version: Set(module_version),
            state: Set(SessionState::Active),
            difficulty: Set(difficulty),
            meeting_id: Set(meeting_id),
            exercises: Set(serde_json::to_value(&exercises).map_err(AppError::internal)?),
            score: Set(None),
            skill_scores: Set(None),
            reservation_id: Set(Some(reservation_id)),
            request_id: Set(request_id),
            started_at: Set(now),
            completed_at: Set(None),
            ..Default::default()
        })
        .await
}

/// A session of the scope, or NOT_FOUND.
pub async fn get(scoped: &Scoped, id: Uuid) -> AppResult<session::Model> {
    scoped
        .find::<session::Entity>()
        .filter(session::Column::Id.eq(id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("practice session"))
}

/// The session a `StartSession` with `request_id` created, if any.
pub async fn by_request(scoped: &Scoped, request_id: &str) -> AppResult<Option<session::Model>> {
    Ok(scoped
        .find::<session::Entity>()
        .filter(session::Column::RequestId.eq(request_id))
        .one(scoped.txn())
        .await?)
}

/// One page of the scope's sessions, newest first, in one query.
pub async fn list(
    scoped: &Scoped,
    page: &PageRequest<BeforeId>,
    state: Option<SessionState>,
) -> AppResult<(Vec<session::Model>, Option<BeforeId>)> {
    let mut query = page.newest_first(scoped.find::<session::Entity>(), session::Column::Id);
    if let Some(state) = state {
        query = query.filter(session::Column::State.eq(state));
    }
    let rows = query.all(scoped.txn()).await?;
    Ok(page.page(rows, |last| BeforeId { before: last.id }))
}

/// A session's exercises as it keeps them.
pub fn exercises(session: &session::Model) -> AppResult<Vec<SessionExercise>> {
    serde_json::from_value(session.exercises.clone()).map_err(AppError::internal)
}

/// Stores a session's exercises (a scenario's generation changed one).
pub async fn set_exercises(scoped: &Scoped, id: Uuid, exercises: &[SessionExercise]) -> AppResult<()> {
    scoped
        .update_many::<session::Entity>()
        .col_expr(
            session::Column::Exercises,
            Expr::value(serde_json::to_value(exercises).map_err(AppError::internal)?),
        )
        .filter(session::Column::Id.eq(id))
        .exec()
        .await?;
    Ok(())
}

/// The attempts of a session, oldest first.
pub async fn attempts(scoped: &Scoped, session_id: Uuid) -> AppResult<Vec<attempt::Model>> {
    Ok(scoped
        .find::<attempt::Entity>()
        .filter(attempt::Column::SessionId.eq(session_id))
        .order_by_asc(attempt::Column::Id)
        .all(scoped.txn())
        .await?)
}

/// What completing a session records.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Overall score.
    pub score: f64,
    /// Per-skill scores, `[{"skill": .., "score": ..}]`.
    pub skill_scores: serde_json::Value,
}

/// Marks an active session of the scope completed; false if it was no
/// longer active.
pub async fn complete(
    scoped: &Scoped,
    id: Uuid,
    completion: Completion,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let done = scoped
        .update_many::<session::Entity>()
        .col_expr(session::Column::State, Expr::value(SessionState::Completed))
        .col_expr(session::Column::Score, Expr::value(completion.score))
        .col_expr(session::Column::SkillScores, Expr::value(completion.skill_scores))
        .col_expr(session::Column::CompletedAt, Expr::value(now))
        .col_expr(session::Column::ReservationId, Expr::value(None::<Uuid>))
        .filter(session::Column::Id.eq(id))
        .filter(session::Column::State.eq(SessionState::Active))
        .exec()
        .await?;
    Ok(done.rows_affected == 1)
}

/// Abandons sessions still active that started before `cutoff` (a batch)
/// and gives their practice sessions back; returns how many.
pub async fn abandon_stale(db: &Db, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<usize> {
    let scoped = db.as_service().await?;
    let stale = scoped
        .find::<session::Entity>()
        .filter(session::Column::State.eq(SessionState::Active))
        .filter(session::Column::StartedAt.lt(cutoff))
        .order_by_asc(session::Column::StartedAt)
        .limit(100)
        .all(scoped.txn())
        .await?;
    let mut abandoned = 0;
    for session in &stale {
        let moved = scoped
            .update_many::<session::Entity>()
            .col_expr(session::Column::State, Expr::value(SessionState::Abandoned))
            .col_expr(session::Column::CompletedAt, Expr::value(now))
            .col_expr(session::Column::ReservationId, Expr::value(None::<Uuid>))
            .filter(session::Column::Id.eq(session.id))
            .filter(session::Column::State.eq(SessionState::Active))
            .exec()
            .await?;
        if moved.rows_affected == 0 {
            continue;
        }
        abandoned += 1;
        if let Some(id) = session.reservation_id
            && let Some(reservation) = ledger::find(&scoped, id).await?
        {
            reservation.release(&scoped, now).await?;
        }
    }
    scoped.commit().await?;
    Ok(abandoned)
}

/// A new attempt's facts.
#[derive(Debug)]
pub struct NewAttempt {
    /// The session.
    pub session_id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The exercise.
    pub exercise_id: String,
    /// Where it starts.
    pub state: AttemptState,
    /// What was written or said.
    pub response_text: String,
    /// How long speaking took.
    pub duration_ms: Option<i64>,
    /// The score, when scored at once.
    pub score: Option<f64>,
    /// Feedback JSON, when scored at once.
    pub feedback: Option<serde_json::Value>,
    /// Metrics JSON, when scored at once.
    pub metrics: Option<serde_json::Value>,
    /// A spoken attempt's recording.
    pub recording_meeting_id: Option<Uuid>,
    /// The upload carrying it.
    pub upload_id: Option<Uuid>,
    /// Whether AI feedback was asked for.
    pub ai_requested: bool,
    /// Idempotency key.
    pub request_id: Option<String>,
}

/// Stores a new attempt.
pub async fn create_attempt(scoped: &Scoped, new: NewAttempt) -> AppResult<attempt::Model> {
    let NewAttempt {
        session_id,
        user_id,
        exercise_id,
        state,
        response_text,
        duration_ms,
        score,
        feedback,
        metrics,
        recording_meeting_id,
        upload_id,
        ai_requested,
        request_id,
    } = new;
    scoped
        .insert(attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id),
            user_id: Set(user_id),
            exercise_id: Set(exercise_id),
            state: Set(state),
            response_text: Set(response_text),
            duration_ms: Set(duration_ms),
            score: Set(score),
            feedback: Set(feedback),
            metrics: Set(metrics),
            recording_meeting_id: Set(recording_meeting_id),
            upload_id: Set(upload_id),
            ai_requested: Set(ai_requested),
            failure_reason: Set(None),
            request_id: Set(request_id),
            ..Default::default()
        })
        .await
}

/// The attempt a `SubmitAttempt` with `request_id` created, if any.
pub async fn attempt_by_request(scoped: &Scoped, request_id: &str) -> AppResult<Option<attempt::Model>> {
    Ok(scoped
        .find::<attempt::Entity>()
        .filter(attempt::Column::RequestId.eq(request_id))
        .one(scoped.txn())
        .await?)
}

/// An attempt of the scope, or NOT_FOUND.
pub async fn attempt(scoped: &Scoped, id: Uuid) -> AppResult<attempt::Model> {
    scoped
        .find::<attempt::Entity>()
        .filter(attempt::Column::Id.eq(id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("attempt"))
}

/// The attempt whose recording is the meeting `meeting_id`, if any.
pub async fn attempt_of_recording(scoped: &Scoped, meeting_id: Uuid) -> AppResult<Option<attempt::Model>> {
    Ok(scoped
        .find::<attempt::Entity>()
        .filter(attempt::Column::RecordingMeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?)
}

/// Stores an attempt's scoring (or its failure): its state, score,
/// feedback, metrics, the text heard and the reason it failed.
#[derive(Debug, Default)]
pub struct AttemptUpdate {
    /// New state.
    pub state: Option<AttemptState>,
    /// Score.
    pub score: Option<f64>,
    /// Feedback JSON.
    pub feedback: Option<serde_json::Value>,
    /// Metrics JSON.
    pub metrics: Option<serde_json::Value>,
    /// The transcript of a recording.
    pub response_text: Option<String>,
    /// How long the recording was.
    pub duration_ms: Option<i64>,
    /// Why it failed.
    pub failure_reason: Option<String>,
}

/// Applies `update` to attempt `id` of the scope.
pub async fn update_attempt(scoped: &Scoped, id: Uuid, update: AttemptUpdate) -> AppResult<()> {
    let AttemptUpdate {
        state,
        score,
        feedback,
        metrics,
        response_text,
        duration_ms,
        failure_reason,
    } = update;
    scoped
        .update_many::<attempt::Entity>()
        .filter(attempt::Column::Id.eq(id))
        .col_expr_if_some(attempt::Column::State, state)
        .col_expr_if_some(attempt::Column::Score, score)
        .col_expr_if_some(attempt::Column::Feedback, feedback)
        .col_expr_if_some(attempt::Column::Metrics, metrics)
        .col_expr_if_some(attempt::Column::ResponseText, response_text)
        .col_expr_if_some(attempt::Column::DurationMs, duration_ms)
        .col_expr_if_some(attempt::Column::FailureReason, failure_reason)
        .exec()
        .await?;
    Ok(())
}

/// The sessions of `user_id` started since `since`, newest first (at most
/// 200).
pub async fn since(scoped: &Scoped, user_id: Uuid, since: DateTime<Utc>) -> AppResult<Vec<session::Model>> {
    Ok(scoped
        .find::<session::Entity>()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::StartedAt.gte(since))
        .order_by_desc(session::Column::Id)
        .limit(200)
        .all(scoped.txn())
        .await?)
}
