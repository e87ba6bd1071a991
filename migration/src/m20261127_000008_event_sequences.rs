//! Per-user event numbers. Each event gets the next number of its user,
//! taken under a row lock in the publishing transaction, so a user's events
//! commit in the order of their numbers: a reader that has seen number n
//! never finds a smaller one appearing later.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, create, drop, unique};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("events")
                    .add_column(big_integer("seq").default(0))
                    .take(),
            )
            .await?;
        create(
            manager,
            vec![
                Table::create()
                    .table("event_sequences")
                    .col(pk_uuid("user_id"))
                    .col(big_integer("last_seq"))
                    .foreign_key(&mut cascade("event_sequences", "user_id", "users", "id"))
                    .take(),
            ],
            vec![unique("events", &["user_id", "seq"])],
        )
        .await?;
        rls::protect(manager, &["event_sequences"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(manager, &["event_sequences"]).await?;
        manager
            .drop_index(
                Index::drop()
                    .name("uq_events_user_id_seq")
                    .table("events")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table("events").drop_column("seq").take())
            .await
    }
}
