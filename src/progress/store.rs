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

/// Every score of `user_id`, as the standing is computed from them (one
/// query).
pub async fn points(scoped: &Scoped, user_id: Uuid) -> AppResult<Vec<super::standing::Point>> {
    let rows = scoped
        .find::<entity::Entity>()
        .filter(entity::Column::UserId.eq(user_id))
        .all(scoped.txn())
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(super::standing::Point {
                skill: Skill::parse(&row.skill)?,
                score: row.score,
                at: row.recorded_at,
                source: row.source,
                import_key: row.import_key,
                duration_ms: row.duration_ms,
            })
        })
        .collect())
}

/// A cursor for a skill's history, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfterPoint {
    /// The last point's time.
    pub at: DateTime<Utc>,
    /// Its id, for points recorded at the same time.
    pub id: Uuid,
}

/// One page of `user_id`'s scores in `skill` within `[from, until)`,
/// oldest first, in one query.
pub async fn history(
    scoped: &Scoped,
    user_id: Uuid,
    skill: Skill,
    (from, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    page: &crate::pagination::PageRequest<AfterPoint>,
) -> AppResult<(Vec<entity::Model>, Option<AfterPoint>)> {
    use sea_orm::{Condition, QueryOrder, QuerySelect};
    let mut query = scoped
        .find::<entity::Entity>()
        .filter(entity::Column::UserId.eq(user_id))
        .filter(entity::Column::Skill.eq(skill.name()))
        .order_by_asc(entity::Column::RecordedAt)
        .order_by_asc(entity::Column::Id)
        .limit(page.size + 1);
    if let Some(from) = from {
        query = query.filter(entity::Column::RecordedAt.gte(from));
    }
    if let Some(until) = until {
        query = query.filter(entity::Column::RecordedAt.lt(until));
    }
    if let Some(after) = &page.after {
        query = query.filter(
            Condition::any().add(entity::Column::RecordedAt.gt(after.at)).add(
                Condition::all()
                    .add(entity::Column::RecordedAt.eq(after.at))
                    .add(entity::Column::Id.gt(after.id)),
            ),
        );
    }
    let rows = query.all(scoped.txn()).await?;
    Ok(page.page(rows, |last| AfterPoint {
        at: last.recorded_at,
        id: last.id,
    }))
}
