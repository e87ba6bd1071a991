//! Two instances on one Postgres and one shared storage (an S3 bucket), as
//! two replicas behind a load balancer: one a `debrief serve` child process
//! (so it can be SIGKILLed), the other in this process.

use std::time::{Duration, Instant};

use debrief::pb::v1 as pb;
use debrief::pb::v1::auth_service_client::AuthServiceClient;
use debrief::pb::v1::event_service_client::EventServiceClient;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::processing_service_client::ProcessingServiceClient;
use debrief::pb::v1::profile_service_client::ProfileServiceClient;
use debrief::pb::v1::upload_service_client::UploadServiceClient;
use tonic::transport::Channel;

use crate::helpers::{Backend, TestUser, bearer, spawn_app_with, test_env};
use crate::processing::{API_KEY, fake_provider, recording};
use crate::uploads::{MIB, create_request};

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_share_uploads_events_revocations_and_jobs() {
        super::two_instances_share_uploads_events_revocations_and_jobs().await
    }
}

/// Waits until `check` holds for the meeting's processing status.
async fn until_status(
    channel: &Channel,
    user: &TestUser,
    meeting: &str,
    what: &str,
    check: impl Fn(&pb::ProcessingStatus) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = ProcessingServiceClient::new(channel.clone())
            .get_processing_status(user.request(pb::GetProcessingStatusRequest {
                name: format!("{meeting}/processingStatus"),
            }))
            .await
            .unwrap()
            .into_inner()
            .processing_status
            .unwrap();
        if check(&status) {
            return;
        }
        assert!(Instant::now() < deadline, "{meeting} never {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn transcribing(status: &pb::ProcessingStatus) -> bool {
    status
        .stage_runs
        .iter()
        .any(|r| r.stage() == pb::ProcessingStage::Transcribe && r.state() == pb::StageRunState::Running)
}

async fn new_meeting(channel: &Channel, user: &TestUser) -> String {
    crate::uploads::new_meeting_via(channel, &user.tokens.access_token).await
}

async fn two_instances_share_uploads_events_revocations_and_jobs() {
    let (provider_url, provider) = fake_provider().await;
    provider.lock().unwrap().stalled = true;
    let (_bucket, storage) = crate::helpers::s3::bucket_env().await;
    let (mut vars, _data_a) = test_env(Backend::Postgres).await;
    vars.extend(storage);
    for (key, value) in [
        ("DEBRIEF_LOG_FORMAT", "json"),
        ("DEBRIEF_WORKERS", "1"),
        ("DEBRIEF_TRANSCRIBER", "openai"),
        ("DEBRIEF_TRANSCRIBER_URL", &provider_url),
        ("DEBRIEF_TRANSCRIBER_API_KEY", API_KEY),
        ("DEBRIEF_JOB_LEASE", "2s"),
        ("DEBRIEF_JOB_BACKOFF", "100ms"),
        ("DEBRIEF_SESSION_RECHECK", "1s"),
    ] {
        vars.insert(key.into(), value.into());
    }

    // Instance A alone first: its one worker takes the first meeting and
    // waits inside transcription.
    let (mut a, addr, _log) = crate::cli::serve(&vars).await;
    let to_a = crate::helpers::connect(&addr).await;
    let rep = crate::helpers::sign_up_via(&to_a, "rep").await;
    let held = new_meeting(&to_a, &rep).await;
    crate::uploads::upload_whole(
        &mut UploadServiceClient::new(to_a.clone()),
        &rep,
        &held,
        &crate::processing::short(),
    )
    .await;
    until_status(&to_a, &rep, &held, "reached transcription on A", transcribing).await;

    // Instance B: same database and storage, its own data directory.
    let b = spawn_app_with(Backend::Postgres, |own| {
        for (key, value) in &vars {
            if key != "DEBRIEF_DATA_DIR" && key != "DEBRIEF_ADDR" && key != "DEBRIEF_LOG_FORMAT" {
                own.insert(key.clone(), value.clone());
            }
        }
    })
    .await;
    let to_b = b.channel.clone();

    // An upload whose chunks alternate between the two, completed on A; B's
    // event stream sees the completion A caused.
    let mut events = EventServiceClient::new(to_b.clone())
        .subscribe(rep.request(pb::SubscribeRequest {
            types: vec![pb::EventType::UploadCompleted as i32],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let file = recording(
        60_000,
        &[(2000, 30_000), (32_000, 58_000)],
        crate::processing::RATE,
    );
    let shared = new_meeting(&to_b, &rep).await;
    let upload = UploadServiceClient::new(to_b.clone())
        .create_upload(rep.request(create_request(&shared, &file, "audio/wav", "alternating.wav")))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();
    for (i, piece) in file.chunks(MIB).enumerate() {
        let to = if i % 2 == 0 { &to_a } else { &to_b };
        UploadServiceClient::new(to.clone())
            .append_chunk(rep.request(crate::uploads::append(&upload.name, i * MIB, piece)))
            .await
            .unwrap_or_else(|e| panic!("chunk {i}: {e:?}"));
    }
    let completed_at = Instant::now();
    UploadServiceClient::new(to_a.clone())
        .complete_upload(rep.request(pb::CompleteUploadRequest {
            name: upload.name.clone(),
        }))
        .await
        .expect("completes on A");
    let event = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("B's stream hears of A's completion")
        .unwrap()
        .unwrap();
    let crossed = completed_at.elapsed();
    match event.kind {
        Some(pb::subscribe_response::Kind::Event(event)) => assert_eq!(event.meeting, shared),
        other => panic!("not an event: {other:?}"),
    }
    let (_, stored) = crate::meetings::download_via(&to_b, &rep.tokens.access_token, &shared, 0, 0)
        .await
        .unwrap();
    assert!(stored == file, "the recording is byte for byte the file");

    // A session ended on B is refused on A within DEBRIEF_SESSION_RECHECK.
    let second = b.sign_in(&rep.email, crate::helpers::PASSWORD).await.unwrap();
    let profile_on_a = || {
        let token = second.access_token.clone();
        let channel = to_a.clone();
        async move {
            ProfileServiceClient::new(channel)
                .get_profile(bearer(&token, pb::GetProfileRequest::default()))
                .await
        }
    };
    profile_on_a().await.expect("the new session works on A");
    AuthServiceClient::new(to_b.clone())
        .sign_out(bearer(&second.access_token, pb::SignOutRequest::default()))
        .await
        .unwrap();
    let signed_out = Instant::now();
    let refused = loop {
        if let Err(status) = profile_on_a().await {
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            break signed_out.elapsed();
        }
        assert!(
            signed_out.elapsed() < Duration::from_secs(3),
            "A still accepts a session B ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // SIGKILL A while B serves: B's callers see nothing of it, and B's
    // worker finishes the meeting A held once its lease runs out.
    let serving = tokio::spawn({
        let (channel, rep) = (to_b.clone(), rep.clone());
        async move {
            let (mut calls, mut failures) = (0, Vec::new());
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                calls += 1;
                if let Err(status) = MeetingServiceClient::new(channel.clone())
                    .list_meetings(rep.request(pb::ListMeetingsRequest::default()))
                    .await
                {
                    failures.push(status);
                }
            }
            (calls, failures)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::cli::kill9(&mut a).await;
    let killed = Instant::now();
    provider.lock().unwrap().stalled = false;
    let (calls, failures) = serving.await.unwrap();
    assert!(
        failures.is_empty(),
        "B failed {} of {calls} calls: {failures:?}",
        failures.len()
    );
    for meeting in [&shared, &held] {
        crate::processing::wait_for(&b, &rep, meeting, &[pb::MeetingStatus::Ready]).await;
    }
    let rescued = killed.elapsed();
    let runs = crate::processing::get_status(&b, &rep, &held)
        .await
        .unwrap()
        .stage_runs;
    let transcribe: Vec<_> = runs
        .iter()
        .filter(|r| r.stage() == pb::ProcessingStage::Transcribe)
        .map(|r| r.state())
        .collect();
    assert_eq!(transcribe.last(), Some(&pb::StageRunState::Succeeded), "{runs:?}");
    println!(
        "two instances: A's completion reached B's stream in {crossed:?}; a session ended on B was refused on A \
         after {refused:?}; B served {calls} calls around A's SIGKILL without a failure and finished A's meeting \
         {rescued:?} after the kill (lease 2 s)"
    );
}
