//! `GetAnalytics`: aggregate figures of the product over a time range, cut
//! into periods, from ids, times and amounts only — no email, name or free
//! text is ever read. A figure counting fewer people than the minimum
//! group (but some) is withheld and named. Five aggregate queries, each
//! over indexed time columns; docs/analytics.md defines every figure.

use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use crate::db::Db;
use crate::error::{AppError, AppResult, Violations};
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::timestamps;

/// The most periods one request may cut its range into.
pub const MAX_PERIODS: usize = 400;

/// How the range is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Calendar days (UTC).
    Day,
    /// Weeks from Monday (UTC).
    Week,
    /// Calendar months (UTC).
    Month,
}

impl Granularity {
    /// The start of the period after the one holding `at`.
    fn next(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = at.date_naive();
        let next = match self {
            Self::Day => day + Duration::days(1),
            Self::Week => day + Duration::days(7 - i64::from(day.weekday().num_days_from_monday())),
            Self::Month => day.with_day(1).unwrap_or(day) + Months::new(1),
        };
        Utc.from_utc_datetime(&next.and_time(NaiveTime::MIN))
    }
}

/// `[start, end)` cut at every boundary of `granularity`; the first and
/// last periods are clipped to the range.
pub fn periods(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    granularity: Granularity,
) -> AppResult<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let mut periods = Vec::new();
    let mut at = start;
    while at < end {
        if periods.len() == MAX_PERIODS {
            return Err(AppError::invalid(
                "granularity",
                format!(
                    "cuts the range into more than {MAX_PERIODS} periods: choose a coarser one or a shorter range"
                ),
            ));
        }
        let next = granularity.next(at).min(end);
        periods.push((at, next));
        at = next;
    }
    Ok(periods)
}

/// A raw query being written, with its bound values.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    /// A placeholder for `value`.
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    /// `WITH name(i, s, e) AS (VALUES ...)` over `windows`.
    fn windows(&mut self, name: &str, windows: &[(DateTime<Utc>, DateTime<Utc>)]) -> String {
        let rows: Vec<String> = windows
            .iter()
            .enumerate()
            .map(|(i, (s, e))| format!("({i}, {}, {})", self.bind(*s), self.bind(*e)))
            .collect();
        format!("{name}(i, s, e) AS (VALUES {})", rows.join(", "))
    }

    /// `column >= start AND column < end`.
    fn within(&mut self, column: &str, (start, end): (DateTime<Utc>, DateTime<Utc>)) -> String {
        format!(
            "{column} >= {} AND {column} < {}",
            self.bind(start),
            self.bind(end)
        )
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

fn get_i64(row: &QueryResult, column: &str) -> AppResult<i64> {
    row.try_get::<i64>("", column).map_err(AppError::internal)
}

/// One fact counted per period: how many, by how many people, and the sum
/// of its amounts.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    count: i64,
    people: i64,
    amount: i64,
}

/// Figures by window index and kind of fact, from the facts query.
type Tallies = std::collections::HashMap<(usize, String), Tally>;

/// Counts each kind of fact in each window: sign-ups, meetings created,
/// uploaded and analysed, sessions started and completed, and usage by
/// category (`usage:<category>`).
async fn facts(
    conn: &impl ConnectionTrait,
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    range: (DateTime<Utc>, DateTime<Utc>),
) -> AppResult<Tallies> {
    let mut sql = Sql::new(conn.get_database_backend());
    let periods = sql.windows("periods", windows);
    let users = sql.within("created_at", range);
    let created = sql.within("created_at", range);
    let uploaded = sql.within("u.completed_at", range);
    let analysed = sql.within("a.created_at", range);
    let started = sql.within("started_at", range);
    let completed = sql.within("completed_at", range);
    let usage = sql.within("created_at", range);
    sql.text = format!(
        "WITH {periods}, facts(kind, user_id, at, amount) AS ( \
           SELECT 'sign_up', id, created_at, 0 FROM users WHERE deleted_at IS NULL AND {users} \
           UNION ALL SELECT 'created', user_id, created_at, 0 FROM meetings WHERE kind = 'meeting' AND {created} \
           UNION ALL SELECT 'uploaded', u.user_id, u.completed_at, 0 FROM uploads u \
             JOIN meetings m ON m.id = u.meeting_id WHERE m.kind = 'meeting' AND {uploaded} \
           UNION ALL SELECT 'analyzed', a.user_id, a.created_at, 0 FROM meeting_analyses a \
             JOIN meetings m ON m.id = a.meeting_id WHERE m.kind = 'meeting' AND {analysed} \
           UNION ALL SELECT 'started', user_id, started_at, 0 FROM practice_sessions WHERE {started} \
           UNION ALL SELECT 'completed', user_id, completed_at, 0 FROM practice_sessions \
             WHERE state = 'completed' AND {completed} \
           UNION ALL SELECT 'usage:' || category, user_id, created_at, amount FROM usage_metrics \
             WHERE kind = 'actual' AND {usage}) \
         SELECT CAST(p.i AS BIGINT) AS i, f.kind AS kind, COUNT(*) AS n, COUNT(DISTINCT f.user_id) AS people, \
           CAST(COALESCE(SUM(f.amount), 0) AS BIGINT) AS amount \
         FROM periods p JOIN facts f ON f.at >= p.s AND f.at < p.e GROUP BY p.i, f.kind"
    );
    let mut tallies = Tallies::new();
    for row in conn.query_all_raw(sql.statement()).await? {
        let i = usize::try_from(get_i64(&row, "i")?).map_err(AppError::internal)?;
        let kind: String = row.try_get("", "kind").map_err(AppError::internal)?;
        let tally = Tally {
            count: get_i64(&row, "n")?,
            people: get_i64(&row, "people")?,
            amount: get_i64(&row, "amount")?,
        };
        tallies.insert((i, kind), tally);
    }
    Ok(tallies)
}

/// People active in each window: who signed in, created a meeting or
/// started a practice session in it.
async fn active(
    conn: &impl ConnectionTrait,
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
) -> AppResult<Vec<i64>> {
    let span = (
        windows.iter().map(|w| w.0).min().unwrap_or_default(),
        windows.iter().map(|w| w.1).max().unwrap_or_default(),
    );
    let mut sql = Sql::new(conn.get_database_backend());
    let list = sql.windows("windows", windows);
    let signed_in = sql.within("created_at", span);
    let created = sql.within("created_at", span);
    let started = sql.within("started_at", span);
    sql.text = format!(
        "WITH {list}, activity(user_id, at) AS ( \
           SELECT subject_user_id, created_at FROM audit_log WHERE action = 'auth.sign_in' AND {signed_in} \
           UNION ALL SELECT user_id, created_at FROM meetings WHERE kind = 'meeting' AND {created} \
           UNION ALL SELECT user_id, started_at FROM practice_sessions WHERE {started}) \
         SELECT CAST(w.i AS BIGINT) AS i, COUNT(DISTINCT a.user_id) AS people \
         FROM windows w JOIN activity a ON a.at >= w.s AND a.at < w.e GROUP BY w.i"
    );
    let mut people = vec![0; windows.len()];
    for row in conn.query_all_raw(sql.statement()).await? {
        let i = usize::try_from(get_i64(&row, "i")?).map_err(AppError::internal)?;
        if let Some(slot) = people.get_mut(i) {
            *slot = get_i64(&row, "people")?;
        }
    }
    Ok(people)
}

/// Open accounts per plan.
async fn plans(conn: &impl ConnectionTrait) -> AppResult<Vec<(String, i64)>> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.text = "SELECT plan_id, COUNT(*) AS n FROM users WHERE deleted_at IS NULL \
                GROUP BY plan_id ORDER BY plan_id"
        .into();
    conn.query_all_raw(sql.statement())
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("", "plan_id").map_err(AppError::internal)?,
                get_i64(row, "n")?,
            ))
        })
        .collect()
}

/// Per skill, the mean of each person's last score in the range minus
/// their first, among people with two or more, and how many they are.
async fn skill_changes(
    conn: &impl ConnectionTrait,
    range: (DateTime<Utc>, DateTime<Utc>),
) -> AppResult<Vec<(String, f64, i64)>> {
    let mut sql = Sql::new(conn.get_database_backend());
    let within = sql.within("recorded_at", range);
    sql.text = format!(
        "SELECT skill, AVG(last_score - first_score) AS change, COUNT(*) AS people FROM ( \
           SELECT DISTINCT user_id, skill, \
             FIRST_VALUE(score) OVER w AS first_score, LAST_VALUE(score) OVER w AS last_score, \
             COUNT(*) OVER w AS n \
           FROM skill_scores WHERE {within} \
           WINDOW w AS (PARTITION BY user_id, skill ORDER BY recorded_at, id \
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) changes \
         WHERE n >= 2 GROUP BY skill ORDER BY skill"
    );
    conn.query_all_raw(sql.statement())
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("", "skill").map_err(AppError::internal)?,
                row.try_get::<f64>("", "change").map_err(AppError::internal)?,
                get_i64(row, "people")?,
            ))
        })
        .collect()
}

/// Of the accounts created in the range: how many uploaded a meeting's
/// recording, of those how many had one analysed, and of those how many
/// started a practice session (at any time up to now).
async fn funnel(conn: &impl ConnectionTrait, range: (DateTime<Utc>, DateTime<Utc>)) -> AppResult<[i64; 4]> {
    let mut sql = Sql::new(conn.get_database_backend());
    let within = sql.within("u.created_at", range);
    sql.text = format!(
        "SELECT COUNT(*) AS signed_up, \
           CAST(COALESCE(SUM(CASE WHEN up THEN 1 ELSE 0 END), 0) AS BIGINT) AS uploaded, \
           CAST(COALESCE(SUM(CASE WHEN up AND an THEN 1 ELSE 0 END), 0) AS BIGINT) AS analyzed, \
           CAST(COALESCE(SUM(CASE WHEN up AND an AND pr THEN 1 ELSE 0 END), 0) AS BIGINT) AS practiced \
         FROM (SELECT \
           EXISTS (SELECT 1 FROM uploads x JOIN meetings m ON m.id = x.meeting_id \
             WHERE x.user_id = u.id AND x.state = 'completed' AND m.kind = 'meeting') AS up, \
           EXISTS (SELECT 1 FROM meeting_analyses a JOIN meetings m ON m.id = a.meeting_id \
             WHERE a.user_id = u.id AND m.kind = 'meeting') AS an, \
           EXISTS (SELECT 1 FROM practice_sessions s WHERE s.user_id = u.id) AS pr \
         FROM users u WHERE u.deleted_at IS NULL AND {within}) steps"
    );
    let row = conn
        .query_one_raw(sql.statement())
        .await?
        .ok_or_else(|| AppError::internal("the funnel query returned no row"))?;
    Ok([
        get_i64(&row, "signed_up")?,
        get_i64(&row, "uploaded")?,
        get_i64(&row, "analyzed")?,
        get_i64(&row, "practiced")?,
    ])
}

/// Withholds figures that count too few people, and names them.
struct Suppressor {
    min_group: i64,
    withheld: Vec<String>,
}

impl Suppressor {
    /// `value`, or 0 (named `path`) when `people` is between none and the
    /// minimum group.
    fn figure(&mut self, path: impl FnOnce() -> String, value: i64, people: i64) -> i64 {
        if self.shows(people) {
            value
        } else {
            self.withheld.push(path());
            0
        }
    }

    fn shows(&self, people: i64) -> bool {
        people == 0 || people >= self.min_group
    }
}

/// The request, checked: range and granularity.
pub struct Asked {
    /// Start of the range.
    pub start: DateTime<Utc>,
    /// End of the range.
    pub end: DateTime<Utc>,
    /// How to cut it.
    pub granularity: Granularity,
}

impl Asked {
    /// Reads a request at `now`: the range defaults to the 30 days before
    /// its end, the end to now, the granularity to days.
    pub fn parse(request: &pb::GetAnalyticsRequest, now: DateTime<Utc>) -> AppResult<Self> {
        let mut bad = Violations::default();
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .map(|t| bad.check(timestamps::from_proto(field, t)))
                .transpose()
                .map(Option::flatten)
        };
        let end = time("end_time", &request.end_time)?.unwrap_or(now);
        let start = time("start_time", &request.start_time)?.unwrap_or(end - Duration::days(30));
        if start >= end {
            bad.add("end_time", "must be after start_time");
        }
        let granularity = match pb::AnalyticsGranularity::try_from(request.granularity) {
            Ok(pb::AnalyticsGranularity::Unspecified | pb::AnalyticsGranularity::Day) => {
                Some(Granularity::Day)
            }
            Ok(pb::AnalyticsGranularity::Week) => Some(Granularity::Week),
            Ok(pb::AnalyticsGranularity::Month) => Some(Granularity::Month),
            Err(_) => {
                bad.add("granularity", "must be DAY, WEEK or MONTH");
                None
            }
        };
        bad.finish(|| {
            Some(Self {
                start,
                end,
                granularity: granularity?,
            })
        })
    }
}

/// The analytics asked for, as the admin `admin_id` may read them.
pub async fn analytics(db: &Db, admin_id: Uuid, asked: &Asked, min_group: u32) -> AppResult<pb::Analytics> {
    let Asked {
        start,
        end,
        granularity,
    } = *asked;
    let range = (start, end);
    let periods = periods(start, end, granularity)?;
    // The periods, then the whole range, then the last day, 7 and 30 days.
    let mut windows = periods.clone();
    windows.push(range);
    let whole = periods.len();
    for days in [1, 7, 30] {
        windows.push((end - Duration::days(days), end));
    }
    let scoped = db.read_as_admin(admin_id).await?;
    let conn = scoped.txn();
    let tallies = facts(conn, &windows[..=whole], range).await?;
    let active = active(conn, &windows).await?;
    let plans = plans(conn).await?;
    let changes = skill_changes(conn, range).await?;
    let funnel = funnel(conn, range).await?;
    drop(scoped);

    let mut hide = Suppressor {
        min_group: i64::from(min_group),
        withheld: Vec::new(),
    };
    let tally = |i: usize, kind: &str| tallies.get(&(i, kind.to_owned())).copied().unwrap_or_default();
    // A count of events, or the sum of a usage category, in window `i`.
    let events = |hide: &mut Suppressor, path: &dyn Fn() -> String, i: usize, kind: &str, sum: bool| {
        let t = tally(i, kind);
        hide.figure(path, if sum { t.amount } else { t.count }, t.people)
    };
    let series = periods
        .iter()
        .enumerate()
        .map(|(i, (s, e))| {
            let at = |field: &str| {
                let field = field.to_owned();
                move || format!("series[{i}].{field}")
            };
            let sign_ups = tally(i, "sign_up").count;
            pb::AnalyticsPeriod {
                start_time: Some(timestamps::to_proto(*s)),
                end_time: Some(timestamps::to_proto(*e)),
                sign_ups: hide.figure(at("sign_ups"), sign_ups, sign_ups),
                active_users: hide.figure(at("active_users"), active[i], active[i]),
                meetings_uploaded: events(&mut hide, &at("meetings_uploaded"), i, "uploaded", false),
                meetings_analyzed: events(&mut hide, &at("meetings_analyzed"), i, "analyzed", false),
                minutes_processed: events(
                    &mut hide,
                    &at("minutes_processed"),
                    i,
                    "usage:analysis_minutes",
                    true,
                ),
                practice_sessions_started: events(
                    &mut hide,
                    &at("practice_sessions_started"),
                    i,
                    "started",
                    false,
                ),
                practice_sessions_completed: events(
                    &mut hide,
                    &at("practice_sessions_completed"),
                    i,
                    "completed",
                    false,
                ),
                ai_requests: events(
                    &mut hide,
                    &at("ai_requests"),
                    i,
                    "usage:ai_feedback_requests",
                    true,
                ),
                ai_cost_micros: events(&mut hide, &at("ai_cost_micros"), i, "usage:ai_cost_micros", true),
            }
        })
        .collect();
    let path = |field: &'static str| move || field.to_owned();
    let people = |hide: &mut Suppressor, field: &'static str, n: i64| hide.figure(path(field), n, n);
    let total_users = plans.iter().map(|(_, n)| n).sum();
    let new_users = tally(whole, "sign_up").count;
    let minutes = events(
        &mut hide,
        &path("audio_processed"),
        whole,
        "usage:analysis_minutes",
        true,
    );
    let usage_totals = tallies
        .iter()
        .filter(|((i, _), _)| *i == whole)
        .filter_map(|((_, kind), t)| {
            let category = crate::usage::model::Category::parse(kind.strip_prefix("usage:")?)?;
            let amount = hide.figure(
                || format!("usage_totals[{}]", category.name()),
                t.amount,
                t.people,
            );
            Some(pb::AnalyticsTotal {
                category: pb::UsageCategory::from(category).into(),
                amount,
            })
        })
        .collect();
    let mut users_by_plan = Vec::new();
    for (plan, users) in plans {
        if hide.shows(users) {
            users_by_plan.push(pb::PlanCount {
                plan: format!("plans/{plan}"),
                users,
            });
        } else {
            hide.withheld.push(format!("users_by_plan[plans/{plan}]"));
        }
    }
    let mut skill_changes = Vec::new();
    for (skill, change, users) in changes {
        let Some(skill) = Skill::parse(&skill) else {
            continue;
        };
        if hide.shows(users) {
            skill_changes.push(pb::SkillChange {
                skill: pb::Skill::from(skill).into(),
                mean_change: (change * 10.0).round() / 10.0,
                users,
            });
        } else {
            hide.withheld
                .push(format!("skill_changes[{}]", pb::Skill::from(skill).as_str_name()));
        }
    }
    let [signed_up, uploaded, analyzed, practiced] = funnel;
    let funnel = pb::AnalyticsFunnel {
        signed_up: people(&mut hide, "funnel.signed_up", signed_up),
        uploaded: people(&mut hide, "funnel.uploaded", uploaded),
        analyzed: people(&mut hide, "funnel.analyzed", analyzed),
        practiced: people(&mut hide, "funnel.practiced", practiced),
    };
    Ok(pb::Analytics {
        start_time: Some(timestamps::to_proto(start)),
        end_time: Some(timestamps::to_proto(end)),
        total_users: people(&mut hide, "total_users", total_users),
        new_users: people(&mut hide, "new_users", new_users),
        active_users: people(&mut hide, "active_users", active[whole]),
        meetings_created: events(&mut hide, &path("meetings_created"), whole, "created", false),
        meetings_processed: events(&mut hide, &path("meetings_processed"), whole, "analyzed", false),
        audio_processed: Some(timestamps::ms_to_duration(minutes.saturating_mul(60_000))),
        practice_sessions_completed: events(
            &mut hide,
            &path("practice_sessions_completed"),
            whole,
            "completed",
            false,
        ),
        usage_totals,
        users_by_plan,
        granularity: match granularity {
            Granularity::Day => pb::AnalyticsGranularity::Day,
            Granularity::Week => pb::AnalyticsGranularity::Week,
            Granularity::Month => pb::AnalyticsGranularity::Month,
        }
        .into(),
        series,
        daily_active_users: people(&mut hide, "daily_active_users", active[whole + 1]),
        weekly_active_users: people(&mut hide, "weekly_active_users", active[whole + 2]),
        monthly_active_users: people(&mut hide, "monthly_active_users", active[whole + 3]),
        meetings_uploaded: events(&mut hide, &path("meetings_uploaded"), whole, "uploaded", false),
        practice_sessions_started: events(
            &mut hide,
            &path("practice_sessions_started"),
            whole,
            "started",
            false,
        ),
        ai_requests: events(
            &mut hide,
            &path("ai_requests"),
            whole,
            "usage:ai_feedback_requests",
            true,
        ),
        ai_cost_micros: events(
            &mut hide,
            &path("ai_cost_micros"),
            whole,
            "usage:ai_cost_micros",
            true,
        ),
        skill_changes,
        funnel: Some(funnel),
        min_group_size: i32::try_from(min_group).unwrap_or(i32::MAX),
        suppressed: hide.withheld,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ranges_are_cut_at_calendar_boundaries_and_clipped() {
        let days = periods(
            at("2026-03-01T12:00:00Z"),
            at("2026-03-03T06:00:00Z"),
            Granularity::Day,
        )
        .unwrap();
        assert_eq!(
            days,
            [
                (at("2026-03-01T12:00:00Z"), at("2026-03-02T00:00:00Z")),
                (at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z")),
                (at("2026-03-03T00:00:00Z"), at("2026-03-03T06:00:00Z")),
            ]
        );
        // 2026-03-04 is a Wednesday: its week ends on Monday the 9th.
        let weeks = periods(
            at("2026-03-04T00:00:00Z"),
            at("2026-03-20T00:00:00Z"),
            Granularity::Week,
        )
        .unwrap();
        assert_eq!(weeks[0], (at("2026-03-04T00:00:00Z"), at("2026-03-09T00:00:00Z")));
        assert_eq!(weeks[1], (at("2026-03-09T00:00:00Z"), at("2026-03-16T00:00:00Z")));
        assert_eq!(weeks.len(), 3);
        let months = periods(
            at("2026-01-31T00:00:00Z"),
            at("2026-04-15T00:00:00Z"),
            Granularity::Month,
        )
        .unwrap();
        assert_eq!(
            months[1],
            (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z"))
        );
        assert_eq!(months.len(), 4);
        assert!(
            periods(
                at("2020-01-01T00:00:00Z"),
                at("2026-01-01T00:00:00Z"),
                Granularity::Day
            )
            .is_err()
        );
    }

    #[test]
    fn small_groups_are_withheld_and_named() {
        let mut hide = Suppressor {
            min_group: 5,
            withheld: Vec::new(),
        };
        assert_eq!(hide.figure(|| "a".into(), 7, 0), 7);
        assert_eq!(hide.figure(|| "b".into(), 12, 3), 0);
        assert_eq!(hide.figure(|| "c".into(), 12, 5), 12);
        assert_eq!(hide.withheld, ["b"]);
    }
}
