//! Processing: the pipeline that converts, segments, samples, transcribes
//! and analyses recordings, its durable job queue and its workers.

pub mod analyze;
pub mod entity;
pub mod jobs;
pub mod pipeline;
pub mod results;
pub mod sampling;
pub mod service;
pub mod transcribe;
pub mod worker;

pub use service::ProcessingApi;

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::meetings::entity::Status;
use crate::meetings::store;
use crate::shared::Shared;
use crate::usage::ledger;
use crate::usage::model::Category;

/// How long analysis minutes stay held for a queued meeting.
const RESERVATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Whole minutes billed for `duration_ms` of audio (at least one).
pub fn minutes(duration_ms: i64) -> i64 {
    ((duration_ms + 59_999) / 60_000).max(1)
}

/// Holds the analysis minutes of `meeting` (over the plan's limit:
/// `RESOURCE_EXHAUSTED`); returns the reservation's id.
pub async fn hold_minutes(
    state: &Shared,
    scoped: &Scoped,
    meeting: &crate::meetings::entity::Model,
) -> AppResult<Uuid> {
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
    Ok(reservation.id)
}

/// Hands an uploaded meeting to the pipeline: the one way into processing.
/// In the caller's transaction it holds the meeting's analysis minutes
/// (over the plan's limit: `RESOURCE_EXHAUSTED`), moves it to `queued` and
/// queues its job.
pub async fn enqueue(state: &Shared, scoped: &Scoped, user_id: Uuid, meeting_id: Uuid) -> AppResult<()> {
    let meeting = store::get(scoped, meeting_id).await?;
    let reservation = hold_minutes(state, scoped, &meeting).await?;
    if !store::transition(scoped, meeting_id, &[Status::Uploaded], Status::Queued).await? {
        return Err(AppError::internal(format!(
            "meeting {meeting_id} was not uploaded when queued"
        )));
    }
    jobs::enqueue(
        scoped,
        user_id,
        meeting_id,
        Some(reservation),
        state.config.processing.max_attempts,
    )
    .await
}
