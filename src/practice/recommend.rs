//! Recommendations: published modules ranked for a person from the skill
//! gaps their recent meetings show, their practice, and their level.
//! docs/recommendations.md describes the ranking for readers.
//!
//! 1. **Gaps.** Each of the last [`MEETINGS`] analysed meetings gives each
//!    skill a gap from 0 (on target) to 1 (far off): pacing by words per
//!    minute outside 130–160 (1 at 40 wpm outside), filler words by fillers
//!    per 100 words (0 at 1, 1 at 6), pauses by the longest silence (0 at
//!    3 s, 1 at 8 s), conciseness by the longest stretch of speech (0 at
//!    60 s, 1 at 3 min), questioning by questions per ten minutes (0 at 2,
//!    1 at none). Meetings are weighted by recency, halving every
//!    [`HALF_LIFE_DAYS`] days, and the numbers quoted are those weighted
//!    means.
//! 2. **Need.** A module's need is the gap of its main skill plus 0.3 times
//!    the largest gap among its other skills, lowered by up to 40% by how
//!    well the person scored in that skill in practice over the last 30
//!    days, plus 0.15 when the main skill is one of their focus skills.
//! 3. **Recency.** A module practised in the last day counts 0.3 of its
//!    need, in the last three days 0.6, so the same module is not offered
//!    day after day.
//! 4. **Fit.** Each level between the module's difficulty and the person's
//!    level for its main skill takes 15% off.
//!
//! A person with no analysed meeting gets a starter set: modules of their
//! focus skills and of the skills their onboarding goals name, then the
//! easiest ones.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::catalog;
use super::entity::session;
use super::levels;
use super::personal::Person;
use super::sessions;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::meetings::entity as meeting;
use crate::meetings::results::{self, analysis};
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::skills::scoring::{Measured, PACE};

/// How many recent meetings count.
pub const MEETINGS: u64 = 5;
/// Meetings count half as much every this many days.
pub const HALF_LIFE_DAYS: f64 = 14.0;

/// What the meetings say about one skill.
#[derive(Debug, Clone)]
struct Gap {
    /// 0 (on target) to 1.
    size: f64,
    /// Why, with the person's numbers.
    reason: String,
    /// The meeting that shows it most.
    meeting: Uuid,
}

/// A meeting's measurements with its weight.
struct Weighted<'a> {
    meeting: &'a meeting::Model,
    measured: Measured,
    weight: f64,
}

/// The skill gaps of `meetings` (newest first) as of `now`.
fn gaps(meetings: &[(meeting::Model, analysis::Model)], now: DateTime<Utc>) -> HashMap<Skill, Gap> {
    let weighted: Vec<Weighted<'_>> = meetings
        .iter()
        .map(|(m, a)| {
            let at = m.occurred_at.unwrap_or(m.created_at);
            let days = (now - at).num_seconds().max(0) as f64 / 86_400.0;
            Weighted {
                meeting: m,
                measured: Measured::from(a),
                weight: 0.5_f64.powf(days / HALF_LIFE_DAYS),
            }
        })
        .collect();
    let mut out = HashMap::new();
    let mut add = |skill: Skill,
                   value: &dyn Fn(&Measured) -> Option<f64>,
                   gap: &dyn Fn(f64) -> f64,
                   say: &dyn Fn(f64, &str) -> String| {
        let measured: Vec<(&Weighted<'_>, f64)> = weighted
            .iter()
            .filter_map(|w| value(&w.measured).map(|v| (w, v)))
            .collect();
        let total: f64 = measured.iter().map(|(w, _)| w.weight).sum();
        if measured.is_empty() || total <= 0.0 {
            return;
        }
        let mean = measured.iter().map(|(w, v)| w.weight * v).sum::<f64>() / total;
        let size = gap(mean).clamp(0.0, 1.0);
        let (worst, _) =
            measured
                .iter()
                .map(|(w, v)| (w, gap(*v)))
                .fold(
                    (measured[0].0, f64::MIN),
                    |best, (w, g)| if g > best.1 { (w, g) } else { best },
                );
        let scope = if measured.len() == 1 {
            format!("in “{}”", measured[0].0.meeting.title)
        } else {
            format!("across your last {} meetings", measured.len())
        };
        out.insert(
            skill,
            Gap {
                size,
                reason: say(mean, &scope),
                meeting: worst.meeting.id,
            },
        );
    };
    let estimated = weighted.iter().any(|w| w.measured.pace_estimated);
    add(
        Skill::Pacing,
        &|m| m.words_per_minute,
        &|wpm| {
            let outside = if wpm < PACE.0 {
                PACE.0 - wpm
            } else {
                (wpm - PACE.1).max(0.0)
            };
            outside / 40.0
        },
        &|wpm, scope| {
            let how = if estimated {
                " (estimated from the audio)"
            } else {
                ""
            };
            let judgement = if wpm > PACE.1 {
                "130–160 is easier to follow"
            } else if wpm < PACE.0 {
                "130–160 keeps listeners with you"
            } else {
                "inside the 130–160 that listeners follow best"
            };
            format!("You averaged {wpm:.0} words per minute {scope}{how}; {judgement}.")
        },
    );
    let top = weighted
        .first()
        .map(|w| {
            w.measured
                .top_fillers
                .iter()
                .take(2)
                .map(|f| format!("“{f}”"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    add(
        Skill::FillerWords,
        &|m| m.fillers_per_100_words,
        &|per_100| (per_100 - 1.0) / 5.0,
        &|per_100, scope| {
            let mostly = if top.is_empty() {
                String::new()
            } else {
                format!(", mostly {}", top.join(" and "))
            };
            format!(
                "You used {per_100:.1} filler words per 100 words {scope}{mostly}; under 2 sounds confident."
            )
        },
    );
    add(
        Skill::Pauses,
        &|m| Some(m.longest_pause_ms as f64 / 1000.0),
        &|seconds| (seconds - 3.0) / 5.0,
        &|seconds, scope| {
            format!(
                "Your longest silence {scope} lasted {seconds:.1} seconds; a deliberate 1–2 second pause \
                 keeps the room with you, a long one loses it."
            )
        },
    );
    add(
        Skill::Conciseness,
        &|m| Some(m.longest_monologue_ms as f64 / 1000.0),
        &|seconds| (seconds - 60.0) / 120.0,
        &|seconds, scope| {
            format!(
                "Your longest stretch of speech without a break {scope} ran {}; 60–90 seconds keeps \
                 a room listening.",
                minutes_and_seconds(seconds)
            )
        },
    );
    add(
        Skill::Questioning,
        &|m| m.questions_per_10_minutes.filter(|_| m.total_ms >= 5 * 60_000),
        &|per_10| (2.0 - per_10) / 2.0,
        &|per_10, scope| {
            format!(
                "You asked {per_10:.1} questions every ten minutes {scope}; about 2 keeps others involved."
            )
        },
    );
    out
}

fn minutes_and_seconds(seconds: f64) -> String {
    let total = seconds.round() as i64;
    match (total / 60, total % 60) {
        (0, s) => format!("{s} seconds"),
        (1, 0) => "1 minute".to_owned(),
        (m, 0) => format!("{m} minutes"),
        (1, s) => format!("1 minute {s} seconds"),
        (m, s) => format!("{m} minutes {s} seconds"),
    }
}

/// Skills named by onboarding goals, by keyword.
fn goal_skills(goals: &[String]) -> Vec<(Skill, String)> {
    const KEYWORDS: &[(Skill, &[&str])] = &[
        (
            Skill::Pacing,
            &[
                "pace",
                "pacing",
                "slow down",
                "too fast",
                "rush",
                "rushing",
                "speed",
            ],
        ),
        (Skill::FillerWords, &["filler", "um", "uh", "like", "hedg"]),
        (Skill::Pauses, &["pause", "silence"]),
        (
            Skill::Conciseness,
            &["concise", "brief", "shorter", "to the point", "ramble"],
        ),
        (Skill::Questioning, &["question", "ask"]),
        (
            Skill::Clarity,
            &["clear", "clarity", "structure", "jargon", "plain"],
        ),
        (Skill::Listening, &["listen", "interrupt"]),
    ];
    let mut found = Vec::new();
    for goal in goals {
        let lower = goal.to_lowercase();
        for (skill, words) in KEYWORDS {
            // Short keywords match whole words ("um", not "umbrella");
            // longer ones are stems ("concise" matches "concisely").
            let matches = words.iter().any(|w| {
                if w.contains(' ') {
                    return lower.contains(w);
                }
                lower
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|word| word == *w || (w.len() >= 5 && word.starts_with(w)))
            });
            if matches && !found.iter().any(|(s, _)| s == skill) {
                found.push((*skill, goal.clone()));
            }
        }
    }
    found
}

/// The caller's recommendations, best first, at most `limit`.
pub async fn recommend(
    scoped: &Scoped,
    user_id: Uuid,
    limit: usize,
    now: DateTime<Utc>,
) -> AppResult<Vec<pb::Recommendation>> {
    let person = Person::load(scoped, user_id, None).await?;
    let meetings = results::recent_analyses(scoped, user_id, MEETINGS).await?;
    let modules = catalog::published(scoped.txn()).await?;
    let levels = levels::all(scoped, user_id).await?;
    let recent = sessions::since(scoped, user_id, now - Duration::days(30)).await?;
    let start = levels::starting(&person.profile.onboarding.experience_level);
    let gaps = gaps(&meetings, now);
    let focus = person.focus_skills();
    let goals = goal_skills(&person.profile.onboarding.goals);
    let practised = practice_scores(&recent);

    let mut ranked = Vec::with_capacity(modules.len());
    for module in &modules {
        let skills = catalog::skills_of(&module.skills)?;
        let Some(main) = skills.first().copied() else {
            continue;
        };
        let level = levels.get(&main).copied().unwrap_or(start);
        let mut reasons = Vec::new();
        let mut prompted_by = String::new();
        let mut need = if gaps.is_empty() {
            // A starter set: what they asked for, then the easiest.
            if focus.contains(&main) {
                reasons.push(format!("You chose {} as a focus in your profile.", main.label()));
                0.6
            } else if let Some((_, goal)) = goals.iter().find(|(s, _)| *s == main) {
                reasons.push(format!("Your goal “{goal}” is what this module trains."));
                0.5
            } else {
                0.2 / f64::from(module.difficulty.max(1))
            }
        } else {
            let main_gap = gaps.get(&main);
            let other = skills[1..]
                .iter()
                .filter_map(|s| gaps.get(s))
                .map(|g| g.size)
                .fold(0.0, f64::max);
            if let Some(gap) = main_gap {
                reasons.push(gap.reason.clone());
                prompted_by = format!("meetings/{}", gap.meeting);
            }
            let mut need = main_gap.map_or(0.0, |g| g.size) + 0.3 * other;
            if let Some(score) = practised.get(&main) {
                need *= 1.0 - 0.4 * score / 100.0;
                reasons.push(format!(
                    "Your recent practice in {} scored {score:.0} out of 100.",
                    main.label()
                ));
            }
            if focus.contains(&main) {
                need += 0.15;
                reasons.push(format!("You chose {} as a focus in your profile.", main.label()));
            }
            need
        };
        if let Some(last) = last_practised(&recent, &module.id) {
            let hours = (now - last).num_hours();
            if hours < 24 {
                need *= 0.3;
                reasons.push(
                    "You practised this module in the last day; another skill may be a better use of today."
                        .into(),
                );
            } else if hours < 72 {
                need *= 0.6;
                reasons.push("You practised this module in the last three days.".into());
            }
        }
        let fit = (1.0 - 0.15 * f64::from((module.difficulty - level).abs())).max(0.25);
        if gaps.is_empty() && reasons.is_empty() {
            reasons.push(
                "A short module to find your baseline; upload a meeting for recommendations based on \
                 how you actually speak."
                    .into(),
            );
        }
        ranked.push(pb::Recommendation {
            module: Some(super::convert::listed(module, false)?),
            score: ((need * fit * 100.0) * 10.0).round() / 10.0,
            skill: pb::Skill::from(main) as i32,
            reasons,
            meeting: prompted_by,
            suggested_difficulty: level,
        });
    }
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| module_name(a).cmp(module_name(b)))
    });
    ranked.truncate(limit);
    Ok(ranked)
}

fn module_name(r: &pb::Recommendation) -> &str {
    r.module.as_ref().map_or("", |m| m.name.as_str())
}

/// When the module was last practised (a session started).
fn last_practised(recent: &[session::Model], module_id: &str) -> Option<DateTime<Utc>> {
    recent
        .iter()
        .filter(|s| s.module_id == module_id)
        .map(|s| s.started_at)
        .max()
}

/// Mean per-skill scores of completed sessions.
fn practice_scores(recent: &[session::Model]) -> HashMap<Skill, f64> {
    let mut sums: HashMap<Skill, (f64, f64)> = HashMap::new();
    for session in recent {
        let Some(scores) = session.skill_scores.as_ref().and_then(|s| s.as_array()) else {
            continue;
        };
        for entry in scores {
            let skill = entry["skill"].as_str().and_then(Skill::parse);
            if let (Some(skill), Some(score)) = (skill, entry["score"].as_f64()) {
                let sum = sums.entry(skill).or_default();
                sum.0 += score;
                sum.1 += 1.0;
            }
        }
    }
    sums.into_iter()
        .map(|(skill, (sum, n))| (skill, sum / n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_name_skills_by_keyword() {
        let found = goal_skills(&["Speak more concisely".into(), "Stop saying um so much".into()]);
        let skills: Vec<Skill> = found.iter().map(|(s, _)| *s).collect();
        assert_eq!(skills, [Skill::Conciseness, Skill::FillerWords]);
        assert!(goal_skills(&["Become a better manager".into()]).is_empty());
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(minutes_and_seconds(45.2), "45 seconds");
        assert_eq!(minutes_and_seconds(190.0), "3 minutes 10 seconds");
        assert_eq!(minutes_and_seconds(60.0), "1 minute");
    }
}
