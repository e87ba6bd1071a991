//! Meeting rows to API messages. Each conversion destructures its row, so a
//! new column does not build until it is shown or explicitly left out.

use super::entity;
use super::results::{Line, analysis, transcript, transcript_segment};
use crate::pb::v1 as pb;
use crate::timestamps::{self, ms_to_duration};

impl From<&entity::Model> for pb::Meeting {
    fn from(meeting: &entity::Model) -> Self {
        let entity::Model {
            id,
            user_id: _,
            title,
            description,
            status,
            occurred_at,
            participant_count,
            tags,
            current_stage,
            failure_reason,
            upload_id,
            file_name,
            content_type,
            size_bytes,
            duration_ms,
            codec,
            sample_rate_hz,
            channels,
            // Internal: where the original is, the create request's key,
            // and bookkeeping times the API does not show.
            original_object: _,
            request_id: _,
            processed_at: _,
            deleted_at: _,
            // A practice recording is shown like a meeting to its owner.
            kind: _,
            created_at,
            updated_at,
        } = meeting;
        let audio = file_name.as_ref().map(|file_name| pb::AudioInfo {
            file_name: file_name.clone(),
            content_type: content_type.clone().unwrap_or_default(),
            size_bytes: size_bytes.unwrap_or_default(),
            duration: duration_ms.map(timestamps::ms_to_duration),
            codec: codec.clone().unwrap_or_default(),
            sample_rate_hz: sample_rate_hz.unwrap_or_default(),
            channels: channels.unwrap_or_default(),
        });
        Self {
            name: format!("meetings/{id}"),
            title: title.clone(),
            description: description.clone(),
            status: pb::MeetingStatus::from(*status).into(),
            occurred_time: timestamps::opt_to_proto(*occurred_at),
            participant_count: participant_count.unwrap_or(0),
            tags: serde_json::from_value(tags.clone()).unwrap_or_default(),
            audio,
            upload: upload_id.map(|id| format!("uploads/{id}")).unwrap_or_default(),
            current_stage: current_stage
                .map_or(pb::ProcessingStage::Unspecified, pb::ProcessingStage::from)
                .into(),
            failure_reason: failure_reason.clone().unwrap_or_default(),
            create_time: Some(timestamps::to_proto(*created_at)),
            update_time: Some(timestamps::to_proto(*updated_at)),
        }
    }
}

/// A transcript's header with its lines in order.
impl From<(transcript::Model, Vec<transcript_segment::Model>)> for pb::Transcript {
    fn from((header, lines): (transcript::Model, Vec<transcript_segment::Model>)) -> Self {
        let transcript::Model {
            meeting_id,
            language,
            model,
            coverage_percent,
            created_at,
            user_id: _,
            updated_at: _,
        } = header;
        Self {
            name: format!("meetings/{meeting_id}/transcript"),
            language,
            segments: lines
                .into_iter()
                .map(|line| pb::TranscriptSegment::from(Line::from(line)))
                .collect(),
            coverage_percent,
            model,
            create_time: Some(timestamps::to_proto(created_at)),
        }
    }
}

impl From<Line> for pb::TranscriptSegment {
    fn from(line: Line) -> Self {
        let Line {
            start_ms,
            end_ms,
            text,
            confidence,
        } = line;
        Self {
            start_offset: Some(ms_to_duration(start_ms)),
            end_offset: Some(ms_to_duration(end_ms)),
            text,
            confidence: confidence.unwrap_or(0.0),
        }
    }
}

impl From<analysis::Model> for pb::Analysis {
    fn from(row: analysis::Model) -> Self {
        let analysis::Model {
            meeting_id,
            total_ms,
            speech_ms,
            speech_ratio,
            pause_count,
            average_pause_ms,
            longest_pause_ms,
            longest_monologue_ms,
            words_per_minute,
            filler_word_count,
            filler_words,
            question_count,
            longest_monologue_words,
            word_count,
            estimated_words_per_minute,
            created_at,
            skill_scores,
            user_id: _,
            updated_at: _,
        } = row;
        let filler_words = filler_words
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
        Self {
            name: format!("meetings/{meeting_id}/analysis"),
            total_duration: Some(ms_to_duration(total_ms)),
            speech_duration: Some(ms_to_duration(speech_ms)),
            speech_ratio,
            silence_ratio: if total_ms > 0 { 1.0 - speech_ratio } else { 0.0 },
            pause_count,
            average_pause: Some(ms_to_duration(average_pause_ms)),
            longest_pause: Some(ms_to_duration(longest_pause_ms)),
            longest_monologue: Some(ms_to_duration(longest_monologue_ms)),
            words_per_minute,
            filler_word_count,
            filler_words,
            question_count,
            skill_scores: super::results::skill_scores(&skill_scores)
                .into_iter()
                .map(|(skill, score)| pb::SkillScore {
                    skill: pb::Skill::from(skill).into(),
                    score,
                })
                .collect(),
            longest_monologue_words,
            word_count,
            estimated_words_per_minute,
            create_time: Some(timestamps::to_proto(created_at)),
        }
    }
}
