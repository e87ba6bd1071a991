//! The processing pipeline: its durable job queue, the converted audio and
//! its segments, smart sampling settings, and the text metric the first
//! analysis table lacked.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, create, drop, index, one_of, table, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

const JOB_STATES: &[&str] = &["pending", "running", "succeeded", "dead"];
const STRATEGIES: &[&str] = &["full", "uniform", "speech_dense"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(
            manager,
            vec![
                table("processing_jobs")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(uuid("meeting_id"))
                    .col(string("kind"))
                    .col(string("state").check(one_of("state", JOB_STATES)))
                    .col(integer("attempts").default(0))
                    .col(integer("max_attempts"))
                    // When a pending job may run next (after its backoff).
                    .col(timestamp_with_time_zone("run_at"))
                    // A running job whose lease has passed lost its worker.
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(string_null("worker"))
                    .col(text_null("last_error"))
                    // The analysis minutes held for the meeting.
                    .col(uuid_null("reservation_id"))
                    .foreign_key(&mut cascade("processing_jobs", "user_id", "users", "id"))
                    .foreign_key(&mut cascade("processing_jobs", "meeting_id", "meetings", "id"))
                    .take(),
                table("meeting_audio")
                    .col(pk_uuid("meeting_id"))
                    .col(uuid("user_id"))
                    // The 16 kHz mono WAV, a temporary object.
                    .col(string("audio_object"))
                    .col(big_integer("duration_ms"))
                    // [[start_ms, end_ms], ...] of detected speech.
                    .col(json_null("speech_spans"))
                    .col(string_null("strategy").check(one_of("strategy", STRATEGIES)))
                    .col(double_null("coverage_percent"))
                    .col(big_integer_null("estimated_cost_micros"))
                    .foreign_key(&mut cascade("meeting_audio", "meeting_id", "meetings", "id"))
                    .foreign_key(&mut cascade("meeting_audio", "user_id", "users", "id"))
                    .take(),
                table("meeting_segments")
                    .col(uuid("meeting_id"))
                    .col(uuid("user_id"))
                    .col(integer("position"))
                    .col(big_integer("start_ms"))
                    .col(big_integer("end_ms"))
                    .col(big_integer("speech_ms"))
                    .col(boolean("selected").default(false))
                    // The provider's answer for this piece, in meeting time,
                    // once it is transcribed.
                    .col(json_null("transcript"))
                    .primary_key(Index::create().col("meeting_id").col("position"))
                    .foreign_key(&mut cascade("meeting_segments", "meeting_id", "meetings", "id"))
                    .foreign_key(&mut cascade("meeting_segments", "user_id", "users", "id"))
                    .take(),
                table("user_sampling_configs")
                    .col(pk_uuid("user_id"))
                    .col(string("strategy").check(one_of("strategy", STRATEGIES)))
                    .col(big_integer_null("budget_ms"))
                    .col(big_integer("max_segment_ms"))
                    .foreign_key(&mut cascade("user_sampling_configs", "user_id", "users", "id"))
                    .take(),
                table("plan_sampling_configs")
                    .col(string("plan_id").primary_key())
                    .col(string("strategy").check(one_of("strategy", STRATEGIES)))
                    // NULL: no budget.
                    .col(big_integer_null("budget_ms"))
                    .col(big_integer("max_segment_ms"))
                    .foreign_key(&mut cascade("plan_sampling_configs", "plan_id", "plans", "id"))
                    .take(),
            ],
            vec![
                unique("processing_jobs", &["meeting_id"]),
                // The claim: the oldest runnable job first.
                index("processing_jobs", &["state", "run_at"]),
                // Per-user concurrency and ListJobs.
                index("processing_jobs", &["user_id", "state"]),
                index("processing_jobs", &["created_at"]),
                index("meeting_audio", &["user_id"]),
                index("meeting_segments", &["user_id"]),
            ],
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("meeting_analyses")
                    .add_column(integer_null("longest_monologue_words"))
                    .take(),
            )
            .await?;
        rls::protect(
            manager,
            &[
                "processing_jobs",
                "meeting_audio",
                "meeting_segments",
                "user_sampling_configs",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("meeting_analyses")
                    .drop_column("longest_monologue_words")
                    .take(),
            )
            .await?;
        drop(
            manager,
            &[
                "plan_sampling_configs",
                "user_sampling_configs",
                "meeting_segments",
                "meeting_audio",
                "processing_jobs",
            ],
        )
        .await
    }
}
