//! Where a meeting is in its life: its status and the stage of processing
//! it is in. Meetings stores both, processing drives them, events report
//! them; they live below all three so none has to read another for them.
//! Each converts to its API enum exhaustively: a new variant does not build
//! until it is mapped.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::pb::v1 as pb;

/// Where a meeting is in its life (stored, and in event payloads, by the
/// names below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created; no upload yet.
    #[sea_orm(string_value = "awaiting_upload")]
    AwaitingUpload,
    /// An upload is in progress.
    #[sea_orm(string_value = "uploading")]
    Uploading,
    /// Stored and validated.
    #[sea_orm(string_value = "uploaded")]
    Uploaded,
    /// Waiting for a worker.
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Being processed.
    #[sea_orm(string_value = "processing")]
    Processing,
    /// Processed except for transcription.
    #[sea_orm(string_value = "awaiting_transcription")]
    AwaitingTranscription,
    /// Transcript and analysis available.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// Processing failed.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl From<Status> for pb::MeetingStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::AwaitingUpload => Self::AwaitingUpload,
            Status::Uploading => Self::Uploading,
            Status::Uploaded => Self::Uploaded,
            Status::Queued => Self::Queued,
            Status::Processing => Self::Processing,
            Status::AwaitingTranscription => Self::AwaitingTranscription,
            Status::Ready => Self::Ready,
            Status::Failed => Self::Failed,
        }
    }
}

impl Status {
    /// The status of an API enum; None for UNSPECIFIED.
    pub fn from_proto(status: pb::MeetingStatus) -> Option<Self> {
        match status {
            pb::MeetingStatus::Unspecified => None,
            pb::MeetingStatus::AwaitingUpload => Some(Self::AwaitingUpload),
            pb::MeetingStatus::Uploading => Some(Self::Uploading),
            pb::MeetingStatus::Uploaded => Some(Self::Uploaded),
            pb::MeetingStatus::Queued => Some(Self::Queued),
            pb::MeetingStatus::Processing => Some(Self::Processing),
            pb::MeetingStatus::AwaitingTranscription => Some(Self::AwaitingTranscription),
            pb::MeetingStatus::Ready => Some(Self::Ready),
            pb::MeetingStatus::Failed => Some(Self::Failed),
        }
    }

    /// The statuses a meeting may move to from this one:
    /// `awaiting_upload → uploading → uploaded → queued → processing →
    /// ready | awaiting_transcription | failed`; a rejected or cancelled
    /// upload returns to `awaiting_upload`, and a failed or parked meeting
    /// can be queued again.
    pub fn next(self) -> &'static [Status] {
        match self {
            Self::AwaitingUpload => &[Self::Uploading],
            Self::Uploading => &[Self::Uploaded, Self::AwaitingUpload],
            Self::Uploaded => &[Self::Queued],
            Self::Queued => &[Self::Processing, Self::Failed],
            Self::Processing => &[
                Self::Ready,
                Self::AwaitingTranscription,
                Self::Failed,
                Self::Queued,
            ],
            Self::AwaitingTranscription | Self::Failed => &[Self::Queued],
            Self::Ready => &[],
        }
    }
}

/// A pipeline stage.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Checking the stored recording.
    #[sea_orm(string_value = "validate")]
    Validate,
    /// Decoding and resampling.
    #[sea_orm(string_value = "convert")]
    Convert,
    /// Voice activity detection and cutting.
    #[sea_orm(string_value = "segment")]
    Segment,
    /// Smart sampling.
    #[sea_orm(string_value = "sample")]
    Sample,
    /// Transcription.
    #[sea_orm(string_value = "transcribe")]
    Transcribe,
    /// Metrics.
    #[sea_orm(string_value = "analyze")]
    Analyze,
    /// Removing temporary objects.
    #[sea_orm(string_value = "cleanup")]
    Cleanup,
}

impl From<Stage> for pb::ProcessingStage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Validate => Self::Validate,
            Stage::Convert => Self::Convert,
            Stage::Segment => Self::Segment,
            Stage::Sample => Self::Sample,
            Stage::Transcribe => Self::Transcribe,
            Stage::Analyze => Self::Analyze,
            Stage::Cleanup => Self::Cleanup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable;

    #[test]
    fn stages_are_stored_and_sent_by_their_snake_case_names() {
        for stage in Stage::iter() {
            let stored = stage.to_value();
            let sent = serde_json::to_value(stage).unwrap();
            assert_eq!(sent, serde_json::Value::String(stored.clone()));
            assert_eq!(
                pb::ProcessingStage::from(stage).as_str_name(),
                format!("PROCESSING_STAGE_{}", stored.to_ascii_uppercase())
            );
        }
    }
}
