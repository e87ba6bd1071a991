//! What events say, stored as JSON and shown as `debrief.v1.Event`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::event;
use crate::pb::v1 as pb;
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
    /// A message from the operators.
    SystemNotice {
        /// Title.
        title: String,
        /// Text.
        message: String,
    },
}

impl Payload {
    /// The stored type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::UploadProgress { .. } => "upload_progress",
            Self::UploadCompleted { .. } => "upload_completed",
            Self::UploadRejected { .. } => "upload_rejected",
            Self::QuotaWarning { .. } => "quota_warning",
            Self::SystemNotice { .. } => "system_notice",
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

/// The API message of a stored event.
pub fn to_proto(row: &event::Model) -> pb::Event {
    use pb::event::Payload as P;
    let kind = pb::EventType::from_str_name(&format!("EVENT_TYPE_{}", row.event_type.to_ascii_uppercase()))
        .unwrap_or_default();
    let payload = serde_json::from_value::<Payload>(row.payload.clone())
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
            Payload::SystemNotice { title, message } => P::SystemNotice(pb::SystemNotice { title, message }),
        });
    pb::Event {
        id: row.seq,
        r#type: kind.into(),
        meeting: row
            .meeting_id
            .map(|id| format!("meetings/{id}"))
            .unwrap_or_default(),
        create_time: Some(timestamps::to_proto(row.created_at)),
        payload,
    }
}
