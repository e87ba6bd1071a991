//! Usage counters and metrics, the event log and the audit log.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::rls;
use crate::util::{cascade, create, drop, index, table};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(
            manager,
            vec![
                // One row per user, category and period: what is used and
                // what is held by operations in progress.
                table("usage_counters")
                    .col(uuid("user_id"))
                    .col(string("category"))
                    .col(timestamp_with_time_zone("period_start"))
                    .col(big_integer("used").default(0))
                    .col(big_integer("reserved").default(0))
                    .primary_key(Index::create().col("user_id").col("category").col("period_start"))
                    .foreign_key(&mut cascade("usage_counters", "user_id", "users", "id"))
                    .take(),
                // Privacy-safe usage analytics: ids, category, amount and
                // time only. No email, name or content ever goes here.
                table("usage_metrics")
                    .col(big_pk_auto("id"))
                    .col(uuid("user_id"))
                    .col(string("category"))
                    .col(big_integer("amount"))
                    .col(uuid_null("meeting_id"))
                    .foreign_key(&mut cascade("usage_metrics", "user_id", "users", "id"))
                    .take(),
                // The per-user event log. The id is a global sequence, so
                // each user's events are ordered by it too.
                table("events")
                    .col(big_pk_auto("id"))
                    .col(uuid("user_id"))
                    .col(string("event_type"))
                    .col(uuid_null("meeting_id"))
                    .col(json("payload"))
                    .foreign_key(&mut cascade("events", "user_id", "users", "id"))
                    .take(),
                // Append-only. No foreign keys: entries outlive the accounts
                // they mention.
                table("audit_log")
                    .col(pk_uuid("id"))
                    .col(uuid_null("actor_id"))
                    .col(uuid_null("subject_user_id"))
                    .col(string("action"))
                    .col(string_null("target"))
                    .col(string_null("ip_address"))
                    .col(json("details"))
                    .take(),
            ],
            vec![
                index("usage_metrics", &["user_id", "created_at"]),
                index("usage_metrics", &["created_at"]),
                index("events", &["user_id", "id"]),
                index("events", &["user_id", "meeting_id", "id"]),
                // Pruning by age.
                index("events", &["created_at"]),
                index("audit_log", &["created_at"]),
                index("audit_log", &["subject_user_id", "created_at"]),
                index("audit_log", &["actor_id", "created_at"]),
                index("audit_log", &["action", "created_at"]),
            ],
        )
        .await?;
        forbid_audit_changes(manager).await?;
        rls::protect(
            manager,
            &["usage_counters", "usage_metrics", "events", "audit_log"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(
            manager,
            &["audit_log", "events", "usage_metrics", "usage_counters"],
        )
        .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS audit_log_append_only();")
                .await?;
        }
        Ok(())
    }
}

/// Makes the audit log append-only on every backend, whatever the role.
async fn forbid_audit_changes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let sql = match manager.get_database_backend() {
        DbBackend::Postgres => {
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
             CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
               FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();"
        }
        _ => {
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
               BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
             CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
               BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
        }
    };
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}
