//! Usage and limits: atomic reservations, refusals that teach, periods,
//! the dashboard and plan changes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use debrief::auth::entity::user::Role;
use debrief::pb::v1 as pb;
use debrief::usage::entity::metric::Kind;
use debrief::usage::ledger::{self, Reservation};
use debrief::usage::model::Category;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, TestApp, TestUser, bearer, details, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    twenty_concurrent_reservations_against_a_limit_of_five_let_exactly_five_through,
    release_expiry_and_commit_settle_the_counter,
    a_new_period_starts_a_fresh_count_without_any_job,
    get_usage_shows_the_dashboard_to_its_owner_and_admins_only,
    set_user_plan_is_for_admins_and_applies_at_once,
    usage_metrics_hold_no_column_for_personal_data,
    update_plan_is_for_admins_and_changes_every_users_limits_at_once,
    the_limits_of_many_users_follow_the_rule_of_each_ones_allowance,
);

const UPGRADE_URL: &str = "https://app.debrief.test/upgrade";

async fn app_with_upgrade_url(backend: Backend) -> TestApp {
    spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_UPGRADE_URL".into(), UPGRADE_URL.into());
    })
    .await
}

/// An admin's access token.
pub async fn admin(app: &TestApp) -> String {
    debrief::admin::users::create_user(&app.db, "boss@example.com", PASSWORD, Role::Admin, "Boss")
        .await
        .expect("admin");
    app.sign_in("boss@example.com", PASSWORD)
        .await
        .unwrap()
        .access_token
}

/// Gives `user` a plan with overrides through the API.
pub async fn set_plan(
    app: &TestApp,
    admin: &str,
    user: &TestUser,
    plan: &str,
    overrides: &[(pb::UsageCategory, i64)],
) -> pb::Usage {
    app.usage()
        .set_user_plan(bearer(
            admin,
            pb::SetUserPlanRequest {
                user: format!("users/{}", user.id),
                plan: format!("plans/{plan}"),
                limit_overrides: overrides
                    .iter()
                    .map(|(category, limit)| pb::PlanLimit {
                        category: *category as i32,
                        limit: *limit,
                        ..Default::default()
                    })
                    .collect(),
                reason: "test".into(),
            },
        ))
        .await
        .expect("set plan")
        .into_inner()
        .usage
        .unwrap()
}

async fn reserve(
    app: &TestApp,
    user: Uuid,
    category: Category,
    amount: i64,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Reservation, debrief::error::AppError> {
    let scoped = app.db.as_user(user).await?;
    let reservation = ledger::reserve(&scoped, user, category, amount, ttl, UPGRADE_URL, now).await?;
    scoped.commit().await?;
    Ok(reservation)
}

pub async fn usage_of(app: &TestApp, user: &TestUser) -> pb::Usage {
    app.usage()
        .get_usage(user.request(pb::GetUsageRequest::default()))
        .await
        .expect("usage")
        .into_inner()
        .usage
        .unwrap()
}

pub fn category(usage: &pb::Usage, category: pb::UsageCategory) -> pb::CategoryUsage {
    usage
        .categories
        .iter()
        .find(|c| c.category == category as i32)
        .cloned()
        .expect("category shown")
}

const HOUR: Duration = Duration::from_secs(3600);

async fn twenty_concurrent_reservations_against_a_limit_of_five_let_exactly_five_through(backend: Backend) {
    let app = app_with_upgrade_url(backend).await;
    let token = admin(&app).await;
    let ann = app.sign_up("ann").await;
    set_plan(
        &app,
        &token,
        &ann,
        "free",
        &[(pb::UsageCategory::PracticeSessions, 5)],
    )
    .await;

    let now = Utc::now();
    let attempts = (0..20).map(|_| reserve(&app, ann.id, Category::PracticeSessions, 1, HOUR, now));
    let results = futures::future::join_all(attempts).await;
    let granted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(granted, 5);
    for refused in results.into_iter().filter_map(Result::err) {
        let status = tonic::Status::from(refused);
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = details(&status);
        let quota = details.quota_failure().expect("QuotaFailure");
        assert!(
            quota.violations[0]
                .description
                .contains("Your Free plan includes 5 practice sessions a month")
        );
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "QUOTA_EXCEEDED");
        assert_eq!(info.metadata["category"], "practice_sessions");
        assert_eq!(info.metadata["limit"], "5");
        assert_eq!(info.metadata["used"], "5");
        assert_eq!(info.metadata["plan"], "free");
        assert!(info.metadata.contains_key("resets_at"));
        assert_eq!(details.help().expect("HelpInfo").links[0].url, UPGRADE_URL);
        assert!(
            status.message().contains("Pro includes 200 practice sessions"),
            "{}",
            status.message()
        );
    }
    let sessions = category(&usage_of(&app, &ann).await, pb::UsageCategory::PracticeSessions);
    assert_eq!((sessions.used, sessions.reserved, sessions.limit), (0, 5, 5));
    // Both warning thresholds were recorded, once each, for notifications.
    let scoped = app.db.as_user(ann.id).await.unwrap();
    let warnings: Vec<i32> = scoped
        .find::<debrief::usage::entity::warning::Entity>()
        .all(scoped.txn())
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.threshold_percent)
        .collect();
    assert_eq!(warnings, [80, 100]);
}

async fn release_expiry_and_commit_settle_the_counter(backend: Backend) {
    let app = app_with_upgrade_url(backend).await;
    let token = admin(&app).await;
    let bea = app.sign_up("bea").await;
    set_plan(
        &app,
        &token,
        &bea,
        "free",
        &[(pb::UsageCategory::AnalysisMinutes, 10)],
    )
    .await;
    let now = Utc::now();
    let minutes = Category::AnalysisMinutes;

    let held = reserve(&app, bea.id, minutes, 6, HOUR, now)
        .await
        .expect("6 of 10");
    assert!(
        reserve(&app, bea.id, minutes, 5, HOUR, now).await.is_err(),
        "6 + 5 > 10"
    );
    let scoped = app.db.as_user(bea.id).await.unwrap();
    held.release(&scoped, now).await.unwrap();
    scoped.commit().await.unwrap();
    let probed = reserve(&app, bea.id, minutes, 5, HOUR, now)
        .await
        .expect("released units are back");

    // The real figure differs from the probe: the counter settles on it.
    let meeting = Uuid::now_v7();
    let scoped = app.db.as_user(bea.id).await.unwrap();
    probed.commit(&scoped, 3, Some(meeting), now).await.unwrap();
    scoped.commit().await.unwrap();
    let analysis = category(&usage_of(&app, &bea).await, pb::UsageCategory::AnalysisMinutes);
    assert_eq!((analysis.used, analysis.reserved), (3, 0));
    assert!((analysis.percent - 30.0).abs() < 1e-9);

    // A reservation whose holder died expires and gives its units back.
    // Touching the counter gives it back...
    let _abandoned = reserve(&app, bea.id, minutes, 7, Duration::ZERO, now)
        .await
        .expect("7 of the 7 left");
    let later = now + chrono::Duration::seconds(1);
    let _abandoned = reserve(&app, bea.id, minutes, 7, Duration::ZERO, later)
        .await
        .expect("the expired reservation was given back");
    // ...and so does the periodic sweep, without anyone touching it.
    let even_later = later + chrono::Duration::seconds(1);
    assert_eq!(ledger::sweep_expired(&app.db, even_later).await.unwrap(), 1);
    let analysis = category(&usage_of(&app, &bea).await, pb::UsageCategory::AnalysisMinutes);
    assert_eq!((analysis.used, analysis.reserved), (3, 0));

    // Metrics: one record for the committed amount, with ids only.
    let scoped = app.db.as_user(bea.id).await.unwrap();
    use sea_orm::{ColumnTrait, QueryFilter};
    let metrics = scoped
        .find::<debrief::usage::entity::metric::Entity>()
        .filter(debrief::usage::entity::metric::Column::UserId.eq(bea.id))
        .all(scoped.txn())
        .await
        .unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(
        (metrics[0].amount, metrics[0].meeting_id, metrics[0].kind),
        (3, Some(meeting), Kind::Actual)
    );
    drop(scoped);

    // AI cost: an estimate goes to the metrics only; the actual spend counts.
    let scoped = app.db.as_user(bea.id).await.unwrap();
    ledger::record(
        &scoped,
        bea.id,
        Category::AiCostMicros,
        12_000,
        Some(meeting),
        Kind::Estimate,
        now,
    )
    .await
    .unwrap();
    ledger::record(
        &scoped,
        bea.id,
        Category::AiCostMicros,
        9_500,
        Some(meeting),
        Kind::Actual,
        now,
    )
    .await
    .unwrap();
    scoped.commit().await.unwrap();
    let cost = category(&usage_of(&app, &bea).await, pb::UsageCategory::AiCostMicros);
    assert_eq!(cost.used, 9_500);
}

async fn a_new_period_starts_a_fresh_count_without_any_job(backend: Backend) {
    let app = app_with_upgrade_url(backend).await;
    let cal = app.sign_up("cal").await;
    // The free plan allows 10 AI feedback requests a month.
    let now = Utc::now();
    for _ in 0..10 {
        let r = reserve(&app, cal.id, Category::AiFeedbackRequests, 1, HOUR, now)
            .await
            .unwrap();
        let scoped = app.db.as_user(cal.id).await.unwrap();
        r.commit(&scoped, 1, None, now).await.unwrap();
        scoped.commit().await.unwrap();
    }
    let refused = reserve(&app, cal.id, Category::AiFeedbackRequests, 1, HOUR, now)
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("you have used 10"), "{message}");
    let resets_at = match &refused {
        debrief::error::AppError::QuotaExceeded(q) => q.resets_at.expect("a monthly limit resets"),
        other => panic!("{other:?}"),
    };
    // The clock moves past the boundary: the next period's counter is fresh.
    let _held = reserve(&app, cal.id, Category::AiFeedbackRequests, 1, HOUR, resets_at)
        .await
        .expect("a new period");
    assert!(
        reserve(
            &app,
            cal.id,
            Category::AiFeedbackRequests,
            1,
            HOUR,
            resets_at - chrono::Duration::seconds(1)
        )
        .await
        .is_err(),
        "the old period is still full"
    );
}

async fn get_usage_shows_the_dashboard_to_its_owner_and_admins_only(backend: Backend) {
    let app = app_with_upgrade_url(backend).await;
    let token = admin(&app).await;
    let dot = app.sign_up("dot").await;
    // An account on its plan for seven months, with usage in three of them.
    let started = Utc::now() - chrono::Duration::days(7 * 31);
    // (Row Level Security hides users from unscoped connections: use the service scope.)
    let scoped = app.db.as_service().await.unwrap();
    scoped
        .txn()
        .execute_raw(Statement::from_sql_and_values(
            app.db.backend(),
            match app.db.backend() {
                DbBackend::Postgres => "UPDATE users SET plan_started_at = $1 WHERE id = $2",
                _ => "UPDATE users SET plan_started_at = ? WHERE id = ?",
            },
            [started.into(), dot.id.into()],
        ))
        .await
        .unwrap();
    scoped.commit().await.unwrap();
    let anchor = started;
    for (months_ago, minutes) in [(0u32, 30i64), (2, 45), (4, 15)] {
        let index = debrief::usage::period::index_at(anchor, Utc::now()) - months_ago;
        let at = debrief::usage::period::nth(anchor, index).start + chrono::Duration::hours(1);
        let r = reserve(&app, dot.id, Category::AnalysisMinutes, minutes, HOUR, at)
            .await
            .unwrap();
        let scoped = app.db.as_user(dot.id).await.unwrap();
        r.commit(&scoped, minutes, None, at).await.unwrap();
        scoped.commit().await.unwrap();
    }

    let usage = usage_of(&app, &dot).await;
    assert_eq!(usage.user, format!("users/{}", dot.id));
    assert_eq!(usage.plan.as_ref().unwrap().name, "plans/free");
    assert_eq!(usage.upgrade_url, UPGRADE_URL);
    assert_eq!(usage.categories.len(), 7);
    let analysis = category(&usage, pb::UsageCategory::AnalysisMinutes);
    assert_eq!(
        (analysis.used, analysis.limit, analysis.unit.as_str()),
        (30, 120, "minutes")
    );
    assert!((analysis.percent - 25.0).abs() < 1e-9);
    assert_eq!(analysis.reset_time, usage.period_end_time);
    let storage = category(&usage, pb::UsageCategory::StorageBytes);
    assert!(storage.reset_time.is_none(), "storage counts over all time");
    assert_eq!(usage.history.len(), 6);
    let totals: Vec<i64> = usage
        .history
        .iter()
        .map(|p| {
            p.totals
                .iter()
                .find(|t| t.category == pb::UsageCategory::AnalysisMinutes as i32)
                .map_or(0, |t| t.amount)
        })
        .collect();
    assert_eq!(totals, [30, 0, 45, 0, 15, 0], "newest first");
    assert_eq!(usage.history[0].start_time, usage.period_start_time);

    // Another user may not read it; an admin may.
    let eva = app.sign_up("eva").await;
    let status = app
        .usage()
        .get_usage(eva.request(pb::GetUsageRequest {
            user: format!("users/{}", dot.id),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let seen = app
        .usage()
        .get_usage(bearer(
            &token,
            pb::GetUsageRequest {
                user: format!("users/{}", dot.id),
            },
        ))
        .await
        .expect("admins read anyone's usage")
        .into_inner()
        .usage
        .unwrap();
    assert_eq!(category(&seen, pb::UsageCategory::AnalysisMinutes).used, 30);
    let status = app
        .usage()
        .get_usage(bearer(
            &token,
            pb::GetUsageRequest {
                user: format!("users/{}", Uuid::now_v7()),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn set_user_plan_is_for_admins_and_applies_at_once(backend: Backend) {
    let app = app_with_upgrade_url(backend).await;
    let token = admin(&app).await;
    let fay = app.sign_up("fay").await;
    let request = |user: &TestUser| pb::SetUserPlanRequest {
        user: format!("users/{}", user.id),
        plan: "plans/pro".into(),
        ..Default::default()
    };
    let status = app
        .usage()
        .set_user_plan(fay.request(request(&fay)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let now = Utc::now();
    for _ in 0..20 {
        let _held = reserve(&app, fay.id, Category::PracticeSessions, 1, HOUR, now)
            .await
            .unwrap();
    }
    assert!(
        reserve(&app, fay.id, Category::PracticeSessions, 1, HOUR, now)
            .await
            .is_err(),
        "free allows 20"
    );

    let usage = set_plan(
        &app,
        &token,
        &fay,
        "pro",
        &[(pb::UsageCategory::StorageBytes, 5 << 30)],
    )
    .await;
    assert_eq!(usage.plan.as_ref().unwrap().name, "plans/pro");
    assert_eq!(category(&usage, pb::UsageCategory::PracticeSessions).limit, 200);
    assert_eq!(
        category(&usage, pb::UsageCategory::StorageBytes).limit,
        5 << 30,
        "the override wins"
    );
    let _held = reserve(&app, fay.id, Category::PracticeSessions, 1, HOUR, Utc::now())
        .await
        .expect("the new plan applies at once");

    let status = app
        .usage()
        .set_user_plan(bearer(
            &token,
            pb::SetUserPlanRequest {
                user: format!("users/{}", fay.id),
                plan: "plans/platinum".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let entries = app
        .admin()
        .list_audit_log(bearer(
            &token,
            pb::ListAuditLogRequest {
                action: "admin.set_plan".into(),
                subject: format!("users/{}", fay.id),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1, "the refused change wrote nothing");
    assert_eq!(entries[0].details["from"], "free");
    assert_eq!(entries[0].details["to"], "pro");
}

async fn usage_metrics_hold_no_column_for_personal_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let sql = match app.db.backend() {
        DbBackend::Postgres => {
            "SELECT column_name AS name, data_type AS type FROM information_schema.columns \
             WHERE table_name = 'usage_metrics' ORDER BY column_name"
        }
        _ => "SELECT name, type FROM pragma_table_info('usage_metrics') ORDER BY name",
    };
    let rows = app
        .db
        .unscoped()
        .query_all_raw(Statement::from_string(app.db.backend(), sql))
        .await
        .unwrap();
    let columns: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "name").unwrap(),
                r.try_get::<String>("", "type").unwrap().to_lowercase(),
            )
        })
        .collect();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "amount",
            "category",
            "created_at",
            "id",
            "kind",
            "meeting_id",
            "updated_at",
            "user_id"
        ]
    );
    // The only text columns are the category and the kind, both from fixed lists.
    // (SQLite names uuid and time columns `uuid_text`, `timestamp_with_timezone_text`.)
    let text: Vec<&str> = columns
        .iter()
        .filter(|(_, t)| t.contains("char") || t == "text")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(text, ["category", "kind"], "{columns:?}");
}

async fn update_plan_is_for_admins_and_changes_every_users_limits_at_once(backend: Backend) {
    let app = app_with_upgrade_url(backend).await;
    let token = admin(&app).await;
    let gus = app.sign_up("gus").await;
    let edit = pb::UpdatePlanRequest {
        plan: Some(pb::Plan {
            name: "plans/free".into(),
            description: "Try debrief on a handful of meetings.".into(),
            limits: vec![
                pb::PlanLimit {
                    category: pb::UsageCategory::AnalysisMinutes as i32,
                    limit: 90,
                    ..Default::default()
                },
                pb::PlanLimit {
                    category: pb::UsageCategory::PracticeSessions as i32,
                    unlimited: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["description".into(), "limits".into()],
        }),
    };
    let status = app
        .usage()
        .update_plan(gus.request(edit.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let plan = app
        .usage()
        .update_plan(bearer(&token, edit))
        .await
        .expect("admins edit plans")
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(plan.display_name, "Free", "not in the mask");
    assert_eq!(plan.description, "Try debrief on a handful of meetings.");
    let usage = usage_of(&app, &gus).await;
    assert_eq!(category(&usage, pb::UsageCategory::AnalysisMinutes).limit, 90);
    assert!(category(&usage, pb::UsageCategory::PracticeSessions).unlimited);
    assert_eq!(
        category(&usage, pb::UsageCategory::AiFeedbackRequests).limit,
        10,
        "others stay"
    );

    let status = app
        .usage()
        .update_plan(bearer(
            &token,
            pb::UpdatePlanRequest {
                plan: Some(pb::Plan {
                    name: "plans/free".into(),
                    monthly_price_cents: -5,
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        crate::helpers::violation_fields(&status),
        ["plan.monthly_price_cents"]
    );
    let entries = app
        .admin()
        .list_audit_log(bearer(
            &token,
            pb::ListAuditLogRequest {
                action: "admin.update_plan".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target, "plans/free");
}

/// The queue reads its candidates' owners' limits in one query; they follow
/// the rule of one user's allowance: the user's override if any (an
/// unlimited one included), else the plan's limit.
async fn the_limits_of_many_users_follow_the_rule_of_each_ones_allowance(backend: Backend) {
    use debrief::usage::limits::{Allowance, limits_of};
    use sea_orm::Iterable as _;

    let app = spawn_app(backend).await;
    let boss = admin(&app).await;
    let (ann, ben, cal) = (
        app.sign_up("ann").await,
        app.sign_up("ben").await,
        app.sign_up("cal").await,
    );
    set_plan(
        &app,
        &boss,
        &ben,
        "team",
        &[(pb::UsageCategory::ConcurrentJobs, 7)],
    )
    .await;
    app.usage()
        .set_user_plan(bearer(
            &boss,
            pb::SetUserPlanRequest {
                user: format!("users/{}", cal.id),
                plan: "plans/free".into(),
                limit_overrides: vec![pb::PlanLimit {
                    category: pb::UsageCategory::ConcurrentJobs as i32,
                    unlimited: true,
                    ..Default::default()
                }],
                reason: "a pilot customer".into(),
            },
        ))
        .await
        .unwrap();
    let users = [ann.id, ben.id, cal.id, Uuid::now_v7()];
    let scoped = app.db.as_service().await.unwrap();
    for category in Category::iter() {
        let limits = limits_of(&scoped, &users, category).await.unwrap();
        assert_eq!(limits.len(), 3, "{category:?}: an unknown user has no entry");
        for user in &users[..3] {
            let allowance = Allowance::load(&scoped, *user).await.unwrap();
            assert_eq!(limits[user], allowance.limit(category), "{category:?}");
        }
    }
    let jobs = limits_of(&scoped, &users, Category::ConcurrentJobs)
        .await
        .unwrap();
    assert_eq!(jobs[&ben.id], Some(7), "the override");
    assert_eq!(jobs[&cal.id], None, "overridden to unlimited");
    let plan = Allowance::load(&scoped, ann.id).await.unwrap();
    assert!(plan.overrides.is_empty());
    assert_eq!(jobs[&ann.id], plan.limit(Category::ConcurrentJobs), "the plan's");
}
