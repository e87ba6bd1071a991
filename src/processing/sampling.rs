//! Smart sampling: which pieces of a meeting to transcribe, within a
//! budget, and what that is estimated to cost; and the settings that choose
//! it (a plan's defaults, a user's own).

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::entity::{Strategy, plan_sampling, user_sampling};
use crate::auth::entity::user;
use crate::db::Scoped;
use crate::error::{AppError, AppResult};

/// The longest piece unless configured: well under the provider's 25 MB
/// request limit (about 13 minutes of 16 kHz 16-bit audio).
pub const DEFAULT_MAX_SEGMENT_MS: i64 = 10 * 60 * 1000;
/// The provider's request limit, as audio length.
pub const PROVIDER_MAX_SEGMENT_MS: i64 = 25_000_000 / 32 - 1000;

/// Sampling settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Strategy.
    pub strategy: Strategy,
    /// Most audio transcribed per meeting; None: no budget.
    pub budget_ms: Option<i64>,
    /// Longest piece per provider request.
    pub max_segment_ms: i64,
    /// Whether these are the plan's defaults (the user set none).
    pub inherited: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            strategy: Strategy::Full,
            budget_ms: None,
            max_segment_ms: DEFAULT_MAX_SEGMENT_MS,
            inherited: true,
        }
    }
}

/// A plan's defaults (the built-in ones when it has none).
pub async fn for_plan(scoped: &Scoped, plan_id: &str) -> AppResult<Settings> {
    let row = plan_sampling::Entity::find_by_id(plan_id.to_owned())
        .one(scoped.txn())
        .await?;
    Ok(row.map_or_else(Settings::default, |r| Settings {
        strategy: r.strategy,
        budget_ms: r.budget_ms,
        max_segment_ms: r.max_segment_ms,
        inherited: true,
    }))
}

/// The settings in force for `user_id`: their own, else their plan's.
pub async fn for_user(scoped: &Scoped, user_id: Uuid) -> AppResult<Settings> {
    let own = scoped
        .find::<user_sampling::Entity>()
        .filter(user_sampling::Column::UserId.eq(user_id))
        .one(scoped.txn())
        .await?;
    if let Some(own) = own {
        return Ok(Settings {
            strategy: own.strategy,
            budget_ms: own.budget_ms,
            max_segment_ms: own.max_segment_ms,
            inherited: false,
        });
    }
    for_plan(scoped, &plan_of(scoped, user_id).await?).await
}

/// The plan `user_id` is on.
pub async fn plan_of(scoped: &Scoped, user_id: Uuid) -> AppResult<String> {
    Ok(scoped
        .find::<user::Entity>()
        .filter(user::Column::Id.eq(user_id))
        .one(scoped.txn())
        .await?
        .ok_or_else(|| AppError::not_found("user"))?
        .plan_id)
}

/// Stores a user's own settings after checking them against their plan:
/// with a plan budget, a user may not go over it (nor choose `full`).
pub async fn set_for_user(scoped: &Scoped, user_id: Uuid, settings: Settings) -> AppResult<Settings> {
    let plan = for_plan(scoped, &plan_of(scoped, user_id).await?).await?;
    if let Some(plan_budget) = plan.budget_ms {
        let over = match (settings.strategy, settings.budget_ms) {
            (Strategy::Full, _) | (_, None) => true,
            (_, Some(budget)) => budget > plan_budget,
        };
        if over {
            return Err(AppError::invalid(
                "sampling_config.budget",
                format!(
                    "your plan transcribes at most {} minutes per meeting; choose a budget within it",
                    plan_budget / 60_000
                ),
            ));
        }
    }
    scoped
        .upsert(
            user_sampling::ActiveModel {
                user_id: Set(user_id),
                strategy: Set(settings.strategy),
                budget_ms: Set(settings.budget_ms),
                max_segment_ms: Set(settings.max_segment_ms),
                ..Default::default()
            },
            OnConflict::column(user_sampling::Column::UserId)
                .update_columns([
                    user_sampling::Column::Strategy,
                    user_sampling::Column::BudgetMs,
                    user_sampling::Column::MaxSegmentMs,
                    user_sampling::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .await?;
    Ok(Settings {
        inherited: false,
        ..settings
    })
}

/// Stores a plan's defaults (admins only; the caller checks).
pub async fn set_for_plan(scoped: &Scoped, plan_id: &str, settings: Settings) -> AppResult<Settings> {
    let now = Utc::now();
    plan_sampling::Entity::insert(plan_sampling::ActiveModel {
        plan_id: Set(plan_id.to_owned()),
        strategy: Set(settings.strategy),
        budget_ms: Set(settings.budget_ms),
        max_segment_ms: Set(settings.max_segment_ms),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(plan_sampling::Column::PlanId)
            .update_columns([
                plan_sampling::Column::Strategy,
                plan_sampling::Column::BudgetMs,
                plan_sampling::Column::MaxSegmentMs,
                plan_sampling::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec(scoped.txn())
    .await?;
    Ok(Settings {
        inherited: true,
        ..settings
    })
}

/// A piece of audio sampling chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Order in the meeting.
    pub position: i32,
    /// Length.
    pub duration_ms: i64,
    /// Speech inside it.
    pub speech_ms: i64,
}

/// What sampling chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Positions of the chosen pieces, in meeting order.
    pub positions: Vec<i32>,
    /// Audio sent to the provider.
    pub chosen_ms: i64,
    /// Share of the meeting's speech chosen, 0 to 100.
    pub coverage_percent: f64,
    /// `chosen_ms` at the price per minute.
    pub estimated_cost_micros: i64,
}

/// Chooses pieces by `strategy` within `budget_ms`. Pieces without speech
/// are never sent.
pub fn choose(
    strategy: Strategy,
    budget_ms: Option<i64>,
    pieces: &[Piece],
    price_per_minute_micros: i64,
) -> Choice {
    let speaking: Vec<&Piece> = pieces.iter().filter(|p| p.speech_ms > 0).collect();
    let order: Vec<&Piece> = match (strategy, budget_ms) {
        (Strategy::Full, _) | (_, None) => speaking.clone(),
        (Strategy::Uniform, Some(_)) => spread(&speaking),
        (Strategy::SpeechDense, Some(_)) => {
            let mut dense = speaking.clone();
            dense.sort_by_key(|p| (std::cmp::Reverse(p.speech_ms), p.position));
            dense
        }
    };
    let budget = match strategy {
        Strategy::Full => i64::MAX,
        _ => budget_ms.unwrap_or(i64::MAX),
    };
    let mut chosen_ms = 0i64;
    let mut positions = Vec::new();
    let mut chosen_speech = 0i64;
    for piece in order {
        if chosen_ms + piece.duration_ms <= budget {
            chosen_ms += piece.duration_ms;
            chosen_speech += piece.speech_ms;
            positions.push(piece.position);
        }
    }
    positions.sort_unstable();
    let total_speech: i64 = speaking.iter().map(|p| p.speech_ms).sum();
    Choice {
        positions,
        chosen_ms,
        coverage_percent: if total_speech == 0 {
            0.0
        } else {
            chosen_speech as f64 * 100.0 / total_speech as f64
        },
        estimated_cost_micros: cost_micros(chosen_ms, price_per_minute_micros),
    }
}

/// The price of `ms` of audio at `per_minute` micro-dollars, rounded.
pub fn cost_micros(ms: i64, per_minute: i64) -> i64 {
    ((i128::from(ms) * i128::from(per_minute) + 30_000) / 60_000) as i64
}

/// The pieces in an order that spreads over the meeting: the middle one,
/// then the middles of each half, and so on.
fn spread<'a>(pieces: &[&'a Piece]) -> Vec<&'a Piece> {
    let mut order = Vec::with_capacity(pieces.len());
    let mut ranges = std::collections::VecDeque::from([(0usize, pieces.len())]);
    while let Some((lo, hi)) = ranges.pop_front() {
        if lo >= hi {
            continue;
        }
        let mid = lo + (hi - lo) / 2;
        order.push(pieces[mid]);
        ranges.push_back((lo, mid));
        ranges.push_back((mid + 1, hi));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(speech: &[i64]) -> Vec<Piece> {
        speech
            .iter()
            .enumerate()
            .map(|(i, &speech_ms)| Piece {
                position: i as i32,
                duration_ms: 60_000,
                speech_ms,
            })
            .collect()
    }

    #[test]
    fn speech_dense_takes_the_most_speech_within_the_budget() {
        let choice = choose(
            Strategy::SpeechDense,
            Some(120_000),
            &pieces(&[10_000, 50_000, 0, 40_000, 55_000]),
            6000,
        );
        assert_eq!(choice.positions, vec![1, 4]);
        assert_eq!(choice.chosen_ms, 120_000);
        assert_eq!(choice.estimated_cost_micros, 12_000);
        assert!((choice.coverage_percent - 105.0 / 155.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn uniform_spreads_and_full_takes_every_piece_with_speech() {
        let all = pieces(&[1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(
            choose(Strategy::Uniform, Some(180_000), &all, 0).positions,
            vec![1, 3, 5]
        );
        let full = choose(Strategy::Full, Some(60_000), &pieces(&[5, 0, 5]), 6000);
        assert_eq!(full.positions, vec![0, 2]);
        assert_eq!(full.coverage_percent, 100.0);
    }
}
