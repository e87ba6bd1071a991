//! API keys: shown once, scoped, revocable, and invisible to other users.

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use tonic::Code;

use crate::helpers::{Backend, bearer, spawn_app, violation_fields};
use crate::on_both_backends;

on_both_backends!(
    api_keys_are_scoped_and_revocable,
    creating_a_key_is_idempotent_and_validated
);

fn new_key(scopes: &[&str], request_id: &str) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        api_key: Some(pb::ApiKey {
            display_name: "reporting job".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

async fn api_keys_are_scoped_and_revocable(backend: Backend) {
    let app = spawn_app(backend).await;
    let eve = app.sign_up("eve").await;
    let created = app
        .auth()
        .create_api_key(eve.request(new_key(&["profile:read", "meetings:read"], "")))
        .await
        .expect("create")
        .into_inner();
    let key = created.key;
    let meta = created.api_key.unwrap();
    assert!(key.starts_with("dbk_"));
    assert!(key.starts_with(&meta.prefix) && meta.prefix.len() < key.len());

    // Reads are allowed, writes are not.
    app.profiles()
        .get_profile(bearer(&key, pb::GetProfileRequest {}))
        .await
        .expect("profile:read allows GetProfile");
    let status = app
        .profiles()
        .update_profile(bearer(&key, pb::UpdateProfileRequest::default()))
        .await
        .expect_err("no profile:write");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("profile:write"), "{status:?}");
    let mut meetings = MeetingServiceClient::new(app.channel.clone());
    let status = meetings
        .create_meeting(bearer(&key, pb::CreateMeetingRequest::default()))
        .await
        .expect_err("no meetings:write");
    assert_eq!(status.code(), Code::PermissionDenied);
    let listed = meetings
        .list_meetings(bearer(&key, pb::ListMeetingsRequest::default()))
        .await
        .expect("meetings:read allows ListMeetings");
    assert!(listed.into_inner().meetings.is_empty());
    // Keys never manage credentials.
    let status = app
        .auth()
        .list_api_keys(bearer(&key, pb::ListApiKeysRequest::default()))
        .await
        .expect_err("keys cannot list keys");
    assert_eq!(status.code(), Code::PermissionDenied);

    // The owner sees it (without the secret); another user does not.
    let listed = app
        .auth()
        .list_api_keys(eve.request(pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, meta.name);
    assert!(listed[0].last_use_time.is_some());
    let fin = app.sign_up("fin").await;
    let theirs = app
        .auth()
        .list_api_keys(fin.request(pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(theirs.is_empty());
    let status = app
        .auth()
        .revoke_api_key(fin.request(pb::RevokeApiKeyRequest {
            name: meta.name.clone(),
        }))
        .await
        .expect_err("not theirs");
    assert_eq!(status.code(), Code::NotFound);

    let revoked = app
        .auth()
        .revoke_api_key(eve.request(pb::RevokeApiKeyRequest {
            name: meta.name.clone(),
        }))
        .await
        .expect("revoke")
        .into_inner()
        .api_key
        .unwrap();
    assert!(revoked.revoke_time.is_some());
    let status = app
        .profiles()
        .get_profile(bearer(&key, pb::GetProfileRequest {}))
        .await
        .expect_err("a revoked key fails");
    assert_eq!(status.code(), Code::Unauthenticated);
    let actions = app.audit_actions(eve.id).await;
    assert!(actions.contains(&"auth.api_key_created".to_owned()));
    assert!(actions.contains(&"auth.api_key_revoked".to_owned()));
}

async fn creating_a_key_is_idempotent_and_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let gil = app.sign_up("gil").await;
    let first = app
        .auth()
        .create_api_key(gil.request(new_key(&["uploads:write"], "nightly-sync-1")))
        .await
        .unwrap()
        .into_inner();
    let retry = app
        .auth()
        .create_api_key(gil.request(new_key(&["uploads:write"], "nightly-sync-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.key, retry.key, "a retry gets the same key");
    assert_eq!(first.api_key, retry.api_key);
    let listed = app
        .auth()
        .list_api_keys(gil.request(pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 1, "and no second key");

    // Shown once: past the replay window a repeat gets the key without
    // its secret.
    {
        use debrief::auth::entity::api_key;
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, QueryFilter};
        let scoped = app.db.as_service().await.unwrap();
        let long_ago =
            chrono::Utc::now() - debrief::auth::api_keys::SECRET_REPLAY_WINDOW - chrono::Duration::seconds(1);
        scoped
            .update_many::<api_key::Entity>()
            .col_expr(api_key::Column::CreatedAt, Expr::value(long_ago))
            .filter(api_key::Column::UserId.eq(gil.id))
            .exec()
            .await
            .unwrap();
        scoped.commit().await.unwrap();
    }
    let late = app
        .auth()
        .create_api_key(gil.request(new_key(&["uploads:write"], "nightly-sync-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.key, "", "the secret is not shown again");
    assert_eq!(late.api_key.unwrap().name, first.api_key.as_ref().unwrap().name);

    let status = app
        .auth()
        .create_api_key(gil.request(new_key(&["meetings:delete", "everything"], "")))
        .await
        .expect_err("unknown scopes");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violation_fields(&status);
    assert_eq!(fields, ["api_key.scopes[0]", "api_key.scopes[1]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_request_repeated_after_a_key_rotation_is_refused_rather_than_answered_wrongly() {
    let before = spawn_app(Backend::Postgres).await;
    let hu = before.sign_up("hu").await;
    before
        .auth()
        .create_api_key(hu.request(new_key(&["meetings:read"], "setup-1")))
        .await
        .expect("create");
    // The instances now sign with a new key, and still accept the old one.
    let old_public = debrief::auth::keys::public_pem(crate::helpers::signing_key()).unwrap();
    let after = before
        .spawn_replica_with(|vars| {
            vars.insert(
                "DEBRIEF_JWT_SIGNING_KEY".into(),
                debrief::auth::keys::generate_pem().unwrap(),
            );
            vars.insert("DEBRIEF_JWT_VERIFY_KEYS".into(), old_public);
        })
        .await;
    after
        .profiles()
        .get_profile(hu.request(pb::GetProfileRequest {}))
        .await
        .expect("a token signed with the old key still works: nobody is signed out");
    let status = after
        .auth()
        .create_api_key(hu.request(new_key(&["meetings:read"], "setup-1")))
        .await
        .expect_err("the key can no longer be derived");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
}
