//! The processing pipeline through the real server: generated recordings
//! with silences at known times, and a fake OpenAI-compatible provider on
//! loopback that checks each multipart request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use debrief::pb::v1 as pb;
use debrief::pb::v1::event_service_client::EventServiceClient;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::processing_service_client::ProcessingServiceClient;
use debrief::pb::v1::upload_service_client::UploadServiceClient;

use crate::helpers::{Backend, TestApp, TestUser, spawn_app_with};
use crate::on_both_backends;
use crate::uploads::{new_meeting, original_key_of, upload_in_chunks, upload_whole};

on_both_backends!(
    a_recording_is_segmented_transcribed_and_analysed,
    without_a_transcriber_meetings_wait_and_a_retry_completes_them,
    rate_limits_are_waited_out_and_a_dead_job_is_retried_by_hand,
    speech_dense_sampling_stays_within_the_budget,
    a_worker_killed_mid_stage_is_replaced_and_the_meeting_is_ready_once,
    mp3_and_m4a_recordings_convert_to_16_khz_mono_of_the_same_length,
    a_plans_concurrent_jobs_and_analysis_minutes_are_respected,
    originals_are_deleted_after_their_retention,
    a_queued_meeting_wakes_an_idle_worker_at_once,
    watching_a_meeting_shows_each_new_state_until_it_is_deleted,
    claimers_at_once_never_run_more_of_an_owners_jobs_than_the_plan_allows,
);

pub(crate) const RATE: u32 = 16_000;
pub(crate) const API_KEY: &str = "sk-test-key";
pub(crate) const SPOKEN: &str = "Um, so what do you think? I mean, we should ship it.";

/// A mono WAV at `rate` Hz of `total_ms`, with speech-like bursts (noise
/// whose loudness moves at a syllable rate) in `speech`, silence elsewhere.
pub(crate) fn recording(total_ms: i64, speech: &[(i64, i64)], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let frames = total_ms * i64::from(rate) / 1000;
    for i in 0..frames {
        let ms = i * 1000 / i64::from(rate);
        let value = if speech.iter().any(|(s, e)| ms >= *s && ms < *e) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 40) as f64 / f64::from(1u32 << 24) * 2.0 - 1.0;
            let t = i as f64 / f64::from(rate);
            let envelope = 0.35 + 0.65 * (std::f64::consts::PI * 4.0 * t).sin().abs();
            (noise * envelope * 0.5 * f64::from(i16::MAX)) as i16
        } else {
            0
        };
        writer.write_sample(value).unwrap();
        writer.write_sample(value).unwrap();
    }
    writer.finalize().unwrap();
    out.into_inner()
}

/// How the fake provider answers.
#[derive(Default)]
pub(crate) struct Provider {
    /// Statuses to answer first, in order (then 200).
    queued: VecDeque<StatusCode>,
    /// Answer 500 to everything.
    broken: bool,
    /// Hold every request without answering while set.
    pub(crate) stalled: bool,
    /// Requests seen, with the audio length each carried.
    requests: Vec<i64>,
}

pub(crate) type Shared = Arc<Mutex<Provider>>;

async fn transcriptions(
    State(provider): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).expect("a multipart request");
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let (mut model, mut format, mut audio) = (None, None, None);
    while let Some(field) = form.next_field().await.expect("a well-formed multipart body") {
        match field.name() {
            Some("model") => model = Some(field.text().await.unwrap()),
            Some("response_format") => format = Some(field.text().await.unwrap()),
            Some("file") => {
                assert_eq!(
                    field.content_type().map(|m| m.to_string()),
                    Some("audio/wav".into())
                );
                audio = Some(field.bytes().await.unwrap());
            }
            other => panic!("unexpected field {other:?}"),
        }
    }
    assert_eq!(model.as_deref(), Some("whisper-1"));
    assert_eq!(format.as_deref(), Some("verbose_json"));
    let audio = audio.expect("a file part");
    let reader = hound::WavReader::new(std::io::Cursor::new(audio.to_vec())).expect("a WAV file");
    assert_eq!((reader.spec().sample_rate, reader.spec().channels), (RATE, 1));
    let duration_ms = i64::from(reader.duration()) * 1000 / i64::from(RATE);
    while provider.lock().unwrap().stalled {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = {
        let mut provider = provider.lock().unwrap();
        provider.requests.push(duration_ms);
        if provider.broken {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            provider.queued.pop_front().unwrap_or(StatusCode::OK)
        }
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        return (status, [("retry-after", "1")], "slow down").into_response();
    }
    if status != StatusCode::OK {
        // Asks for no wait, so the test need not sit out the client's own
        // backoff.
        return (status, [("retry-after", "0")], "provider trouble").into_response();
    }
    let seconds = duration_ms as f64 / 1000.0;
    axum::Json(serde_json::json!({
        "task": "transcribe",
        "language": "english",
        "duration": seconds,
        "text": SPOKEN,
        "segments": [{"id": 0, "start": 0.0, "end": seconds, "text": SPOKEN, "avg_logprob": -0.1}],
    }))
    .into_response()
}

/// Starts the fake provider; returns its base URL and state.
pub(crate) async fn fake_provider() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/v1/audio/transcriptions", axum::routing::post(transcriptions))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), shared)
}

/// The base URL of a fake provider that answers every request with
/// [`SPOKEN`].
pub(crate) async fn fake_transcriber() -> String {
    fake_provider().await.0
}

/// A server with one worker and the fake provider.
pub(crate) async fn app_with_provider(backend: Backend, url: &str, extra: &[(&str, &str)]) -> TestApp {
    let url = url.to_owned();
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spawn_app_with(backend, move |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
        vars.insert("DEBRIEF_TRANSCRIBER".into(), "openai".into());
        vars.insert("DEBRIEF_TRANSCRIBER_URL".into(), url);
        vars.insert("DEBRIEF_TRANSCRIBER_API_KEY".into(), API_KEY.into());
        vars.insert("DEBRIEF_JOB_BACKOFF".into(), "100ms".into());
        vars.extend(extra);
    })
    .await
}

/// Starts `debrief worker` on the server's database and storage, with the
/// fake provider at `url` (or none).
pub(crate) fn worker_process(
    app: &TestApp,
    url: Option<&str>,
    extra: &[(&str, &str)],
) -> std::process::Child {
    let mut vars = app.vars().clone();
    vars.insert("DEBRIEF_WORKERS".into(), "1".into());
    vars.insert("DEBRIEF_LOG".into(), "warn".into());
    if let Some(url) = url {
        vars.insert("DEBRIEF_TRANSCRIBER".into(), "openai".into());
        vars.insert("DEBRIEF_TRANSCRIBER_URL".into(), url.into());
        vars.insert("DEBRIEF_TRANSCRIBER_API_KEY".into(), API_KEY.into());
    }
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    crate::helpers::debrief_command(&vars)
        .arg("worker")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("a worker process")
}

/// Uploads `file` to a new meeting of `user`; returns the meeting's name.
pub(crate) async fn upload(app: &TestApp, user: &TestUser, file: &[u8]) -> String {
    let meeting = new_meeting(app, user).await;
    let mut client = UploadServiceClient::new(app.channel.clone());
    upload_whole(&mut client, user, &meeting, file).await;
    meeting
}

/// Waits until the meeting reaches one of `statuses`.
pub(crate) async fn wait_for(
    app: &TestApp,
    user: &TestUser,
    meeting: &str,
    statuses: &[pb::MeetingStatus],
) -> pb::Meeting {
    let mut client = MeetingServiceClient::new(app.channel.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let found = client
            .get_meeting(user.request(pb::GetMeetingRequest { name: meeting.into() }))
            .await
            .unwrap()
            .into_inner()
            .meeting
            .unwrap();
        if statuses.contains(&found.status()) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{meeting} stayed {:?} ({})",
            found.status(),
            found.failure_reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until one of `meetings` is in its transcribe stage.
async fn wait_until_transcribing(app: &TestApp, user: &TestUser, meetings: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for meeting in meetings {
            let runs = get_status(app, user, meeting).await.unwrap().stage_runs;
            if runs.iter().any(|r| {
                r.stage() == pb::ProcessingStage::Transcribe && r.state() == pb::StageRunState::Running
            }) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "transcription never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ms(d: &Option<prost_types::Duration>) -> i64 {
    d.as_ref()
        .map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

pub(crate) async fn get_status(
    app: &TestApp,
    user: &TestUser,
    meeting: &str,
) -> Result<pb::ProcessingStatus, tonic::Status> {
    ProcessingServiceClient::new(app.channel.clone())
        .get_processing_status(user.request(pb::GetProcessingStatusRequest {
            name: format!("{meeting}/processingStatus"),
        }))
        .await
        .map(|r| r.into_inner().processing_status.unwrap())
}

async fn get_transcript(
    app: &TestApp,
    user: &TestUser,
    meeting: &str,
) -> Result<pb::Transcript, tonic::Status> {
    MeetingServiceClient::new(app.channel.clone())
        .get_transcript(user.request(pb::GetTranscriptRequest {
            name: format!("{meeting}/transcript"),
        }))
        .await
        .map(|r| r.into_inner().transcript.unwrap())
}

async fn get_analysis(app: &TestApp, user: &TestUser, meeting: &str) -> Result<pb::Analysis, tonic::Status> {
    MeetingServiceClient::new(app.channel.clone())
        .get_analysis(user.request(pb::GetAnalysisRequest {
            name: format!("{meeting}/analysis"),
        }))
        .await
        .map(|r| r.into_inner().analysis.unwrap())
}

async fn retry(app: &TestApp, user: &TestUser, meeting: &str) -> Result<pb::ProcessingStatus, tonic::Status> {
    ProcessingServiceClient::new(app.channel.clone())
        .retry_processing(user.request(pb::RetryProcessingRequest { name: meeting.into() }))
        .await
        .map(|r| r.into_inner().processing_status.unwrap())
}

/// The three minutes of the end-to-end test: speech with pauses, five of
/// them long enough to cut at.
const SPEECH: &[(i64, i64)] = &[
    (500, 20_000),
    (20_600, 38_000),
    (41_000, 70_000),
    (72_500, 95_000),
    (95_400, 120_000),
    (124_000, 150_000),
    (151_500, 178_000),
];
const TOTAL_MS: i64 = 180_000;

fn silences() -> Vec<(i64, i64)> {
    SPEECH.windows(2).map(|w| (w[0].1, w[1].0)).collect()
}

async fn a_recording_is_segmented_transcribed_and_analysed(backend: Backend) {
    let (url, provider) = fake_provider().await;
    // Progress reported as often as every percent, to see it on a short run.
    let app = app_with_provider(backend, &url, &[("DEBRIEF_PROGRESS_INTERVAL", "1ms")]).await;
    let dan = app.sign_up("dan").await;
    let meeting = upload(&app, &dan, &recording(TOTAL_MS, SPEECH, 22_050)).await;
    let done = wait_for(
        &app,
        &dan,
        &meeting,
        &[pb::MeetingStatus::Ready, pb::MeetingStatus::Failed],
    )
    .await;
    assert_eq!(done.status(), pb::MeetingStatus::Ready, "{}", done.failure_reason);

    let status = get_status(&app, &dan, &meeting).await.unwrap();
    assert_eq!(status.percent, 100.0);
    let stages: Vec<pb::ProcessingStage> = status.stage_runs.iter().map(|r| r.stage()).collect();
    assert_eq!(stages.len(), 7, "{stages:?}");
    assert!(
        status
            .stage_runs
            .iter()
            .all(|r| r.state() == pb::StageRunState::Succeeded && r.end_time.is_some())
    );
    assert!((status.coverage_percent - 100.0).abs() < 1e-6);

    // Every piece was sent; each was cut inside a true silence of a second
    // or more, and the transcript lines sit at the pieces' meeting times.
    let transcript = get_transcript(&app, &dan, &meeting).await.unwrap();
    assert_eq!(transcript.model, "openai/whisper-1");
    assert_eq!(transcript.language, "en");
    let starts: Vec<i64> = transcript.segments.iter().map(|s| ms(&s.start_offset)).collect();
    let long: Vec<(i64, i64)> = silences().into_iter().filter(|(s, e)| e - s >= 1000).collect();
    assert_eq!(starts.len(), long.len() + 1, "{starts:?}");
    assert_eq!(starts[0], 0);
    for (cut, (s, e)) in starts[1..].iter().zip(&long) {
        assert!(
            *cut >= s - 250 && *cut <= e + 250,
            "cut at {cut} outside the silence {s}..{e}"
        );
    }
    let ends: Vec<i64> = transcript.segments.iter().map(|s| ms(&s.end_offset)).collect();
    assert!((ends[ends.len() - 1] - TOTAL_MS).abs() <= 50, "{ends:?}");
    let sent = provider.lock().unwrap().requests.clone();
    assert_eq!(sent.len(), starts.len());

    let analysis = get_analysis(&app, &dan, &meeting).await.unwrap();
    let speech_ms: i64 = SPEECH.iter().map(|(s, e)| e - s).sum();
    let truth = speech_ms as f64 / TOTAL_MS as f64;
    assert!(
        (analysis.speech_ratio - truth).abs() < 0.05 * truth,
        "{} vs {truth}",
        analysis.speech_ratio
    );
    assert!((analysis.silence_ratio - (1.0 - truth)).abs() < 0.05);
    assert_eq!(analysis.pause_count, silences().len() as i32);
    let longest_pause = silences().iter().map(|(s, e)| e - s).max().unwrap();
    assert!(
        (ms(&analysis.longest_pause) - longest_pause).abs() <= 100,
        "{analysis:?}"
    );
    assert!((ms(&analysis.longest_monologue) - 29_000).abs() <= 100);
    assert_eq!(analysis.question_count, Some(starts.len() as i32));
    assert_eq!(analysis.filler_word_count, Some(2 * starts.len() as i32));
    assert!(analysis.words_per_minute.unwrap() > 0.0);

    // Temporary objects are gone; the original stays.
    let id = meeting.trim_start_matches("meetings/");
    let objects = app
        .state
        .shared
        .storage
        .list(&format!("meetings/{id}/"))
        .await
        .unwrap();
    assert_eq!(objects, vec![original_key_of(&app, &dan, &meeting).await]);

    // Events told the owner as it went.
    let events = meeting_events(&app, &dan, &meeting, &[]).await;
    assert!(
        events.len() < 500,
        "{} events: progress is not throttled",
        events.len()
    );
    let count = |kind: pb::EventType| events.iter().filter(|e| e.r#type() == kind).count();
    assert_eq!(count(pb::EventType::ProcessingStageStarted), 7);
    assert_eq!(count(pb::EventType::ProcessingStageCompleted), 7);
    assert_eq!(count(pb::EventType::MeetingReady), 1);
    let last = events.last().unwrap();
    assert_eq!(
        last.r#type(),
        pb::EventType::ProcessingEnded,
        "the end comes last"
    );
    assert_eq!(ended_of(last).status(), pb::MeetingStatus::Ready);
    assert!(ended_of(last).has_transcript);

    // The long stages told how far they were, in order and between their
    // start and end; transcription after each piece.
    for stage in [
        pb::ProcessingStage::Convert,
        pb::ProcessingStage::Segment,
        pb::ProcessingStage::Transcribe,
    ] {
        let reports: Vec<&pb::StageProgress> = events
            .iter()
            .filter(|e| e.r#type() == pb::EventType::ProcessingStageProgress)
            .map(stage_of)
            .filter(|p| p.stage() == stage)
            .collect();
        assert!(!reports.is_empty(), "no progress for {stage:?}");
        let done: Vec<f64> = reports.iter().map(|p| p.stage_percent).collect();
        assert!(
            done.windows(2).all(|w| w[0] < w[1]) && done.iter().all(|p| *p > 0.0 && *p < 100.0),
            "{stage:?}: {done:?}"
        );
        let start = stage_of(
            events
                .iter()
                .find(|e| e.r#type() == pb::EventType::ProcessingStageStarted && stage_of(e).stage() == stage)
                .unwrap(),
        )
        .percent;
        assert!(
            reports
                .iter()
                .all(|p| p.percent > start && p.percent < start + 100.0 / 7.0),
            "{stage:?} starts at {start}: {reports:?}"
        );
    }
    let transcribed = events
        .iter()
        .filter(|e| e.r#type() == pb::EventType::ProcessingStageProgress)
        .filter(|e| stage_of(e).stage() == pb::ProcessingStage::Transcribe)
        .count();
    assert_eq!(transcribed, starts.len() - 1, "one report per piece but the last");

    // Nobody else sees any of it, or can retry it.
    let eve = app.sign_up("eve").await;
    for code in [
        get_status(&app, &eve, &meeting).await.unwrap_err().code(),
        get_transcript(&app, &eve, &meeting).await.unwrap_err().code(),
        get_analysis(&app, &eve, &meeting).await.unwrap_err().code(),
        retry(&app, &eve, &meeting).await.unwrap_err().code(),
    ] {
        assert_eq!(code, tonic::Code::NotFound);
    }
    // A ready meeting has nothing to retry.
    assert_eq!(
        retry(&app, &dan, &meeting).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
}

/// A short recording: two bursts, so two pieces.
/// Every event about `meeting` (of `types`, or all), oldest first.
async fn meeting_events(
    app: &TestApp,
    user: &TestUser,
    meeting: &str,
    types: &[pb::EventType],
) -> Vec<pb::Event> {
    EventServiceClient::new(app.channel.clone())
        .list_events(user.request(pb::ListEventsRequest {
            page_size: 500,
            meeting: meeting.into(),
            types: types.iter().map(|t| (*t).into()).collect(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events
}

/// The stage report of a stage event.
fn stage_of(event: &pb::Event) -> &pb::StageProgress {
    match &event.payload {
        Some(pb::event::Payload::Stage(stage)) => stage,
        other => panic!("not a stage event: {other:?}"),
    }
}

/// The end report of a PROCESSING_ENDED event.
fn ended_of(event: &pb::Event) -> &pb::ProcessingEnded {
    match &event.payload {
        Some(pb::event::Payload::ProcessingEnded(ended)) => ended,
        other => panic!("not a PROCESSING_ENDED event: {other:?}"),
    }
}

pub(crate) fn short() -> Vec<u8> {
    recording(12_000, &[(1000, 5000), (7000, 11_000)], RATE)
}

async fn without_a_transcriber_meetings_wait_and_a_retry_completes_them(backend: Backend) {
    let (url, provider) = fake_provider().await;
    // A worker without a provider parks the meeting; one with a provider
    // finishes it after the retry.
    let app = crate::helpers::spawn_app(backend).await;
    let mut parking = worker_process(&app, None, &[]);
    let fay = app.sign_up("fay").await;
    let meeting = upload(&app, &fay, &short()).await;
    let parked = wait_for(&app, &fay, &meeting, &[pb::MeetingStatus::AwaitingTranscription]).await;
    let _ = parking.kill();
    let _ = parking.wait();
    assert_eq!(parked.failure_reason, "");
    let runs = get_status(&app, &fay, &meeting).await.unwrap().stage_runs;
    let transcribe = runs
        .iter()
        .find(|r| r.stage() == pb::ProcessingStage::Transcribe)
        .unwrap();
    assert_eq!(transcribe.state(), pb::StageRunState::Skipped);
    // The skipped stages are reported as skipped, and the end as the end.
    let skipped: Vec<pb::ProcessingStage> =
        meeting_events(&app, &fay, &meeting, &[pb::EventType::ProcessingStageSkipped])
            .await
            .iter()
            .map(|e| stage_of(e).stage())
            .collect();
    assert_eq!(
        skipped,
        [pb::ProcessingStage::Transcribe, pb::ProcessingStage::Cleanup]
    );
    let events = meeting_events(&app, &fay, &meeting, &[]).await;
    let parked_end = events.last().unwrap();
    assert_eq!(parked_end.r#type(), pb::EventType::ProcessingEnded);
    assert_eq!(
        ended_of(parked_end).status(),
        pb::MeetingStatus::AwaitingTranscription
    );
    assert!(!ended_of(parked_end).has_transcript);
    assert!(
        !events
            .iter()
            .any(|e| e.r#type() == pb::EventType::ProcessingStageCompleted
                && stage_of(e).stage() == pb::ProcessingStage::Transcribe),
        "a skipped stage is not reported as completed"
    );
    let early = get_analysis(&app, &fay, &meeting).await.unwrap();
    assert!(early.speech_ratio > 0.5 && early.words_per_minute.is_none());
    assert_eq!(
        get_transcript(&app, &fay, &meeting).await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    let mut worker = worker_process(&app, Some(&url), &[]);
    retry(&app, &fay, &meeting).await.unwrap();
    wait_for(&app, &fay, &meeting, &[pb::MeetingStatus::Ready]).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(
        provider.lock().unwrap().requests.len(),
        2,
        "one request per piece"
    );
    let text = get_transcript(&app, &fay, &meeting).await.unwrap();
    assert_eq!(text.segments.len(), 2);
    let later = get_analysis(&app, &fay, &meeting).await.unwrap();
    assert!(later.words_per_minute.is_some());
    assert!((later.speech_ratio - early.speech_ratio).abs() < 1e-9);
}

async fn rate_limits_are_waited_out_and_a_dead_job_is_retried_by_hand(backend: Backend) {
    let (url, provider) = fake_provider().await;
    let app = app_with_provider(
        backend,
        &url,
        &[
            ("DEBRIEF_JOB_MAX_ATTEMPTS", "2"),
            ("DEBRIEF_TRANSCRIBER_RETRIES", "2"),
        ],
    )
    .await;
    let gus = app.sign_up("gus").await;

    provider.lock().unwrap().queued = VecDeque::from([StatusCode::TOO_MANY_REQUESTS; 2]);
    let first = upload(&app, &gus, &short()).await;
    let done = wait_for(
        &app,
        &gus,
        &first,
        &[pb::MeetingStatus::Ready, pb::MeetingStatus::Failed],
    )
    .await;
    assert_eq!(done.status(), pb::MeetingStatus::Ready, "{}", done.failure_reason);
    // Two pieces: the first asked for three times.
    assert_eq!(provider.lock().unwrap().requests.len(), 4);

    provider.lock().unwrap().broken = true;
    let second = upload(&app, &gus, &short()).await;
    let failed = wait_for(&app, &gus, &second, &[pb::MeetingStatus::Failed]).await;
    assert!(failed.failure_reason.contains("500"), "{}", failed.failure_reason);
    let runs = get_status(&app, &gus, &second).await.unwrap().stage_runs;
    let tries: Vec<_> = runs
        .iter()
        .filter(|r| r.stage() == pb::ProcessingStage::Transcribe)
        .collect();
    assert_eq!(tries.len(), 2);
    assert!(
        tries
            .iter()
            .all(|r| r.state() == pb::StageRunState::Failed && !r.error.is_empty())
    );
    let events = EventServiceClient::new(app.channel.clone())
        .list_events(gus.request(pb::ListEventsRequest {
            page_size: 200,
            meeting: second.clone(),
            types: vec![pb::EventType::ProcessingStageFailed.into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    let retried: Vec<bool> = events
        .iter()
        .map(|e| match &e.payload {
            Some(pb::event::Payload::Stage(stage)) => stage.will_retry,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(retried, vec![true, false]);
    let ended = meeting_events(&app, &gus, &second, &[pb::EventType::ProcessingEnded]).await;
    assert_eq!(ended.len(), 1, "a retry that will happen by itself is no end");
    assert_eq!(ended_of(&ended[0]).status(), pb::MeetingStatus::Failed);
    assert_eq!(ended_of(&ended[0]).failure_reason, failed.failure_reason);

    // A dead job gives its analysis minute back; the retry holds it again.
    let minutes = || crate::uploads::usage_of(&app, &gus, pb::UsageCategory::AnalysisMinutes);
    assert_eq!(minutes().await, (1, 0));

    // Admins see the dead letter in the queue; nobody else sees the queue.
    let boss = crate::usage::admin(&app).await;
    let listed = ProcessingServiceClient::new(app.channel.clone())
        .list_jobs(crate::helpers::bearer(
            &boss,
            pb::ListJobsRequest {
                state: pb::JobState::Dead.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (listed.pending_count, listed.running_count, listed.dead_count),
        (0, 0, 1)
    );
    let dead = listed.jobs;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].meeting, second);
    assert_eq!((dead[0].attempts, dead[0].max_attempts), (2, 2));
    assert!(dead[0].last_error.contains("500"), "{:?}", dead[0]);
    let refused = ProcessingServiceClient::new(app.channel.clone())
        .list_jobs(gus.request(pb::ListJobsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    provider.lock().unwrap().broken = false;
    let again = retry(&app, &gus, &second).await.unwrap();
    assert_eq!(again.meeting_status(), pb::MeetingStatus::Queued);
    wait_for(&app, &gus, &second, &[pb::MeetingStatus::Ready]).await;
    assert_eq!(minutes().await, (2, 0));
    // Only the stages that had not finished ran again.
    let runs = get_status(&app, &gus, &second).await.unwrap().stage_runs;
    assert_eq!(
        runs.iter()
            .filter(|r| r.stage() == pb::ProcessingStage::Convert)
            .count(),
        1
    );
    assert_eq!(
        get_transcript(&app, &gus, &second).await.unwrap().segments.len(),
        2
    );
}

async fn speech_dense_sampling_stays_within_the_budget(backend: Backend) {
    let (url, provider) = fake_provider().await;
    let app = app_with_provider(backend, &url, &[("DEBRIEF_TRANSCRIPTION_PRICE", "6000")]).await;
    let hal = app.sign_up("hal").await;
    let mut processing = ProcessingServiceClient::new(app.channel.clone());
    let set = processing
        .update_sampling_config(hal.request(pb::UpdateSamplingConfigRequest {
            sampling_config: Some(pb::SamplingConfig {
                name: "users/me/samplingConfig".into(),
                strategy: pb::SamplingStrategy::SpeechDense.into(),
                budget: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["strategy".into(), "budget".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .sampling_config
        .unwrap();
    assert!(!set.inherited);
    assert_eq!(set.price_per_minute_micros, 6000);

    // Pieces of 20, 41, 31 and 11 seconds (cut in the middle of 2 s
    // silences): by speech, the 41 s piece fits the minute, the 31 s and
    // 20 s ones no longer do, the 11 s one does.
    let speech = [(0, 19_000), (21_000, 60_000), (62_000, 91_000), (93_000, 102_000)];
    let meeting = upload(&app, &hal, &recording(103_000, &speech, RATE)).await;
    wait_for(&app, &hal, &meeting, &[pb::MeetingStatus::Ready]).await;
    let sent = provider.lock().unwrap().requests.clone();
    let chosen_ms: i64 = sent.iter().sum();
    assert!(chosen_ms <= 60_000, "{sent:?}");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        (sent[0] - 41_000).abs() <= 50 && (sent[1] - 11_000).abs() <= 50,
        "{sent:?}"
    );
    let status = get_status(&app, &hal, &meeting).await.unwrap();
    assert_eq!(
        status.estimated_cost_micros,
        (chosen_ms * 6000 + 30_000) / 60_000,
        "price times the chosen minutes"
    );
    let speech_total: i64 = speech.iter().map(|(s, e)| e - s).sum();
    assert!((status.coverage_percent - 48_000.0 * 100.0 / speech_total as f64).abs() < 1.5);
    let transcript = get_transcript(&app, &hal, &meeting).await.unwrap();
    let starts: Vec<i64> = transcript.segments.iter().map(|s| ms(&s.start_offset)).collect();
    assert!(
        (starts[0] - 20_000).abs() <= 250 && (starts[1] - 92_000).abs() <= 250,
        "{starts:?}"
    );

    // Someone else's settings are not theirs to read.
    let ivy = app.sign_up("ivy").await;
    let err = processing
        .get_sampling_config(ivy.request(pb::GetSamplingConfigRequest {
            name: format!("users/{}/samplingConfig", hal.id),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

async fn a_worker_killed_mid_stage_is_replaced_and_the_meeting_is_ready_once(backend: Backend) {
    let (url, provider) = fake_provider().await;
    provider.lock().unwrap().stalled = true;
    // Housekeeping every second, to see it remove the dead worker's files.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_HOUSEKEEPING_INTERVAL".into(), "1s".into());
    })
    .await;
    let lease = [("DEBRIEF_JOB_LEASE", "2s")];
    let mut doomed = worker_process(&app, Some(&url), &lease);
    let jon = app.sign_up("jon").await;
    let meeting = upload(&app, &jon, &short()).await;

    // The worker is inside the transcribe stage, waiting on the provider.
    wait_until_transcribing(&app, &jon, &[&meeting]).await;
    let id = meeting.trim_start_matches("meetings/");
    let work_dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(app.data_dir().join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("work-{id}-"))
            })
            .collect()
    };
    let left = work_dirs();
    assert_eq!(left.len(), 1, "the run's work directory: {left:?}");
    doomed.kill().expect("SIGKILL the worker");
    doomed.wait().unwrap();
    // What the killed worker left is removed soon, not after a day.
    let killed_at = std::time::Instant::now();
    while left[0].exists() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "the dead worker's directory stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "a killed worker's work directory was removed {:?} after the kill",
        killed_at.elapsed()
    );

    provider.lock().unwrap().stalled = false;
    let mut successor = worker_process(&app, Some(&url), &lease);
    wait_for(&app, &jon, &meeting, &[pb::MeetingStatus::Ready]).await;
    let _ = successor.kill();
    let _ = successor.wait();

    let runs = get_status(&app, &jon, &meeting).await.unwrap().stage_runs;
    let transcribe: Vec<_> = runs
        .iter()
        .filter(|r| r.stage() == pb::ProcessingStage::Transcribe)
        .map(|r| (r.attempt, r.state()))
        .collect();
    assert_eq!(
        transcribe,
        vec![(1, pb::StageRunState::Failed), (2, pb::StageRunState::Succeeded)]
    );
    // Stages finished before the kill did not run again.
    assert_eq!(
        runs.iter()
            .filter(|r| r.stage() == pb::ProcessingStage::Convert)
            .count(),
        1
    );
    // Exactly one transcript (one line per piece), one analysis, one
    // "ready", and no temporary objects left.
    assert_eq!(
        get_transcript(&app, &jon, &meeting).await.unwrap().segments.len(),
        2
    );
    get_analysis(&app, &jon, &meeting).await.unwrap();
    let events = EventServiceClient::new(app.channel.clone())
        .list_events(jon.request(pb::ListEventsRequest {
            page_size: 200,
            meeting: meeting.clone(),
            types: vec![pb::EventType::MeetingReady.into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    let objects = app
        .state
        .shared
        .storage
        .list(&format!("meetings/{id}/"))
        .await
        .unwrap();
    assert_eq!(objects, vec![original_key_of(&app, &jon, &meeting).await]);
}

async fn mp3_and_m4a_recordings_convert_to_16_khz_mono_of_the_same_length(backend: Backend) {
    // Without a transcriber the converted audio is kept for later, so the
    // test can read it.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "2".into());
    })
    .await;
    let kim = app.sign_up("kim").await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (file, content_type) in [("speech.mp3", "audio/mpeg"), ("speech.m4a", "audio/mp4")] {
        let bytes = std::fs::read(fixtures.join(file)).unwrap();
        let meeting = new_meeting(&app, &kim).await;
        let mut client = UploadServiceClient::new(app.channel.clone());
        upload_in_chunks(&mut client, &kim, &meeting, &bytes, content_type)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let parked = wait_for(
            &app,
            &kim,
            &meeting,
            &[
                pb::MeetingStatus::AwaitingTranscription,
                pb::MeetingStatus::Failed,
            ],
        )
        .await;
        assert_eq!(
            parked.status(),
            pb::MeetingStatus::AwaitingTranscription,
            "{file}: {}",
            parked.failure_reason
        );
        let id = meeting.trim_start_matches("meetings/");
        let wav = app
            .state
            .shared
            .storage
            .get(&format!("meetings/{id}/work/audio.wav"))
            .await
            .unwrap();
        let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (RATE, 1, 16),
            "{file}"
        );
        let seconds = f64::from(reader.duration()) / f64::from(RATE);
        assert!((seconds - 6.0).abs() < 0.1, "{file}: {seconds} s");
        // The silence from 2 s to 3 s is the one pause.
        let analysis = get_analysis(&app, &kim, &meeting).await.unwrap();
        assert_eq!(analysis.pause_count, 1, "{file}: {analysis:?}");
        assert!(
            (ms(&analysis.longest_pause) - 1000).abs() <= 150,
            "{file}: {analysis:?}"
        );
    }
}

async fn a_plans_concurrent_jobs_and_analysis_minutes_are_respected(backend: Backend) {
    let (url, provider) = fake_provider().await;
    provider.lock().unwrap().stalled = true;
    let app = app_with_provider(backend, &url, &[("DEBRIEF_WORKERS", "2")]).await;
    let lea = app.sign_up("lea").await;
    let boss = crate::usage::admin(&app).await;
    crate::usage::set_plan(
        &app,
        &boss,
        &lea,
        "free",
        &[
            (pb::UsageCategory::ConcurrentJobs, 1),
            (pb::UsageCategory::AnalysisMinutes, 2),
        ],
    )
    .await;

    // Two workers are free, but the plan runs one of lea's meetings at once.
    let first = upload(&app, &lea, &short()).await;
    let second = upload(&app, &lea, &short()).await;
    wait_until_transcribing(&app, &lea, &[&first, &second]).await;
    let runs = |status: pb::ProcessingStatus| status.stage_runs.len();
    // Time for the free worker to claim the other meeting, were it allowed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = [
        runs(get_status(&app, &lea, &first).await.unwrap()),
        runs(get_status(&app, &lea, &second).await.unwrap()),
    ];
    assert!(started.contains(&0), "both ran at once: {started:?}");
    provider.lock().unwrap().stalled = false;
    for meeting in [&first, &second] {
        wait_for(&app, &lea, meeting, &[pb::MeetingStatus::Ready]).await;
    }

    // Both minutes are used: a third recording is refused at completion,
    // and its upload stays open for a retry after an upgrade.
    let third = new_meeting(&app, &lea).await;
    let mut client = UploadServiceClient::new(app.channel.clone());
    let refused = upload_in_chunks(&mut client, &lea, &third, &short(), "audio/wav")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("minute"), "{}", refused.message());
}

async fn originals_are_deleted_after_their_retention(backend: Backend) {
    let (url, _provider) = fake_provider().await;
    let app = app_with_provider(backend, &url, &[("DEBRIEF_ORIGINAL_RETENTION", "1h")]).await;
    let max = app.sign_up("max").await;
    let meeting = upload(&app, &max, &short()).await;
    wait_for(&app, &max, &meeting, &[pb::MeetingStatus::Ready]).await;
    let id = meeting.trim_start_matches("meetings/");
    let prefix = format!("meetings/{id}/");
    let stored = || async { app.state.shared.storage.list(&prefix).await.unwrap() };

    // Within the retention nothing happens; after it the original goes,
    // its storage is given back, and the results stay.
    debrief::housekeeping::run_once(&app.state.shared, chrono::Utc::now()).await;
    assert_eq!(stored().await.len(), 1);
    debrief::housekeeping::run_once(&app.state.shared, chrono::Utc::now() + chrono::Duration::hours(2)).await;
    assert!(stored().await.is_empty());
    assert_eq!(crate::uploads::storage_used(&app, &max).await, (0, 0));
    get_analysis(&app, &max, &meeting).await.unwrap();
    get_transcript(&app, &max, &meeting).await.unwrap();
}

async fn a_queued_meeting_wakes_an_idle_worker_at_once(backend: Backend) {
    // The worker looks for work once a minute; the upload wakes it.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
        vars.insert("DEBRIEF_JOB_POLL".into(), "60s".into());
    })
    .await;
    let ned = app.sign_up("ned").await;
    // Let the worker finish its first look and go idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    let meeting = upload(&app, &ned, &short()).await;
    wait_for(&app, &ned, &meeting, &[pb::MeetingStatus::AwaitingTranscription]).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// The order meetings move through, to check that watched states never go
/// back.
fn lifecycle_rank(status: pb::MeetingStatus) -> usize {
    use pb::MeetingStatus as S;
    [
        S::AwaitingUpload,
        S::Uploading,
        S::Uploaded,
        S::Queued,
        S::Processing,
        S::AwaitingTranscription,
    ]
    .iter()
    .position(|s| *s == status)
    .unwrap_or_else(|| panic!("unexpected status {status:?}"))
}

async fn watching_a_meeting_shows_each_new_state_until_it_is_deleted(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
    })
    .await;
    let ivy = app.sign_up("ivy").await;
    let meeting = new_meeting(&app, &ivy).await;
    let watch = |user: &TestUser| {
        let request = user.request(pb::WatchMeetingRequest {
            name: meeting.clone(),
            after_event_id: 0,
        });
        let mut client = MeetingServiceClient::new(app.channel.clone());
        async move { client.watch_meeting(request).await }
    };
    let mut stream = watch(&ivy).await.unwrap().into_inner();
    upload_whole(
        &mut UploadServiceClient::new(app.channel.clone()),
        &ivy,
        &meeting,
        &short(),
    )
    .await;

    // Meeting states and events in the order they arrive, until the end.
    let mut states: Vec<(pb::MeetingStatus, pb::ProcessingStage)> = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("processing ends")
            .unwrap()
            .expect("open");
        match message.kind {
            Some(pb::watch_meeting_response::Kind::Meeting(m)) => {
                states.push((m.status(), m.current_stage()))
            }
            Some(pb::watch_meeting_response::Kind::Event(e)) => {
                let end = e.r#type() == pb::EventType::ProcessingEnded;
                events.push(e);
                if end {
                    break;
                }
            }
            _ => {}
        }
    }
    // The state that the end event reports follows it.
    let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(pb::watch_meeting_response::Kind::Meeting(last)) = message.kind else {
        panic!("expected the meeting after the end, got {message:?}");
    };
    states.push((last.status(), last.current_stage()));
    assert_eq!(states[0].0, pb::MeetingStatus::AwaitingUpload, "{states:?}");
    assert_eq!(
        *states.last().unwrap(),
        (
            pb::MeetingStatus::AwaitingTranscription,
            pb::ProcessingStage::Unspecified
        )
    );
    assert!(
        states.len() >= 4,
        "the meeting was sent again as it changed: {states:?}"
    );
    assert!(
        states.windows(2).all(|w| w[0] != w[1]),
        "sent only when changed: {states:?}"
    );
    assert!(
        states
            .windows(2)
            .all(|w| lifecycle_rank(w[0].0) <= lifecycle_rank(w[1].0)),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s.0 == pb::MeetingStatus::Uploading));
    assert!(states.iter().any(|s| s.0 == pb::MeetingStatus::Processing));
    assert!(
        events
            .iter()
            .any(|e| e.r#type() == pb::EventType::ProcessingStageSkipped)
    );

    // Another user cannot watch it; once deleted, the stream ends.
    let other = app.sign_up("jay").await;
    assert_eq!(watch(&other).await.unwrap_err().code(), tonic::Code::NotFound);
    MeetingServiceClient::new(app.channel.clone())
        .delete_meeting(ivy.request(pb::DeleteMeetingRequest {
            name: meeting.clone(),
        }))
        .await
        .unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(ended.unwrap_err().code(), tonic::Code::NotFound);
}

/// Eight claimers claim side by side, round after round, from four owners
/// on the Free plan (one job at a time each): no owner ever has two jobs
/// running, no job is taken twice, and every job is run in the end.
async fn claimers_at_once_never_run_more_of_an_owners_jobs_than_the_plan_allows(backend: Backend) {
    use debrief::meetings::{entity::Kind, model::MeetingFields, store};
    use debrief::processing::jobs;

    let app = crate::helpers::spawn_app(backend).await;
    let db = &app.db;
    let mut owners = Vec::new();
    for name in ["ada", "ben", "cy", "dee"] {
        owners.push(app.sign_up(name).await.id);
    }
    let mut queued = 0;
    for _ in 0..5 {
        for &owner in &owners {
            let scoped = db.as_user(owner).await.unwrap();
            let meeting = store::create(&scoped, owner, Kind::Meeting, MeetingFields::default(), None)
                .await
                .unwrap();
            jobs::enqueue(&scoped, owner, meeting.id, None, 5).await.unwrap();
            scoped.commit().await.unwrap();
            queued += 1;
        }
    }

    let mut taken = std::collections::HashSet::new();
    for round in 0.. {
        assert!(round < 200, "{} of {queued} jobs ran", taken.len());
        let claims = (0..8).map(|i| async move {
            jobs::claim(db, &format!("claimer-{i}"), Duration::from_secs(60), 3)
                .await
                .unwrap()
                .into_iter()
                .map(move |job| (job, format!("claimer-{i}")))
        });
        let claimed: Vec<_> = futures::future::join_all(claims)
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut running = std::collections::HashMap::new();
        for (job, _) in &claimed {
            assert!(taken.insert(job.id), "job {} was taken twice", job.id);
            *running.entry(job.user_id).or_insert(0) += 1;
        }
        assert!(
            running.values().all(|&n| n <= 1),
            "round {round}: an owner got two jobs at once: {running:?}"
        );
        for (job, worker) in claimed {
            let scoped = db.as_service().await.unwrap();
            jobs::succeed(&scoped, job.id, &worker).await.unwrap();
            scoped.commit().await.unwrap();
        }
        if taken.len() == queued {
            break;
        }
    }
}
