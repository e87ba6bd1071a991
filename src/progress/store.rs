//! Writing skill scores: the history progress is computed from.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use super::entity;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::skills::Skill;

/// A score to record.
#[derive(Debug, Clone)]
pub struct NewScore {
    /// The skill.
    pub skill: Skill,
    /// 0–100.
    pub score: f64,
    /// Where it came from: `meetings/{id}` or `practiceSessions/{id}`.
    pub source: String,
    /// Time spent, if known.
    pub duration_ms: Option<i64>,
    /// The practice module, if any.
    pub module_id: Option<String>,
    /// When it was achieved.
    pub recorded_at: DateTime<Utc>,
}

/// Records `scores` of `user_id`, in one statement.
pub async fn record(scoped: &Scoped, user_id: Uuid, scores: Vec<NewScore>) -> AppResult<()> {
    scoped
        .insert_many(scores.into_iter().map(|s| entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            skill: Set(s.skill.name().to_owned()),
            score: Set(s.score),
            source: Set(s.source),
            import_key: Set(None),
            duration_ms: Set(s.duration_ms),
            recorded_at: Set(s.recorded_at),
            module_id: Set(s.module_id),
            ..Default::default()
        }))
        .await
}
