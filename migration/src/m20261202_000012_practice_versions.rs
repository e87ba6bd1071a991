//! Practice as it is built: versioned modules (a published version and at
//! most one draft, each a full copy of the module's fields and exercises),
//! practice sessions that pin a version and keep the exercises as they were
//! rendered for the person, attempts written or spoken, per-skill difficulty
//! levels, and `skill_scores` (the history once called `user_progress`).
//!
//! Also: meetings gain a `kind` (a spoken attempt's recording is a meeting
//! of kind `practice`, processed by the same pipeline and never listed);
//! analyses keep their word count and an audio-only pace estimate; and the
//! job queue takes jobs that belong to no meeting (practice feedback,
//! scenario generation).
//!
//! The first practice tables are replaced, not altered: no RPC ever wrote
//! them (the practice service answered UNIMPLEMENTED until now), and their
//! shape (module fields kept once, not per version) could not hold a draft.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261127_000003_practice::{SKILLS, practice_tables};
use crate::rls;
use crate::util::{cascade, create, drop, index, one_of, restrict, table, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

const KINDS: &[&str] = &["speaking", "rewrite", "reflection", "scenario"];
const ATTEMPT_STATES: &[&str] = &["awaiting_recording", "processing", "scored", "failed"];
const JOB_STATES: &[&str] = &["pending", "running", "succeeded", "dead"];
const PRACTICE_TABLES: &[&str] = &[
    "user_skill_levels",
    "exercise_attempts",
    "practice_sessions",
    "exercises",
    "module_skills",
    "module_versions",
    "modules",
];

fn tables() -> (Vec<TableCreateStatement>, Vec<IndexCreateStatement>) {
    (
        vec![
            // Shared content, not user data: no RLS. The row is the
            // module's head; its fields here are those of the version it is
            // listed with (the published one, or the draft of a module never
            // published), so lists read one table.
            table("modules")
                // A slug such as `filler-words-basics`.
                .col(string("id").primary_key())
                .col(string("state").check(one_of("state", &["draft", "published", "archived"])))
                // The published version; 0 before the first publish.
                .col(integer("version").default(0))
                // The draft's version (always `version + 1`), if there is one.
                .col(integer_null("draft_version"))
                .col(string("title"))
                .col(text("description"))
                .col(json("skills"))
                .col(integer("difficulty"))
                .col(big_integer("estimated_duration_ms").default(0))
                .col(uuid_null("created_by"))
                .col(timestamp_with_time_zone_null("published_at"))
                .take(),
            // The skills of the listed version, for the skill filter.
            table("module_skills")
                .col(string("module_id"))
                .col(string("skill").check(one_of("skill", SKILLS)))
                .primary_key(Index::create().col("module_id").col("skill"))
                .foreign_key(&mut cascade("module_skills", "module_id", "modules", "id"))
                .take(),
            // Every version's fields: published ones never change.
            table("module_versions")
                .col(string("module_id"))
                .col(integer("version"))
                .col(string("title"))
                .col(text("description"))
                .col(json("skills"))
                .col(integer("difficulty"))
                .col(big_integer("estimated_duration_ms").default(0))
                .col(timestamp_with_time_zone_null("published_at"))
                .col(uuid_null("edited_by"))
                .primary_key(Index::create().col("module_id").col("version"))
                .foreign_key(&mut cascade("module_versions", "module_id", "modules", "id"))
                .take(),
            table("exercises")
                .col(string("module_id"))
                .col(integer("module_version"))
                .col(string("exercise_id"))
                .col(integer("position"))
                .col(string("title"))
                .col(string("kind").check(one_of("kind", KINDS)))
                .col(text("prompt_template"))
                .col(integer("difficulty"))
                .col(json("rubric"))
                .primary_key(
                    Index::create()
                        .col("module_id")
                        .col("module_version")
                        .col("exercise_id"),
                )
                .foreign_key(&mut cascade("exercises", "module_id", "modules", "id"))
                .take(),
            table("practice_sessions")
                .col(pk_uuid("id"))
                .col(uuid("user_id"))
                .col(string("module_id"))
                .col(integer("module_version"))
                .col(string("state").check(one_of("state", &["active", "completed", "abandoned"])))
                .col(integer("difficulty"))
                // The meeting whose analysis personalised the prompts.
                .col(uuid_null("meeting_id"))
                // The exercises as rendered for the person when it started
                // (and as scenario generation completed them).
                .col(json("exercises"))
                .col(double_null("score"))
                // `[{"skill": .., "score": ..}]`, set when completed.
                .col(json_null("skill_scores"))
                // The practice session held from the plan until completed.
                .col(uuid_null("reservation_id"))
                .col(string_null("request_id"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("completed_at"))
                .foreign_key(&mut cascade("practice_sessions", "user_id", "users", "id"))
                .foreign_key(&mut restrict("practice_sessions", "module_id", "modules", "id"))
                .take(),
            table("exercise_attempts")
                .col(pk_uuid("id"))
                .col(uuid("session_id"))
                .col(uuid("user_id"))
                .col(string("exercise_id"))
                .col(string("state").check(one_of("state", ATTEMPT_STATES)))
                .col(text("response_text"))
                .col(big_integer_null("duration_ms"))
                .col(double_null("score"))
                .col(json_null("feedback"))
                .col(json_null("metrics"))
                // A spoken attempt's recording: a meeting of kind `practice`.
                .col(uuid_null("recording_meeting_id"))
                .col(uuid_null("upload_id"))
                .col(boolean("ai_requested").default(false))
                .col(text_null("failure_reason"))
                .col(string_null("request_id"))
                .foreign_key(&mut cascade(
                    "exercise_attempts",
                    "session_id",
                    "practice_sessions",
                    "id",
                ))
                .foreign_key(&mut cascade("exercise_attempts", "user_id", "users", "id"))
                .take(),
            // Adaptive difficulty: a level per skill, moved by runs of
            // strong or weak sessions.
            table("user_skill_levels")
                .col(uuid("user_id"))
                .col(string("skill").check(one_of("skill", SKILLS)))
                .col(integer("level"))
                .col(integer("strong_run").default(0))
                .col(integer("weak_run").default(0))
                .primary_key(Index::create().col("user_id").col("skill"))
                .foreign_key(&mut cascade("user_skill_levels", "user_id", "users", "id"))
                .take(),
        ],
        vec![
            index("modules", &["state"]),
            index("module_skills", &["skill"]),
            index("practice_sessions", &["user_id", "id"]),
            index("practice_sessions", &["user_id", "state"]),
            index("practice_sessions", &["state", "started_at"]),
            unique("practice_sessions", &["user_id", "request_id"]),
            index("practice_sessions", &["module_id"]),
            index("exercise_attempts", &["session_id", "id"]),
            unique("exercise_attempts", &["user_id", "request_id"]),
            index("exercise_attempts", &["recording_meeting_id"]),
        ],
    )
}

/// `processing_jobs` with `meeting_id` optional (`nullable`) and
/// `subject_id`, or as migration 9 made it.
fn jobs_table(name: &'static str, nullable: bool) -> TableCreateStatement {
    let mut meeting = if nullable {
        uuid_null("meeting_id")
    } else {
        uuid("meeting_id")
    };
    let mut jobs = table(name);
    jobs.col(pk_uuid("id"))
        .col(uuid("user_id"))
        .col(&mut meeting)
        .col(string("kind"))
        .col(string("state").check(one_of("state", JOB_STATES)))
        .col(integer("attempts").default(0))
        .col(integer("max_attempts"))
        .col(timestamp_with_time_zone("run_at"))
        .col(timestamp_with_time_zone_null("lease_until"))
        .col(string_null("worker"))
        .col(text_null("last_error"))
        .col(uuid_null("reservation_id"))
        .foreign_key(&mut cascade(name, "user_id", "users", "id"))
        .foreign_key(&mut cascade(name, "meeting_id", "meetings", "id"));
    if nullable {
        // What a job without a meeting works on: an attempt or a session.
        jobs.col(uuid_null("subject_id"));
    }
    jobs.take()
}

const JOB_COLUMNS: &str = "id, user_id, meeting_id, kind, state, attempts, max_attempts, run_at, \
    lease_until, worker, last_error, reservation_id, created_at, updated_at";

/// Makes `meeting_id` optional (`nullable`) and adds `subject_id`, or
/// undoes that. SQLite cannot change a column's constraints, so there the
/// table is rebuilt (nothing refers to it); Postgres alters it in place.
async fn reshape_jobs(manager: &SchemaManager<'_>, nullable: bool) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if manager.get_database_backend() == DbBackend::Postgres {
        let sql = if nullable {
            "ALTER TABLE processing_jobs ALTER COLUMN meeting_id DROP NOT NULL;
             ALTER TABLE processing_jobs ADD COLUMN subject_id uuid"
        } else {
            "DELETE FROM processing_jobs WHERE meeting_id IS NULL;
             ALTER TABLE processing_jobs ALTER COLUMN meeting_id SET NOT NULL;
             ALTER TABLE processing_jobs DROP COLUMN subject_id"
        };
        db.execute_unprepared(sql).await?;
    } else {
        manager
            .create_table(jobs_table("processing_jobs_next", nullable))
            .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO processing_jobs_next ({JOB_COLUMNS}) SELECT {JOB_COLUMNS} \
             FROM processing_jobs WHERE meeting_id IS NOT NULL;
             DROP TABLE processing_jobs;
             ALTER TABLE processing_jobs_next RENAME TO processing_jobs"
        ))
        .await?;
        let mut indexes = vec![
            unique("processing_jobs", &["meeting_id"]),
            index("processing_jobs", &["state", "run_at"]),
            index("processing_jobs", &["user_id", "state"]),
            index("processing_jobs", &["created_at"]),
        ];
        if nullable {
            indexes.push(index("processing_jobs", &["subject_id"]));
        }
        for index in indexes {
            manager.create_index(index).await?;
        }
    }
    if nullable && manager.get_database_backend() == DbBackend::Postgres {
        manager
            .create_index(index("processing_jobs", &["subject_id"]))
            .await?;
    }
    Ok(())
}

/// Columns added to existing tables, one `ALTER TABLE` each.
fn added_columns() -> Vec<(&'static str, ColumnDef)> {
    vec![
        (
            "meetings",
            string("kind")
                .default("meeting")
                .check(one_of("kind", &["meeting", "practice"]))
                .take(),
        ),
        ("meeting_analyses", integer_null("word_count")),
        // Syllable nuclei found in the speech, for a pace without words.
        ("meeting_audio", integer_null("syllable_count")),
        ("meeting_analyses", double_null("estimated_words_per_minute")),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(
            manager,
            &["exercise_attempts", "practice_sessions", "exercises", "modules"],
        )
        .await?;
        let (tables, indexes) = tables();
        create(manager, tables, indexes).await?;
        rls::protect(
            manager,
            &["practice_sessions", "exercise_attempts", "user_skill_levels"],
        )
        .await?;
        manager
            .rename_table(Table::rename().table("user_progress", "skill_scores").take())
            .await?;
        for (table, mut column) in added_columns() {
            manager
                .alter_table(Table::alter().table(table).add_column(&mut column).take())
                .await?;
        }
        // Analyses made before kept only the rate; their word count follows
        // from it and the speech it was measured over.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE meeting_analyses SET word_count = \
                 CAST(ROUND(words_per_minute * speech_ms / 60000.0) AS INTEGER) \
                 WHERE words_per_minute IS NOT NULL",
            )
            .await?;
        reshape_jobs(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        reshape_jobs(manager, false).await?;
        let db = manager.get_connection();
        db.execute_unprepared("DELETE FROM meetings WHERE kind = 'practice'")
            .await?;
        for (table, column) in added_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(column.get_column_name())
                        .take(),
                )
                .await?;
        }
        manager
            .rename_table(Table::rename().table("skill_scores", "user_progress").take())
            .await?;
        drop(manager, PRACTICE_TABLES).await?;
        let (tables, indexes) = practice_tables();
        create(manager, tables, indexes).await?;
        rls::protect(manager, &["practice_sessions", "exercise_attempts"]).await
    }
}
