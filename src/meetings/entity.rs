//! `meetings`: one row per recorded meeting.

use sea_orm::entity::prelude::*;

use crate::lifecycle::Stage;
pub use crate::lifecycle::Status;

/// What a recording is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Kind {
    /// A meeting the owner took part in: listed, counted, recommended on.
    #[sea_orm(string_value = "meeting")]
    Meeting,
    /// The recording of a spoken practice attempt: processed like a
    /// meeting, never listed; the attempt names it.
    #[sea_orm(string_value = "practice")]
    Practice,
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
    pub current_stage: Option<Stage>,
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
    /// What the recording is of.
    pub kind: Kind,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
