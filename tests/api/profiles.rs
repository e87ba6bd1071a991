//! Profiles: reading, masked updates with validation, and the import of
//! the browser-only app's localStorage.

use debrief::pb::v1 as pb;
use prost_types::{Duration, FieldMask, Timestamp};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::Code;

use crate::helpers::{Backend, TestApp, TestUser, spawn_app, violation_fields};
use crate::on_both_backends;

on_both_backends!(
    update_profile_changes_only_the_masked_fields,
    update_profile_reports_every_invalid_field,
    importing_local_state_twice_yields_identical_state,
    a_bad_local_state_document_writes_nothing,
);

async fn profile(app: &TestApp, user: &TestUser) -> pb::Profile {
    app.profiles()
        .get_profile(user.request(pb::GetProfileRequest {}))
        .await
        .expect("profile")
        .into_inner()
        .profile
        .unwrap()
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn update_profile_changes_only_the_masked_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let ava = app.sign_up("ava").await;
    let update = pb::Profile {
        display_name: "Ava L.".into(),
        job_title: "ignored: not in the mask".into(),
        time_zone: "Europe/Berlin".into(),
        focus_skills: vec![pb::Skill::FillerWords as i32, pb::Skill::Pacing as i32],
        onboarding: Some(pb::Onboarding {
            goals: vec!["speak more concisely".into()],
            meeting_types: vec!["standup".into(), "client_call".into()],
            experience_level: "intermediate".into(),
            ..Default::default()
        }),
        preferences: Some(pb::Preferences {
            daily_practice_goal_minutes: 15,
            ..Default::default()
        }),
        ..Default::default()
    };
    let updated = app
        .profiles()
        .update_profile(ava.request(pb::UpdateProfileRequest {
            profile: Some(update),
            update_mask: mask(&[
                "display_name",
                "time_zone",
                "focus_skills",
                "onboarding.goals",
                "onboarding.meeting_types",
                "onboarding.experience_level",
                "preferences.daily_practice_goal_minutes",
            ]),
        }))
        .await
        .expect("update")
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(updated, profile(&app, &ava).await, "stored as returned");
    assert_eq!(updated.display_name, "Ava L.");
    assert_eq!(updated.job_title, "");
    assert_eq!(updated.time_zone, "Europe/Berlin");
    assert_eq!(
        updated.focus_skills().collect::<Vec<_>>(),
        [pb::Skill::FillerWords, pb::Skill::Pacing]
    );
    let onboarding = updated.onboarding.unwrap();
    assert_eq!(onboarding.goals, ["speak more concisely"]);
    assert_eq!(onboarding.experience_level, "intermediate");
    assert_eq!(updated.preferences.unwrap().daily_practice_goal_minutes, 15);

    let status = app
        .profiles()
        .update_profile(ava.request(pb::UpdateProfileRequest {
            profile: Some(pb::Profile::default()),
            update_mask: mask(&["email"]),
        }))
        .await
        .expect_err("unknown path");
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn update_profile_reports_every_invalid_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let bo = app.sign_up("bo").await;
    let before = profile(&app, &bo).await;
    let status = app
        .profiles()
        .update_profile(bo.request(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                display_name: "tab\there".into(),
                time_zone: "Moon/Base".into(),
                language: "english please".into(),
                onboarding: Some(pb::Onboarding {
                    meeting_role: "overlord".into(),
                    meeting_types: vec!["party".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: mask(&["*"]),
        }))
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violation_fields(&status);
    assert_eq!(
        fields,
        [
            "profile.display_name",
            "profile.time_zone",
            "profile.language",
            "profile.onboarding.meeting_types[0]",
            "profile.onboarding.meeting_role",
        ]
    );
    assert_eq!(profile(&app, &bo).await, before, "nothing changed");
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn export() -> pb::LocalState {
    let record = |id: &str, skill: pb::Skill, score: f64, seconds: i64| pb::LocalPracticeRecord {
        local_id: id.into(),
        module_id: "filler-words-basics".into(),
        skill: skill as i32,
        score,
        complete_time: at(seconds),
        duration: Some(Duration {
            seconds: 300,
            nanos: 0,
        }),
    };
    pb::LocalState {
        schema_version: 1,
        profile: Some(pb::Profile {
            display_name: "Cam from the browser".into(),
            language: "en-GB".into(),
            onboarding: Some(pb::Onboarding {
                completed: true,
                complete_time: at(1_760_000_000),
                meeting_role: "facilitator".into(),
                meetings_per_week: 12,
                answers: vec![pb::OnboardingAnswer {
                    question_id: "biggest_challenge".into(),
                    answer: "I ramble when nervous".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        practice_history: vec![
            record("rec-1", pb::Skill::FillerWords, 62.5, 1_760_100_000),
            record("rec-2", pb::Skill::Pacing, 71.0, 1_760_200_000),
            record("rec-3", pb::Skill::FillerWords, 80.0, 1_760_300_000),
        ],
    }
}

async fn import(
    app: &TestApp,
    user: &TestUser,
    state: pb::LocalState,
) -> Result<pb::ImportLocalStateResponse, tonic::Status> {
    app.profiles()
        .import_local_state(user.request(pb::ImportLocalStateRequest { state: Some(state) }))
        .await
        .map(|r| r.into_inner())
}

async fn progress_rows(app: &TestApp, user: &TestUser) -> Vec<debrief::progress::entity::Model> {
    use debrief::progress::entity as progress;
    let scoped = app.db.as_user(user.id).await.unwrap();
    let rows = scoped
        .find::<progress::Entity>()
        .filter(progress::Column::UserId.eq(user.id))
        .all(scoped.txn())
        .await
        .unwrap();
    if app.db.backend() == sea_orm::DbBackend::Postgres {
        // Row Level Security: even an unfiltered query sees only these rows.
        let unfiltered = progress::Entity::find().count(scoped.txn()).await.unwrap();
        assert_eq!(unfiltered as usize, rows.len());
    }
    rows
}

async fn importing_local_state_twice_yields_identical_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let cam = app.sign_up("cam").await;
    let first = import(&app, &cam, export()).await.expect("first import");
    assert_eq!(first.practice_records_imported, 3);
    assert_eq!(first.practice_records_skipped, 0);
    let profile_after_first = profile(&app, &cam).await;
    assert_eq!(profile_after_first.display_name, "Cam from the browser");
    assert_eq!(
        profile_after_first.onboarding.as_ref().unwrap().meetings_per_week,
        12
    );
    let rows_after_first = progress_rows(&app, &cam).await;
    assert_eq!(rows_after_first.len(), 3);
    assert!(
        rows_after_first
            .iter()
            .all(|r| r.source == "import" && r.module_id.as_deref() == Some("filler-words-basics"))
    );

    let second = import(&app, &cam, export()).await.expect("second import");
    assert_eq!(second.practice_records_imported, 0);
    assert_eq!(second.practice_records_skipped, 3);
    assert_eq!(
        profile(&app, &cam).await,
        profile_after_first,
        "even update_time is unchanged"
    );
    assert_eq!(progress_rows(&app, &cam).await, rows_after_first);

    // Another user's import of the same export is theirs alone.
    let dan = app.sign_up("dan").await;
    assert_eq!(
        import(&app, &dan, export())
            .await
            .unwrap()
            .practice_records_imported,
        3
    );
    assert_eq!(progress_rows(&app, &cam).await.len(), 3);
}

async fn a_bad_local_state_document_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let eli = app.sign_up("eli").await;
    let before = profile(&app, &eli).await;
    let mut state = export();
    state.practice_history[1].score = 250.0;
    state.practice_history[2].local_id = "rec-1".into();
    state.practice_history[0].complete_time = None;
    state.profile.as_mut().unwrap().time_zone = "Nowhere/Special".into();
    let status = import(&app, &eli, state).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violation_fields(&status);
    assert_eq!(
        fields,
        [
            "state.practice_history[0].complete_time",
            "state.practice_history[1].score",
            "state.practice_history[2].local_id",
            "state.profile.time_zone",
        ]
    );
    assert_eq!(profile(&app, &eli).await, before);
    assert!(progress_rows(&app, &eli).await.is_empty());

    let mut wrong_version = export();
    wrong_version.schema_version = 2;
    let status = import(&app, &eli, wrong_version).await.expect_err("version");
    assert_eq!(violation_fields(&status), ["state.schema_version"]);
    assert!(progress_rows(&app, &eli).await.is_empty());
}
