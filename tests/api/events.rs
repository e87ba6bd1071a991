//! The event log and its streams: order, resumption without gaps, fan-out
//! across instances, isolation, caps, heartbeats, slow consumers, shutdown.

use std::time::Duration;

use debrief::events::model::Payload;
use debrief::pb::v1 as pb;
use debrief::pb::v1::event_service_client::EventServiceClient;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use tonic::Code;
use tonic::codec::Streaming;

use crate::helpers::{Backend, TestApp, TestUser, details, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::transports::grpc_web_channel;

on_both_backends!(
    subscribers_get_events_in_order_and_resume_without_gaps,
    events_stream_over_grpc_web,
    another_user_never_sees_the_events,
    the_stream_cap_refuses_the_newest_stream,
    heartbeats_arrive_at_the_configured_interval,
    a_slow_consumer_is_cut_off_with_its_resume_point,
    shutdown_ends_streams_with_the_resume_point,
    list_events_pages_through_the_log,
    uploads_and_quota_warnings_publish_events,
    admins_send_system_notices_to_one_user_or_to_everyone,
);

const WAIT: Duration = Duration::from_secs(20);

/// Publishes `count` notices for `user`, each in its own transaction.
async fn notices(app: &TestApp, user: &TestUser, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..count {
        let scoped = app.db.as_user(user.id).await.unwrap();
        let payload = Payload::SystemNotice {
            title: format!("notice {i}"),
            message: "hello".into(),
        };
        ids.push(
            debrief::events::publish(&scoped, user.id, None, payload)
                .await
                .unwrap(),
        );
        scoped.commit().await.unwrap();
    }
    ids
}

pub async fn subscribe(
    app: &TestApp,
    user: &TestUser,
    after: Option<i64>,
) -> Streaming<pb::SubscribeResponse> {
    EventServiceClient::new(app.channel.clone())
        .subscribe(user.request(pb::SubscribeRequest {
            after_event_id: after,
            ..Default::default()
        }))
        .await
        .expect("subscribe")
        .into_inner()
}

/// The next event of a stream, skipping heartbeats.
pub async fn next_event(stream: &mut Streaming<pb::SubscribeResponse>) -> Result<pb::Event, tonic::Status> {
    loop {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an event in time")?
            .expect("the stream is open");
        if let Some(pb::subscribe_response::Kind::Event(event)) = message.kind {
            return Ok(event);
        }
    }
}

async fn subscribers_get_events_in_order_and_resume_without_gaps(backend: Backend) {
    let app = spawn_app(backend).await;
    let amy = app.sign_up("amy").await;
    notices(&app, &amy, 2).await;
    // Without a starting point: only what comes next.
    let mut live = subscribe(&app, &amy, None).await;
    let published = notices(&app, &amy, 3).await;
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next_event(&mut live).await.unwrap().id);
    }
    assert_eq!(received, published, "in order, nothing before the subscription");
    drop(live);

    // Disconnected while more is published, then reconnecting while a
    // publisher keeps going: every event exactly once.
    let missed = notices(&app, &amy, 4).await;
    let last_seen = *received.last().unwrap();
    let publisher = {
        let (app_db, user) = (app.db.clone(), amy.id);
        tokio::spawn(async move {
            for i in 0..20 {
                let scoped = app_db.as_user(user).await.unwrap();
                let payload = Payload::SystemNotice {
                    title: format!("during {i}"),
                    message: String::new(),
                };
                debrief::events::publish(&scoped, user, None, payload)
                    .await
                    .unwrap();
                scoped.commit().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut resumed = subscribe(&app, &amy, Some(last_seen)).await;
    publisher.await.unwrap();
    let mut after = Vec::new();
    for _ in 0..missed.len() + 20 {
        after.push(next_event(&mut resumed).await.unwrap().id);
    }
    let expected: Vec<i64> = (last_seen + 1..=last_seen + 24).collect();
    assert_eq!(after, expected, "no gap, no duplicate");
    assert_eq!(&after[..4], &missed[..]);
}

async fn events_stream_over_grpc_web(backend: Backend) {
    let app = spawn_app(backend).await;
    let bo = app.sign_up("bo").await;
    let mut client = EventServiceClient::with_origin(grpc_web_channel(false), app.url().parse().unwrap());
    let mut stream = client
        .subscribe(bo.request(pb::SubscribeRequest {
            after_event_id: Some(0),
            ..Default::default()
        }))
        .await
        .expect("subscribe over gRPC-Web")
        .into_inner();
    let ids = notices(&app, &bo, 3).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(pb::subscribe_response::Kind::Event(e)) = message.kind {
            got.push(e.id);
        }
    }
    assert_eq!(got, ids);
}

async fn another_user_never_sees_the_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let cy = app.sign_up("cy").await;
    let dee = app.sign_up("dee").await;
    let meeting = crate::uploads::new_meeting(&app, &cy).await;
    let mut theirs = subscribe(&app, &dee, Some(0)).await;
    notices(&app, &cy, 3).await;
    let mine = notices(&app, &dee, 1).await;
    assert_eq!(
        next_event(&mut theirs).await.unwrap().id,
        mine[0],
        "only their own event"
    );
    let listed = EventServiceClient::new(app.channel.clone())
        .list_events(dee.request(pb::ListEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.events.len(), 1);
    let status = MeetingServiceClient::new(app.channel.clone())
        .watch_meeting(dee.request(pb::WatchMeetingRequest {
            name: meeting,
            after_event_id: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn the_stream_cap_refuses_the_newest_stream(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_MAX_STREAMS_PER_USER".into(), "2".into());
    })
    .await;
    let eve = app.sign_up("eve").await;
    let first = subscribe(&app, &eve, None).await;
    let _second = subscribe(&app, &eve, None).await;
    let status = EventServiceClient::new(app.channel.clone())
        .subscribe(eve.request(pb::SubscribeRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("at most 2"), "{}", status.message());
    // Another user is not affected.
    let fin = app.sign_up("fin").await;
    let _theirs = subscribe(&app, &fin, None).await;
    // Closing a stream frees its slot (the server notices the client left).
    drop(first);
    let started = std::time::Instant::now();
    loop {
        let attempt = EventServiceClient::new(app.channel.clone())
            .subscribe(eve.request(pb::SubscribeRequest::default()))
            .await;
        if attempt.is_ok() {
            break;
        }
        assert!(started.elapsed() < WAIT, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn heartbeats_arrive_at_the_configured_interval(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_EVENT_HEARTBEAT".into(), "200ms".into());
    })
    .await;
    let gil = app.sign_up("gil").await;
    let ids = notices(&app, &gil, 1).await;
    let mut stream = subscribe(&app, &gil, None).await;
    let started = std::time::Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 3 {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(pb::subscribe_response::Kind::Heartbeat(beat)) = message.kind {
            beats.push((started.elapsed(), beat.last_event_id));
        }
    }
    assert!(
        beats.iter().all(|(_, last)| *last == ids[0]),
        "heartbeats carry the resume id: {beats:?}"
    );
    let spacing = beats[2].0 - beats[1].0;
    assert!(
        spacing >= Duration::from_millis(150) && spacing < Duration::from_secs(2),
        "{beats:?}"
    );
}

async fn a_slow_consumer_is_cut_off_with_its_resume_point(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_STREAM_SLOW_TIMEOUT".into(), "300ms".into());
    })
    .await;
    let hal = app.sign_up("hal").await;
    // A client with small HTTP/2 windows that reads nothing for a while:
    // the server's buffers fill and the stream counts as too slow.
    let channel = tonic::transport::Channel::from_shared(app.url())
        .unwrap()
        .initial_stream_window_size(Some(16 << 10))
        .initial_connection_window_size(Some(16 << 10))
        .connect()
        .await
        .unwrap();
    let mut stream = EventServiceClient::new(channel)
        .subscribe(hal.request(pb::SubscribeRequest {
            after_event_id: Some(0),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let total = 1000;
    {
        let scoped = app.db.as_user(hal.id).await.unwrap();
        for i in 0..total {
            let payload = Payload::SystemNotice {
                title: format!("bulk {i}"),
                message: "x".repeat(1000),
            };
            debrief::events::publish(&scoped, hal.id, None, payload)
                .await
                .unwrap();
        }
        scoped.commit().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut last = 0;
    let status = loop {
        assert!(last < total, "every event arrived: the stream was never cut off");
        match tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("not stuck")
        {
            Ok(Some(message)) => {
                if let Some(pb::subscribe_response::Kind::Event(e)) = message.kind {
                    assert_eq!(e.id, last + 1, "in order, no gap");
                    last = e.id;
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let info = details(&status).error_info().unwrap().clone();
    assert_eq!(info.reason, "STREAM_TOO_SLOW");
    assert_eq!(
        info.metadata["last_event_id"],
        last.to_string(),
        "the resume point is the last event received"
    );
    // Resuming from there delivers the rest.
    let mut resumed = subscribe(&app, &hal, Some(last)).await;
    assert_eq!(next_event(&mut resumed).await.unwrap().id, last + 1);
}

async fn shutdown_ends_streams_with_the_resume_point(backend: Backend) {
    let app = spawn_app(backend).await;
    let ivy = app.sign_up("ivy").await;
    let mut stream = subscribe(&app, &ivy, Some(0)).await;
    let ids = notices(&app, &ivy, 2).await;
    for id in &ids {
        assert_eq!(next_event(&mut stream).await.unwrap().id, *id);
    }
    app.begin_shutdown();
    let status = next_event(&mut stream).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let info = details(&status).error_info().unwrap().clone();
    assert_eq!(info.reason, "SERVER_SHUTTING_DOWN");
    assert_eq!(info.metadata["last_event_id"], ids[1].to_string());
}

async fn list_events_pages_through_the_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let jo = app.sign_up("jo").await;
    let ids = notices(&app, &jo, 5).await;
    let mut client = EventServiceClient::new(app.channel.clone());
    let first = client
        .list_events(jo.request(pb::ListEventsRequest {
            page_size: 3,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.iter().map(|e| e.id).collect::<Vec<_>>(), &ids[..3]);
    assert!(first.has_more);
    let second = client
        .list_events(jo.request(pb::ListEventsRequest {
            after_event_id: first.last_event_id,
            page_size: 3,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.events.iter().map(|e| e.id).collect::<Vec<_>>(), &ids[3..]);
    assert!(!second.has_more);
    assert_eq!(second.events[0].r#type(), pb::EventType::SystemNotice);
}

async fn uploads_and_quota_warnings_publish_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let kim = app.sign_up("kim").await;
    let meeting = crate::uploads::new_meeting(&app, &kim).await;
    let mut watch = MeetingServiceClient::new(app.channel.clone())
        .watch_meeting(kim.request(pb::WatchMeetingRequest {
            name: meeting.clone(),
            after_event_id: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(WAIT, watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first.kind {
        Some(pb::watch_meeting_response::Kind::Meeting(m)) => {
            assert_eq!(m.status(), pb::MeetingStatus::AwaitingUpload);
        }
        other => panic!("the current state comes first: {other:?}"),
    }
    let file = crate::uploads::wav(2 * crate::uploads::MIB);
    let mut uploads = debrief::pb::v1::upload_service_client::UploadServiceClient::new(app.channel.clone());
    crate::uploads::upload_whole(&mut uploads, &kim, &meeting, &file).await;
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let message = tokio::time::timeout(WAIT, watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(pb::watch_meeting_response::Kind::Event(event)) = message.kind {
            assert_eq!(event.meeting, meeting);
            kinds.push(event.r#type());
        }
    }
    assert_eq!(
        kinds,
        [
            pb::EventType::UploadProgress,
            pb::EventType::UploadProgress,
            pb::EventType::UploadCompleted
        ]
    );

    // Crossing 80 % of a limit tells the user once.
    for _ in 0..17 {
        let scoped = app.db.as_user(kim.id).await.unwrap();
        let held = debrief::usage::ledger::reserve(
            &scoped,
            kim.id,
            debrief::usage::model::Category::PracticeSessions,
            1,
            Duration::from_secs(60),
            "https://upgrade.example",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        held.commit(&scoped, 1, None, chrono::Utc::now()).await.unwrap();
        scoped.commit().await.unwrap();
    }
    let listed = EventServiceClient::new(app.channel.clone())
        .list_events(kim.request(pb::ListEventsRequest {
            types: vec![pb::EventType::QuotaWarning as i32],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.events.len(),
        1,
        "once, at 80 % of the free plan's 20 sessions"
    );
    match &listed.events[0].payload {
        Some(pb::event::Payload::QuotaWarning(w)) => {
            assert_eq!((w.threshold_percent, w.used, w.limit), (80, 16, 20));
            assert_eq!(w.category(), pb::UsageCategory::PracticeSessions);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_instance_reaches_a_subscriber_on_another() {
    // Heartbeats far apart: delivery within seconds proves the NOTIFY path.
    let a = spawn_app_with(Backend::Postgres, |vars| {
        vars.insert("DEBRIEF_EVENT_HEARTBEAT".into(), "60s".into());
    })
    .await;
    let b = a.spawn_replica().await;
    let lea = a.sign_up("lea").await;
    let mut on_b = subscribe(&b, &lea, None).await;
    let started = std::time::Instant::now();
    let ids = notices(&a, &lea, 1).await;
    let got = tokio::time::timeout(Duration::from_secs(10), next_event(&mut on_b))
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(got.id, ids[0]);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_wake_up_is_caught_at_the_next_heartbeat() {
    let app = spawn_app_with(Backend::Sqlite, |vars| {
        vars.insert("DEBRIEF_EVENT_HEARTBEAT".into(), "300ms".into());
    })
    .await;
    let mo = app.sign_up("mo").await;
    let mut stream = subscribe(&app, &mo, None).await;
    // Another handle on the same SQLite file has its own signals: its
    // commit wakes nobody in the server, as a lost notification would.
    let elsewhere = debrief::db::Db::connect(&app.state.shared.config).await.unwrap();
    let scoped = elsewhere.as_user(mo.id).await.unwrap();
    let payload = Payload::SystemNotice {
        title: "unannounced".into(),
        message: String::new(),
    };
    let id = debrief::events::publish(&scoped, mo.id, None, payload)
        .await
        .unwrap();
    scoped.commit().await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(next_event(&mut stream).await.unwrap().id, id);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

async fn admins_send_system_notices_to_one_user_or_to_everyone(backend: Backend) {
    let app = spawn_app(backend).await;
    let boss = crate::usage::admin(&app).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let mut live = subscribe(&app, &ann, None).await;
    let admin = || debrief::pb::v1::admin_service_client::AdminServiceClient::new(app.channel.clone());
    let notice = |user: &str, title: &str| pb::SendSystemNoticeRequest {
        user: user.into(),
        title: title.into(),
        message: "debrief is read-only on Saturday from 06:00 to 07:00 UTC while the database is upgraded; \
                  uploads started before then finish normally."
            .into(),
    };

    let sent = admin()
        .send_system_notice(crate::helpers::bearer(&boss, notice("", "Scheduled maintenance")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.recipient_count, 3, "the admin, ann and bob");
    let event = next_event(&mut live).await.unwrap();
    assert_eq!(event.r#type(), pb::EventType::SystemNotice);
    let Some(pb::event::Payload::SystemNotice(received)) = event.payload else {
        panic!("{event:?}");
    };
    assert_eq!(received.title, "Scheduled maintenance");

    // To one user only: bob, who reads his log later and finds both.
    admin()
        .send_system_notice(crate::helpers::bearer(
            &boss,
            notice(&format!("users/{}", bob.id), "Your export is ready"),
        ))
        .await
        .unwrap();
    let titles = |user: TestUser| {
        let app = &app;
        async move {
            EventServiceClient::new(app.channel.clone())
                .list_events(user.request(pb::ListEventsRequest {
                    types: vec![pb::EventType::SystemNotice.into()],
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
                .events
                .into_iter()
                .map(|e| match e.payload {
                    Some(pb::event::Payload::SystemNotice(n)) => n.title,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        titles(bob.clone()).await,
        ["Scheduled maintenance", "Your export is ready"]
    );
    assert_eq!(titles(ann.clone()).await, ["Scheduled maintenance"]);

    // Bad input, unknown users and non-admins are refused; each notice is
    // audited.
    let status = admin()
        .send_system_notice(crate::helpers::bearer(&boss, notice("people/1", " ")))
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::violation_fields(&status), ["user", "title"]);
    let stranger = format!("users/{}", uuid::Uuid::now_v7());
    let status = admin()
        .send_system_notice(crate::helpers::bearer(&boss, notice(&stranger, "Hello")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = admin()
        .send_system_notice(ann.request(notice("", "Hi all")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        app.audit_actions(bob.id)
            .await
            .contains(&"admin.system_notice".to_owned())
    );

    // Over HTTP too.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/systemNotices:send", app.url()))
        .bearer_auth(&boss)
        .json(&serde_json::json!({"user": format!("users/{}", ann.id), "title": "Welcome", "message": "Glad you are here."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        next_event(&mut live).await.unwrap().r#type(),
        pb::EventType::SystemNotice
    );
}
