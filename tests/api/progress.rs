//! Progress through the real server: skill scores from meetings and
//! practice, standing and history, the export, and account deletion.

use chrono::{DateTime, TimeZone, Utc};
use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::progress_service_client::ProgressServiceClient;
use tonic::Code;

use crate::events::{next_event, subscribe};
use crate::helpers::{Backend, TestApp, TestUser};
use crate::on_both_backends;

on_both_backends!(
    analyses_are_scored_when_stored_and_older_ones_once_at_start_up,
    progress_follows_the_documented_curves_trends_and_streaks_in_the_persons_time_zone,
    skill_history_pages_through_250_points_without_gaps_or_repeats,
    an_export_holds_every_record_of_its_owner_and_no_secret,
);

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

/// A meeting of `user` that took place at `at`, analysed at `wpm` (with
/// fillers, pauses and monologue in range), scored as the pipeline does.
pub(crate) async fn scored_meeting(app: &TestApp, user: &TestUser, at: DateTime<Utc>, wpm: f64) -> String {
    use debrief::meetings::entity::Kind;
    use debrief::meetings::model::MeetingFields;
    use debrief::meetings::results::{self, analysis};
    use sea_orm::ActiveValue::Set;
    let scoped = app.db.as_user(user.id).await.unwrap();
    let fields = MeetingFields {
        title: "Weekly sync".into(),
        occurred_at: Some(at),
        ..MeetingFields::default()
    };
    let meeting = debrief::meetings::store::create(&scoped, user.id, Kind::Meeting, fields, None)
        .await
        .unwrap();
    debrief::meetings::store::set_processed(&scoped, meeting.id, at)
        .await
        .unwrap();
    let stored = results::replace_analysis(
        &scoped,
        analysis::ActiveModel {
            meeting_id: Set(meeting.id),
            user_id: Set(user.id),
            total_ms: Set(20 * 60_000),
            speech_ms: Set(15 * 60_000),
            speech_ratio: Set(0.75),
            pause_count: Set(150),
            average_pause_ms: Set(800),
            longest_pause_ms: Set(2500),
            longest_monologue_ms: Set(55_000),
            words_per_minute: Set(Some(wpm)),
            filler_word_count: Set(Some(10)),
            filler_words: Set(serde_json::json!([{"word": "um", "count": 10}])),
            question_count: Set(Some(6)),
            skill_scores: Set(serde_json::json!([])),
            longest_monologue_words: Set(Some(120)),
            word_count: Set(Some(2000)),
            estimated_words_per_minute: Set(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    debrief::processing::scores::score(&scoped, &meeting, &stored)
        .await
        .unwrap();
    scoped.commit().await.unwrap();
    format!("meetings/{}", meeting.id)
}

async fn progress(app: &TestApp, user: &TestUser) -> pb::Progress {
    ProgressServiceClient::new(app.channel.clone())
        .get_progress(user.request(pb::GetProgressRequest::default()))
        .await
        .expect("progress")
        .into_inner()
        .progress
        .expect("progress")
}

async fn set_time_zone(app: &TestApp, user: &TestUser, zone: &str) {
    app.profiles()
        .update_profile(user.request(pb::UpdateProfileRequest {
            profile: Some(pb::Profile {
                time_zone: zone.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["time_zone".into()],
            }),
        }))
        .await
        .unwrap();
}

/// A practice session of `user` on the conciseness seed module, started at
/// `start` and completed ten minutes later with one written answer.
async fn practise(app: &TestApp, user: &TestUser, start: DateTime<Utc>) {
    let clock = &app.state.shared.clock;
    clock.set(Some(start));
    let session = crate::practice::start(app, user, "modules/conciseness-bottom-line-first")
        .await
        .unwrap();
    crate::practice::attempt(
        app,
        user,
        &session.name,
        "decision-first",
        "We move the launch to 14 March.",
    )
    .await;
    clock.set(Some(start + chrono::Duration::minutes(10)));
    crate::practice::complete(app, user, &session.name).await;
}

async fn progress_follows_the_documented_curves_trends_and_streaks_in_the_persons_time_zone(
    backend: Backend,
) {
    let app = crate::helpers::spawn_app(backend).await;
    let ann = app.sign_up("ann").await;
    set_time_zone(&app, &ann, "Asia/Tokyo").await;
    let utc = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
    // Three meetings; the third is on the 29th in UTC but the 30th in Tokyo.
    let meetings = [
        (utc(28, 3, 0), 185.0),
        (utc(29, 14, 30), 150.0),
        (utc(29, 15, 30), 170.0),
    ];
    for (at, wpm) in meetings {
        scored_meeting(&app, &ann, at, wpm).await;
    }
    // Two sessions on 1 December (UTC and Tokyo alike).
    let december = |h: u32| Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
    practise(&app, &ann, december(1)).await;
    practise(&app, &ann, december(2)).await;
    let now = december(3);
    app.state.shared.clock.set(Some(now));

    let standing = progress(&app, &ann).await;
    // The documented curve and weights: pacing 37.5, 100 and 75, each
    // weighing 0.5^(age in days / 14).
    let pacing = |wpm: f64| {
        if wpm > 160.0 {
            100.0 - 2.5 * (wpm - 160.0)
        } else {
            100.0
        }
    };
    let age = |at: DateTime<Utc>| (now - at).num_seconds() as f64 / 86_400.0;
    let (mut sum, mut weights) = (0.0, 0.0);
    for (at, wpm) in meetings {
        let weight = 0.5_f64.powf(age(at) / 14.0);
        sum += weight * pacing(wpm);
        weights += weight;
    }
    // The trend: the least-squares slope of score against time, a week.
    let xs: Vec<f64> = meetings.iter().map(|(at, _)| -age(*at)).collect();
    let ys: Vec<f64> = meetings.iter().map(|(_, wpm)| pacing(*wpm)).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / 3.0, ys.iter().sum::<f64>() / 3.0);
    let slope = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>()
        / xs.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
    let skill = |s: pb::Skill| {
        standing
            .skills
            .iter()
            .find(|p| p.skill() == s)
            .unwrap_or_else(|| panic!("{s:?} in {standing:?}"))
    };
    let pace = skill(pb::Skill::Pacing);
    assert!(
        (pace.score - sum / weights).abs() < 0.06,
        "{} vs {}",
        pace.score,
        sum / weights
    );
    assert!(
        (pace.trend - slope * 7.0).abs() < 0.06,
        "{} vs {}",
        pace.trend,
        slope * 7.0
    );
    assert!(pace.trend > 0.0, "the pace came into the range");
    assert_eq!(pace.sample_count, 3);
    // Meetings and sessions both score conciseness; clarity only practice.
    assert_eq!(skill(pb::Skill::Conciseness).sample_count, 5);
    assert_eq!(skill(pb::Skill::Clarity).sample_count, 2);
    assert_eq!((standing.sessions_completed, standing.meetings_analyzed), (2, 3));
    assert_eq!(standing.practice_time.as_ref().unwrap().seconds, 20 * 60);
    assert_eq!(
        standing.last_practice_time.as_ref().unwrap().seconds,
        (december(2) + chrono::Duration::minutes(10)).timestamp()
    );
    // In Tokyo: the 28th, 29th, 30th and 1st.
    assert_eq!(
        (standing.current_streak_days, standing.longest_streak_days),
        (4, 4)
    );
    // In UTC the third meeting falls on the 29th: the 28th and 29th, then
    // the 1st.
    set_time_zone(&app, &ann, "").await;
    let utc_standing = progress(&app, &ann).await;
    assert_eq!(
        (utc_standing.current_streak_days, utc_standing.longest_streak_days),
        (1, 2)
    );
    // Two days later with nothing new, the streak is broken.
    app.state.shared.clock.set(Some(now + chrono::Duration::days(2)));
    assert_eq!(progress(&app, &ann).await.current_streak_days, 0);

    // Someone else has no progress of Ann's, over gRPC or HTTP.
    let bob = app.sign_up("bob").await;
    let theirs = progress(&app, &bob).await;
    assert!(theirs.skills.is_empty() && theirs.sessions_completed == 0);
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/progress", app.url()))
        .bearer_auth(&ann.tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["meetingsAnalyzed"], 3, "{body}");
}

async fn skill_history_pages_through_250_points_without_gaps_or_repeats(backend: Backend) {
    use debrief::progress::store::{self as progress, Source};
    use debrief::skills::Skill;
    let app = crate::helpers::spawn_app(backend).await;
    let ann = app.sign_up("ann").await;
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
    let scoped = app.db.as_user(ann.id).await.unwrap();
    for i in 0..250i64 {
        // Pairs recorded at the same moment: the page's order must still be
        // total.
        let source = Source {
            name: format!("meetings/{}", uuid::Uuid::now_v7()),
            module_id: None,
            duration_ms: None,
            recorded_at: start + chrono::Duration::hours(i / 2),
        };
        let scores = [(Skill::Pacing, (i % 100) as f64), (Skill::Pauses, 50.0)];
        progress::record(&scoped, ann.id, source, &scores).await.unwrap();
    }
    scoped.commit().await.unwrap();

    let page = |token: String, size: i32| {
        let request = ann.request(pb::ListSkillHistoryRequest {
            skill: pb::Skill::Pacing as i32,
            page_size: size,
            page_token: token,
            ..Default::default()
        });
        let mut client = ProgressServiceClient::new(app.channel.clone());
        async move { client.list_skill_history(request).await.unwrap().into_inner() }
    };
    let (mut points, mut token) = (Vec::new(), String::new());
    loop {
        let answer = page(token, 7).await;
        assert!(answer.points.len() <= 7);
        points.extend(answer.points);
        if answer.next_page_token.is_empty() {
            break;
        }
        token = answer.next_page_token;
    }
    assert_eq!(points.len(), 250);
    let sources: std::collections::HashSet<&str> = points.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(sources.len(), 250, "no repeats");
    assert!(
        points
            .windows(2)
            .all(|w| w[0].time.as_ref().unwrap().seconds <= w[1].time.as_ref().unwrap().seconds)
    );
    assert!(points.iter().all(|p| p.skill() == pb::Skill::Pacing));

    // A time range, and the checks of the request.
    let ranged = ProgressServiceClient::new(app.channel.clone())
        .list_skill_history(ann.request(pb::ListSkillHistoryRequest {
            skill: pb::Skill::Pacing as i32,
            start_time: Some(prost_types::Timestamp {
                seconds: (start + chrono::Duration::hours(10)).timestamp(),
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: (start + chrono::Duration::hours(20)).timestamp(),
                nanos: 0,
            }),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ranged.points.len(), 20);
    let refused = ProgressServiceClient::new(app.channel.clone())
        .list_skill_history(ann.request(pb::ListSkillHistoryRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let bob = app.sign_up("bob").await;
    let theirs = ProgressServiceClient::new(app.channel.clone())
        .list_skill_history(bob.request(pb::ListSkillHistoryRequest {
            skill: pb::Skill::Pacing as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.points.is_empty());
}

/// `user`'s export over gRPC: every record, in order.
async fn export(app: &TestApp, user: &TestUser) -> Vec<pb::export_data_response::Record> {
    use futures::StreamExt as _;
    let stream = ProgressServiceClient::new(app.channel.clone())
        .export_data(user.request(pb::ExportDataRequest {}))
        .await
        .expect("export")
        .into_inner();
    stream
        .map(|message| message.expect("a record").record.expect("a record"))
        .collect()
        .await
}

async fn an_export_holds_every_record_of_its_owner_and_no_secret(backend: Backend) {
    use pb::export_data_response::Record;
    let url = crate::processing::fake_transcriber().await;
    let app = crate::processing::app_with_provider(backend, &url, &[]).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    // Ann: a transcribed and analysed recording, two more analysed
    // meetings, a practice session and an API key.
    let speech = [(0, 8_000), (9_000, 18_000)];
    let recorded =
        crate::processing::upload(&app, &ann, &crate::processing::recording(20_000, &speech, 16_000)).await;
    crate::processing::wait_for(&app, &ann, &recorded, &[pb::MeetingStatus::Ready]).await;
    let now = Utc::now();
    let mut meetings = vec![recorded.clone()];
    for (days, wpm) in [(3, 120.0), (1, 150.0)] {
        meetings.push(scored_meeting(&app, &ann, now - chrono::Duration::days(days), wpm).await);
    }
    practise(&app, &ann, now - chrono::Duration::hours(2)).await;
    app.state.shared.clock.set(None);
    let created = app
        .auth()
        .create_api_key(ann.request(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                display_name: "Quarterly report sync".into(),
                scopes: vec!["meetings:read".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    // Bob has a meeting of his own.
    let bobs = scored_meeting(&app, &bob, now, 140.0).await;

    let records = export(&app, &ann).await;
    let Some(Record::Manifest(manifest)) = records.first() else {
        panic!("the manifest comes first: {:?}", records.first());
    };
    let user = manifest.user.as_ref().expect("the account");
    assert_eq!(user.email, ann.email);
    assert_eq!(manifest.format_version, 1);
    assert_eq!(
        manifest.record_kinds,
        [
            "profile",
            "meeting",
            "transcript",
            "analysis",
            "practice_session",
            "skill_score",
            "usage",
            "api_key",
            "audit_entry"
        ]
    );
    let of = |kind: fn(&Record) -> bool| records.iter().filter(|r| kind(r)).count();
    assert_eq!(of(|r| matches!(r, Record::Profile(_))), 1);
    let mut exported: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Meeting(m) => Some(m.name.clone()),
            _ => None,
        })
        .collect();
    exported.sort();
    meetings.sort();
    assert_eq!(exported, meetings, "every meeting, once");
    assert!(records.iter().any(|r| matches!(r, Record::Transcript(t) if t.name == format!("{recorded}/transcript") && !t.segments.is_empty())));
    assert_eq!(of(|r| matches!(r, Record::Analysis(_))), 3);
    let sessions: Vec<&pb::PracticeSession> = records
        .iter()
        .filter_map(|r| match r {
            Record::PracticeSession(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].attempts.len(), 1, "with its attempt");
    assert!(sessions[0].attempts[0].feedback.is_some(), "and its feedback");
    let history = progress(&app, &ann).await;
    let samples: i32 = history.skills.iter().map(|s| s.sample_count).sum();
    assert_eq!(
        of(|r| matches!(r, Record::SkillScore(_))),
        samples as usize,
        "every score"
    );
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::Usage(u) if !u.totals.is_empty()))
    );
    let keys: Vec<&pb::ApiKey> = records
        .iter()
        .filter_map(|r| match r {
            Record::ApiKey(k) => Some(k),
            _ => None,
        })
        .collect();
    assert_eq!(keys, [created.api_key.as_ref().unwrap()]);
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::AuditEntry(e) if e.action == "data.export")),
        "audited"
    );
    // Kinds come in the manifest's order.
    let kind = |r: &Record| match r {
        Record::Manifest(_) => "manifest",
        Record::Profile(_) => "profile",
        Record::Meeting(_) => "meeting",
        Record::Transcript(_) => "transcript",
        Record::Analysis(_) => "analysis",
        Record::PracticeSession(_) => "practice_session",
        Record::SkillScore(_) => "skill_score",
        Record::Usage(_) => "usage",
        Record::ApiKey(_) => "api_key",
        Record::AuditEntry(_) => "audit_entry",
    };
    let rank = |r: &Record| match kind(r) {
        "manifest" => 0,
        // A meeting's transcript and analysis follow it.
        "transcript" | "analysis" => 2,
        k => manifest.record_kinds.iter().position(|m| m == k).unwrap() + 1,
    };
    let ranks: Vec<usize> = records.iter().map(rank).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1] || (w[0] == 2 && w[1] == 2)),
        "{ranks:?}"
    );

    // No secret: not the key, its hash, a password hash or a token.
    let text = format!("{records:?}");
    for secret in [
        created.key.as_str(),
        "$argon2",
        &ann.tokens.access_token,
        &ann.tokens.refresh_token,
    ] {
        assert!(!text.contains(secret), "the export holds a secret: {secret}");
    }
    // Nothing of Bob's, and Bob's export holds nothing of Ann's.
    assert!(!text.contains(&bobs) && !text.contains(&bob.email));
    let theirs = format!("{:?}", export(&app, &bob).await);
    assert!(theirs.contains(&bobs));
    for name in meetings.iter().chain([&ann.email, &sessions[0].name]) {
        assert!(!theirs.contains(name.as_str()), "Bob's export holds {name}");
    }

    // The same over gRPC-Web, and over HTTP as one JSON record per line.
    let web = {
        use futures::StreamExt as _;
        let channel = crate::transports::grpc_web_channel(false);
        let client = ProgressServiceClient::with_origin(channel, app.url().parse().unwrap());
        let stream = { client }
            .export_data(ann.request(pb::ExportDataRequest {}))
            .await
            .expect("export over gRPC-Web")
            .into_inner();
        stream.map(|m| m.unwrap()).collect::<Vec<_>>().await
    };
    // One audit entry more: each export is audited.
    assert_eq!(web.len(), records.len() + 1);
    let lines = reqwest::Client::new()
        .get(format!("{}/v1/progress:export", app.url()))
        .bearer_auth(&ann.tokens.access_token)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), records.len() + 2);
    assert_eq!(lines[0]["manifest"]["user"]["email"], ann.email.as_str());
    assert!(lines.iter().all(|l| l.get("error").is_none()));
}
