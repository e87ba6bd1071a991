//! Adaptive difficulty: a level from 1 to 5 per person and skill, which
//! picks the exercises of a session and the difficulty recommendations
//! suggest.
//!
//! The rule: a completed session scoring [`STRONG`] or more is strong, one
//! under [`WEAK`] is weak. [`RUN`] strong sessions in a row for a module's
//! main skill raise that skill's level by one (at most 5); [`RUN`] weak ones
//! in a row lower it by one (at least 1); anything in between breaks both
//! runs. A new person starts at the level of their onboarding answer
//! (beginner 1, intermediate 2, advanced 3; 2 when unanswered).

use std::collections::HashMap;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::entity::level;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::skills::Skill;

/// A session scoring at least this is strong.
pub const STRONG: f64 = 80.0;
/// A session scoring under this is weak.
pub const WEAK: f64 = 50.0;
/// How many strong (or weak) sessions in a row move the level.
pub const RUN: i32 = 2;

/// The level a person starts at, from their onboarding answer.
pub fn starting(experience_level: &str) -> i32 {
    match experience_level {
        "beginner" => 1,
        "advanced" => 3,
        _ => 2,
    }
}

/// Every level `user_id` has, by skill.
pub async fn all(scoped: &Scoped, user_id: Uuid) -> AppResult<HashMap<Skill, i32>> {
    Ok(scoped
        .find::<level::Entity>()
        .filter(level::Column::UserId.eq(user_id))
        .all(scoped.txn())
        .await?
        .into_iter()
        .map(|row| (row.skill, row.level))
        .collect())
}

/// How a session moved a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The level before.
    pub from: i32,
    /// The level after.
    pub to: i32,
}

/// The next state of a level after a session scoring `score`: (level,
/// strong run, weak run).
pub fn next(level: i32, strong_run: i32, weak_run: i32, score: f64) -> (i32, i32, i32) {
    if score >= STRONG {
        let run = strong_run + 1;
        if run >= RUN {
            ((level + 1).min(5), 0, 0)
        } else {
            (level, run, 0)
        }
    } else if score < WEAK {
        let run = weak_run + 1;
        if run >= RUN {
            ((level - 1).max(1), 0, 0)
        } else {
            (level, 0, run)
        }
    } else {
        (level, 0, 0)
    }
}

/// Records a completed session of `skill` scoring `score` for `user_id`
/// (starting from `start` when they have no level yet).
pub async fn record(
    scoped: &Scoped,
    user_id: Uuid,
    skill: Skill,
    start: i32,
    score: f64,
) -> AppResult<Change> {
    let current = scoped
        .find::<level::Entity>()
        .filter(level::Column::UserId.eq(user_id))
        .filter(level::Column::Skill.eq(skill))
        .one(scoped.txn())
        .await?;
    let (from, strong, weak) = current.map_or((start, 0, 0), |row| (row.level, row.strong_run, row.weak_run));
    let (to, strong_run, weak_run) = next(from, strong, weak, score);
    scoped
        .upsert(
            level::ActiveModel {
                user_id: Set(user_id),
                skill: Set(skill),
                level: Set(to),
                strong_run: Set(strong_run),
                weak_run: Set(weak_run),
                ..Default::default()
            },
            OnConflict::columns([level::Column::UserId, level::Column::Skill])
                .update_columns([
                    level::Column::Level,
                    level::Column::StrongRun,
                    level::Column::WeakRun,
                    level::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .await?;
    Ok(Change { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_strong_sessions_raise_the_level_and_two_weak_ones_lower_it() {
        assert_eq!(next(2, 0, 0, 85.0), (2, 1, 0));
        assert_eq!(next(2, 1, 0, 90.0), (3, 0, 0));
        assert_eq!(next(5, 1, 0, 90.0), (5, 0, 0));
        assert_eq!(
            next(3, 1, 0, 65.0),
            (3, 0, 0),
            "a middling session breaks the run"
        );
        assert_eq!(next(3, 0, 1, 30.0), (2, 0, 0));
        assert_eq!(next(1, 0, 1, 30.0), (1, 0, 0));
        assert_eq!(starting("advanced"), 3);
        assert_eq!(starting(""), 2);
    }
}
