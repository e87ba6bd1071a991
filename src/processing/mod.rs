//! Processing: the pipeline that converts, segments, samples, transcribes
//! and analyses recordings, its durable job queue and its workers.

pub mod analyze;
pub mod convert;
pub mod entity;
pub mod jobs;
pub mod pipeline;
pub mod sampling;
pub mod scores;
pub mod service;
pub mod status;
pub mod store;
pub mod tasks;
pub mod transcribe;
pub mod worker;

pub use service::ProcessingApi;

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::meetings::entity as meeting;
use crate::meetings::entity::Status;
use crate::meetings::store as meetings;
use crate::shared::Shared;
use crate::usage::ledger;
use crate::usage::model::Category;
use entity::job;

/// How long analysis minutes stay held for a queued meeting.
const RESERVATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Whole minutes billed for `duration_ms` of audio (at least one).
pub fn minutes(duration_ms: i64) -> i64 {
    ((duration_ms + 59_999) / 60_000).max(1)
}

/// Holds the analysis minutes of `meeting` (over the plan's limit:
/// `RESOURCE_EXHAUSTED`); returns the reservation's id. A practice
/// answer's recording holds none: the practice session is what the plan
/// counts (and its length is capped when it is uploaded).
pub async fn hold_minutes(
    state: &Shared,
    scoped: &Scoped,
    meeting: &meeting::Model,
) -> AppResult<Option<Uuid>> {
    if meeting.kind == meeting::Kind::Practice {
        return Ok(None);
    }
    let reservation = ledger::reserve(
        scoped,
        meeting.user_id,
        Category::AnalysisMinutes,
        minutes(meeting.duration_ms.unwrap_or(0)),
        RESERVATION_TTL,
        &state.config.upgrade_url,
        Utc::now(),
    )
    .await?;
    Ok(Some(reservation.id))
}

/// Hands an uploaded meeting to the pipeline: the one way into processing.
/// In the caller's transaction it holds the meeting's analysis minutes
/// (over the plan's limit: `RESOURCE_EXHAUSTED`), moves it to `queued` and
/// queues its job.
pub async fn enqueue(state: &Shared, scoped: &Scoped, user_id: Uuid, meeting_id: Uuid) -> AppResult<()> {
    let meeting = meetings::get(scoped, meeting_id).await?;
    let reservation = hold_minutes(state, scoped, &meeting).await?;
    if !meetings::transition(scoped, meeting_id, &[Status::Uploaded], Status::Queued).await? {
        return Err(AppError::internal(format!(
            "meeting {meeting_id} was not uploaded when queued"
        )));
    }
    jobs::enqueue(
        scoped,
        user_id,
        meeting_id,
        reservation,
        state.config.processing.max_attempts,
    )
    .await
}

/// Commits the analysis minutes held for the meeting on its real length.
pub(crate) async fn settle_reservation(
    scoped: &Scoped,
    job: &job::Model,
    meeting: &meeting::Model,
    now: chrono::DateTime<Utc>,
) -> AppResult<()> {
    let Some(id) = job.reservation_id else {
        return Ok(());
    };
    if let Some(reservation) = ledger::find(scoped, id).await? {
        let minutes = minutes(meeting.duration_ms.unwrap_or(0));
        reservation.commit(scoped, minutes, Some(meeting.id), now).await?;
    }
    jobs::clear_reservation(scoped, job.id).await
}

/// Gives back the analysis minutes held for a job that will not finish
/// (dead, or its meeting deleted); a retry holds them again.
pub async fn release_reservation(scoped: &Scoped, job: &job::Model) -> AppResult<()> {
    let Some(id) = job.reservation_id else {
        return Ok(());
    };
    if let Some(reservation) = ledger::find(scoped, id).await? {
        reservation.release(scoped, Utc::now()).await?;
    }
    jobs::clear_reservation(scoped, job.id).await
}
