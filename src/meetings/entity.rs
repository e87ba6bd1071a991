//! `meetings`: one row per recorded meeting.

use sea_orm::entity::prelude::*;

use crate::db::Owned;

/// Where a meeting is in its life (stored, and in event payloads, by the
/// names below).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize, serde::Deserialize,
)]
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

/// A meeting.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meetings")]
pub struct Model {
    /// Meeting id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Lifecycle status.
    pub status: Status,
    /// When it took place.
    pub occurred_at: Option<DateTimeUtc>,
    /// How many people took part.
    pub participant_count: Option<i32>,
    /// Labels, a JSON array of strings.
    pub tags: Json,
    /// The processing stage running now.
    pub current_stage: Option<String>,
    /// Why processing failed.
    pub failure_reason: Option<String>,
    /// The current upload.
    pub upload_id: Option<Uuid>,
    /// Sanitised original file name.
    pub file_name: Option<String>,
    /// Declared and verified content type.
    pub content_type: Option<String>,
    /// Size of the original.
    pub size_bytes: Option<i64>,
    /// Length of the audio.
    pub duration_ms: Option<i64>,
    /// Audio codec.
    pub codec: Option<String>,
    /// Original sample rate.
    pub sample_rate_hz: Option<i32>,
    /// Original channel count.
    pub channels: Option<i32>,
    /// Storage key of the original recording.
    pub original_object: Option<String>,
    /// Idempotency key of the create request.
    pub request_id: Option<String>,
    /// When processing finished.
    pub processed_at: Option<DateTimeUtc>,
    /// When the owner deleted it (purged after the retention period).
    pub deleted_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated from meetings yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Owned for Entity {
    fn owner_column() -> Column {
        Column::UserId
    }
}
