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
use debrief::pb::v1::upload_service_client::UploadServiceClient;
use tokio_stream::wrappers::ReceiverStream;

use crate::helpers::{Backend, KillOnDrop, TestApp, TestUser, details, spawn_app};
use crate::processing::{RATE, get_status, recording, upload, wait_for, worker_process};
use crate::uploads::{MIB, new_meeting, original_key, wav};

crate::on_both_backends!(
    a_stream_cut_at_shutdown_names_its_upload_and_a_new_stream_resumes_or_replaces_it,
    a_completion_killed_mid_way_leaves_nothing_behind_and_can_be_completed_again,
);

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_outage_is_unavailable_with_a_retry_hint_and_the_server_recovers() {
        super::a_database_outage_is_unavailable_with_a_retry_hint_and_the_server_recovers().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_finding_every_connection_busy_is_unavailable_after_the_acquire_timeout() {
        super::a_call_finding_every_connection_busy_is_unavailable_after_the_acquire_timeout().await
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
    let app = crate::helpers::spawn_app_on(&cluster).await;
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

/// With every connection of user transactions busy, a call waits for one
/// no longer than `DEBRIEF_DB_ACQUIRE_TIMEOUT`, then fails with
/// UNAVAILABLE and a retry hint; once a connection is free again the same
/// call is served.
async fn a_call_finding_every_connection_busy_is_unavailable_after_the_acquire_timeout() {
    let app = crate::helpers::spawn_app_with(Backend::Postgres, |vars| {
        vars.insert("DEBRIEF_DB_MAX_CONNECTIONS".into(), "1".into());
        vars.insert("DEBRIEF_DB_ACQUIRE_TIMEOUT".into(), "500ms".into());
    })
    .await;
    let dee = app.sign_up("dee").await;
    let profile = || async {
        app.profiles()
            .get_profile(dee.request(pb::GetProfileRequest::default()))
            .await
    };
    profile().await.expect("served");

    // The server's one connection, held by a transaction of its own.
    let held = app.db.as_service().await.expect("the one connection");
    let started = std::time::Instant::now();
    let status = profile().await.expect_err("no connection free");
    let waited = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let details = details(&status);
    assert!(details.retry_info().is_some(), "{status:?}");
    assert_eq!(details.error_info().unwrap().reason, "DATABASE_UNAVAILABLE");
    assert!(
        (Duration::from_millis(450)..Duration::from_secs(3)).contains(&waited),
        "the refusal took {waited:?}"
    );

    drop(held);
    profile().await.expect("served once the connection is free");
}

/// A client stream of `Upload` messages the test feeds by hand.
struct Feed {
    tx: tokio::sync::mpsc::Sender<pb::UploadRequest>,
    call: tokio::task::JoinHandle<Result<tonic::Response<pb::UploadResponse>, tonic::Status>>,
}

impl Feed {
    /// Opens the stream with `metadata`, its bytes starting at `write_offset`.
    fn open(app: &TestApp, user: &TestUser, metadata: pb::Upload, write_offset: i64) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(pb::UploadRequest {
            kind: Some(pb::upload_request::Kind::Metadata(metadata)),
            write_offset,
        })
        .unwrap();
        let mut client = UploadServiceClient::new(app.channel.clone());
        let request = user.request(ReceiverStream::new(rx));
        Self {
            tx,
            call: tokio::spawn(async move { client.upload(request).await }),
        }
    }

    async fn send(&self, bytes: &[u8]) {
        for piece in bytes.chunks(MIB) {
            self.tx
                .send(pb::UploadRequest {
                    kind: Some(pb::upload_request::Kind::Chunk(piece.to_vec().into())),
                    write_offset: 0,
                })
                .await
                .unwrap();
        }
    }

    /// Ends the stream and returns the answer.
    async fn finish(self) -> Result<pb::UploadResponse, tonic::Status> {
        drop(self.tx);
        self.call.await.unwrap().map(tonic::Response::into_inner)
    }
}

fn metadata_for(meeting: &str, file: &[u8]) -> pb::Upload {
    pb::Upload {
        meeting: meeting.into(),
        file_name: "board-review.wav".into(),
        content_type: "audio/wav".into(),
        size_bytes: file.len() as i64,
        ..Default::default()
    }
}

/// A stream of `user`'s upload progress events, from now on.
async fn upload_progress(app: &TestApp, user: &TestUser) -> tonic::codec::Streaming<pb::SubscribeResponse> {
    EventServiceClient::new(app.channel.clone())
        .subscribe(user.request(pb::SubscribeRequest {
            types: vec![pb::EventType::UploadProgress.into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
}

/// Waits for the first committed chunk of `user`'s uploads.
async fn first_progress(stream: &mut tonic::codec::Streaming<pb::SubscribeResponse>) -> pb::UploadProgress {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("a chunk is committed")
            .unwrap()
            .unwrap();
        if let Some(pb::subscribe_response::Kind::Event(pb::Event {
            payload: Some(pb::event::Payload::UploadProgress(progress)),
            ..
        })) = message.kind
        {
            return progress;
        }
    }
}

async fn a_stream_cut_at_shutdown_names_its_upload_and_a_new_stream_resumes_or_replaces_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let pat = app.sign_up("pat").await;
    let file = wav(20 * MIB);
    let mut events = upload_progress(&app, &pat).await;
    let first = new_meeting(&app, &pat).await;
    let feed = Feed::open(&app, &pat, metadata_for(&first, &file), 0);
    // One whole chunk and part of the next: the first chunk's commit is
    // then the last before the shutdown, whenever the shutdown comes.
    feed.send(&file[..5 * MIB]).await;
    let committed = first_progress(&mut events).await;

    // Shutdown cuts the stream: its status says what to resume.
    app.begin_shutdown();
    let status = feed.finish().await.expect_err("cut by the shutdown");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let info = details(&status).error_info().cloned().expect("ErrorInfo");
    assert_eq!(info.metadata["upload"], committed.upload);
    let offset: i64 = info.metadata["committed_bytes"].parse().unwrap();
    assert_eq!(offset, committed.committed_bytes);
    assert!(offset > 0 && offset < file.len() as i64);

    // Another instance on the same database and storage, after the restart.
    let data_dir = app.data_dir().display().to_string();
    let next = app
        .spawn_replica_with(|vars| {
            vars.insert("DEBRIEF_DATA_DIR".into(), data_dir);
        })
        .await;
    let resumed = Feed::open(
        &next,
        &pat,
        pb::Upload {
            name: committed.upload.clone(),
            ..metadata_for(&first, &file)
        },
        offset,
    );
    resumed.send(&file[offset as usize..]).await;
    let done = resumed.finish().await.expect("the resumed stream completes");
    let meeting = done.meeting.unwrap();
    assert_eq!(meeting.upload, committed.upload, "the same upload, resumed");
    let stored = std::fs::read(app.data_dir().join("objects").join(original_key(&meeting))).unwrap();
    assert!(stored == file, "the recording is byte for byte the file");

    // A stream that ended early leaves its upload, which a plain new
    // stream for the meeting replaces.
    let second = new_meeting(&next, &pat).await;
    let mut events = upload_progress(&next, &pat).await;
    let early = Feed::open(&next, &pat, metadata_for(&second, &file), 0);
    early.send(&file[..9 * MIB]).await;
    let abandoned = first_progress(&mut events).await.upload;
    let status = early.finish().await.expect_err("incomplete");
    assert_eq!(
        details(&status).error_info().unwrap().metadata["upload"],
        abandoned
    );
    let refused = UploadServiceClient::new(next.channel.clone())
        .create_upload(pat.request(pb::CreateUploadRequest {
            upload: Some(metadata_for(&second, &file)),
            request_id: String::new(),
        }))
        .await
        .expect_err("the meeting has an unfinished upload");
    assert_eq!(
        details(&refused).error_info().unwrap().metadata["upload"],
        abandoned
    );
    let again = Feed::open(&next, &pat, metadata_for(&second, &file), 0);
    again.send(&file).await;
    let replaced = again
        .finish()
        .await
        .expect("a new stream replaces the abandoned upload");
    assert_ne!(replaced.upload.unwrap().name, abandoned);
    let old = UploadServiceClient::new(next.channel.clone())
        .get_upload(pat.request(pb::GetUploadRequest {
            name: abandoned.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();
    assert_eq!(old.state(), pb::UploadState::Cancelled);
    // Two recordings are stored and counted; nothing is held any more.
    let storage = crate::uploads::storage_used(&next, &pat).await;
    assert_eq!(storage, (2 * file.len() as i64, 0));
    // Nobody else can resume it.
    let eve = next.sign_up("eve").await;
    let foreign = Feed::open(
        &next,
        &eve,
        pb::Upload {
            name: abandoned,
            ..metadata_for(&second, &file)
        },
        0,
    );
    assert_eq!(foreign.finish().await.unwrap_err().code(), tonic::Code::NotFound);
}

/// `debrief serve` is SIGKILLed while it completes an upload (the scan
/// waits on a clamd that never answers, the upload claimed). Nothing of
/// the dead completion is left in the scratch directory, and once its claim
/// lapses (twice the request timeout) the upload completes, byte for byte.
/// A completion killed after it moved the file to the original's key (but
/// before it committed) is covered by
/// `uploads::a_completion_that_died_after_moving_the_file_completes_again`.
async fn a_completion_killed_mid_way_leaves_nothing_behind_and_can_be_completed_again(backend: Backend) {
    let (mut vars, data_dir) = crate::helpers::test_env(backend).await;
    vars.insert("DEBRIEF_LOG_FORMAT".into(), "json".into());
    vars.insert("DEBRIEF_REQUEST_TIMEOUT".into(), "3s".into());
    vars.insert("DEBRIEF_HOUSEKEEPING_INTERVAL".into(), "1s".into());
    // A clamd that takes the file and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut with_silent_clamd = vars.clone();
    with_silent_clamd.insert(
        "DEBRIEF_CLAMD_ADDR".into(),
        silent.local_addr().unwrap().to_string(),
    );
    let (scanning, mut scan_started) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = scanning.send(true);
        }
    });
    let (mut child, addr, _log) = crate::cli::serve(&with_silent_clamd).await;
    let channel = crate::helpers::connect(&addr).await;
    let token = crate::helpers::sign_up_via(&channel, "kim")
        .await
        .tokens
        .access_token;
    let file = wav(3 * MIB);
    let meeting = crate::uploads::new_meeting_via(&channel, &token).await;
    let mut uploads = UploadServiceClient::new(channel.clone());
    let upload = uploads
        .create_upload(crate::helpers::bearer(
            &token,
            pb::CreateUploadRequest {
                upload: Some(metadata_for(&meeting, &file)),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();
    for (i, piece) in file.chunks(2 * MIB).enumerate() {
        uploads
            .append_chunk(crate::helpers::bearer(
                &token,
                crate::uploads::append(&upload.name, i * 2 * MIB, piece),
            ))
            .await
            .unwrap();
    }
    let complete = |channel: tonic::transport::Channel| {
        let request = crate::helpers::bearer(
            &token,
            pb::CompleteUploadRequest {
                name: upload.name.clone(),
            },
        );
        async move { UploadServiceClient::new(channel).complete_upload(request).await }
    };
    let pending = tokio::spawn(complete(channel.clone()));
    tokio::time::timeout(Duration::from_secs(10), scan_started.wait_for(|started| *started))
        .await
        .expect("the completion never reached the scan")
        .unwrap();
    crate::cli::kill9(&mut child).await;
    let _ = pending.await;
    let scratch = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(data_dir.path().join("tmp"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };

    // The next process, without the silent scanner.
    let (_child, addr, _log) = crate::cli::serve(&vars).await;
    let restarted = std::time::Instant::now();
    let channel = crate::helpers::connect(&addr).await;
    while !scratch().is_empty() {
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "the dead completion's files stayed: {:?}",
            scratch()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = loop {
        match complete(channel.clone()).await {
            Ok(done) => break done.into_inner(),
            Err(status) => {
                let reason = details(&status).error_info().map(|i| i.reason.clone());
                assert_eq!(reason.as_deref(), Some("UPLOAD_COMPLETING"), "{status:?}");
                assert!(
                    restarted.elapsed() < Duration::from_secs(30),
                    "the claim never lapsed"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let completed_after = restarted.elapsed();
    let meeting = done.meeting.unwrap();
    let stored = std::fs::read(data_dir.path().join("objects").join(original_key(&meeting))).unwrap();
    assert!(stored == file, "the recording is byte for byte the file");
    println!("after the restart: the upload completed after {completed_after:?}");
}
