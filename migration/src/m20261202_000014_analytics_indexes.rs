//! Indexes for the admin analytics, which count facts in time ranges
//! across every account: meetings created, uploads completed, analyses
//! stored, practice sessions started and completed, and skill scores.

use sea_orm_migration::prelude::*;

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each index: table and columns.
const INDEXES: [(&str, &[&str]); 6] = [
    ("meetings", &["created_at"]),
    ("uploads", &["completed_at"]),
    ("meeting_analyses", &["created_at"]),
    ("practice_sessions", &["started_at"]),
    ("practice_sessions", &["completed_at"]),
    ("skill_scores", &["recorded_at"]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, columns) in INDEXES {
            manager.create_index(index(table, columns)).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, columns) in INDEXES {
            let name = format!("idx_{table}_{}", columns.join("_"));
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
