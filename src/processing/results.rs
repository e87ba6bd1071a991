//! Reading what processing produced: status, transcript and analysis, as
//! API messages. Every read goes through the caller's scope, so another
//! user's meeting is NOT_FOUND.

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{RunState, Stage, analysis, audio, stage_run, transcript, transcript_segment};
use super::pipeline::percent_at;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::meetings::entity::Status;
use crate::meetings::store;
use crate::pb::v1 as pb;
use crate::timestamps::{ms_to_duration, opt_to_proto, to_proto};

/// The API value of a stage.
fn stage_to_proto(stage: Stage) -> pb::ProcessingStage {
    crate::meetings::convert::stage_to_proto(&super::pipeline::stage_name(stage))
}

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
    let current = meeting
        .current_stage
        .clone()
        .and_then(|s| <Stage as sea_orm::ActiveEnum>::try_from_value(&s).ok());
    let percent = match meeting.status {
        Status::Ready => 100.0,
        Status::AwaitingTranscription => percent_at(Stage::Transcribe),
        Status::Processing | Status::Queued | Status::Failed => current.map_or(0.0, percent_at),
        _ => 0.0,
    };
    Ok(pb::ProcessingStatus {
        name: format!("meetings/{meeting_id}/processingStatus"),
        meeting_status: meeting.status.to_proto().into(),
        current_stage: current
            .map_or(pb::ProcessingStage::Unspecified, stage_to_proto)
            .into(),
        percent,
        stage_runs: runs
            .iter()
            .map(|r| pb::StageRun {
                stage: stage_to_proto(r.stage).into(),
                attempt: r.attempt,
                state: match r.state {
                    RunState::Running => pb::StageRunState::Running,
                    RunState::Succeeded => pb::StageRunState::Succeeded,
                    RunState::Failed => pb::StageRunState::Failed,
                    RunState::Skipped => pb::StageRunState::Skipped,
                }
                .into(),
                start_time: Some(to_proto(r.started_at)),
                end_time: opt_to_proto(r.finished_at),
                error: r.error.clone().unwrap_or_default(),
            })
            .collect(),
        coverage_percent: audio.as_ref().and_then(|a| a.coverage_percent).unwrap_or(0.0),
        estimated_cost_micros: audio.as_ref().and_then(|a| a.estimated_cost_micros).unwrap_or(0),
    })
}

/// The transcript of a meeting of the scope.
pub async fn transcript(scoped: &Scoped, meeting_id: Uuid) -> AppResult<pb::Transcript> {
    store::get(scoped, meeting_id).await?;
    let header = scoped
        .find::<transcript::Entity>()
        .filter(transcript::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("transcript"))?;
    let lines = scoped
        .find::<transcript_segment::Entity>()
        .filter(transcript_segment::Column::MeetingId.eq(meeting_id))
        .order_by_asc(transcript_segment::Column::Position)
        .all(scoped.txn())
        .await?;
    Ok(pb::Transcript {
        name: format!("meetings/{meeting_id}/transcript"),
        language: header.language,
        segments: lines
            .into_iter()
            .map(|l| pb::TranscriptSegment {
                start_offset: Some(ms_to_duration(l.start_ms)),
                end_offset: Some(ms_to_duration(l.end_ms)),
                text: l.text,
                confidence: l.confidence.unwrap_or(0.0),
            })
            .collect(),
        coverage_percent: header.coverage_percent,
        model: header.model,
        create_time: Some(to_proto(header.created_at)),
    })
}

/// The analysis of a meeting of the scope.
pub async fn analysis(scoped: &Scoped, meeting_id: Uuid) -> AppResult<pb::Analysis> {
    store::get(scoped, meeting_id).await?;
    let a = scoped
        .find::<analysis::Entity>()
        .filter(analysis::Column::MeetingId.eq(meeting_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("analysis"))?;
    let filler_words = a
        .filler_words
        .as_array()
        .map(|words| {
            words
                .iter()
                .map(|w| pb::WordCount {
                    word: w["word"].as_str().unwrap_or_default().to_owned(),
                    count: i32::try_from(w["count"].as_i64().unwrap_or(0)).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::Analysis {
        name: format!("meetings/{meeting_id}/analysis"),
        total_duration: Some(ms_to_duration(a.total_ms)),
        speech_duration: Some(ms_to_duration(a.speech_ms)),
        speech_ratio: a.speech_ratio,
        silence_ratio: if a.total_ms > 0 { 1.0 - a.speech_ratio } else { 0.0 },
        pause_count: a.pause_count,
        average_pause: Some(ms_to_duration(a.average_pause_ms)),
        longest_pause: Some(ms_to_duration(a.longest_pause_ms)),
        longest_monologue: Some(ms_to_duration(a.longest_monologue_ms)),
        words_per_minute: a.words_per_minute,
        filler_word_count: a.filler_word_count,
        filler_words,
        question_count: a.question_count,
        skill_scores: Vec::new(),
        longest_monologue_words: a.longest_monologue_words,
        create_time: Some(to_proto(a.created_at)),
    })
}
