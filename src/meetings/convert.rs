//! Meeting rows to API messages.

use super::entity;
use crate::lifecycle::Stage;
use crate::pb::v1 as pb;
use crate::timestamps;

/// The API message of a meeting.
pub fn to_proto(meeting: &entity::Model) -> pb::Meeting {
    let audio = meeting.file_name.as_ref().map(|file_name| pb::AudioInfo {
        file_name: file_name.clone(),
        content_type: meeting.content_type.clone().unwrap_or_default(),
        size_bytes: meeting.size_bytes.unwrap_or_default(),
        duration: meeting.duration_ms.map(timestamps::ms_to_duration),
        codec: meeting.codec.clone().unwrap_or_default(),
        sample_rate_hz: meeting.sample_rate_hz.unwrap_or_default(),
        channels: meeting.channels.unwrap_or_default(),
    });
    let stage = meeting
        .current_stage
        .map_or(pb::ProcessingStage::Unspecified, Stage::to_proto);
    pb::Meeting {
        name: format!("meetings/{}", meeting.id),
        title: meeting.title.clone(),
        description: meeting.description.clone(),
        status: meeting.status.to_proto().into(),
        occurred_time: timestamps::opt_to_proto(meeting.occurred_at),
        participant_count: meeting.participant_count.unwrap_or(0),
        tags: serde_json::from_value(meeting.tags.clone()).unwrap_or_default(),
        audio,
        upload: meeting
            .upload_id
            .map(|id| format!("uploads/{id}"))
            .unwrap_or_default(),
        current_stage: stage.into(),
        failure_reason: meeting.failure_reason.clone().unwrap_or_default(),
        create_time: Some(timestamps::to_proto(meeting.created_at)),
        update_time: Some(timestamps::to_proto(meeting.updated_at)),
    }
}
