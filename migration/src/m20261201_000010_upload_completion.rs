//! Uploads can be claimed by the request completing them, so nothing else
//! (a cancel, an expiry, a second completion) ends them meanwhile, and they
//! remember when their objects were removed, so housekeeping finishes the
//! clean-up a crash interrupted.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns added, in order (SQLite alters one column at a time).
fn columns() -> [ColumnDef; 3] {
    [
        // Who is completing the upload, and until when the claim holds.
        uuid_null("completion_token"),
        timestamp_with_time_zone_null("completing_until"),
        // When the upload's chunk objects (and, if it never completed, its
        // stored original) were deleted; null while that is still to do.
        timestamp_with_time_zone_null("cleaned_at"),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in columns() {
            manager
                .alter_table(Table::alter().table("uploads").add_column(column).take())
                .await?;
        }
        manager
            .create_index(index("uploads", &["cleaned_at", "state"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_uploads_cleaned_at_state")
                    .table("uploads")
                    .to_owned(),
            )
            .await?;
        for column in ["completion_token", "completing_until", "cleaned_at"] {
            manager
                .alter_table(Table::alter().table("uploads").drop_column(column).take())
                .await?;
        }
        Ok(())
    }
}
