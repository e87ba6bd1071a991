//! What the identity work needs beyond the first schema: the request id on
//! audit entries, profile preferences, the module of imported practice
//! records, and the shared sign-in failure counters behind lockouts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{create, drop, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Columns added to existing tables, one `ALTER TABLE` each (SQLite takes
/// one change per statement).
fn added_columns() -> Vec<(&'static str, ColumnDef)> {
    vec![
        ("audit_log", string_null("request_id")),
        ("profiles", json("preferences").default("{}").take()),
        ("user_progress", string_null("module_id")),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, mut column) in added_columns() {
            manager
                .alter_table(Table::alter().table(table).add_column(&mut column).take())
                .await?;
        }
        create(
            manager,
            vec![
                // Consecutive sign-in failures per key (`email:<sha256>` or
                // `ip:<address>`), shared by every instance. Not user data:
                // keys hold no readable email, so no Row Level Security.
                Table::create()
                    .table("sign_in_failures")
                    .col(string("key").primary_key())
                    .col(integer("failures"))
                    .col(timestamp_with_time_zone("last_failure_at"))
                    .col(timestamp_with_time_zone_null("locked_until"))
                    .take(),
            ],
            vec![index("sign_in_failures", &["last_failure_at"])],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(manager, &["sign_in_failures"]).await?;
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
        Ok(())
    }
}
