//! What events say, stored as JSON and shown as `debrief.v1.Event`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::event;
use crate::lifecycle::{Stage, Status};
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::timestamps;

/// The payload of an event; its variant is the event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Payload {
    /// Bytes of an upload were committed.
    UploadProgress {
        /// The upload.
        upload: Uuid,
        /// Bytes committed.
        committed_bytes: i64,
        /// Declared size.
        size_bytes: i64,
    },
    /// An upload was stored and validated.
    UploadCompleted {
        /// The upload.
        upload: Uuid,
        /// Its size.
        size_bytes: i64,
    },
    /// An upload was refused.
    UploadRejected {
        /// The upload.
        upload: Uuid,
        /// Stable reason code.
        reason: String,
        /// Explanation.
        message: String,
    },
    /// A usage warning threshold was crossed.
    QuotaWarning {
        /// Category name, e.g. `analysis_minutes`.
        category: String,
        /// 80 or 100.
        threshold_percent: i32,
        /// Used and held.
        used: i64,
        /// The limit.
        limit: i64,
    },
    /// A processing stage started, progressed, finished, was skipped or
    /// failed.
    ProcessingStage {
        /// What happened to the stage.
        phase: StagePhase,
        /// The stage.
        stage: Stage,
        /// Which attempt of the stage.
        attempt: i32,
        /// Overall progress, 0 to 100.
        percent: f64,
        /// How much of the stage is done, 0 to 100.
        #[serde(default)]
        stage_percent: f64,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
        /// Whether it will be tried again by itself.
        #[serde(default)]
        will_retry: bool,
    },
    /// A meeting finished processing.
    MeetingReady {
        /// Whether it has a transcript.
        has_transcript: bool,
    },
    /// A processing run ended without retrying by itself.
    ProcessingEnded {
        /// Ready, awaiting transcription or failed.
        status: Status,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        failure_reason: String,
        /// Whether a transcript exists.
        has_transcript: bool,
    },
    /// A message from the operators.
    SystemNotice {
        /// Title.
        title: String,
        /// Text.
        message: String,
    },
    /// Feedback on a practice attempt is ready. Practice builds the API
    /// message itself; it is kept as its protobuf encoding (base64), so
    /// events need not know practice's model.
    PracticeFeedback {
        /// The attempt, `practiceSessions/{s}/attempts/{a}`.
        attempt: String,
        /// `debrief.v1.PracticeFeedback`, encoded, base64.
        message: String,
    },
    /// New skill scores were recorded from one source.
    SkillScores {
        /// `meetings/{id}` or `practiceSessions/{id}`.
        source: String,
        /// The scores, one per skill the source measured.
        scores: Vec<(Skill, f64)>,
    },
    /// A generated exercise of a session changed state.
    PracticeExercise {
        /// The session.
        session: Uuid,
        /// The exercise's id.
        exercise_id: String,
        /// `generating`, `ready` or `failed`.
        state: String,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
}

/// Which moment of a stage an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StagePhase {
    /// It started.
    Started,
    /// It is under way (long stages, throttled).
    Progress,
    /// It finished.
    Completed,
    /// It was not needed or not possible now (transcription turned off).
    Skipped,
    /// It failed.
    Failed,
}

impl Payload {
    /// The stored type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ProcessingStage { phase, .. } => match phase {
                StagePhase::Started => "processing_stage_started",
                StagePhase::Progress => "processing_stage_progress",
                StagePhase::Completed => "processing_stage_completed",
                StagePhase::Skipped => "processing_stage_skipped",
                StagePhase::Failed => "processing_stage_failed",
            },
            Self::MeetingReady { .. } => "meeting_ready",
            Self::ProcessingEnded { .. } => "processing_ended",
            Self::UploadProgress { .. } => "upload_progress",
            Self::UploadCompleted { .. } => "upload_completed",
            Self::UploadRejected { .. } => "upload_rejected",
            Self::QuotaWarning { .. } => "quota_warning",
            Self::SystemNotice { .. } => "system_notice",
            Self::PracticeFeedback { .. } => "practice_feedback",
            Self::PracticeExercise { .. } => "practice_exercise_updated",
            Self::SkillScores { .. } => "skill_scores_updated",
        }
    }
}

/// The stored type name of an API event type; None for UNSPECIFIED.
pub fn type_name(kind: pb::EventType) -> Option<String> {
    (kind != pb::EventType::Unspecified).then(|| {
        kind.as_str_name()
            .trim_start_matches("EVENT_TYPE_")
            .to_ascii_lowercase()
    })
}

impl From<&event::Model> for pb::Event {
    fn from(row: &event::Model) -> Self {
        let event::Model {
            seq,
            event_type,
            meeting_id,
            payload,
            created_at,
            // Internal row id and owner (the caller); events never change.
            id: _,
            user_id: _,
            updated_at: _,
        } = row;
        Self {
            id: *seq,
            r#type: event_type_of(event_type).into(),
            meeting: meeting_id.map(|id| format!("meetings/{id}")).unwrap_or_default(),
            create_time: Some(timestamps::to_proto(*created_at)),
            payload: payload_of(payload),
        }
    }
}

/// The API type of a stored type name such as `upload_completed`.
fn event_type_of(name: &str) -> pb::EventType {
    pb::EventType::from_str_name(&format!("EVENT_TYPE_{}", name.to_ascii_uppercase())).unwrap_or_default()
}

/// The API payload of a stored one.
fn payload_of(stored: &serde_json::Value) -> Option<pb::event::Payload> {
    use pb::event::Payload as P;
    serde_json::from_value::<Payload>(stored.clone())
        .ok()
        .map(|payload| match payload {
            Payload::UploadProgress {
                upload,
                committed_bytes,
                size_bytes,
            } => P::UploadProgress(pb::UploadProgress {
                upload: format!("uploads/{upload}"),
                committed_bytes,
                size_bytes,
            }),
            Payload::UploadCompleted { upload, size_bytes } => P::UploadCompleted(pb::UploadCompleted {
                upload: format!("uploads/{upload}"),
                size_bytes,
            }),
            Payload::UploadRejected {
                upload,
                reason,
                message,
            } => P::UploadRejected(pb::UploadRejected {
                upload: format!("uploads/{upload}"),
                reason,
                message,
            }),
            Payload::QuotaWarning {
                category,
                threshold_percent,
                used,
                limit,
            } => P::QuotaWarning(pb::QuotaWarning {
                category: pb::UsageCategory::from_str_name(&format!(
                    "USAGE_CATEGORY_{}",
                    category.to_ascii_uppercase()
                ))
                .unwrap_or_default()
                .into(),
                threshold_percent,
                used,
                limit,
                reset_time: None,
            }),
            Payload::ProcessingStage {
                phase: _,
                stage,
                attempt,
                percent,
                stage_percent,
                error,
                will_retry,
            } => P::Stage(pb::StageProgress {
                stage: pb::ProcessingStage::from(stage).into(),
                attempt,
                percent,
                error,
                will_retry,
                stage_percent,
            }),
            Payload::MeetingReady { has_transcript } => P::MeetingReady(pb::MeetingReady { has_transcript }),
            Payload::ProcessingEnded {
                status,
                failure_reason,
                has_transcript,
            } => P::ProcessingEnded(pb::ProcessingEnded {
                status: pb::MeetingStatus::from(status).into(),
                failure_reason,
                has_transcript,
            }),
            Payload::SystemNotice { title, message } => P::SystemNotice(pb::SystemNotice { title, message }),
            Payload::PracticeFeedback { attempt, message } => {
                use base64::Engine as _;
                use prost::Message as _;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(message)
                    .ok()
                    .and_then(|bytes| pb::PracticeFeedback::decode(bytes.as_slice()).ok());
                P::PracticeFeedback(decoded.unwrap_or(pb::PracticeFeedback {
                    attempt,
                    ..Default::default()
                }))
            }
            Payload::SkillScores { source, scores } => P::SkillScoresUpdated(pb::SkillScoresUpdated {
                source,
                scores: scores
                    .into_iter()
                    .map(|(skill, score)| pb::SkillScore {
                        skill: pb::Skill::from(skill).into(),
                        score,
                    })
                    .collect(),
            }),
            Payload::PracticeExercise {
                session,
                exercise_id,
                state,
                message,
            } => P::PracticeExercise(pb::PracticeExercise {
                session: format!("practiceSessions/{session}"),
                exercise_id,
                state: pb::ExerciseState::from_str_name(&format!(
                    "EXERCISE_STATE_{}",
                    state.to_ascii_uppercase()
                ))
                .unwrap_or_default()
                .into(),
                message,
            }),
        })
}
