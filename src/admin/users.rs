//! Accounts as operators see them: listing, roles, and creating the first
//! admin from the command line.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::auth::entity::user::{self, Role};
use crate::auth::model::normalise_email;
use crate::auth::{password, store};
use crate::context::RequestMeta;
use crate::db::Db;
use crate::error::{AppError, AppResult, Violations};
use crate::names::parse_name;
use crate::pagination::{BeforeId, PageRequest};
use crate::pb::v1 as pb;
use crate::profiles::entity as profile;
use crate::text::display_name;

/// Creates an account with a role, e.g. the first admin. Used by
/// `debrief admin create-user`; audited with no actor.
pub async fn create_user(
    db: &Db,
    email: &str,
    new_password: &str,
    role: Role,
    name: &str,
) -> AppResult<user::Model> {
    let email = normalise_email("email", email)?;
    let name = display_name("display_name", name)?;
    password::check_new("password", new_password, &email, &[&name])?;
    let hash = password::hash(new_password).await?;
    let scoped = db.as_service().await?;
    let user = store::create_account(
        &scoped,
        store::NewAccount {
            email: &email,
            password_hash: Some(hash),
            role,
            display_name: &name,
        },
    )
    .await?;
    audit::record(
        &scoped,
        &RequestMeta::default(),
        Entry::about("admin.create_user", user.id)
            .details(serde_json::json!({ "role": role.as_str(), "via": "command line" })),
    )
    .await?;
    scoped.commit().await?;
    Ok(user)
}

/// Closes a user's account for an admin; their data is erased in the
/// background. An admin closes their own with DeleteAccount.
pub async fn delete(
    auth: &crate::auth::Auth,
    db: &Db,
    meta: &RequestMeta,
    admin_id: Uuid,
    request: pb::DeleteUserRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    let pb::DeleteUserRequest { name, reason } = request;
    let mut bad = Violations::default();
    let id = bad.check(parse_name("name", &name, "users"))?;
    if reason.chars().count() > 500 {
        bad.add("reason", "must be at most 500 characters long");
    }
    let id = bad.finish(|| id)?;
    if id == admin_id {
        return Err(AppError::FailedPrecondition {
            reason: "OWN_ACCOUNT",
            message: "to delete your own account, use AuthService.DeleteAccount (it asks for your password)"
                .into(),
            metadata: Default::default(),
        });
    }
    let entry = Entry {
        actor: Some(admin_id),
        ..Entry::about("admin.delete_user", id)
    }
    .details(serde_json::json!({ "reason": reason }));
    crate::auth::closing::close(auth, db, meta, id, entry, now).await
}

/// The role named by an API enum.
pub fn role_from_proto(field: &str, value: i32) -> AppResult<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::User) => Ok(Role::User),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Service) => Ok(Role::Service),
        _ => Err(AppError::invalid(
            field,
            "must be ROLE_USER, ROLE_ADMIN or ROLE_SERVICE",
        )),
    }
}

/// Changes a user's role (audited).
pub async fn set_role(
    db: &Db,
    meta: &RequestMeta,
    admin_id: Uuid,
    request: pb::SetUserRoleRequest,
) -> AppResult<pb::User> {
    let pb::SetUserRoleRequest { user, role, reason } = request;
    let mut bad = Violations::default();
    let user_id = bad.check(parse_name("user", &user, "users"))?;
    let role = bad.check(role_from_proto("role", role))?;
    let reason = bad.check(crate::text::plain_text("reason", &reason, 500))?;
    let (user_id, role, reason) = bad.finish(|| Some((user_id?, role?, reason?)))?;
    // Writing another user's row needs the service scope; the admin check
    // was made by the caller.
    let scoped = db.as_service().await?;
    let before = store::get_user(&scoped, user_id).await?;
    if before.role != role {
        store::update_user(&scoped, user_id, |u| {
            u.col_expr(user::Column::Role, Expr::value(role))
        })
        .await?;
        audit::record(
            &scoped,
            meta,
            Entry {
                action: "admin.set_role",
                actor: Some(admin_id),
                subject: Some(user_id),
                target: Some(format!("users/{user_id}")),
                details: serde_json::json!({ "from": before.role.as_str(), "to": role.as_str(), "reason": reason }),
            },
        )
        .await?;
    }
    let after = store::get_user(&scoped, user_id).await?;
    let user = store::user_with_profile(&scoped, &after).await?;
    scoped.commit().await?;
    Ok(user)
}

/// Accounts, newest first, with their display names (one query for the
/// page's profiles).
pub async fn list(
    db: &Db,
    admin_id: Uuid,
    request: pb::ListUsersRequest,
) -> AppResult<pb::ListUsersResponse> {
    let pb::ListUsersRequest {
        page_size,
        page_token,
        email_prefix,
        role,
    } = request;
    let page = PageRequest::<BeforeId>::parse(page_size, &page_token, 50, 200)?;
    let scoped = db.read_as_admin(admin_id).await?;
    let mut query = page
        .newest_first(scoped.find::<user::Entity>(), user::Column::Id)
        .filter(user::Column::DeletedAt.is_null());
    let prefix = email_prefix.trim().to_lowercase();
    if !prefix.is_empty() {
        query = query.filter(user::Column::Email.starts_with(&prefix));
    }
    if role != pb::Role::Unspecified as i32 {
        query = query.filter(user::Column::Role.eq(role_from_proto("role", role)?));
    }
    let (users, next) = page.page(query.all(scoped.txn()).await?, |last| BeforeId {
        before: last.id,
    });
    let profiles = scoped
        .find::<profile::Entity>()
        .filter(profile::Column::UserId.is_in(users.iter().map(|u| u.id)))
        .all(scoped.txn())
        .await?;
    let name_of = |id: Uuid| {
        profiles
            .iter()
            .find(|p| p.user_id == id)
            .map(|p| p.display_name.clone())
            .unwrap_or_default()
    };
    Ok(pb::ListUsersResponse {
        users: users.iter().map(|u| pb::User::from((u, name_of(u.id)))).collect(),
        next_page_token: PageRequest::token(next.as_ref()),
    })
}
