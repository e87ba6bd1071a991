//! Uploads remember the usage reservation that holds their storage, so
//! cancellation, rejection and expiry can give it back.

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
                    .table("uploads")
                    .add_column(uuid_null("reservation_id"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("uploads")
                    .drop_column("reservation_id")
                    .take(),
            )
            .await
    }
}
