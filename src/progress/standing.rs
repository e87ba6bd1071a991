//! A person's standing, computed from their skill history (every score
//! recorded, with its source and time). docs/progress.md is the reader's
//! version.
//!
//! - **Score** per skill: the mean of its scores weighted by recency, a
//!   score counting half as much every [`HALF_LIFE_DAYS`] days.
//! - **Trend**: the slope of a least-squares line through the skill's
//!   scores of the last [`TREND_DAYS`] days, in points per week (0 with
//!   scores at fewer than two moments).
//! - **Streaks**: days, in the person's time zone, with a practice session
//!   completed (or a practice record imported) or a meeting analysed. The
//!   current streak counts back from today, or from yesterday while today
//!   has none yet; the longest is the longest run ever.
//! - **Totals**: practice sessions (and imported practice records) and
//!   meetings that recorded scores, the time practised, and when.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::skills::Skill;

/// A score counts half as much every this many days.
pub const HALF_LIFE_DAYS: f64 = 14.0;
/// The trend is the slope over this many days.
pub const TREND_DAYS: i64 = 28;

/// One recorded score.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The skill.
    pub skill: Skill,
    /// 0–100.
    pub score: f64,
    /// When it was achieved.
    pub at: DateTime<Utc>,
    /// `meetings/{id}`, `practiceSessions/{id}` or `import`.
    pub source: String,
    /// For imported practice: the record it came from.
    pub import_key: Option<String>,
    /// Time spent, when known.
    pub duration_ms: Option<i64>,
}

/// Standing in one skill.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillStanding {
    /// The skill.
    pub skill: Skill,
    /// Recency-weighted score.
    pub score: f64,
    /// Points per week over the trend window.
    pub trend: f64,
    /// Scores recorded.
    pub samples: usize,
    /// The latest one's time.
    pub updated: DateTime<Utc>,
}

/// A person's standing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Standing {
    /// Per skill with a score, in skill order.
    pub skills: Vec<SkillStanding>,
    /// Days in a row up to today (or yesterday).
    pub current_streak: u32,
    /// The longest run of days.
    pub longest_streak: u32,
    /// Practice sessions completed (and practice records imported).
    pub sessions: usize,
    /// Meetings analysed.
    pub meetings: usize,
    /// Time practised.
    pub practice_ms: i64,
    /// The latest practice.
    pub last_practice: Option<DateTime<Utc>>,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The standing `points` give on `now`, with days counted in `zone`.
pub fn standing(points: &[Point], now: DateTime<Utc>, zone: Tz) -> Standing {
    let mut by_skill: BTreeMap<Skill, Vec<&Point>> = BTreeMap::new();
    for point in points {
        by_skill.entry(point.skill).or_default().push(point);
    }
    let skills = by_skill
        .into_iter()
        .map(|(skill, points)| skill_standing(skill, &points, now))
        .collect();

    // One entry per session, meeting or imported record, with its time.
    let mut units: HashMap<Unit<'_>, (&Point, DateTime<Utc>)> = HashMap::new();
    for point in points {
        let key = (point.source.as_str(), point.import_key.as_deref());
        let entry = units.entry(key).or_insert((point, point.at));
        entry.1 = entry.1.max(point.at);
    }
    let mut standing = Standing {
        skills,
        ..Standing::default()
    };
    let mut days = BTreeSet::new();
    for ((source, _), (point, at)) in &units {
        if source.starts_with("meetings/") {
            standing.meetings += 1;
        } else {
            standing.sessions += 1;
            standing.practice_ms += point.duration_ms.unwrap_or(0).max(0);
            standing.last_practice = standing.last_practice.max(Some(*at));
        }
        days.insert(at.with_timezone(&zone).date_naive());
    }
    let today = now.with_timezone(&zone).date_naive();
    (standing.current_streak, standing.longest_streak) = streaks(&days, today);
    standing
}

/// What recorded scores together: a source, and for imports the record.
type Unit<'a> = (&'a str, Option<&'a str>);

fn skill_standing(skill: Skill, points: &[&Point], now: DateTime<Utc>) -> SkillStanding {
    let age_days = |at: DateTime<Utc>| (now - at).num_seconds().max(0) as f64 / 86_400.0;
    let (mut sum, mut weights) = (0.0, 0.0);
    for point in points {
        let weight = 0.5_f64.powf(age_days(point.at) / HALF_LIFE_DAYS);
        sum += weight * point.score;
        weights += weight;
    }
    let recent: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| age_days(p.at) <= TREND_DAYS as f64)
        .map(|p| (-age_days(p.at), p.score))
        .collect();
    SkillStanding {
        skill,
        score: round1(if weights > 0.0 { sum / weights } else { 0.0 }),
        trend: round1(slope(&recent) * 7.0),
        samples: points.len(),
        updated: points.iter().map(|p| p.at).max().unwrap_or(now),
    }
}

/// The least-squares slope of `(x, y)` points; 0 without two distinct x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let spread: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if spread < 1e-9 {
        return 0.0;
    }
    points
        .iter()
        .map(|p| (p.0 - mean_x) * (p.1 - mean_y))
        .sum::<f64>()
        / spread
}

/// The current (ending today, or yesterday while today has nothing) and
/// longest runs of consecutive `days`.
fn streaks(days: &BTreeSet<NaiveDate>, today: NaiveDate) -> (u32, u32) {
    let (mut longest, mut run, mut previous) = (0, 0, None::<NaiveDate>);
    for day in days {
        run = match previous {
            Some(p) if p.checked_add_days(Days::new(1)) == Some(*day) => run + 1,
            _ => 1,
        };
        longest = longest.max(run);
        previous = Some(*day);
    }
    let yesterday = today.checked_sub_days(Days::new(1));
    let mut day = if days.contains(&today) {
        Some(today)
    } else {
        yesterday.filter(|d| days.contains(d))
    };
    let mut current = 0;
    while let Some(d) = day.filter(|d| days.contains(d)) {
        current += 1;
        day = d.checked_sub_days(Days::new(1));
    }
    (current, longest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn point(skill: Skill, score: f64, at: DateTime<Utc>, source: &str) -> Point {
        Point {
            skill,
            score,
            at,
            source: source.into(),
            import_key: None,
            duration_ms: Some(600_000),
        }
    }

    #[test]
    fn recent_scores_weigh_more_and_the_trend_is_points_a_week() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let points = [
            point(
                Skill::Pacing,
                40.0,
                now - chrono::Duration::days(14),
                "meetings/a",
            ),
            point(Skill::Pacing, 70.0, now, "meetings/b"),
        ];
        let s = standing(&points, now, Tz::UTC);
        // Weights 0.5 and 1: (20 + 70) / 1.5.
        assert_eq!(s.skills[0].score, 60.0);
        // 30 points in two weeks.
        assert_eq!(s.skills[0].trend, 15.0);
        assert_eq!((s.skills[0].samples, s.meetings, s.sessions), (2, 2, 0));
    }

    #[test]
    fn streaks_count_days_in_the_persons_time_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 23:30 UTC is the next morning in Tokyo.
        let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 30, 0).unwrap();
        let points = [
            point(Skill::Pacing, 50.0, at(1, 10), "practiceSessions/1"),
            point(Skill::Pacing, 50.0, at(1, 23), "practiceSessions/2"),
            point(Skill::Pacing, 50.0, at(3, 10), "practiceSessions/3"),
        ];
        // In UTC: the 1st and the 3rd; in Tokyo: the 1st, 2nd and 3rd.
        let now = at(3, 12);
        assert_eq!(
            (
                standing(&points, now, Tz::UTC).current_streak,
                standing(&points, now, Tz::UTC).longest_streak
            ),
            (1, 1)
        );
        let s = standing(&points, now, tokyo);
        assert_eq!((s.current_streak, s.longest_streak), (3, 3));
        // The next day the streak still stands until that day ends.
        assert_eq!(standing(&points, at(4, 1), tokyo).current_streak, 3);
        assert_eq!(standing(&points, at(5, 20), tokyo).current_streak, 0);
        assert_eq!((s.sessions, s.practice_ms), (3, 1_800_000));
    }
}
