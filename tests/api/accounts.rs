//! Email verification, password change and reset, and admin roles.

use debrief::auth::entity::user::Role;
use debrief::pb::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, TestApp, bearer, details, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    email_verification_tokens_work_once,
    password_reset_revokes_every_session_and_says_nothing_about_unknown_emails,
    changing_the_password_keeps_only_the_current_session,
    admin_rpcs_need_the_admin_role_and_role_changes_are_audited,
);

const NEW_PASSWORD: &str = "teal-Harbor-window-77";

/// The `token` parameter of the link in the newest email to `to`.
fn token_in_last_mail(app: &TestApp, to: &str) -> String {
    let mail = app
        .mailer
        .sent()
        .into_iter()
        .rev()
        .find(|m| m.to == to)
        .unwrap_or_else(|| panic!("no email to {to}"));
    assert!(mail.body.contains(&mail.link));
    let url = url::Url::parse(&mail.link).expect("a link");
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("a token in the link")
}

async fn email_verification_tokens_work_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let amy = app.sign_up("amy").await;
    let token = token_in_last_mail(&app, &amy.email);
    let user = app
        .auth()
        .verify_email(pb::VerifyEmailRequest { token: token.clone() })
        .await
        .expect("verify")
        .into_inner()
        .user
        .unwrap();
    assert!(user.email_verified);
    let status = app
        .auth()
        .verify_email(pb::VerifyEmailRequest { token })
        .await
        .expect_err("single use");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = app
        .auth()
        .send_verification_email(amy.request(pb::SendVerificationEmailRequest {}))
        .await
        .expect_err("already verified");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        app.audit_actions(amy.id)
            .await
            .contains(&"auth.email_verified".to_owned())
    );
}

async fn password_reset_revokes_every_session_and_says_nothing_about_unknown_emails(backend: Backend) {
    let app = spawn_app(backend).await;
    let ben = app.sign_up("ben").await;
    let other_session = app.sign_in(&ben.email, PASSWORD).await.unwrap();
    let sent_before = app.mailer.sent().len();
    app.auth()
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: "nobody@example.com".into(),
        })
        .await
        .expect("the same answer for unknown addresses");
    assert_eq!(
        app.mailer.sent().len(),
        sent_before,
        "no email to unknown addresses"
    );

    app.auth()
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: ben.email.clone(),
        })
        .await
        .expect("request");
    let token = token_in_last_mail(&app, &ben.email);
    let status = app
        .auth()
        .reset_password(pb::ResetPasswordRequest {
            token: token.clone(),
            new_password: "weak".into(),
        })
        .await
        .expect_err("weak");
    assert_eq!(status.code(), Code::InvalidArgument);
    app.auth()
        .reset_password(pb::ResetPasswordRequest {
            token: token.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("reset");
    for token in [&ben.tokens.access_token, &other_session.access_token] {
        let status = app
            .profiles()
            .get_profile(bearer(token, pb::GetProfileRequest {}))
            .await
            .expect_err("every session ends");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert!(app.sign_in(&ben.email, PASSWORD).await.is_err());
    app.sign_in(&ben.email, NEW_PASSWORD)
        .await
        .expect("the new password works");
    let status = app
        .auth()
        .reset_password(pb::ResetPasswordRequest {
            token,
            new_password: "another-Strong-passphrase-9".into(),
        })
        .await
        .expect_err("single use");
    assert_eq!(status.code(), Code::InvalidArgument);
    let actions = app.audit_actions(ben.id).await;
    assert!(actions.contains(&"auth.password_reset_requested".to_owned()));
    assert!(actions.contains(&"auth.password_reset".to_owned()));
}

async fn changing_the_password_keeps_only_the_current_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let cy = app.sign_up("cy").await;
    let phone = app.sign_in(&cy.email, PASSWORD).await.unwrap();
    let change = |current: &str| pb::ChangePasswordRequest {
        current_password: current.into(),
        new_password: NEW_PASSWORD.into(),
    };
    let status = app
        .auth()
        .change_password(cy.request(change("wrong")))
        .await
        .expect_err("wrong current password");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        details(&status).bad_request().unwrap().field_violations[0].field,
        "current_password"
    );
    app.auth()
        .change_password(cy.request(change(PASSWORD)))
        .await
        .expect("change");
    app.profiles()
        .get_profile(cy.request(pb::GetProfileRequest {}))
        .await
        .expect("the current session stays");
    let status = app
        .profiles()
        .get_profile(bearer(&phone.access_token, pb::GetProfileRequest {}))
        .await
        .expect_err("other sessions end");
    assert_eq!(status.code(), Code::Unauthenticated);
    app.sign_in(&cy.email, NEW_PASSWORD).await.expect("new password");
    assert!(
        app.audit_actions(cy.id)
            .await
            .contains(&"auth.password_changed".to_owned())
    );
}

async fn admin_rpcs_need_the_admin_role_and_role_changes_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    debrief::admin::users::create_user(&app.db, "root@example.com", PASSWORD, Role::Admin, "Root")
        .await
        .expect("bootstrap admin");
    let root = app.sign_in("root@example.com", PASSWORD).await.unwrap();
    let dee = app.sign_up("dee").await;

    let status = app
        .admin()
        .list_users(dee.request(pb::ListUsersRequest::default()))
        .await
        .expect_err("not an admin");
    assert_eq!(status.code(), Code::PermissionDenied);
    let users = app
        .admin()
        .list_users(bearer(&root.access_token, pb::ListUsersRequest::default()))
        .await
        .expect("admin lists users")
        .into_inner()
        .users;
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].email, dee.email, "newest first");
    assert_eq!(users[0].display_name, "dee");

    let set_role = |user: String, role: pb::Role| pb::SetUserRoleRequest {
        user,
        role: role as i32,
        reason: "runs the team's workspace".into(),
    };
    let status = app
        .admin()
        .set_user_role(bearer(
            &root.access_token,
            set_role("users/nope".into(), pb::Role::Admin),
        ))
        .await
        .expect_err("bad name");
    assert_eq!(status.code(), Code::InvalidArgument);
    let promoted = app
        .admin()
        .set_user_role(bearer(
            &root.access_token,
            set_role(format!("users/{}", dee.id), pb::Role::Admin),
        ))
        .await
        .expect("promote")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(promoted.role(), pb::Role::Admin);
    // The change applies to existing sessions.
    app.admin()
        .list_users(dee.request(pb::ListUsersRequest::default()))
        .await
        .expect("now an admin");

    let entries = app
        .admin()
        .list_audit_log(bearer(
            &root.access_token,
            pb::ListAuditLogRequest {
                action: "admin.set_role".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("audit log")
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].subject, format!("users/{}", dee.id));
    assert_eq!(entries[0].details["from"], "user");
    assert_eq!(entries[0].details["to"], "admin");
    assert!(!entries[0].ip_address.is_empty());
    let status = app
        .admin()
        .list_audit_log(bearer(
            &dee.tokens.access_token,
            pb::ListAuditLogRequest::default(),
        ))
        .await;
    assert!(status.is_ok(), "dee is an admin now");
}
