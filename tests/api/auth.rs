//! Accounts, tokens, sessions and throttling through the real server.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use debrief::auth::entity::user::Role;
use debrief::auth::keys::{KeySet, claims};
use debrief::pb::v1 as pb;
use debrief::pb::v1::profile_service_client::ProfileServiceClient;
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, TestApp, bearer, details, signing_key, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::transports::grpc_web_channel;

on_both_backends!(
    sign_up_then_sign_in_then_get_profile,
    sign_up_refuses_duplicates_weak_passwords_and_bad_emails,
    wrong_credentials_say_nothing_about_which_part_was_wrong,
    bad_access_tokens_are_unauthenticated,
    an_access_token_verifies_with_only_the_jwks_document,
    credentials_work_over_grpc_web,
    refresh_rotates_and_a_concurrent_reuse_gets_the_same_successor,
    reusing_a_rotated_refresh_token_revokes_the_session,
    sessions_are_listed_and_revoked_only_by_their_owner,
    sign_out_ends_the_current_session,
    the_sixth_wrong_password_locks_the_email_until_the_backoff_passes,
    sign_in_is_rate_limited_per_address,
    guessing_credentials_blocks_the_address_for_a_while,
    a_token_naming_another_users_session_is_refused_and_spoils_nothing,
    behind_a_trusted_proxy_each_client_has_its_own_limits_and_records,
);

async fn get_profile(app: &TestApp, token: &str) -> Result<pb::Profile, tonic::Status> {
    app.profiles()
        .get_profile(bearer(token, pb::GetProfileRequest {}))
        .await
        .map(|r| r.into_inner().profile.expect("profile"))
}

async fn sign_up_then_sign_in_then_get_profile(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.sign_up("alice").await;
    assert_eq!(alice.tokens.token_type, "Bearer");
    assert!(alice.tokens.refresh_token.starts_with("drt_"));

    let tokens = app
        .sign_in(" Alice@Example.com ", PASSWORD)
        .await
        .expect("sign in");
    let profile = get_profile(&app, &tokens.access_token).await.expect("profile");
    assert_eq!(profile.name, format!("users/{}/profile", alice.id));
    assert_eq!(profile.display_name, "alice");
    assert_eq!(
        app.audit_actions(alice.id).await,
        ["auth.sign_up", "auth.sign_in"]
    );
}

async fn sign_up_refuses_duplicates_weak_passwords_and_bad_emails(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("bob").await;
    let mut auth = app.auth();
    let sign_up = |email: &str, password: &str| pb::SignUpRequest {
        email: email.into(),
        password: password.into(),
        display_name: String::new(),
    };
    let status = auth
        .sign_up(sign_up("BOB@example.com", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    let status = auth
        .sign_up(sign_up("carol@example.com", "password1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = details(&status)
        .bad_request()
        .expect("field violations")
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "password");
    assert!(
        violations[0].description.contains("too easy to guess"),
        "{violations:?}"
    );

    let status = auth.sign_up(sign_up("not-an-email", PASSWORD)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        details(&status).bad_request().unwrap().field_violations[0].field,
        "email"
    );
    // Nothing was created by the refusals.
    assert!(app.sign_in("carol@example.com", "password1").await.is_err());
}

async fn wrong_credentials_say_nothing_about_which_part_was_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let dave = app.sign_up("dave").await;
    let wrong_password = app
        .sign_in("dave@example.com", "not-the-password")
        .await
        .unwrap_err();
    let unknown_email = app.sign_in("nobody@example.com", PASSWORD).await.unwrap_err();
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.code(), unknown_email.code());
    assert_eq!(wrong_password.message(), unknown_email.message());
    assert_eq!(
        app.audit_actions(dave.id).await,
        ["auth.sign_up", "auth.sign_in_failed"]
    );
}

/// A JWT with any header and claims, signed by `keys` (or not at all).
fn forge(header: &str, claims: &str, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        signature
    )
}

async fn bad_access_tokens_are_unauthenticated(backend: Backend) {
    // The test knows the server's key, so it can sign an expired token.
    let key = signing_key();
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_JWT_SIGNING_KEY".into(), key.into());
    })
    .await;
    let erin = app.sign_up("erin").await;
    let good = erin.tokens.access_token.clone();
    let session: uuid::Uuid = erin
        .tokens
        .session
        .trim_start_matches("authSessions/")
        .parse()
        .unwrap();
    get_profile(&app, &good).await.expect("a good token works");

    let server_keys = KeySet::load(Some(key), None, "debrief", None).unwrap();
    let mut expired = claims(erin.id, session, Role::User, "debrief", Duration::from_secs(60));
    expired.iat -= 3600;
    expired.exp = expired.iat + 60;
    let expired = server_keys.sign(&expired).unwrap();

    let other_key = debrief::auth::keys::generate_pem().unwrap();
    let other_keys = KeySet::load(Some(&other_key), None, "debrief", None).unwrap();
    let unknown_kid = other_keys
        .sign(&claims(
            erin.id,
            session,
            Role::User,
            "debrief",
            Duration::from_secs(60),
        ))
        .unwrap();

    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[0] ^= 1;
    let tampered_signature = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(flipped));
    // Claims changed to another role, signature kept.
    let admin_claims = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
        .replace("\"user\"", "\"admin\"");
    let tampered_claims = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(admin_claims));
    let claims_json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let alg_none = forge(r#"{"alg":"none","typ":"JWT"}"#, &claims_json, "");

    for (case, token) in [
        ("malformed", "not-a-jwt".to_owned()),
        ("tampered signature", tampered_signature),
        ("tampered claims", tampered_claims),
        ("expired", expired),
        ("unknown kid", unknown_kid),
        ("alg none", alg_none),
        ("unknown api key", "dbk_nope".to_owned()),
    ] {
        let status = get_profile(&app, &token).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }
    let status = app
        .profiles()
        .get_profile(pb::GetProfileRequest {})
        .await
        .expect_err("missing");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("authorization"), "{status:?}");
}

async fn an_access_token_verifies_with_only_the_jwks_document(backend: Backend) {
    let app = spawn_app(backend).await;
    let fay = app.sign_up("fay").await;
    let response = reqwest::get(format!("{}/.well-known/jwks.json", app.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("a JWKS document");

    let token = &fay.tokens.access_token;
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("the kid is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["debrief"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).expect("verifies");
    let claims = data.claims;
    assert_eq!(claims["sub"], fay.id.to_string());
    assert_eq!(claims["role"], "user");
    assert_eq!(
        format!("authSessions/{}", claims["sid"].as_str().unwrap()),
        fay.tokens.session
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 15 * 60, "access tokens live 15 minutes by default");
}

async fn credentials_work_over_grpc_web(backend: Backend) {
    let app = spawn_app(backend).await;
    let gus = app.sign_up("gus").await;
    for http2 in [false, true] {
        let mut profiles =
            ProfileServiceClient::with_origin(grpc_web_channel(http2), app.url().parse().unwrap());
        let profile = profiles
            .get_profile(gus.request(pb::GetProfileRequest {}))
            .await
            .expect("authenticated over gRPC-Web")
            .into_inner();
        assert_eq!(profile.profile.unwrap().display_name, "gus");
        let status = profiles.get_profile(pb::GetProfileRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

async fn refresh(app: &TestApp, token: &str) -> Result<pb::SessionTokens, tonic::Status> {
    app.auth()
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: token.into(),
        })
        .await
        .map(|r| r.into_inner().tokens.expect("tokens"))
}

async fn refresh_rotates_and_a_concurrent_reuse_gets_the_same_successor(backend: Backend) {
    let app = spawn_app(backend).await;
    let hal = app.sign_up("hal").await;
    let first = hal.tokens.refresh_token.clone();
    // Two tabs refresh with the same token at once.
    let (a, b) = tokio::join!(refresh(&app, &first), refresh(&app, &first));
    let (a, b) = (a.expect("first tab"), b.expect("second tab"));
    assert_ne!(a.refresh_token, first, "rotated");
    assert_eq!(
        a.refresh_token, b.refresh_token,
        "within the grace window: the same successor"
    );
    assert_eq!(a.session, hal.tokens.session);
    get_profile(&app, &a.access_token)
        .await
        .expect("the new access token works");
    let next = refresh(&app, &a.refresh_token)
        .await
        .expect("the successor works once");
    assert_ne!(next.refresh_token, a.refresh_token);
}

async fn reusing_a_rotated_refresh_token_revokes_the_session(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_REFRESH_REUSE_GRACE".into(), "0s".into());
    })
    .await;
    let ian = app.sign_up("ian").await;
    let stolen = ian.tokens.refresh_token.clone();
    let rotated = refresh(&app, &stolen).await.expect("rotation");
    // Outside the grace window the old token is a copy: the session ends.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let status = refresh(&app, &stolen).await.expect_err("reuse");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        details(&status).error_info().unwrap().reason,
        "REFRESH_TOKEN_REUSED"
    );
    let status = refresh(&app, &rotated.refresh_token)
        .await
        .expect_err("the successor is revoked too");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = get_profile(&app, &rotated.access_token)
        .await
        .expect_err("so are its access tokens");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        app.audit_actions(ian.id)
            .await
            .contains(&"auth.refresh_token_reused".to_owned())
    );
}

async fn sessions_are_listed_and_revoked_only_by_their_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let jo = app.sign_up("jo").await;
    let laptop = app.sign_in(&jo.email, PASSWORD).await.unwrap();
    let list = app
        .auth()
        .list_sessions(bearer(
            &laptop.access_token,
            pb::AuthServiceListSessionsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 2);
    assert_eq!(list.sessions[0].name, laptop.session, "newest first");
    assert!(list.sessions[0].current && !list.sessions[1].current);
    assert!(!list.sessions[0].ip_address.is_empty());

    // Another user neither sees nor revokes it.
    let kim = app.sign_up("kim").await;
    let theirs = app
        .auth()
        .list_sessions(kim.request(pb::AuthServiceListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.sessions.len(), 1);
    let status = app
        .auth()
        .revoke_session(kim.request(pb::RevokeSessionRequest {
            name: jo.tokens.session.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    get_profile(&app, &jo.tokens.access_token)
        .await
        .expect("still valid");

    app.auth()
        .revoke_session(bearer(
            &laptop.access_token,
            pb::RevokeSessionRequest {
                name: jo.tokens.session.clone(),
            },
        ))
        .await
        .expect("revoke the first session");
    let status = get_profile(&app, &jo.tokens.access_token).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "revoked at once on this instance"
    );
    assert_eq!(
        refresh(&app, &jo.tokens.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    get_profile(&app, &laptop.access_token)
        .await
        .expect("the other session lives");
    assert!(
        app.audit_actions(jo.id)
            .await
            .contains(&"auth.session_revoked".to_owned())
    );
}

async fn sign_out_ends_the_current_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let lou = app.sign_up("lou").await;
    app.auth()
        .sign_out(lou.request(pb::SignOutRequest {}))
        .await
        .expect("sign out");
    assert_eq!(
        get_profile(&app, &lou.tokens.access_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        refresh(&app, &lou.tokens.refresh_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

async fn the_sixth_wrong_password_locks_the_email_until_the_backoff_passes(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_SIGN_IN_LOCKOUT".into(), "1s".into());
    })
    .await;
    let max = app.sign_up("max").await;
    for attempt in 1..=5 {
        let status = app.sign_in(&max.email, "wrong-password").await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    let status = app
        .sign_in(&max.email, PASSWORD)
        .await
        .expect_err("locked, right password or not");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = details(&status)
        .retry_info()
        .expect("RetryInfo")
        .retry_delay
        .expect("a delay");
    assert!(retry <= Duration::from_secs(1), "{retry:?}");
    // Another account from the same address is not locked by this one.
    let ned = app.sign_up("ned").await;
    app.sign_in(&ned.email, PASSWORD)
        .await
        .expect("other emails still sign in");

    tokio::time::sleep(retry + Duration::from_millis(200)).await;
    app.sign_in(&max.email, PASSWORD)
        .await
        .expect("the backoff has passed");
    let failures = app
        .audit_actions(max.id)
        .await
        .iter()
        .filter(|a| *a == "auth.sign_in_failed")
        .count();
    assert_eq!(failures, 5);
}

async fn sign_in_is_rate_limited_per_address(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_AUTH_RATE_LIMIT".into(), "3".into());
    })
    .await;
    let oz = app.sign_up("oz").await;
    app.sign_in(&oz.email, PASSWORD).await.expect("second request");
    app.sign_in(&oz.email, PASSWORD).await.expect("third request");
    let status = app.sign_in(&oz.email, PASSWORD).await.expect_err("over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(details(&status).retry_info().is_some());
    // Authenticated calls are not limited by it.
    get_profile(&app, &oz.tokens.access_token).await.expect("profile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_instance_within_the_recheck_interval() {
    let a = spawn_app_with(Backend::Postgres, |vars| {
        vars.insert("DEBRIEF_SESSION_RECHECK".into(), "1s".into());
    })
    .await;
    let b = a.spawn_replica().await;
    let pat = a.sign_up("pat").await;
    get_profile(&b, &pat.tokens.access_token)
        .await
        .expect("instance B knows the session");
    let laptop = b.sign_in(&pat.email, PASSWORD).await.expect("and signs in too");
    a.auth()
        .revoke_session(bearer(
            &laptop.access_token,
            pb::RevokeSessionRequest {
                name: pat.tokens.session.clone(),
            },
        ))
        .await
        .expect("revoked through A");
    // B remembered the session as valid; within the recheck interval (and
    // well within 30 s) it reads the revocation.
    let started = std::time::Instant::now();
    loop {
        match get_profile(&b, &pat.tokens.access_token).await {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                break;
            }
            Ok(_) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "B still accepts the token"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

async fn guessing_credentials_blocks_the_address_for_a_while(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_AUTH_FAILURE_LIMIT".into(), "5".into());
    })
    .await;
    let pia = app.sign_up("pia").await;
    // A missing credential does not count.
    for _ in 0..10 {
        let status = app
            .profiles()
            .get_profile(pb::GetProfileRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Guessed API keys do.
    for attempt in 1..=5 {
        let status = get_profile(&app, &format!("dbk_guess{attempt}"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    let status = get_profile(&app, "dbk_guess6").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(details(&status).retry_info().is_some());
    // While blocked, the address is refused before any lookup, even with
    // a valid token.
    let status = get_profile(&app, &pia.tokens.access_token).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

async fn a_token_naming_another_users_session_is_refused_and_spoils_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let keys = &app.state.auth.keys;
    let ann_session = keys.verify(&ann.tokens.access_token).unwrap().sid;
    // A token (signed with a valid key) whose subject is Bob but whose
    // session is Ann's.
    let crossed = |sid| {
        let mut claims = keys.verify(&bob.tokens.access_token).unwrap();
        claims.sid = sid;
        keys.sign(&claims).unwrap()
    };

    // Used first, it must not spoil Ann's session for Ann.
    let refused = get_profile(&app, &crossed(ann_session)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    get_profile(&app, &ann.tokens.access_token)
        .await
        .expect("Ann's own token still works");
    // Used once Ann's session is known valid, it must not ride on it.
    let refused = get_profile(&app, &crossed(ann_session)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        get_profile(&app, &bob.tokens.access_token)
            .await
            .unwrap()
            .display_name,
        "bob"
    );
}

/// A SignIn as it arrives through a proxy that appended `client`.
fn forwarded_sign_in(email: &str, chain: &str) -> tonic::Request<pb::SignInRequest> {
    let mut request = tonic::Request::new(pb::SignInRequest {
        email: email.into(),
        password: PASSWORD.into(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", chain.parse().unwrap());
    request
}

async fn behind_a_trusted_proxy_each_client_has_its_own_limits_and_records(backend: Backend) {
    // The tests reach the server from 127.0.0.1: here that is the proxy.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_AUTH_RATE_LIMIT".into(), "2".into());
        vars.insert("DEBRIEF_TRUSTED_PROXIES".into(), "127.0.0.0/8".into());
    })
    .await;
    let kit = {
        let mut request = tonic::Request::new(pb::SignUpRequest {
            email: "kit@example.com".into(),
            password: PASSWORD.into(),
            display_name: "Kit".into(),
        });
        request
            .metadata_mut()
            .insert("x-forwarded-for", "192.0.2.10".parse().unwrap());
        app.auth().sign_up(request).await.unwrap().into_inner()
    };
    let email = "kit@example.com";
    // One client uses up its own allowance; a client spoofing an address
    // in front of its own is still counted as itself.
    app.auth()
        .sign_in(forwarded_sign_in(email, "192.0.2.10"))
        .await
        .expect("second request from 192.0.2.10");
    let refused = app
        .auth()
        .sign_in(forwarded_sign_in(email, "198.51.100.77, 192.0.2.10"))
        .await
        .expect_err("third request from 192.0.2.10");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // Another client behind the same proxy is not affected.
    let other = app
        .auth()
        .sign_in(forwarded_sign_in(email, "203.0.113.5"))
        .await
        .expect("a different client")
        .into_inner();
    // Sessions and the audit log record the client, not the proxy.
    let sessions = app
        .auth()
        .list_sessions(bearer(
            &other.tokens.unwrap().access_token,
            pb::AuthServiceListSessionsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    let addresses: std::collections::BTreeSet<String> =
        sessions.iter().map(|s| s.ip_address.clone()).collect();
    assert_eq!(
        addresses,
        ["192.0.2.10", "203.0.113.5"].map(String::from).into(),
        "{sessions:?}"
    );
    let _ = kit;

    // Without trusted proxies the header is ignored: everyone is 127.0.0.1.
    let plain = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_AUTH_RATE_LIMIT".into(), "2".into());
    })
    .await;
    plain.sign_up("lou").await;
    plain
        .auth()
        .sign_in(forwarded_sign_in("lou@example.com", "203.0.113.1"))
        .await
        .unwrap();
    let refused = plain
        .auth()
        .sign_in(forwarded_sign_in("lou@example.com", "203.0.113.2"))
        .await
        .expect_err("the header is not believed");
    assert_eq!(refused.code(), Code::ResourceExhausted);
}
