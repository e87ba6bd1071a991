//! Meetings, their uploads, transcripts, analyses and processing stage runs.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, create, drop, index, one_of, table, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

const MEETING_STATUSES: &[&str] = &[
    "awaiting_upload",
    "uploading",
    "uploaded",
    "queued",
    "processing",
    "awaiting_transcription",
    "ready",
    "failed",
];
const UPLOAD_STATES: &[&str] = &["active", "completed", "cancelled", "rejected", "expired"];
const STAGES: &[&str] = &[
    "validate",
    "convert",
    "segment",
    "sample",
    "transcribe",
    "analyze",
    "cleanup",
];
const STAGE_RUN_STATES: &[&str] = &["running", "succeeded", "failed", "skipped"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(
            manager,
            vec![
                table("meetings")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("title"))
                    .col(text("description"))
                    .col(string("status").check(one_of("status", MEETING_STATUSES)))
                    .col(timestamp_with_time_zone_null("occurred_at"))
                    .col(integer_null("participant_count"))
                    .col(json("tags"))
                    .col(string_null("current_stage").check(one_of("current_stage", STAGES)))
                    .col(text_null("failure_reason"))
                    // The current upload; no foreign key, since uploads point
                    // back at their meeting.
                    .col(uuid_null("upload_id"))
                    .col(string_null("file_name"))
                    .col(string_null("content_type"))
                    .col(big_integer_null("size_bytes"))
                    .col(big_integer_null("duration_ms"))
                    .col(string_null("codec"))
                    .col(integer_null("sample_rate_hz"))
                    .col(integer_null("channels"))
                    // Storage key of the original recording.
                    .col(string_null("original_object"))
                    .col(string_null("request_id"))
                    .col(timestamp_with_time_zone_null("processed_at"))
                    .col(timestamp_with_time_zone_null("deleted_at"))
                    .foreign_key(&mut cascade("meetings", "user_id", "users", "id"))
                    .take(),
                table("uploads")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(uuid("meeting_id"))
                    .col(string("file_name"))
                    .col(string("content_type"))
                    .col(big_integer("size_bytes"))
                    .col(string_null("sha256"))
                    .col(big_integer("committed_bytes").default(0))
                    .col(integer("chunk_count").default(0))
                    .col(string("state").check(one_of("state", UPLOAD_STATES)))
                    .col(string_null("rejection_reason"))
                    .col(string_null("request_id"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .foreign_key(&mut cascade("uploads", "user_id", "users", "id"))
                    .foreign_key(&mut cascade("uploads", "meeting_id", "meetings", "id"))
                    .take(),
                table("upload_chunks")
                    .col(uuid("upload_id"))
                    .col(uuid("user_id"))
                    .col(big_integer("offset"))
                    .col(big_integer("size_bytes"))
                    .col(big_integer("crc32c"))
                    .col(string("object_key"))
                    .primary_key(Index::create().col("upload_id").col("offset"))
                    .foreign_key(&mut cascade("upload_chunks", "upload_id", "uploads", "id"))
                    .foreign_key(&mut cascade("upload_chunks", "user_id", "users", "id"))
                    .take(),
                table("meeting_transcripts")
                    .col(pk_uuid("meeting_id"))
                    .col(uuid("user_id"))
                    .col(string("language"))
                    .col(string("model"))
                    .col(double("coverage_percent"))
                    .foreign_key(&mut cascade(
                        "meeting_transcripts",
                        "meeting_id",
                        "meetings",
                        "id",
                    ))
                    .foreign_key(&mut cascade("meeting_transcripts", "user_id", "users", "id"))
                    .take(),
                table("transcript_segments")
                    .col(big_pk_auto("id"))
                    .col(uuid("meeting_id"))
                    .col(uuid("user_id"))
                    .col(integer("position"))
                    .col(big_integer("start_ms"))
                    .col(big_integer("end_ms"))
                    .col(text("text"))
                    .col(double_null("confidence"))
                    .foreign_key(&mut cascade(
                        "transcript_segments",
                        "meeting_id",
                        "meeting_transcripts",
                        "meeting_id",
                    ))
                    .foreign_key(&mut cascade("transcript_segments", "user_id", "users", "id"))
                    .take(),
                table("meeting_analyses")
                    .col(pk_uuid("meeting_id"))
                    .col(uuid("user_id"))
                    .col(big_integer("total_ms"))
                    .col(big_integer("speech_ms"))
                    .col(double("speech_ratio"))
                    .col(integer("pause_count"))
                    .col(big_integer("average_pause_ms"))
                    .col(big_integer("longest_pause_ms"))
                    .col(big_integer("longest_monologue_ms"))
                    .col(double_null("words_per_minute"))
                    .col(integer_null("filler_word_count"))
                    .col(json("filler_words"))
                    .col(integer_null("question_count"))
                    .col(json("skill_scores"))
                    .foreign_key(&mut cascade("meeting_analyses", "meeting_id", "meetings", "id"))
                    .foreign_key(&mut cascade("meeting_analyses", "user_id", "users", "id"))
                    .take(),
                table("processing_stage_runs")
                    .col(pk_uuid("id"))
                    .col(uuid("meeting_id"))
                    .col(uuid("user_id"))
                    .col(string("stage").check(one_of("stage", STAGES)))
                    .col(integer("attempt"))
                    .col(string("state").check(one_of("state", STAGE_RUN_STATES)))
                    .col(timestamp_with_time_zone("started_at"))
                    .col(timestamp_with_time_zone_null("finished_at"))
                    .col(text_null("error"))
                    .foreign_key(&mut cascade(
                        "processing_stage_runs",
                        "meeting_id",
                        "meetings",
                        "id",
                    ))
                    .foreign_key(&mut cascade("processing_stage_runs", "user_id", "users", "id"))
                    .take(),
            ],
            vec![
                // ListMeetings: newest first, optionally by status or date.
                index("meetings", &["user_id", "created_at"]),
                index("meetings", &["user_id", "status"]),
                index("meetings", &["user_id", "occurred_at"]),
                unique("meetings", &["user_id", "request_id"]),
                // The retention sweep.
                index("meetings", &["deleted_at"]),
                index("uploads", &["meeting_id"]),
                index("uploads", &["user_id", "created_at"]),
                unique("uploads", &["user_id", "request_id"]),
                // The expiry sweep.
                index("uploads", &["state", "expires_at"]),
                index("upload_chunks", &["user_id"]),
                index("meeting_transcripts", &["user_id"]),
                unique("transcript_segments", &["meeting_id", "position"]),
                index("transcript_segments", &["user_id"]),
                index("meeting_analyses", &["user_id", "created_at"]),
                unique("processing_stage_runs", &["meeting_id", "stage", "attempt"]),
                index("processing_stage_runs", &["user_id"]),
            ],
        )
        .await?;
        rls::protect(
            manager,
            &[
                "meetings",
                "uploads",
                "upload_chunks",
                "meeting_transcripts",
                "transcript_segments",
                "meeting_analyses",
                "processing_stage_runs",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(
            manager,
            &[
                "processing_stage_runs",
                "meeting_analyses",
                "transcript_segments",
                "meeting_transcripts",
                "upload_chunks",
                "uploads",
                "meetings",
            ],
        )
        .await
    }
}
