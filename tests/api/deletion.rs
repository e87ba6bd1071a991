//! Account deletion through the real server: by the owner and by an admin,
//! credentials refused at once, and every owned row and stored object gone
//! once the erasure job has run — also when storage fails at first.

use std::time::Duration;

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use debrief::pb::v1::upload_service_client::UploadServiceClient;
use migration::rls::OWNED_TABLES;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, TestApp, TestUser, bearer};
use crate::on_both_backends;

on_both_backends!(
    a_deleted_account_loses_access_at_once_and_its_data_once_storage_answers,
    an_admin_deletes_a_user_and_only_an_admin_may,
);

/// Rows holding `user_id` in each owned table (read as an admin, whom every
/// table's policy lets read).
async fn rows_of(app: &TestApp, user_id: Uuid) -> Vec<(&'static str, i64)> {
    let scoped = app.db.as_admin(Uuid::now_v7()).await.unwrap();
    let mut rows = Vec::new();
    let backend = scoped.txn().get_database_backend();
    let placeholder = if backend == DbBackend::Postgres { "$1" } else { "?" };
    for (table, column) in OWNED_TABLES {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = {placeholder}");
        let n: i64 = scoped
            .txn()
            .query_one_raw(Statement::from_sql_and_values(backend, sql, [user_id.into()]))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap();
        rows.push((*table, n));
    }
    rows
}

/// Every stored object's key.
async fn objects(app: &TestApp) -> Vec<String> {
    app.state.shared.storage.list("").await.unwrap()
}

/// Owned-table rows and stored objects that name `user`'s meetings and
/// uploads.
async fn everything_of(
    app: &TestApp,
    user_id: Uuid,
    ids: &[String],
) -> (Vec<(&'static str, i64)>, Vec<String>) {
    let rows = rows_of(app, user_id)
        .await
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let objects = objects(app)
        .await
        .into_iter()
        .filter(|key| ids.iter().any(|id| key.contains(id.as_str())))
        .collect();
    (rows, objects)
}

/// A user with a processed recording, an upload left half-way, a practice
/// session and an API key; returns the ids their objects are stored under
/// and the key.
async fn with_data(app: &TestApp, user: &TestUser) -> (Vec<String>, String) {
    let speech = [(0, 8_000), (9_000, 18_000)];
    let file = crate::processing::recording(20_000, &speech, 16_000);
    let meeting = crate::processing::upload(app, user, &file).await;
    crate::processing::wait_for(app, user, &meeting, &[pb::MeetingStatus::Ready]).await;
    let half = crate::uploads::new_meeting(app, user).await;
    let mut uploads = UploadServiceClient::new(app.channel.clone());
    let upload = uploads
        .create_upload(user.request(pb::CreateUploadRequest {
            upload: Some(pb::Upload {
                meeting: half.clone(),
                file_name: "retro.wav".into(),
                content_type: "audio/wav".into(),
                size_bytes: file.len() as i64,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();
    uploads
        .append_chunk(user.request(crate::uploads::append(&upload.name, 0, &file[..262_144])))
        .await
        .unwrap();
    let session = crate::practice::start(app, user, "modules/conciseness-bottom-line-first")
        .await
        .unwrap();
    crate::practice::attempt(app, user, &session.name, "decision-first", "We ship on 14 March.").await;
    let key = app
        .auth()
        .create_api_key(user.request(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                display_name: "Calendar sync".into(),
                scopes: vec!["meetings:read".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .key;
    let id = |name: &str| name.rsplit('/').next().unwrap().to_owned();
    (vec![id(&meeting), id(&half), id(&upload.name)], key)
}

/// Waits until `user_id`'s account row is gone.
async fn wait_until_erased(app: &TestApp, user_id: Uuid) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows_of(app, user_id)
        .await
        .iter()
        .any(|(table, n)| *table == "users" && *n > 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the account was not erased in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_deleted_account_loses_access_at_once_and_its_data_once_storage_answers(backend: Backend) {
    let url = crate::processing::fake_transcriber().await;
    let extra = [("DEBRIEF_JOB_BACKOFF_MAX", "300ms")];
    let app = crate::processing::app_with_provider(backend, &url, &extra).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let (ids, key) = with_data(&app, &ann).await;
    let (bob_ids, _) = with_data(&app, &bob).await;
    let (rows, stored) = everything_of(&app, ann.id, &ids).await;
    for table in [
        "users",
        "meetings",
        "uploads",
        "meeting_transcripts",
        "practice_sessions",
        "api_keys",
    ] {
        assert!(
            rows.iter().any(|(t, _)| *t == table),
            "no {table} row to delete: {rows:?}"
        );
    }
    assert!(stored.iter().any(|k| k.contains("/original-")), "{stored:?}");
    assert!(
        stored
            .iter()
            .any(|k| k.starts_with("uploads/") && k.ends_with("/data")),
        "{stored:?}"
    );

    // A wrong password is refused and changes nothing; so is a sign-in
    // that is no longer recent, without the password.
    let wrong = app
        .auth()
        .delete_account(ann.request(pb::DeleteAccountRequest {
            password: "not-my-password-1".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong:?}");
    app.state
        .shared
        .clock
        .set(Some(chrono::Utc::now() + chrono::Duration::minutes(11)));
    let stale = app
        .auth()
        .delete_account(ann.request(pb::DeleteAccountRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::InvalidArgument, "{stale:?}");
    assert!(stale.message().contains("password"), "{stale:?}");
    app.state.shared.clock.set(None);
    // An API key cannot delete its account.
    let by_key = app
        .auth()
        .delete_account(bearer(&key, pb::DeleteAccountRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(by_key.code(), Code::PermissionDenied, "{by_key:?}");

    // Storage stops answering: the account still closes at once.
    let objects_dir = app.data_dir().join("objects");
    let away = app.data_dir().join("objects-away");
    std::fs::rename(&objects_dir, &away).unwrap();
    std::fs::write(&objects_dir, b"not a folder").unwrap();
    app.auth()
        .delete_account(ann.request(pb::DeleteAccountRequest {
            password: PASSWORD.into(),
        }))
        .await
        .expect("delete");
    let refused = MeetingServiceClient::new(app.channel.clone())
        .list_meetings(ann.request(pb::ListMeetingsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = MeetingServiceClient::new(app.channel.clone())
        .list_meetings(bearer(&key, pb::ListMeetingsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refresh = app
        .auth()
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: ann.tokens.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refresh.code(), Code::Unauthenticated, "{refresh:?}");
    assert!(app.sign_in(&ann.email, PASSWORD).await.is_err());
    // The erasure fails while storage is away, and keeps trying.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let failed = {
            let scoped = app.db.as_service().await.unwrap();
            let backend = scoped.txn().get_database_backend();
            let placeholder = if backend == DbBackend::Postgres { "$1" } else { "?" };
            let sql = format!(
                "SELECT COUNT(*) AS n FROM processing_jobs WHERE kind = 'erase_account' \
                 AND user_id = {placeholder} AND attempts >= 2 AND state IN ('pending', 'running')"
            );
            let row = scoped
                .txn()
                .query_one_raw(Statement::from_sql_and_values(backend, sql, [ann.id.into()]))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap() > 0
        };
        if failed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the erasure did not retry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rows_of(&app, ann.id)
            .await
            .iter()
            .any(|(t, n)| *t == "users" && *n > 0),
        "nothing is erased before the objects are"
    );

    // Storage is back: the next attempt erases everything.
    std::fs::remove_file(&objects_dir).unwrap();
    std::fs::rename(&away, &objects_dir).unwrap();
    wait_until_erased(&app, ann.id).await;
    let (rows, stored) = everything_of(&app, ann.id, &ids).await;
    // The audit log keeps its entries about the account, by id only.
    assert_eq!(rows.len(), 1, "rows left: {rows:?}");
    assert_eq!(rows[0].0, "audit_log");
    assert!(stored.is_empty(), "objects left: {stored:?}");
    let actions = app.audit_actions(ann.id).await;
    for action in ["auth.account_deleted", "account.erased"] {
        assert!(actions.iter().any(|a| a == action), "{actions:?}");
    }

    // Bob's data is untouched.
    let (rows, stored) = everything_of(&app, bob.id, &bob_ids).await;
    assert!(rows.iter().any(|(t, _)| *t == "meetings"), "{rows:?}");
    assert!(stored.iter().any(|k| k.contains("/original-")), "{stored:?}");
    MeetingServiceClient::new(app.channel.clone())
        .list_meetings(bob.request(pb::ListMeetingsRequest::default()))
        .await
        .expect("Bob still works");

    // The address signs up again, as a new account with nothing in it.
    let again = app.sign_up("ann").await;
    assert_eq!(again.email, ann.email);
    assert_ne!(again.id, ann.id);
    let meetings = MeetingServiceClient::new(app.channel.clone())
        .list_meetings(again.request(pb::ListMeetingsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(meetings.meetings.is_empty());
}

async fn an_admin_deletes_a_user_and_only_an_admin_may(backend: Backend) {
    let url = crate::processing::fake_transcriber().await;
    let app = crate::processing::app_with_provider(backend, &url, &[]).await;
    let admin = crate::usage::admin(&app).await;
    let cam = app.sign_up("cam").await;
    let dan = app.sign_up("dan").await;
    let (ids, _) = with_data(&app, &cam).await;
    let request = |name: String| pb::DeleteUserRequest {
        name,
        reason: "support ticket 4821: the customer asked us to close the account".into(),
    };
    // Not by another user, nor for an account that does not exist.
    let denied = app
        .admin()
        .delete_user(dan.request(request(format!("users/{}", cam.id))))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let missing = app
        .admin()
        .delete_user(bearer(&admin, request(format!("users/{}", Uuid::now_v7()))))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Over HTTP, as the API reference shows it.
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/users/{}", app.url(), cam.id))
        .query(&[(
            "reason",
            "support ticket 4821: the customer asked us to close the account",
        )])
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let refused = app
        .profiles()
        .get_profile(cam.request(pb::GetProfileRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    wait_until_erased(&app, cam.id).await;
    let (rows, stored) = everything_of(&app, cam.id, &ids).await;
    assert_eq!(rows.iter().map(|(t, _)| *t).collect::<Vec<_>>(), ["audit_log"]);
    assert!(stored.is_empty(), "objects left: {stored:?}");
    // Audited with the admin as the actor; a second deletion finds nothing.
    let log = app
        .admin()
        .list_audit_log(bearer(
            &admin,
            pb::ListAuditLogRequest {
                subject: format!("users/{}", cam.id),
                action: "admin.delete_user".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].details["reason"],
        "support ticket 4821: the customer asked us to close the account"
    );
    assert!(log[0].actor.starts_with("users/") && log[0].actor != log[0].subject);
    let again = app
        .admin()
        .delete_user(bearer(&admin, request(format!("users/{}", cam.id))))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
}
