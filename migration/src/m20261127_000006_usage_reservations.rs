//! Usage reservations (held amounts that expire if their holder dies), the
//! warning thresholds already crossed, and estimated versus actual amounts in
//! the usage metrics.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::rls;
use crate::util::{cascade, create, drop, index, one_of, table};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("usage_metrics")
                    .add_column(
                        string("kind")
                            .default("actual")
                            .check(one_of("kind", &["actual", "estimate"]))
                            .take(),
                    )
                    .take(),
            )
            .await?;
        create(
            manager,
            vec![
                // An amount held against a counter by an operation in
                // progress. A reservation past `expires_at` was left by a
                // holder that died, and is given back.
                table("usage_reservations")
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string("category"))
                    .col(timestamp_with_time_zone("period_start"))
                    .col(big_integer("amount"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .foreign_key(&mut cascade("usage_reservations", "user_id", "users", "id"))
                    .take(),
                // Each warning threshold (80, 100 percent) a counter crossed,
                // once per period, for notifications.
                table("usage_warnings")
                    .col(uuid("user_id"))
                    .col(string("category"))
                    .col(timestamp_with_time_zone("period_start"))
                    .col(integer("threshold_percent"))
                    .col(big_integer("used"))
                    .col(big_integer_null("limit_value"))
                    .primary_key(
                        Index::create()
                            .col("user_id")
                            .col("category")
                            .col("period_start")
                            .col("threshold_percent"),
                    )
                    .foreign_key(&mut cascade("usage_warnings", "user_id", "users", "id"))
                    .take(),
            ],
            vec![
                index("usage_reservations", &["user_id", "category", "expires_at"]),
                index("usage_reservations", &["expires_at"]),
                index("usage_warnings", &["created_at"]),
            ],
        )
        .await?;
        rls::protect(manager, &["usage_reservations", "usage_warnings"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(manager, &["usage_warnings", "usage_reservations"]).await?;
        manager
            .alter_table(Table::alter().table("usage_metrics").drop_column("kind").take())
            .await
    }
}
