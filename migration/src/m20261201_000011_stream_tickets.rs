//! Stream tickets: short-lived, single-use credentials that a signed-in
//! browser mints to open an `EventSource`, which cannot send headers.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, index, table, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                table("stream_tickets")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(uuid("session_id"))
                    .col(string("token_hash"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .foreign_key(&mut cascade("stream_tickets", "user_id", "users", "id"))
                    .take(),
            )
            .await?;
        manager
            .create_index(unique("stream_tickets", &["token_hash"]))
            .await?;
        manager
            .create_index(index("stream_tickets", &["expires_at"]))
            .await?;
        rls::protect(manager, &["stream_tickets"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("stream_tickets").to_owned())
            .await
    }
}
