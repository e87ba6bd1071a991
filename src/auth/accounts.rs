//! Account flows: sign-up, sign-in, password change and reset, email
//! verification.

use chrono::Utc;
use sea_orm::sea_query::Expr;

use super::entity::user::{self, Role};
use super::entity::user_token::Purpose;
use super::mailer::Mail;
use super::model::normalise_email;
use super::sessions::{self, RevokeWhich};
use super::store::{self, NewAccount};
use super::throttle::FailureKeys;
use super::{Auth, password};
use crate::audit::{self, Entry};
use crate::context::RequestMeta;
use crate::db::Db;
use crate::error::{AppError, AppResult, Violations};
use crate::pb::v1 as pb;
use crate::text::display_name;

const VERIFY_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(48);
const RESET_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(1);

fn wrong_credentials() -> AppError {
    AppError::Unauthenticated {
        reason: "CREDENTIALS_WRONG",
        message: "the email address or the password is not correct".into(),
    }
}

fn required(bad: &mut Violations, field: &str, value: &str) {
    if value.is_empty() {
        bad.add(field, "is required");
    }
}

/// Creates an account with its profile, signs it in, and sends the
/// verification email.
pub async fn sign_up(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    request: pb::SignUpRequest,
) -> AppResult<pb::SignUpResponse> {
    auth.throttle.check_rate(meta.ip)?;
    let pb::SignUpRequest {
        email,
        password: new_password,
        display_name: name,
    } = request;
    let mut bad = Violations::default();
    let email = bad.check(normalise_email("email", &email))?;
    let name = bad.check(display_name("display_name", &name))?;
    let known = [
        email.as_deref().unwrap_or_default(),
        name.as_deref().unwrap_or_default(),
    ];
    bad.check(password::check_new(
        "password",
        &new_password,
        known[0],
        &known[1..],
    ))?;
    let (email, name) = bad.finish(|| Some((email?, name?)))?;
    let hash = password::hash(&new_password).await?;

    let scoped = db.as_service().await?;
    let user = store::create_account(
        &scoped,
        NewAccount {
            email: &email,
            password_hash: Some(hash),
            role: Role::User,
            display_name: &name,
        },
    )
    .await?;
    let tokens = sessions::open(auth, &scoped, &user, meta).await?;
    let verify = store::issue_email_token(&scoped, user.id, Purpose::VerifyEmail, VERIFY_TTL).await?;
    audit::record(&scoped, meta, Entry::own("auth.sign_up", user.id)).await?;
    scoped.commit().await?;
    auth.send_mail(verification_mail(auth, &email, &verify)).await;
    Ok(pb::SignUpResponse {
        user: Some(pb::User::from((&user, name))),
        tokens: Some(tokens),
    })
}

fn verification_mail(auth: &Auth, email: &str, token: &str) -> Mail {
    let link = format!("{}/verify-email?token={token}", auth.config.app_url);
    Mail {
        to: email.to_owned(),
        subject: "Confirm your email address for debrief".into(),
        body: format!("Open this link to confirm your email address:\n\n{link}\n\nIt works for 48 hours."),
        link,
    }
}

/// Signs in with email and password. Unknown emails cost the same as wrong
/// passwords, and both count towards the lockout.
pub async fn sign_in(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    request: pb::SignInRequest,
) -> AppResult<pb::SignInResponse> {
    auth.throttle.check_rate(meta.ip)?;
    let pb::SignInRequest {
        email,
        password: given,
    } = request;
    let mut bad = Violations::default();
    let email = bad.check(normalise_email("email", &email))?;
    required(&mut bad, "password", &given);
    let email = bad.finish(|| email)?;
    let keys = FailureKeys::new(&email, meta.ip);

    // Read, then verify outside any transaction: hashing takes a while and
    // must not hold a database connection.
    let user = {
        let scoped = db.read_as_service().await?;
        auth.throttle.check_locked(scoped.txn(), &keys).await?;
        store::find_by_email(&scoped, &email).await?
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let matches = password::verify(&given, hash).await?;

    let scoped = db.as_service().await?;
    let subject = user.as_ref().map(|u| u.id);
    let Some(user) = user.filter(|_| matches) else {
        auth.throttle.record_failure(scoped.txn(), &keys).await?;
        audit::record(
            &scoped,
            meta,
            // Whoever tried is unknown: no actor.
            Entry {
                action: "auth.sign_in_failed",
                actor: None,
                subject,
                target: None,
                details: serde_json::json!({ "known_account": subject.is_some() }),
            },
        )
        .await?;
        scoped.commit().await?;
        return Err(wrong_credentials());
    };
    // Another attempt may have locked the account while this one hashed.
    auth.throttle.check_locked(scoped.txn(), &keys).await?;
    auth.throttle.clear(scoped.txn(), &keys).await?;
    let now = Utc::now();
    store::update_user(&scoped, user.id, |u| {
        u.col_expr(user::Column::LastSignInAt, Expr::value(now))
    })
    .await?;
    let tokens = sessions::open(auth, &scoped, &user, meta).await?;
    audit::record(&scoped, meta, Entry::own("auth.sign_in", user.id)).await?;
    let user = user::Model {
        last_sign_in_at: Some(now),
        ..user
    };
    let user = store::user_with_profile(&scoped, &user).await?;
    scoped.commit().await?;
    Ok(pb::SignInResponse {
        user: Some(user),
        tokens: Some(tokens),
    })
}

/// Changes the caller's password and ends every other session.
pub async fn change_password(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    user_id: uuid::Uuid,
    current_session: Option<uuid::Uuid>,
    request: pb::ChangePasswordRequest,
) -> AppResult<()> {
    let pb::ChangePasswordRequest {
        current_password,
        new_password,
    } = request;
    let user = {
        let scoped = db.read_as_user(user_id).await?;
        store::get_user(&scoped, user_id).await?
    };
    let mut bad = Violations::default();
    required(&mut bad, "current_password", &current_password);
    bad.check(password::check_new(
        "new_password",
        &new_password,
        &user.email,
        &[],
    ))?;
    bad.finish(|| Some(()))?;
    let keys = FailureKeys::new(&user.email, meta.ip);
    auth.throttle.check_locked(db.unscoped(), &keys).await?;
    if !password::verify(&current_password, user.password_hash.as_deref()).await? {
        auth.throttle.record_failure(db.unscoped(), &keys).await?;
        return Err(AppError::invalid("current_password", "is not correct"));
    }
    let hash = password::hash(&new_password).await?;

    let scoped = db.as_user(user_id).await?;
    store::update_user(&scoped, user_id, |u| {
        u.col_expr(user::Column::PasswordHash, Expr::value(hash))
    })
    .await?;
    let which = current_session.map_or(RevokeWhich::All, RevokeWhich::AllBut);
    let revoked = sessions::revoke(&scoped, user_id, which, "password_changed").await?;
    audit::record(
        &scoped,
        meta,
        Entry::own("auth.password_changed", user_id)
            .details(serde_json::json!({ "sessions_revoked": revoked.len() })),
    )
    .await?;
    scoped.commit().await?;
    auth.authenticator.forget_sessions(&revoked);
    Ok(())
}

/// Sends a reset link if the address has an account; answers the same
/// either way.
pub async fn request_password_reset(auth: &Auth, db: &Db, meta: &RequestMeta, email: &str) -> AppResult<()> {
    auth.throttle.check_rate(meta.ip)?;
    let email = normalise_email("email", email)?;
    let scoped = db.as_service().await?;
    let Some(user) = store::find_by_email(&scoped, &email).await? else {
        return Ok(());
    };
    let token = store::issue_email_token(&scoped, user.id, Purpose::ResetPassword, RESET_TTL).await?;
    audit::record(
        &scoped,
        meta,
        Entry::about("auth.password_reset_requested", user.id),
    )
    .await?;
    scoped.commit().await?;
    let link = format!("{}/reset-password?token={token}", auth.config.app_url);
    auth.send_mail(Mail {
        to: email,
        subject: "Reset your debrief password".into(),
        body: format!(
            "Open this link to choose a new password:\n\n{link}\n\nIt works for one hour. \
             If you did not ask for this, ignore this email."
        ),
        link,
    })
    .await;
    Ok(())
}

/// Sets a new password with a reset token and ends every session.
pub async fn reset_password(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    request: pb::ResetPasswordRequest,
) -> AppResult<()> {
    let pb::ResetPasswordRequest { token, new_password } = request;
    let mut bad = Violations::default();
    required(&mut bad, "token", &token);
    required(&mut bad, "new_password", &new_password);
    bad.finish(|| Some(()))?;
    let (token, user) = {
        let scoped = db.read_as_service().await?;
        let token = store::find_email_token(&scoped, &token, Purpose::ResetPassword).await?;
        let user = store::get_user(&scoped, token.user_id).await?;
        (token, user)
    };
    password::check_new("new_password", &new_password, &user.email, &[])?;
    let hash = password::hash(&new_password).await?;

    let scoped = db.as_service().await?;
    store::use_email_token(&scoped, &token).await?;
    store::update_user(&scoped, user.id, |u| {
        u.col_expr(user::Column::PasswordHash, Expr::value(hash))
    })
    .await?;
    let revoked = sessions::revoke(&scoped, user.id, RevokeWhich::All, "password_reset").await?;
    auth.throttle
        .clear(scoped.txn(), &FailureKeys::new(&user.email, None))
        .await?;
    audit::record(
        &scoped,
        meta,
        Entry::about("auth.password_reset", user.id)
            .details(serde_json::json!({ "sessions_revoked": revoked.len() })),
    )
    .await?;
    scoped.commit().await?;
    auth.authenticator.forget_sessions(&revoked);
    Ok(())
}

/// Sends a new verification link to the caller.
pub async fn send_verification(auth: &Auth, db: &Db, user_id: uuid::Uuid) -> AppResult<()> {
    let scoped = db.as_user(user_id).await?;
    let user = store::get_user(&scoped, user_id).await?;
    if user.email_verified_at.is_some() {
        return Err(AppError::FailedPrecondition {
            reason: "EMAIL_ALREADY_VERIFIED",
            message: "the email address is already verified".into(),
            metadata: Default::default(),
        });
    }
    let token = store::issue_email_token(&scoped, user_id, Purpose::VerifyEmail, VERIFY_TTL).await?;
    scoped.commit().await?;
    auth.send_mail(verification_mail(auth, &user.email, &token)).await;
    Ok(())
}

/// Marks the address of the token's account as verified.
pub async fn verify_email(db: &Db, meta: &RequestMeta, token: &str) -> AppResult<pb::User> {
    let mut bad = Violations::default();
    required(&mut bad, "token", token);
    bad.finish(|| Some(()))?;
    let scoped = db.as_service().await?;
    let token = store::find_email_token(&scoped, token, Purpose::VerifyEmail).await?;
    store::use_email_token(&scoped, &token).await?;
    let now = Utc::now();
    store::update_user(&scoped, token.user_id, |u| {
        u.col_expr(user::Column::EmailVerifiedAt, Expr::value(now))
    })
    .await?;
    audit::record(&scoped, meta, Entry::about("auth.email_verified", token.user_id)).await?;
    let user = store::get_user(&scoped, token.user_id).await?;
    let user = store::user_with_profile(&scoped, &user).await?;
    scoped.commit().await?;
    Ok(user)
}
