//! `uploads` and `upload_chunks`.

use sea_orm::entity::prelude::*;

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum State {
    /// Accepting chunks.
    #[sea_orm(string_value = "active")]
    Active,
    /// Stored and validated.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Cancelled by the owner.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// Refused by validation or scanning.
    #[sea_orm(string_value = "rejected")]
    Rejected,
    /// Not completed in time.
    #[sea_orm(string_value = "expired")]
    Expired,
}

/// `uploads`: one resumable upload.
pub mod upload {
    use super::*;

    /// An upload.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "uploads")]
    pub struct Model {
        /// Upload id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// The meeting.
        pub meeting_id: Uuid,
        /// Sanitised file name.
        pub file_name: String,
        /// Declared content type.
        pub content_type: String,
        /// Declared size.
        pub size_bytes: i64,
        /// Declared SHA-256, lower-case hex.
        pub sha256: Option<String>,
        /// Bytes committed: the next chunk's offset.
        pub committed_bytes: i64,
        /// Chunks committed.
        pub chunk_count: i32,
        /// Lifecycle state.
        pub state: State,
        /// Stable reason code when rejected.
        pub rejection_reason: Option<String>,
        /// Idempotency key of the create request.
        pub request_id: Option<String>,
        /// When it is discarded if unfinished (moves with each chunk).
        pub expires_at: DateTimeUtc,
        /// When it was completed.
        pub completed_at: Option<DateTimeUtc>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
        /// The usage reservation holding its storage.
        pub reservation_id: Option<Uuid>,
        /// The request completing it, while it holds the claim.
        pub completion_token: Option<Uuid>,
        /// Until when that claim holds.
        pub completing_until: Option<DateTimeUtc>,
        /// When its objects were deleted after it ended.
        pub cleaned_at: Option<DateTimeUtc>,
        /// The SHA-256 and scan of the committed bytes so far
        /// ([`crate::uploads::digest::Running`]); none for an upload begun
        /// before they were kept.
        pub digest_state: Option<Vec<u8>>,
    }

    crate::db::entity_tail!(owned by UserId);
}

/// `upload_chunks`: one committed chunk, stored as its own object.
pub mod chunk {
    use super::*;

    /// A chunk.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "upload_chunks")]
    pub struct Model {
        /// The upload.
        #[sea_orm(primary_key, auto_increment = false)]
        pub upload_id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// Where it starts.
        #[sea_orm(primary_key, auto_increment = false)]
        pub offset: i64,
        /// Its length.
        pub size_bytes: i64,
        /// CRC32C of its bytes.
        pub crc32c: i64,
        /// Its object's key.
        pub object_key: String,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by UserId);
}
