//! Meetings: create, read, list, update and delete, each only for its owner.

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{Backend, TestApp, TestUser, spawn_app, violation_fields};
use crate::on_both_backends;

on_both_backends!(
    meetings_are_created_read_updated_and_deleted,
    creating_with_the_same_request_id_returns_the_first_meeting,
    meetings_are_listed_newest_first_with_filters_and_pages,
    another_user_gets_not_found_for_every_meeting_rpc,
    deleted_meetings_are_purged_after_the_retention,
    a_recording_downloads_whole_and_in_ranges_over_grpc_and_http,
);

fn client(app: &TestApp) -> MeetingServiceClient<Channel> {
    MeetingServiceClient::new(app.channel.clone())
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

async fn create(app: &TestApp, user: &TestUser, title: &str, occurred: i64) -> pb::Meeting {
    client(app)
        .create_meeting(user.request(pb::CreateMeetingRequest {
            meeting: Some(pb::Meeting {
                title: title.into(),
                occurred_time: at(occurred),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create")
        .into_inner()
        .meeting
        .unwrap()
}

async fn meetings_are_created_read_updated_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.sign_up("ada").await;
    let created = client(&app)
        .create_meeting(ada.request(pb::CreateMeetingRequest {
            meeting: Some(pb::Meeting {
                title: "  Quarterly planning ".into(),
                description: "With the platform team".into(),
                participant_count: 6,
                tags: vec!["Planning".into(), "planning".into(), "q3".into()],
                occurred_time: at(1_760_000_000),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .expect("create")
        .into_inner()
        .meeting
        .unwrap();
    assert!(created.name.starts_with("meetings/"));
    assert_eq!(created.title, "Quarterly planning");
    assert_eq!(created.status(), pb::MeetingStatus::AwaitingUpload);
    assert_eq!(created.tags, ["planning", "q3"]);
    assert!(created.audio.is_none());

    let fetched = client(&app)
        .get_meeting(ada.request(pb::GetMeetingRequest {
            name: created.name.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(fetched, created);

    let updated = client(&app)
        .update_meeting(ada.request(pb::UpdateMeetingRequest {
            meeting: Some(pb::Meeting {
                name: created.name.clone(),
                title: "Q3 planning".into(),
                description: "not in the mask".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["title".into(), "tags".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(updated.title, "Q3 planning");
    assert_eq!(updated.description, "With the platform team");
    assert!(updated.tags.is_empty(), "tags were in the mask, so cleared");

    let status = client(&app)
        .update_meeting(ada.request(pb::UpdateMeetingRequest {
            meeting: Some(pb::Meeting {
                name: created.name.clone(),
                title: String::new(),
                participant_count: 5000,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["title".into(), "participant_count".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violation_fields(&status),
        ["meeting.title", "meeting.participant_count"]
    );
    let status = client(&app)
        .create_meeting(ada.request(pb::CreateMeetingRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&status), ["meeting"]);

    client(&app)
        .delete_meeting(ada.request(pb::DeleteMeetingRequest {
            name: created.name.clone(),
        }))
        .await
        .expect("delete");
    let status = client(&app)
        .get_meeting(ada.request(pb::GetMeetingRequest {
            name: created.name.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client(&app)
        .delete_meeting(ada.request(pb::DeleteMeetingRequest { name: created.name }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "already deleted");
    assert!(
        app.audit_actions(ada.id)
            .await
            .contains(&"meeting.delete".to_owned())
    );
}

async fn creating_with_the_same_request_id_returns_the_first_meeting(backend: Backend) {
    let app = spawn_app(backend).await;
    let bo = app.sign_up("bo").await;
    let request = || pb::CreateMeetingRequest {
        meeting: Some(pb::Meeting {
            title: "Standup".into(),
            ..Default::default()
        }),
        request_id: "retry-me".into(),
    };
    let first = client(&app)
        .create_meeting(bo.request(request()))
        .await
        .unwrap()
        .into_inner();
    let again = client(&app)
        .create_meeting(bo.request(request()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let listed = client(&app)
        .list_meetings(bo.request(pb::ListMeetingsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.meetings.len(), 1);
}

async fn meetings_are_listed_newest_first_with_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let cy = app.sign_up("cy").await;
    let mut names = Vec::new();
    for (i, occurred) in [
        1_700_000_000,
        1_710_000_000,
        1_720_000_000,
        1_730_000_000,
        1_740_000_000,
    ]
    .into_iter()
    .enumerate()
    {
        names.push(create(&app, &cy, &format!("meeting {i}"), occurred).await.name);
    }
    // Pages of two, newest first, until the end.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client(&app)
            .list_meetings(cy.request(pb::ListMeetingsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.meetings.len() <= 2);
        seen.extend(page.meetings.into_iter().map(|m| m.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = names.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let window = client(&app)
        .list_meetings(cy.request(pb::ListMeetingsRequest {
            occurred_after: at(1_710_000_000),
            occurred_before: at(1_730_000_000),
            statuses: vec![pb::MeetingStatus::AwaitingUpload as i32],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let titles: Vec<String> = window.meetings.into_iter().map(|m| m.title).collect();
    assert_eq!(titles, ["meeting 2", "meeting 1"]);
    let none = client(&app)
        .list_meetings(cy.request(pb::ListMeetingsRequest {
            statuses: vec![pb::MeetingStatus::Ready as i32],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.meetings.is_empty());
    let status = client(&app)
        .list_meetings(cy.request(pb::ListMeetingsRequest {
            statuses: vec![42],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&status), ["statuses[0]"]);
}

async fn another_user_gets_not_found_for_every_meeting_rpc(backend: Backend) {
    let app = spawn_app(backend).await;
    let dee = app.sign_up("dee").await;
    let eve = app.sign_up("eve").await;
    let meeting = create(&app, &dee, "private", 1_750_000_000).await;
    let name = meeting.name.clone();
    let get = client(&app)
        .get_meeting(eve.request(pb::GetMeetingRequest { name: name.clone() }))
        .await
        .unwrap_err();
    let update = client(&app)
        .update_meeting(eve.request(pb::UpdateMeetingRequest {
            meeting: Some(pb::Meeting {
                name: name.clone(),
                title: "mine now".into(),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    let delete = client(&app)
        .delete_meeting(eve.request(pb::DeleteMeetingRequest { name: name.clone() }))
        .await
        .unwrap_err();
    for status in [get, update, delete] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let listed = client(&app)
        .list_meetings(eve.request(pb::ListMeetingsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.meetings.is_empty());
    let still = client(&app)
        .get_meeting(dee.request(pb::GetMeetingRequest { name }))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(still, meeting, "untouched");
}

async fn deleted_meetings_are_purged_after_the_retention(backend: Backend) {
    let app = spawn_app(backend).await;
    let fox = app.sign_up("fox").await;
    let gone = create(&app, &fox, "to delete", 1_750_000_000).await;
    let kept = create(&app, &fox, "to keep", 1_750_000_000).await;
    client(&app)
        .delete_meeting(fox.request(pb::DeleteMeetingRequest {
            name: gone.name.clone(),
        }))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let purged = debrief::meetings::store::purge_deleted(&app.db, now - chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(purged.is_empty(), "not yet past the retention");
    let purged = debrief::meetings::store::purge_deleted(&app.db, now + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(format!("meetings/{}", purged[0]), gone.name);
    client(&app)
        .get_meeting(fox.request(pb::GetMeetingRequest { name: kept.name }))
        .await
        .expect("the other meeting stays");
}

/// Every byte of a `DownloadRecording` stream, and its first content type.
async fn download(
    app: &TestApp,
    user: &TestUser,
    name: &str,
    offset: i64,
    length: i64,
) -> Result<(String, Vec<u8>), tonic::Status> {
    download_via(&app.channel, &user.tokens.access_token, name, offset, length).await
}

/// [`download`] through any channel, as the holder of `token`.
pub(crate) async fn download_via(
    channel: &Channel,
    token: &str,
    name: &str,
    offset: i64,
    length: i64,
) -> Result<(String, Vec<u8>), tonic::Status> {
    use futures::StreamExt as _;
    let mut stream = MeetingServiceClient::new(channel.clone())
        .download_recording(crate::helpers::bearer(
            token,
            pb::DownloadRecordingRequest {
                name: format!("{name}/recording"),
                offset,
                length,
            },
        ))
        .await?
        .into_inner();
    let (mut content_type, mut data) = (None, Vec::new());
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        assert!(piece.data.len() <= 1 << 20, "pieces of at most 1 MiB");
        content_type.get_or_insert(piece.content_type);
        data.extend_from_slice(&piece.data);
    }
    Ok((content_type.unwrap_or_default(), data))
}

async fn a_recording_downloads_whole_and_in_ranges_over_grpc_and_http(backend: Backend) {
    let app = spawn_app(backend).await;
    let gus = app.sign_up("gus").await;
    let hal = app.sign_up("hal").await;
    let name = crate::uploads::new_meeting(&app, &gus).await;
    // Before any upload there is nothing to download.
    let early = download(&app, &gus, &name, 0, 0).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    // 40 s of 16 kHz stereo: 2.5 MB, so several pieces.
    let file = crate::processing::recording(40_000, &[(1_000, 30_000)], 16_000);
    let mut uploads = debrief::pb::v1::upload_service_client::UploadServiceClient::new(app.channel.clone());
    crate::uploads::upload_whole(&mut uploads, &gus, &name, &file).await;

    let (content_type, whole) = download(&app, &gus, &name, 0, 0).await.unwrap();
    assert_eq!(content_type, "audio/wav");
    assert!(whole == file, "the download is the upload, byte for byte");
    let (_, slice) = download(&app, &gus, &name, 1_000_000, 1_500_000).await.unwrap();
    assert!(slice == file[1_000_000..2_500_000]);
    let (_, tail) = download(&app, &gus, &name, file.len() as i64 - 10, 0)
        .await
        .unwrap();
    assert!(tail == file[file.len() - 10..]);
    let past = download(&app, &gus, &name, file.len() as i64, 0)
        .await
        .unwrap_err();
    assert_eq!(past.code(), Code::InvalidArgument, "{past:?}");

    // Over HTTP: the file itself, then a range as a 206.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/{name}/recording", app.url());
    let response = http
        .get(&url)
        .bearer_auth(&gus.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header(&response, "content-type").as_deref(), Some("audio/wav"));
    assert_eq!(header(&response, "content-length"), Some(file.len().to_string()));
    assert_eq!(header(&response, "accept-ranges").as_deref(), Some("bytes"));
    assert!(response.bytes().await.unwrap() == file);
    let response = http
        .get(&url)
        .bearer_auth(&gus.tokens.access_token)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        header(&response, "content-range"),
        Some(format!("bytes 100-199/{}", file.len()))
    );
    assert_eq!(header(&response, "content-length").as_deref(), Some("100"));
    assert!(response.bytes().await.unwrap() == file[100..200]);
    let bad = http
        .get(&url)
        .bearer_auth(&gus.tokens.access_token)
        .header("range", format!("bytes={}-", file.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // A browser's <audio> element: a stream ticket in the query, no header.
    let ticket: serde_json::Value = http
        .post(format!("{}/v1/streamTickets", app.url()))
        .bearer_auth(&gus.tokens.access_token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = http
        .get(format!("{url}?ticket={}", ticket["ticket"].as_str().unwrap()))
        .header("range", "bytes=-44")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert!(
        response.bytes().await.unwrap() == file[file.len() - 44..],
        "the WAV header's size"
    );

    // Someone else's recording does not exist for them.
    let theirs = download(&app, &hal, &name, 0, 0).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound, "{theirs:?}");
    let response = http
        .get(&url)
        .bearer_auth(&hal.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
