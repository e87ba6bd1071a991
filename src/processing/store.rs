//! Queries on the pipeline's own tables: stage runs, the converted audio's
//! row and the segments cut from it. Every stage replaces its rows rather
//! than adding to them, so repeating one leaves no duplicates.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{RunState, Stage, Strategy, audio, segment, stage_run};
use super::transcribe::Transcription;
use crate::audio::vad;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::meetings::entity as meeting;

/// The runs of a meeting's stages, oldest attempt first.
pub async fn runs(scoped: &Scoped, meeting_id: Uuid) -> AppResult<Vec<stage_run::Model>> {
    Ok(scoped
        .find::<stage_run::Entity>()
        .filter(stage_run::Column::MeetingId.eq(meeting_id))
        .order_by_asc(stage_run::Column::Attempt)
        .all(scoped.txn())
        .await?)
}

/// Records a new run of `stage` as running; returns its attempt number.
pub async fn start_run(
    scoped: &Scoped,
    meeting: &meeting::Model,
    stage: Stage,
    now: DateTime<Utc>,
) -> AppResult<i32> {
    let attempt = scoped
        .find::<stage_run::Entity>()
        .filter(stage_run::Column::MeetingId.eq(meeting.id))
        .filter(stage_run::Column::Stage.eq(stage))
        .order_by_desc(stage_run::Column::Attempt)
        .one(scoped.txn())
        .await?
        .map_or(1, |r| r.attempt + 1);
    scoped
        .insert(stage_run::ActiveModel {
            id: Set(Uuid::now_v7()),
            meeting_id: Set(meeting.id),
            user_id: Set(meeting.user_id),
            stage: Set(stage),
            attempt: Set(attempt),
            state: Set(RunState::Running),
            started_at: Set(now),
            finished_at: Set(None),
            error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .await?;
    Ok(attempt)
}

/// Ends a stage run with `state` (and an error).
pub async fn end_run(
    scoped: &Scoped,
    meeting_id: Uuid,
    stage: Stage,
    attempt: i32,
    state: RunState,
    error: Option<&str>,
) -> AppResult<()> {
    let now = Utc::now();
    scoped
        .update_many::<stage_run::Entity>()
        .col_expr(stage_run::Column::State, Expr::value(state))
        .col_expr(stage_run::Column::FinishedAt, Expr::value(now))
        .col_expr(stage_run::Column::Error, Expr::value(error))
        .filter(stage_run::Column::MeetingId.eq(meeting_id))
        .filter(stage_run::Column::Stage.eq(stage))
        .filter(stage_run::Column::Attempt.eq(attempt))
        .exec()
        .await?;
    Ok(())
}

/// Marks the runs a dead worker left `running` as failed.
pub async fn fail_interrupted_runs(scoped: &Scoped, meeting_id: Uuid) -> AppResult<()> {
    let now = Utc::now();
    scoped
        .update_many::<stage_run::Entity>()
        .col_expr(stage_run::Column::State, Expr::value(RunState::Failed))
        .col_expr(stage_run::Column::FinishedAt, Expr::value(now))
        .col_expr(
            stage_run::Column::Error,
            Expr::value("interrupted: the worker processing it stopped"),
        )
        .filter(stage_run::Column::MeetingId.eq(meeting_id))
        .filter(stage_run::Column::State.eq(RunState::Running))
        .exec()
        .await?;
    Ok(())
}

/// The row of a meeting's converted audio.
pub async fn audio(scoped: &Scoped, meeting_id: Uuid) -> AppResult<audio::Model> {
    scoped
        .find::<audio::Entity>()
        .filter(audio::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::internal("the converted audio's row is missing"))
}

/// Replaces the row of a meeting's converted audio, stored at `key`.
pub async fn replace_audio(
    scoped: &Scoped,
    meeting: &meeting::Model,
    key: String,
    duration_ms: i64,
) -> AppResult<()> {
    scoped
        .delete_many::<audio::Entity>()
        .filter(audio::Column::MeetingId.eq(meeting.id))
        .exec()
        .await?;
    scoped
        .insert(audio::ActiveModel {
            meeting_id: Set(meeting.id),
            user_id: Set(meeting.user_id),
            audio_object: Set(key),
            duration_ms: Set(duration_ms),
            speech_spans: Set(None),
            strategy: Set(None),
            coverage_percent: Set(None),
            estimated_cost_micros: Set(None),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Replaces a meeting's segments with `pieces` (start and end, ms) and
/// records the speech found, in one statement per table.
pub async fn replace_segments(
    scoped: &Scoped,
    meeting: &meeting::Model,
    pieces: &[(i64, i64)],
    spans: &[vad::Span],
    syllables: usize,
) -> AppResult<()> {
    scoped
        .delete_many::<segment::Entity>()
        .filter(segment::Column::MeetingId.eq(meeting.id))
        .exec()
        .await?;
    let rows = pieces
        .iter()
        .enumerate()
        .map(|(position, piece)| segment::ActiveModel {
            meeting_id: Set(meeting.id),
            position: Set(i32::try_from(position).unwrap_or(i32::MAX)),
            user_id: Set(meeting.user_id),
            start_ms: Set(piece.0),
            end_ms: Set(piece.1),
            speech_ms: Set(vad::speech_within(spans, *piece)),
            selected: Set(false),
            transcript: Set(None),
            ..Default::default()
        });
    scoped.insert_many(rows).await?;
    scoped
        .update_many::<audio::Entity>()
        .col_expr(audio::Column::SpeechSpans, Expr::value(serde_json::json!(spans)))
        .col_expr(
            audio::Column::SyllableCount,
            Expr::value(i32::try_from(syllables).unwrap_or(i32::MAX)),
        )
        .filter(audio::Column::MeetingId.eq(meeting.id))
        .exec()
        .await?;
    Ok(())
}

/// A meeting's segments in order.
pub async fn segments(scoped: &Scoped, meeting_id: Uuid) -> AppResult<Vec<segment::Model>> {
    Ok(scoped
        .find::<segment::Entity>()
        .filter(segment::Column::MeetingId.eq(meeting_id))
        .order_by_asc(segment::Column::Position)
        .all(scoped.txn())
        .await?)
}

/// What sampling chose for a meeting.
#[derive(Debug, Clone)]
pub struct Sampled<'a> {
    /// The strategy used.
    pub strategy: Strategy,
    /// Positions of the segments to transcribe.
    pub positions: &'a [i32],
    /// Share of the meeting transcribed.
    pub coverage_percent: f64,
    /// What transcribing them should cost.
    pub estimated_cost_micros: i64,
}

/// Marks the segments sampling chose, and records its choice.
pub async fn record_sampling(scoped: &Scoped, meeting_id: Uuid, sampled: Sampled<'_>) -> AppResult<()> {
    for selected in [false, true] {
        let mut update = scoped
            .update_many::<segment::Entity>()
            .col_expr(segment::Column::Selected, Expr::value(selected))
            .filter(segment::Column::MeetingId.eq(meeting_id));
        if selected {
            update = update.filter(segment::Column::Position.is_in(sampled.positions.iter().copied()));
        }
        update.exec().await?;
    }
    scoped
        .update_many::<audio::Entity>()
        .col_expr(audio::Column::Strategy, Expr::value(sampled.strategy))
        .col_expr(
            audio::Column::CoveragePercent,
            Expr::value(sampled.coverage_percent),
        )
        .col_expr(
            audio::Column::EstimatedCostMicros,
            Expr::value(sampled.estimated_cost_micros),
        )
        .filter(audio::Column::MeetingId.eq(meeting_id))
        .exec()
        .await?;
    Ok(())
}

/// Keeps what the provider heard in one segment, so a retry does not pay
/// for it again.
pub async fn record_heard(
    scoped: &Scoped,
    meeting_id: Uuid,
    position: i32,
    heard: &Transcription,
) -> AppResult<()> {
    scoped
        .update_many::<segment::Entity>()
        .col_expr(
            segment::Column::Transcript,
            Expr::value(serde_json::to_value(heard).map_err(AppError::internal)?),
        )
        .filter(segment::Column::MeetingId.eq(meeting_id))
        .filter(segment::Column::Position.eq(position))
        .exec()
        .await?;
    Ok(())
}
