//! Progress through the real server: skill scores from meetings and
//! practice, standing and history, the export, and account deletion.

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;

use crate::events::{next_event, subscribe};
use crate::helpers::{Backend, TestApp, TestUser};
use crate::on_both_backends;

on_both_backends!(analyses_are_scored_when_stored_and_older_ones_once_at_start_up,);

async fn analysis_of(app: &TestApp, user: &TestUser, meeting: &str) -> pb::Analysis {
    MeetingServiceClient::new(app.channel.clone())
        .get_analysis(user.request(pb::GetAnalysisRequest {
            name: format!("{meeting}/analysis"),
        }))
        .await
        .expect("analysis")
        .into_inner()
        .analysis
        .expect("analysis")
}

fn score_of(scores: &[pb::SkillScore], skill: pb::Skill) -> Option<f64> {
    scores.iter().find(|s| s.skill() == skill).map(|s| s.score)
}

/// The documented pacing curve: 100 within 130–160 words per minute, 2.5
/// points off per word per minute outside.
fn pacing_curve(wpm: f64) -> f64 {
    let outside = if wpm < 130.0 {
        130.0 - wpm
    } else {
        (wpm - 160.0).max(0.0)
    };
    ((100.0 - 2.5 * outside).max(0.0) * 10.0).round() / 10.0
}

async fn analyses_are_scored_when_stored_and_older_ones_once_at_start_up(backend: Backend) {
    let url = crate::processing::fake_transcriber().await;
    let app = crate::processing::app_with_provider(backend, &url, &[]).await;
    let ann = app.sign_up("ann").await;
    let mut events = subscribe(&app, &ann, None).await;
    // Two minutes, speech in three stretches with pauses of 2 and 6 s.
    let speech = [(0, 40_000), (42_000, 80_000), (86_000, 120_000)];
    let meeting = crate::processing::upload(
        &app,
        &ann,
        &crate::processing::recording(120_000, &speech, 16_000),
    )
    .await;
    crate::processing::wait_for(&app, &ann, &meeting, &[pb::MeetingStatus::Ready]).await;
    let analysis = analysis_of(&app, &ann, &meeting).await;
    let scores = &analysis.skill_scores;
    let wpm = analysis.words_per_minute.expect("a transcript's pace");
    assert_eq!(
        score_of(scores, pb::Skill::Pacing),
        Some(pacing_curve(wpm)),
        "{scores:?}"
    );
    // The fake transcript has 2 fillers ("um", "i mean") in 12 words: 16.7
    // per 100, far past the 6 that scores 0.
    assert_eq!(score_of(scores, pb::Skill::FillerWords), Some(0.0));
    // The longest silence, 6 s, is 3 s into the 3–8 s fall: 40 (lower than
    // the frequency's, two pauses in 112 s of speech: 53.6).
    assert_eq!(score_of(scores, pb::Skill::Pauses), Some(40.0), "{analysis:?}");
    // A 40 s stretch of speech is under the minute that keeps 100.
    assert_eq!(score_of(scores, pb::Skill::Conciseness), Some(100.0));
    // Two minutes is too short to judge questioning; clarity has no signal.
    assert_eq!(score_of(scores, pb::Skill::Questioning), None);
    assert_eq!(score_of(scores, pb::Skill::Clarity), None);

    // The scores are announced for a dashboard.
    let announced = loop {
        let event = next_event(&mut events).await.unwrap();
        if let Some(pb::event::Payload::SkillScoresUpdated(update)) = event.payload {
            break update;
        }
    };
    assert_eq!(announced.source, meeting);
    assert_eq!(announced.scores, analysis.skill_scores);

    // An analysis stored before the scoring model has no scores; the next
    // start scores it, once.
    let bob = app.sign_up("bob").await;
    let older = crate::practice::analysed_meeting(&app, &bob, "Pipeline review", 185.0, 9.0).await;
    assert!(analysis_of(&app, &bob, &older).await.skill_scores.is_empty());
    let restarted = app.spawn_replica_with(|vars| {
        vars.insert("DEBRIEF_DATA_DIR".into(), app.data_dir().display().to_string());
    });
    let restarted = restarted.await;
    let scores = analysis_of(&restarted, &bob, &older).await.skill_scores;
    assert_eq!(score_of(&scores, pb::Skill::Pacing), Some(pacing_curve(185.0)));
    assert_eq!(score_of(&scores, pb::Skill::FillerWords), Some(0.0));
    // Nothing else changed: Ann's analysis keeps its scores.
    assert_eq!(
        analysis_of(&restarted, &ann, &meeting).await.skill_scores,
        analysis.skill_scores
    );
}
