//! Row Level Security on Postgres.
//!
//! The application opens every transaction that touches user data with
//! `set_config('app.user_id', ..., true)` and `set_config('app.role', ...,
//! true)`. The policies below read those settings: an owner sees and writes
//! only rows whose owner column is their id, an `admin` scope may also read
//! every row, a `service` scope (workers, sign-in before a user is known) may
//! do anything, and a connection with no scope set sees nothing. RLS is also
//! *forced*, so it binds the tables' owner — the role the application
//! connects as — and not only other roles.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// The tables that hold a user's data, with the column naming the owner.
pub const OWNED_TABLES: &[(&str, &str)] = &[
    ("users", "id"),
    ("profiles", "user_id"),
    ("auth_sessions", "user_id"),
    ("refresh_tokens", "user_id"),
    ("api_keys", "user_id"),
    ("user_tokens", "user_id"),
    ("stream_tickets", "user_id"),
    ("meetings", "user_id"),
    ("uploads", "user_id"),
    ("upload_chunks", "user_id"),
    ("meeting_transcripts", "user_id"),
    ("transcript_segments", "user_id"),
    ("meeting_analyses", "user_id"),
    ("processing_stage_runs", "user_id"),
    ("processing_jobs", "user_id"),
    ("meeting_audio", "user_id"),
    ("meeting_segments", "user_id"),
    ("user_sampling_configs", "user_id"),
    ("practice_sessions", "user_id"),
    ("exercise_attempts", "user_id"),
    ("skill_scores", "user_id"),
    ("user_skill_levels", "user_id"),
    ("user_limit_overrides", "user_id"),
    ("usage_counters", "user_id"),
    ("usage_metrics", "user_id"),
    ("usage_reservations", "user_id"),
    ("usage_warnings", "user_id"),
    ("events", "user_id"),
    ("event_sequences", "user_id"),
    ("audit_log", "subject_user_id"),
];

/// Creates `app_user_id()` and `app_role()`, which read the scope settings
/// (an unset or empty setting reads as NULL, which matches no row).
pub async fn create_scope_functions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    postgres_only(
        manager,
        "CREATE OR REPLACE FUNCTION app_user_id() RETURNS uuid LANGUAGE sql STABLE AS \
           $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;
         CREATE OR REPLACE FUNCTION app_role() RETURNS text LANGUAGE sql STABLE AS \
           $$ SELECT NULLIF(current_setting('app.role', true), '') $$;",
    )
    .await
}

/// Drops the functions made by [`create_scope_functions`].
pub async fn drop_scope_functions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    postgres_only(
        manager,
        "DROP FUNCTION IF EXISTS app_user_id(); DROP FUNCTION IF EXISTS app_role();",
    )
    .await
}

/// Enables and forces RLS on each named table from [`OWNED_TABLES`], with
/// the owner, admin-read and service policies.
pub async fn protect(manager: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    for table in tables {
        let owner = owner_column(table)?;
        let mut sql = format!(
            "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
             CREATE POLICY {table}_service ON {table}
               USING (app_role() = 'service') WITH CHECK (app_role() = 'service');
             CREATE POLICY {table}_admin_read ON {table} FOR SELECT
               USING (app_role() = 'admin');"
        );
        if *table == "audit_log" {
            // Append-only: an owner may read entries about them and add new
            // ones, never change or remove any.
            sql.push_str(&format!(
                "CREATE POLICY {table}_owner_read ON {table} FOR SELECT
                   USING ({owner} = app_user_id());
                 CREATE POLICY {table}_owner_insert ON {table} FOR INSERT
                   WITH CHECK ({owner} = app_user_id());"
            ));
        } else {
            sql.push_str(&format!(
                "CREATE POLICY {table}_owner ON {table}
                   USING ({owner} = app_user_id()) WITH CHECK ({owner} = app_user_id());"
            ));
        }
        postgres_only(manager, &sql).await?;
    }
    Ok(())
}

/// Tables that were renamed since a migration protected them under their
/// old name.
const RENAMED: &[(&str, &str)] = &[("user_progress", "user_id")];

fn owner_column(table: &str) -> Result<&'static str, DbErr> {
    OWNED_TABLES
        .iter()
        .chain(RENAMED)
        .find(|(name, _)| *name == table)
        .map(|(_, owner)| *owner)
        .ok_or_else(|| DbErr::Migration(format!("{table} is not listed in OWNED_TABLES")))
}

async fn postgres_only(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
