//! Practice modules and exercises, practice sessions, attempts and per-skill
//! progress.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, create, drop, index, one_of, restrict, table, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const SKILLS: &[&str] = &[
    "pacing",
    "filler_words",
    "pauses",
    "conciseness",
    "questioning",
    "clarity",
    "listening",
];

/// The first practice tables (modules, exercises, sessions, attempts),
/// which a later migration replaced before anything wrote them; its `down`
/// puts these back.
pub(crate) fn practice_tables() -> (Vec<TableCreateStatement>, Vec<IndexCreateStatement>) {
    (
        vec![
            // Shared content, not user data: no RLS.
            table("modules")
                // A slug such as `filler-words-basics`.
                .col(string("id").primary_key())
                .col(string("title"))
                .col(text("description"))
                .col(json("skills"))
                .col(integer("difficulty"))
                .col(string("state").check(one_of("state", &["draft", "published", "archived"])))
                // The published version; 0 before the first publish. A
                // draft is the version after it.
                .col(integer("version").default(0))
                .col(big_integer("estimated_duration_ms").default(0))
                .col(timestamp_with_time_zone_null("published_at"))
                .col(uuid_null("created_by"))
                .take(),
            table("exercises")
                .col(string("module_id"))
                .col(integer("module_version"))
                .col(string("exercise_id"))
                .col(integer("position"))
                .col(string("title"))
                .col(string("kind").check(one_of("kind", &["speaking", "rewrite", "reflection"])))
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
                .col(double_null("score"))
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
                .col(text("response_text"))
                .col(big_integer_null("duration_ms"))
                .col(double("score"))
                .col(json("feedback"))
                .col(string_null("request_id"))
                .foreign_key(&mut cascade(
                    "exercise_attempts",
                    "session_id",
                    "practice_sessions",
                    "id",
                ))
                .foreign_key(&mut cascade("exercise_attempts", "user_id", "users", "id"))
                .take(),
        ],
        vec![
            index("modules", &["state"]),
            index("practice_sessions", &["user_id", "created_at"]),
            index("practice_sessions", &["user_id", "state"]),
            unique("practice_sessions", &["user_id", "request_id"]),
            index("practice_sessions", &["module_id"]),
            index("exercise_attempts", &["session_id", "created_at"]),
            unique("exercise_attempts", &["user_id", "request_id"]),
        ],
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (mut tables, mut indexes) = practice_tables();
        // One row per recorded skill score: the history that progress,
        // trends and streaks are computed from.
        tables.push(
            table("user_progress")
                .col(pk_uuid("id"))
                .col(uuid("user_id"))
                .col(string("skill").check(one_of("skill", SKILLS)))
                .col(double("score"))
                // `meetings/{id}`, `practiceSessions/{id}` or `import`.
                .col(string("source"))
                // Set for rows imported from the browser-only app, so an
                // import can run twice without duplicates.
                .col(string_null("import_key"))
                .col(big_integer_null("duration_ms"))
                .col(timestamp_with_time_zone("recorded_at"))
                .foreign_key(&mut cascade("user_progress", "user_id", "users", "id"))
                .take(),
        );
        indexes.extend([
            index("user_progress", &["user_id", "skill", "recorded_at"]),
            index("user_progress", &["user_id", "recorded_at"]),
            unique("user_progress", &["user_id", "import_key"]),
        ]);
        create(manager, tables, indexes).await?;
        rls::protect(
            manager,
            &["practice_sessions", "exercise_attempts", "user_progress"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(
            manager,
            &[
                "user_progress",
                "exercise_attempts",
                "practice_sessions",
                "exercises",
                "modules",
            ],
        )
        .await
    }
}
