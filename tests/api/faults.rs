//! Faults from outside the server: other processes on the same SQLite file,
//! a database that goes away, a stream cut at shutdown, and what processes
//! killed with SIGKILL leave behind. Each test drives real child processes
//! (the `debrief` binary) or the server through its public API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use debrief::pb::v1 as pb;
use debrief::pb::v1::event_service_client::EventServiceClient;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;

use crate::helpers::{Backend, KillOnDrop, spawn_app, spawn_app_with};
use crate::processing::{RATE, get_status, recording, upload, wait_for, worker_process};

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_outage_is_unavailable_with_a_retry_hint_and_the_server_recovers() {
        super::a_database_outage_is_unavailable_with_a_retry_hint_and_the_server_recovers().await
    }
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_never_meet_a_locked_database_while_a_worker_process_writes() {
        super::writes_never_meet_a_locked_database_while_a_worker_process_writes().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_of_a_worker_process_reach_streams_within_a_second() {
        super::events_of_a_worker_process_reach_streams_within_a_second().await
    }
}

/// Fifty callers write through the server while a separate `debrief
/// worker` process works through a queue of meetings on the same SQLite
/// file: no call and no stage may fail because the other process holds
/// the write lock.
async fn writes_never_meet_a_locked_database_while_a_worker_process_writes() {
    let app = spawn_app(Backend::Sqlite).await;
    let ann = app.sign_up("ann").await;
    let file = recording(3_000, &[(200, 1_400), (1_700, 2_800)], RATE);
    let mut queued = Vec::new();
    for _ in 0..16 {
        queued.push(upload(&app, &ann, &file).await);
    }

    let mut users = Vec::new();
    for i in 0..50 {
        users.push(app.sign_up(&format!("writer{i}")).await);
    }
    let worker = KillOnDrop(worker_process(
        &app,
        None,
        &[("DEBRIEF_WORKERS", "2"), ("DEBRIEF_JOB_POLL", "20ms")],
    ));
    let failures: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let writes = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for user in users {
        let (channel, failures, writes) = (app.channel.clone(), failures.clone(), writes.clone());
        tasks.push(tokio::spawn(async move {
            let mut meetings = MeetingServiceClient::new(channel);
            let created = meetings
                .create_meeting(user.request(pb::CreateMeetingRequest {
                    meeting: Some(pb::Meeting {
                        title: "Weekly sync".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                }))
                .await
                .expect("create a meeting")
                .into_inner()
                .meeting
                .unwrap();
            let mut n = 0u64;
            while tokio::time::Instant::now() < deadline {
                n += 1;
                // A read-then-write transaction, the kind that used to fail.
                let result = meetings
                    .update_meeting(user.request(pb::UpdateMeetingRequest {
                        meeting: Some(pb::Meeting {
                            name: created.name.clone(),
                            title: format!("Weekly sync {n}"),
                            ..Default::default()
                        }),
                        update_mask: None,
                    }))
                    .await;
                writes.fetch_add(1, Ordering::Relaxed);
                if let Err(status) = result {
                    let key = format!("{:?}: {}", status.code(), status.message());
                    *failures.lock().unwrap().entry(key).or_default() += 1;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let finished_during_load = {
        let mut done = 0;
        for meeting in &queued {
            let status = get_status(&app, &ann, meeting).await.unwrap();
            if status.meeting_status() == pb::MeetingStatus::AwaitingTranscription {
                done += 1;
            }
        }
        done
    };
    for meeting in &queued {
        wait_for(&app, &ann, meeting, &[pb::MeetingStatus::AwaitingTranscription]).await;
    }
    drop(worker);

    let writes = writes.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap().clone();
    println!(
        "{writes} writes by 50 callers in 6 s while the worker processed {finished_during_load} meetings; failures: {failures:?}"
    );
    assert!(finished_during_load > 0, "the worker did not run during the load");
    assert!(failures.is_empty(), "{failures:?} of {writes} writes failed");
    for meeting in &queued {
        let runs = get_status(&app, &ann, meeting).await.unwrap().stage_runs;
        assert!(
            runs.iter()
                .all(|r| r.attempt == 1 && r.state() != pb::StageRunState::Failed),
            "a stage of {meeting} failed: {runs:?}"
        );
    }
}

/// A `debrief worker` process publishes processing events into the SQLite
/// file; a stream open on the server (heartbeat 15 s) receives each one
/// within a second of its creation, not at the next heartbeat.
async fn events_of_a_worker_process_reach_streams_within_a_second() {
    let app = spawn_app(Backend::Sqlite).await;
    let bea = app.sign_up("bea").await;
    let _worker = KillOnDrop(worker_process(&app, None, &[]));
    let mut stream = EventServiceClient::new(app.channel.clone())
        .subscribe(bea.request(pb::SubscribeRequest {
            after_event_id: None,
            types: vec![
                pb::EventType::ProcessingStageStarted.into(),
                pb::EventType::ProcessingStageCompleted.into(),
                pb::EventType::ProcessingEnded.into(),
            ],
            meeting: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    upload(&app, &bea, &recording(3_000, &[(200, 2_800)], RATE)).await;
    let mut latest = Duration::ZERO;
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the processing events arrive")
            .unwrap()
            .expect("the stream stays open");
        let Some(pb::subscribe_response::Kind::Event(event)) = message.kind else {
            continue;
        };
        let created = event.create_time.unwrap();
        let created = chrono::DateTime::from_timestamp(created.seconds, created.nanos as u32).unwrap();
        let late = (chrono::Utc::now() - created).to_std().unwrap_or_default();
        latest = latest.max(late);
        received += 1;
        if event.r#type() == pb::EventType::ProcessingEnded {
            break;
        }
    }
    println!("{received} events of the worker process, the latest {latest:?} after it was created");
    assert!(
        latest < Duration::from_secs(1),
        "an event arrived {latest:?} late"
    );
}

/// Postgres stops under a running server: calls fail with UNAVAILABLE and a
/// RetryInfo (not INTERNAL) within the acquire timeout, `/readyz` answers
/// 503 within about a second, and once Postgres is back the same server
/// serves again without a restart.
async fn a_database_outage_is_unavailable_with_a_retry_hint_and_the_server_recovers() {
    let cluster = crate::helpers::postgres::Cluster::start(true).expect("a Postgres cluster of its own");
    let url = cluster.app_database().await;
    let app = spawn_app_with(Backend::Postgres, |vars| {
        vars.insert("DATABASE_URL".into(), url);
        vars.insert("DEBRIEF_DB_ACQUIRE_TIMEOUT".into(), "2s".into());
    })
    .await;
    let cal = app.sign_up("cal").await;
    let profile = || async {
        app.profiles()
            .get_profile(cal.request(pb::GetProfileRequest::default()))
            .await
    };
    let ready = || async {
        let started = std::time::Instant::now();
        let status = reqwest::get(format!("{}/readyz", app.url()))
            .await
            .unwrap()
            .status();
        (status, started.elapsed())
    };
    profile().await.expect("served before the outage");
    assert_eq!(ready().await.0, 200);

    cluster.stop("immediate").expect("stop Postgres");
    let started = std::time::Instant::now();
    let status = profile().await.expect_err("no database");
    let waited = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let details = crate::helpers::details(&status);
    assert!(details.retry_info().is_some(), "{status:?}");
    assert_eq!(details.error_info().unwrap().reason, "DATABASE_UNAVAILABLE");
    assert!(waited < Duration::from_secs(5), "the refusal took {waited:?}");
    let (status, took) = ready().await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_millis(1500), "/readyz took {took:?}");
    println!("during the outage: UNAVAILABLE after {waited:?}, /readyz 503 after {took:?}");

    cluster.resume().expect("start Postgres again");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(status) = profile().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not recover: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready().await.0, 200);
}
