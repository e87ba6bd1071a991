//! Writing skill scores: the history progress is computed from.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::events::model::Payload;
use crate::skills::Skill;

/// Where scores came from, and when.
#[derive(Debug, Clone)]
pub struct Source {
    /// `meetings/{id}` or `practiceSessions/{id}`.
    pub name: String,
    /// The practice module, if any.
    pub module_id: Option<String>,
    /// Time spent, if known.
    pub duration_ms: Option<i64>,
    /// When the scores were achieved.
    pub recorded_at: DateTime<Utc>,
}

/// Records `scores` of `user_id` from `source`, replacing those it gave
/// before (a meeting analysed again), in one statement each, and announces
/// them on the person's event stream.
pub async fn record(
    scoped: &Scoped,
    user_id: Uuid,
    source: Source,
    scores: &[(Skill, f64)],
) -> AppResult<()> {
    scoped
        .delete_many::<entity::Entity>()
        .filter(entity::Column::UserId.eq(user_id))
        .filter(entity::Column::Source.eq(source.name.as_str()))
        .exec()
        .await?;
    if scores.is_empty() {
        return Ok(());
    }
    scoped
        .insert_many(scores.iter().map(|(skill, score)| entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            skill: Set(skill.name().to_owned()),
            score: Set(*score),
            source: Set(source.name.clone()),
            import_key: Set(None),
            duration_ms: Set(source.duration_ms),
            recorded_at: Set(source.recorded_at),
            module_id: Set(source.module_id.clone()),
            ..Default::default()
        }))
        .await?;
    let payload = Payload::SkillScores {
        source: source.name,
        scores: scores.to_vec(),
    };
    crate::events::publish(scoped, user_id, None, payload).await?;
    Ok(())
}
