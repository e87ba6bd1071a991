//! Accounts can be closed: `users.deleted_at` marks one whose owner (or an
//! admin) deleted it, while the job that erases its data runs. A closed
//! account has no sessions, keys, password or email address; the row goes
//! when the erasure finishes, and every owned row with it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .add_column(timestamp_with_time_zone_null("deleted_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table("users").drop_column("deleted_at").take())
            .await
    }
}
