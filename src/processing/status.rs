//! The processing status of a meeting, as the API shows it. Every read goes
//! through the caller's scope, so another user's meeting is NOT_FOUND.

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{Stage, audio, stage_run};
use super::pipeline::percent_at;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::meetings::entity::Status;
use crate::meetings::store;
use crate::pb::v1 as pb;

/// The processing status of a meeting of the scope.
pub async fn status(scoped: &Scoped, meeting_id: Uuid) -> AppResult<pb::ProcessingStatus> {
    let meeting = store::get(scoped, meeting_id).await?;
    let runs = scoped
        .find::<stage_run::Entity>()
        .filter(stage_run::Column::MeetingId.eq(meeting_id))
        .order_by_asc(stage_run::Column::StartedAt)
        .order_by_asc(stage_run::Column::Id)
        .all(scoped.txn())
        .await?;
    let audio = scoped
        .find::<audio::Entity>()
        .filter(audio::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?;
    let current = meeting.current_stage;
    let percent = match meeting.status {
        Status::Ready => 100.0,
        Status::AwaitingTranscription => percent_at(Stage::Transcribe),
        Status::Processing | Status::Queued | Status::Failed => current.map_or(0.0, percent_at),
        _ => 0.0,
    };
    Ok(pb::ProcessingStatus {
        name: format!("meetings/{meeting_id}/processingStatus"),
        meeting_status: pb::MeetingStatus::from(meeting.status).into(),
        current_stage: current
            .map_or(pb::ProcessingStage::Unspecified, pb::ProcessingStage::from)
            .into(),
        percent,
        stage_runs: runs.iter().map(pb::StageRun::from).collect(),
        coverage_percent: audio.as_ref().and_then(|a| a.coverage_percent).unwrap_or(0.0),
        estimated_cost_micros: audio.as_ref().and_then(|a| a.estimated_cost_micros).unwrap_or(0),
    })
}
