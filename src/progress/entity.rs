//! `skill_scores`: one row per recorded skill score.

use sea_orm::entity::prelude::*;

/// A skill score at a point in time.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "skill_scores")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// Skill name, e.g. `filler_words`.
    pub skill: String,
    /// Score from 0 to 100.
    pub score: f64,
    /// Where it came from: `meetings/{id}`, `practiceSessions/{id}` or `import`.
    pub source: String,
    /// Set on imported rows: makes an import idempotent.
    pub import_key: Option<String>,
    /// Time spent, if known.
    pub duration_ms: Option<i64>,
    /// When the score was achieved.
    pub recorded_at: DateTimeUtc,
    /// The practice module, if any.
    pub module_id: Option<String>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

crate::db::entity_tail!(owned by UserId);
