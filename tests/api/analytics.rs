//! Admin analytics through the real server: figures over 50 generated
//! people that match what they did, small groups withheld, no personal
//! data, and only for admins.

use chrono::{Duration, Utc};
use debrief::pb::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, TestUser, bearer, spawn_app};
use crate::on_both_backends;

on_both_backends!(analytics_count_what_50_people_did_and_withhold_small_groups);

async fn analytics_count_what_50_people_did_and_withhold_small_groups(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = crate::usage::admin(&app).await;
    let mut people: Vec<TestUser> = Vec::new();
    for i in 0..50 {
        people.push(app.sign_up(&format!("person{i:02}")).await);
    }
    let now = Utc::now();
    let recording = crate::processing::short();
    // 20 upload a recording; 12 of them have two meetings analysed, the
    // second at a faster, in-band pace (pacing 75, then 100); 6 of those
    // start a practice session; 3 others move to the team plan.
    for person in &people[..20] {
        crate::processing::upload(&app, person, &recording).await;
    }
    for person in &people[..12] {
        crate::progress::scored_meeting(&app, person, now - Duration::days(2), 120.0).await;
        crate::progress::scored_meeting(&app, person, now - Duration::days(1), 150.0).await;
    }
    for person in &people[..6] {
        crate::practice::start(&app, person, "modules/conciseness-bottom-line-first")
            .await
            .unwrap();
    }
    for person in &people[40..43] {
        crate::usage::set_plan(&app, &admin, person, "team", &[]).await;
    }

    let request = pb::GetAnalyticsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: (now - Duration::days(3)).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: (now + Duration::hours(1)).timestamp(),
            nanos: 0,
        }),
        granularity: pb::AnalyticsGranularity::Day.into(),
    };
    let analytics = app
        .admin()
        .get_analytics(bearer(&admin, request))
        .await
        .expect("analytics")
        .into_inner()
        .analytics
        .unwrap();
    // 50 people and the admin.
    assert_eq!(analytics.total_users, 51);
    assert_eq!(analytics.new_users, 51);
    // Active: the 20 who created meetings, and the admin who signed in.
    assert_eq!(analytics.active_users, 21);
    assert_eq!(analytics.daily_active_users, 21);
    assert_eq!(analytics.monthly_active_users, 21);
    assert_eq!(analytics.meetings_uploaded, 20);
    assert_eq!(analytics.meetings_created, 20 + 24);
    assert_eq!(analytics.meetings_processed, 24);
    assert_eq!(analytics.practice_sessions_started, 6);
    assert_eq!(analytics.practice_sessions_completed, 0);
    assert_eq!(analytics.ai_requests, 0);
    let funnel = analytics.funnel.unwrap();
    assert_eq!(
        (
            funnel.signed_up,
            funnel.uploaded,
            funnel.analyzed,
            funnel.practiced
        ),
        (51, 20, 12, 6)
    );
    let pacing = analytics
        .skill_changes
        .iter()
        .find(|c| c.skill() == pb::Skill::Pacing)
        .expect("a pacing change");
    assert_eq!((pacing.mean_change, pacing.users), (25.0, 12));
    // The free plan's 48 are shown; the team plan's 3 are withheld.
    assert_eq!(
        analytics.users_by_plan,
        [pb::PlanCount {
            plan: "plans/free".into(),
            users: 48
        }]
    );
    assert!(
        analytics
            .suppressed
            .contains(&"users_by_plan[plans/team]".to_owned()),
        "{:?}",
        analytics.suppressed
    );
    assert_eq!(analytics.min_group_size, 5);
    // The series: every sign-up in today's period, none before.
    let today = analytics
        .series
        .iter()
        .find(|p| {
            p.start_time.as_ref().unwrap().seconds <= now.timestamp()
                && now.timestamp() < p.end_time.as_ref().unwrap().seconds
        })
        .expect("today's period");
    assert_eq!(
        (
            today.sign_ups,
            today.meetings_uploaded,
            today.practice_sessions_started
        ),
        (51, 20, 6)
    );
    assert_eq!(analytics.series.iter().map(|p| p.sign_ups).sum::<i64>(), 51);
    // No personal data: no address, no name.
    let text = format!("{analytics:?}");
    assert!(
        !text.contains("@example.com") && !text.contains("person0"),
        "{text}"
    );

    // The same over HTTP.
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/analytics?granularity=ANALYTICS_GRANULARITY_WEEK",
            app.url()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["totalUsers"], "51", "{body}");
    assert!(!body.to_string().contains("@example.com"));

    // With a larger minimum group, small figures are withheld and named.
    let strict = crate::helpers::spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_ANALYTICS_MIN_GROUP".into(), "15".into());
    })
    .await;
    let admin = crate::usage::admin(&strict).await;
    for i in 0..3 {
        strict.sign_up(&format!("few{i}")).await;
    }
    let few = strict
        .admin()
        .get_analytics(bearer(&admin, request))
        .await
        .unwrap()
        .into_inner()
        .analytics
        .unwrap();
    assert_eq!(few.new_users, 0);
    assert!(
        few.suppressed.contains(&"new_users".to_owned()),
        "{:?}",
        few.suppressed
    );
    assert!(
        few.suppressed.contains(&"funnel.signed_up".to_owned()),
        "{:?}",
        few.suppressed
    );

    // Only admins.
    let denied = app
        .admin()
        .get_analytics(people[0].request(pb::GetAnalyticsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}
